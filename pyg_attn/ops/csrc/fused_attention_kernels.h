// The fused kernels (see fused_attention.cpp), included once per instruction set
// it compiles them for (AVX2/FMA and the build's baseline target).  Only
// what the copies share (ScoreKind, index_t, the SIMD pragmas) is defined
// outside; the arguments reaching forward()/backward() (kernel_dispatch.h) have
// been checked.
// No include guard: each inclusion defines the kernels in its own namespace.

#include "kernel_math.h"
#include "kernel_graph.h"
#include "kernel_forward.h"
#include "kernel_backward.h"
#include "kernel_dispatch.h"
#include "kernel_node_logits.h"
