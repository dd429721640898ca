"""SAGAN self-attention on an image tensor: where does one pixel look?

:class:`pyg_attn.nn.SelfAttention2d` lets every position of a ``[B, C, H, W]``
feature map attend to every other (``HW`` nodes of a complete directed graph;
``A[i, j]``, ``i = row * W + col``, rows sum to 1) and adds ``gamma * (A V)`` to the
input; ``gamma`` starts at 0, so a fresh module is the identity.

The image is synthetic (a red disk, a distant red bar and a blue square on a noisy
grey background).
So that the picture means something without training, the 1x1 query and key
convolutions are set by hand to compare colours (score ``q_i . k_j`` =
``s * (x_i - grey) . (x_j - grey)``): a red pixel attends to the red pixels
wherever they are, near or far (the long-range dependencies SAGAN adds to
convolutions).  The script checks that the module is the identity at
initialisation and that its fast path (SDPA, no weights) equals the explicit one,
prints how much of a query pixel's attention lands on its own shape, and saves the
image, the attention map of that pixel, and the output.

    python examples/08_sagan_image_attention.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyg_attn.nn import SelfAttention2d  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402

GREY = 0.5


def synthetic_image(size: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """``[3, size, size]`` RGB in [0, 1] and the boolean masks of its shapes."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = (rows - 0.3 * size) ** 2 + (cols - 0.3 * size) ** 2 < (0.18 * size) ** 2
    square = ((rows - 0.68 * size).abs() < 0.15 * size) & ((cols - 0.7 * size).abs() < 0.15 * size)
    bar = ((rows - 0.85 * size).abs() < 0.06 * size) & ((cols - 0.25 * size).abs() < 0.2 * size)
    image = GREY + 0.03 * torch.randn(3, size, size, generator=gen)
    red, blue = torch.tensor([0.9, 0.15, 0.15]), torch.tensor([0.15, 0.2, 0.9])
    for mask, colour in ((disk, red), (bar, red), (square, blue)):
        image[:, mask] = colour.unsqueeze(1)
    return image.clamp(0, 1), {"red disk": disk, "distant red bar": bar, "blue square": square}


def colour_matching(module: SelfAttention2d, sharpness: float) -> None:
    """Query = key = ``sqrt(s) * (x - grey)``; value = the colour itself."""
    eye = torch.eye(3).view(3, 3, 1, 1)
    with torch.no_grad():
        for conv in (module.query_conv, module.key_conv):
            conv.weight.copy_(sharpness ** 0.5 * eye)
            conv.bias.fill_(-(sharpness ** 0.5) * GREY)
        module.value_conv.weight.copy_(eye)
        module.value_conv.bias.zero_()
        module.gamma.fill_(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_sagan_")

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    size = args.size
    image, shapes = synthetic_image(size, gen)
    x = image.unsqueeze(0)  # [1, 3, H, W]

    module = SelfAttention2d(3, reduction=1)  # 3 query/key channels: one per colour
    print(f"{module}: identity at initialisation (gamma = 0): {torch.equal(module(x), x)}")
    colour_matching(module, sharpness=20.0)
    with torch.no_grad():
        out, attn = module(x, return_attention=True)  # attn: [1, HW, HW]
        fast = module(x)                               # SDPA, no HW x HW matrix kept
    print(f"attention {list(attn.shape)}, rows sum to 1: "
          f"{torch.allclose(attn.sum(-1), torch.ones(1, size * size))}; "
          f"SDPA path vs explicit path: max |diff| {float((fast - out).abs().max()):.1e}")

    query = (int(0.3 * size), int(0.3 * size))  # inside the red disk
    weights = attn[0, query[0] * size + query[1]].view(size, size)
    for name, mask in shapes.items():
        print(f"pixel {query} puts {float(weights[mask].sum()):.2f} of its attention on the "
              f"{name} ({float(mask.float().mean()):.2f} of the image)")

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    axes[0].imshow(image.permute(1, 2, 0))
    axes[0].set_title("input")
    shown = axes[1].imshow(weights, cmap="magma")
    axes[1].set_title(f"attention of pixel {query}")
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    axes[2].imshow((out[0].permute(1, 2, 0) / out.max()).clamp(0, 1))
    axes[2].set_title("output x + gamma * A V (rescaled)")
    for ax in axes:
        ax.plot(query[1], query[0], marker="x", color="white", markersize=9, mew=2)
        ax.axis("off")
    save_figure(fig, out_dir / "sagan_attention.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
