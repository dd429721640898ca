"""Progress over the epochs of one training run, readable on a terminal and in a log.

On a terminal (or in a Jupyter kernel) :class:`EpochProgress` draws a tqdm bar;
anywhere else (a file, a pipe, a CI log) a bar would write each redraw as a new
line, so it writes one line per epoch with the same figures instead::

    run 0 epoch 12/1000: loss=0.532 val_acc=0.780
"""
from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["EpochProgress", "is_interactive"]


def is_interactive(stream: Any) -> bool:
    """Whether ``stream`` is shown live: a terminal, or a Jupyter kernel's output
    (where tqdm draws a widget).  Files, pipes and in-memory buffers are not."""
    isatty = getattr(stream, "isatty", None)
    try:
        if callable(isatty) and isatty():
            return True
    except ValueError:  # a closed file
        return False
    return type(stream).__module__.startswith("ipykernel")


class EpochProgress:
    """The progress of one run over its epochs, on ``stream``.

    Parameters
    ----------
    total : int
        The run's last epoch (``config.epochs``).
    desc : str
        What runs, e.g. ``"run 0"``; starts every line or labels the bar.
    initial : int
        Epochs already done (a resumed run).
    stream : file-like, optional
        Where to write; ``sys.stderr`` (read when the progress starts) by default.
    enabled : bool
        Show anything at all; :obj:`False` makes every method a no-op.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> with EpochProgress(3, "run 0", stream=log) as progress:
    ...     progress.update(loss="0.693", val_acc="0.500")
    >>> log.getvalue()
    'run 0 epoch 1/3: loss=0.693 val_acc=0.500\\n'
    """

    def __init__(self, total: int, desc: str, initial: int = 0,
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.desc, self.epoch, self.enabled = total, desc, initial, enabled
        self.stream = sys.stderr if stream is None else stream
        self.bar: Any = None
        if enabled and is_interactive(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch",
                            leave=False, dynamic_ncols=True, file=self.stream)

    def update(self, **figures: str) -> None:
        """Marks one more epoch done, with its ``figures`` (name -> formatted value)."""
        self.epoch += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(figures, refresh=False)
            self.bar.update(1)
            return
        shown = " ".join(f"{name}={value}" for name, value in figures.items())
        print(f"{self.desc} epoch {self.epoch}/{self.total}: {shown}", file=self.stream,
              flush=True)

    def close(self) -> None:
        """Removes the bar (no-op for line output)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
