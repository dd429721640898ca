# Set-up and the two entry points of README.md.  Only Python 3 (with venv), a C++
# compiler and make are needed; everything else is installed into $(VENV).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install --constraint constraints.txt
OUT ?= out

.PHONY: setup setup-demo setup-extras demo test bench asan clean

# Two set-ups.  The demo's: torch first (pinned), then the package in editable
# mode with its runtime dependencies (ninja, which the kernel build needs, among them),
# then the fused CPU kernel compiled ahead of time.  The full one (tests,
# benchmarks) adds the dev/triton extras and the scatter extras.
setup-demo: $(VENV)/.demo-setup-done
setup: $(VENV)/.setup-done

$(VENV)/.demo-setup-done: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) --no-build-isolation -e .
	$(PY) -m pyg_attn build-ext || echo "warning: using the reference backend"
	touch $@

$(VENV)/.setup-done: $(VENV)/.demo-setup-done
	$(PIP_INSTALL) --no-build-isolation -e ".[dev,triton]"
	$(SCATTER_EXTRAS)
	touch $@

# torch_scatter/torch_sparse (the `scatter` extra), which the tests compare
# against when present: built from source without build isolation (an isolated
# build would pull a CUDA torch), about 17 minutes on 2 cores.  Optional: a
# failed build only warns.
SCATTER_EXTRAS = $(PY) -c "import torch_scatter, torch_sparse" 2>/dev/null || \
	$(PIP_INSTALL) --no-build-isolation torch_scatter torch_sparse || \
	echo "warning: torch_scatter/torch_sparse could not be built; continuing without them"

setup-extras: $(VENV)/.demo-setup-done
	$(SCATTER_EXTRAS)

# The main job: train the GAT of Velickovic et al. on the embedded Cora (one run,
# prints the test accuracy), then draw node 0's attention and its rollout, and
# write the interactive explorer of its 2-hop neighbourhood (attention.html).
demo: setup-demo
	$(PY) -m pyg_attn train --dataset Cora --model gat --out $(OUT)/cora-gat
	$(PY) -m pyg_attn explain --checkpoint $(OUT)/cora-gat --node 0 --out $(OUT)/cora-gat/explain --html

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_ops.py

# The fused CPU kernel built with AddressSanitizer, under the op fuzz and
# bad-input tests (tests/asan/run_asan.sh).
asan: setup
	PYTHON=$(PY) tests/asan/run_asan.sh

clean:
	rm -rf build dist *.egg-info $(OUT)
