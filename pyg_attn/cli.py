"""The ``pyg-attn`` command line (also ``python -m pyg_attn``).

Subcommands:

* ``info``: versions and which attention backends are usable here.
* ``build-ext``: compile the fused CPU kernel now (it is otherwise built on
  first use); exits non-zero if it cannot be built.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _info(_: argparse.Namespace) -> int:
    import torch
    import torch_geometric

    from . import __version__
    from .ops.cpu import load_extension

    print(f"pyg_attn {__version__}, torch {torch.__version__}, "
          f"torch_geometric {torch_geometric.__version__}")
    print(f"fused CPU kernel: {'available' if load_extension() is not None else 'unavailable'}")
    print(f"CUDA: {'available' if torch.cuda.is_available() else 'unavailable'}")
    return 0


def _build_ext(_: argparse.Namespace) -> int:
    from .ops.cpu import load_extension

    module = load_extension()
    if module is None:
        print("the fused CPU kernel could not be built; the reference backend will be used",
              file=sys.stderr)
        return 1
    print(f"fused CPU kernel ready: {module.__file__}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pyg-attn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="show versions and available backends").set_defaults(
        run=_info)
    commands.add_parser("build-ext", help="compile the fused CPU kernel now").set_defaults(
        run=_build_ext)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
