"""Training progress: a bar on a terminal, one line per epoch in a log."""
from __future__ import annotations

import io
import re

from pyg_attn.training.node_classification import TrainConfig, train_node_classification
from pyg_attn.training.progress import EpochProgress, is_interactive


class Terminal(io.StringIO):
    """An in-memory stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_log_gets_one_line_per_epoch_with_the_figures():
    log = io.StringIO()
    with EpochProgress(5, "run 1", initial=2, stream=log) as progress:
        progress.update(loss="0.700", val_acc="0.400")
        progress.update(loss="0.650", val_acc="0.450")
    assert log.getvalue().splitlines() == ["run 1 epoch 3/5: loss=0.700 val_acc=0.400",
                                           "run 1 epoch 4/5: loss=0.650 val_acc=0.450"]


def test_terminal_gets_a_bar_redrawn_in_place():
    screen = Terminal()
    with EpochProgress(50, "run 0", stream=screen) as progress:
        for _ in range(50):
            progress.update(val_acc="0.500")
    drawn = screen.getvalue()
    assert "run 0" in drawn and "\r" in drawn
    assert "\n" not in drawn  # redrawn on one line, removed at the end (leave=False)
    assert "epoch 1/50:" not in drawn


def test_disabled_progress_writes_nothing():
    for stream in (io.StringIO(), Terminal()):
        with EpochProgress(3, "run 0", stream=stream, enabled=False) as progress:
            progress.update(val_acc="0.500")
        assert stream.getvalue() == ""


def test_is_interactive():
    closed = io.StringIO()
    closed.close()
    assert [is_interactive(s) for s in (Terminal(), io.StringIO(), closed, object())] == \
        [True, False, False, False]


def test_training_log_holds_one_line_per_epoch(tiny, capsys):
    """Under pytest stderr is no terminal: as in a CI log or ``make demo > log``."""
    [result] = train_node_classification(TrainConfig(**tiny), progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines()
             if re.match(r"run 0 epoch \d+/4: ", line)]
    assert lines == [f"run 0 epoch {e.epoch}/4: loss={e.train_loss:.3f} val_acc={e.val_acc:.3f}"
                     for e in result.epochs]
    assert len(lines) == len(result.epochs) >= 1
