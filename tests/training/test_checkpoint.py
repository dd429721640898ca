"""Atomic checkpoint and config files."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.training.checkpoint import (CONFIG_NAME, atomic_write, load_checkpoint,
                                          load_config, save_checkpoint, save_config)


def test_round_trip(tmp_path):
    state = {"epoch": 7, "weights": {"w": torch.arange(3.0)}, "history": [{"loss": 0.5}]}
    path = save_checkpoint(state, tmp_path / "sub" / "best.pt")
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 7 and loaded["history"] == [{"loss": 0.5}]
    assert torch.equal(loaded["weights"]["w"], torch.arange(3.0))


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = save_checkpoint({"epoch": 1}, tmp_path / "best.pt")

    def crash(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_checkpoint(path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_files_get_the_usual_permissions(tmp_path):
    path = atomic_write(tmp_path / "a.txt", lambda h: h.write("x"), binary=False)
    assert path.stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


def test_checkpoints_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(path)


def test_config(tmp_path):
    save_config({"model": "gat", "runs": 2}, tmp_path)
    assert (tmp_path / CONFIG_NAME).is_file()
    assert load_config(tmp_path) == {"model": "gat", "runs": 2}
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_config(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
