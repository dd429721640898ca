"""Offline data set loading: shipped copies, data roots, cache, error messages."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.datasets import Planetoid, TUDataset

from pyg_attn import datasets
from pyg_attn.datasets import CACHE_ENV, DATA_ENV, load_dataset, package_data_dir


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No data root from the environment; the cache lives in tmp_path."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def make_root(tmp_path: Path, *names: str) -> Path:
    """A data root in tmp_path holding copies of the shipped data sets ``names``."""
    root = tmp_path / "root"
    for family, name in (datasets.SHIPPED[n.lower()] for n in names):
        shutil.copytree(package_data_dir() / family / name / "raw", root / family / name / "raw")
    return root


def test_cora_from_shipped_copy(isolated_env):
    dataset = load_dataset("Cora")
    assert isinstance(dataset, Planetoid)
    assert len(dataset) == 1
    data = dataset[0]
    assert data.num_nodes == 2708
    assert data.edge_index.size(1) == 10556
    assert dataset.num_features == 1433 and data.x.shape == (2708, 1433)
    assert dataset.num_classes == 7
    assert int(data.train_mask.sum()) == 140
    assert int(data.val_mask.sum()) == 500
    assert int(data.test_mask.sum()) == 1000
    # Processed in the cache, not in the package.
    assert Path(dataset.processed_dir).is_relative_to(isolated_env)
    assert (Path(dataset.processed_dir) / "data.pt").is_file()


@pytest.mark.parametrize("name", ["cora", "CORA", " Cora "])
def test_names_are_case_insensitive(name):
    dataset = load_dataset(name)
    assert dataset.name == "Cora"
    assert dataset[0].num_nodes == 2708


def test_citeseer_from_shipped_copy():
    dataset = load_dataset("citeseer")
    data = dataset[0]
    assert data.num_nodes == 3327
    assert data.edge_index.size(1) == 9104
    assert dataset.num_features == 3703
    assert dataset.num_classes == 6
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == \
        [120, 500, 1000]


def test_mutag_from_shipped_copy():
    dataset = load_dataset("mutag")
    assert isinstance(dataset, TUDataset)
    assert len(dataset) == 188
    assert dataset.num_classes == 2
    assert dataset.num_node_features == 7
    assert sorted(torch.bincount(dataset.y).tolist()) == [63, 125]


def test_cache_gets_the_files_and_package_data_is_unchanged(isolated_env):
    before = snapshot(package_data_dir())
    for name in ("Cora", "CiteSeer", "MUTAG"):
        dataset = load_dataset(name)
        raw = Path(dataset.raw_dir)
        assert raw.is_relative_to(isolated_env)
        family, canonical = datasets.SHIPPED[name.lower()]
        shipped = sorted(p.name for p in (package_data_dir() / family / canonical / "raw").iterdir())
        assert sorted(p.name for p in raw.iterdir()) == shipped
        assert any(Path(dataset.processed_dir).glob("*.pt"))
    assert snapshot(package_data_dir()) == before
    assert not [p for p in package_data_dir().rglob("processed*")]


def test_second_load_reuses_the_cache(isolated_env):
    first = load_dataset("MUTAG")
    processed = Path(first.processed_paths[0])
    stamp = processed.stat().st_mtime_ns
    second = load_dataset("MUTAG")
    assert second.processed_paths[0] == str(processed)
    assert processed.stat().st_mtime_ns == stamp
    assert torch.equal(first.y, second.y)


def test_cache_dir_argument_beats_the_environment(tmp_path, isolated_env):
    dataset = load_dataset("MUTAG", cache_dir=tmp_path / "elsewhere")
    assert Path(dataset.raw_dir).is_relative_to(tmp_path / "elsewhere")
    assert not isolated_env.exists()


def tamper_mutag_labels(root: Path) -> None:
    """Gives every graph of the root's MUTAG copy the same label."""
    labels = root / "TU" / "MUTAG" / "raw" / "MUTAG_graph_labels.txt"
    count = len(labels.read_text().split())
    labels.chmod(0o644)
    labels.write_text("1\n" * count)


def test_environment_root_is_used(tmp_path, monkeypatch, isolated_env):
    root = make_root(tmp_path, "MUTAG", "Cora")
    tamper_mutag_labels(root)
    root_before = snapshot(root)
    monkeypatch.setenv(DATA_ENV, str(root))

    mutag = load_dataset("MUTAG")
    assert len(mutag) == 188
    assert mutag.y.unique().numel() == 1  # the tampered copy, not the shipped one
    cora = load_dataset("Cora")
    assert cora[0].num_nodes == 2708
    assert Path(cora.raw_dir).parent.parent.name.startswith("root-")
    # The data root is read, never written.
    assert snapshot(root) == root_before

    # Without the variable, the shipped copy is back; both coexist in the cache.
    monkeypatch.delenv(DATA_ENV)
    shipped = load_dataset("MUTAG")
    assert shipped.y.unique().numel() == 2
    assert shipped.raw_dir != mutag.raw_dir
    assert len(list((isolated_env / "TU").iterdir())) == 2


def test_root_argument_beats_the_environment(tmp_path, monkeypatch):
    tampered = make_root(tmp_path / "a", "MUTAG")
    tamper_mutag_labels(tampered)
    clean = make_root(tmp_path / "b", "MUTAG")
    monkeypatch.setenv(DATA_ENV, str(tampered))
    assert load_dataset("MUTAG", root=clean).y.unique().numel() == 2
    assert load_dataset("MUTAG").y.unique().numel() == 1


def test_root_matches_folder_names_case_insensitively(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(package_data_dir() / "TU" / "MUTAG" / "raw", root / "tu" / "MUTAG" / "raw")
    assert len(load_dataset("Mutag", root=root)) == 188


def test_changed_source_is_processed_afresh(tmp_path):
    root = make_root(tmp_path, "MUTAG")
    assert load_dataset("MUTAG", root=root).y.unique().numel() == 2
    tamper_mutag_labels(root)
    assert load_dataset("MUTAG", root=root).y.unique().numel() == 1


def test_missing_root_raises_naming_the_path(tmp_path, isolated_env):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("Cora", root=missing)
    message = str(info.value)
    assert str(missing / "planetoid" / "Cora" / "raw") in message
    assert "--data-root" in message and DATA_ENV in message
    assert not missing.exists()  # nothing created there
    assert not isolated_env.exists() or not any(isolated_env.rglob("*.pt"))


def test_root_without_the_data_set_does_not_fall_back(tmp_path):
    root = make_root(tmp_path, "MUTAG")
    with pytest.raises(FileNotFoundError, match="CiteSeer"):
        load_dataset("CiteSeer", root=root)


def test_incomplete_root_names_the_missing_files(tmp_path):
    root = make_root(tmp_path, "Cora")
    (root / "planetoid" / "Cora" / "raw" / "ind.cora.graph").unlink()
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.graph"):
        load_dataset("Cora", root=root)


def test_missing_environment_root_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mutag")
    assert DATA_ENV in str(info.value)
    assert str(tmp_path / "empty") in str(info.value)


def test_unknown_name_with_a_root_never_downloads(tmp_path):
    with pytest.raises(FileNotFoundError, match="PubMed"):
        load_dataset("pubmed", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="PROTEINS"):
        load_dataset("PROTEINS", root=tmp_path)


def test_unknown_name_goes_to_pyg_under_the_cache(monkeypatch, isolated_env):
    calls = []

    class Recorder:
        def __init__(self, root, name, **kwargs):
            calls.append((self.__class__.__name__, root, name))

    class FakePlanetoid(Recorder):
        pass

    class FakeTU(Recorder):
        pass

    monkeypatch.setattr(datasets, "_OfflinePlanetoid", FakePlanetoid)
    monkeypatch.setattr(datasets, "TUDataset", FakeTU)
    load_dataset("pubmed")
    load_dataset("PROTEINS")
    assert calls[0][0] == "FakePlanetoid" and calls[0][2] == "PubMed"
    assert calls[1][0] == "FakeTU" and calls[1][2] == "PROTEINS"
    for _, root, _ in calls:
        assert Path(root).is_relative_to(isolated_env)


def test_failed_download_says_how_to_provide_the_data(monkeypatch, isolated_env):
    def offline(root, name, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(datasets, "TUDataset", offline)
    with pytest.raises(FileNotFoundError, match=r"NoSuchSet.*not shipped.*download.*"
                                                r"Name or service not known.*--data-root"):
        load_dataset("NoSuchSet")


@pytest.mark.parametrize("name, public, full", [("Cora", 140, 1208), ("CiteSeer", 120, 1827)])
def test_full_split_trains_every_node_outside_validation_and_test(name, public, full):
    masks = {split: load_dataset(name, split=split)[0] for split in ("public", "full")}
    assert [int(m.train_mask.sum()) for m in masks.values()] == [public, full]
    same = masks["public"]
    for data in masks.values():
        assert torch.equal(data.val_mask, same.val_mask)
        assert torch.equal(data.test_mask, same.test_mask)
        assert not (data.train_mask & (data.val_mask | data.test_mask)).any()
    assert (masks["full"].train_mask | same.val_mask | same.test_mask).sum() == same.num_nodes
    assert not (same.train_mask & ~masks["full"].train_mask).any()


@pytest.mark.parametrize("name, split", [("Cora", "random"), ("Cora", None), ("MUTAG", "full")])
def test_bad_split(name, split):
    with pytest.raises(ValueError, match=f"'split'.*{name}"):
        load_dataset(name, split=split)


@pytest.mark.parametrize("name, error", [(3, TypeError), ("", ValueError)])
def test_bad_name(name, error):
    with pytest.raises(error, match="name"):
        load_dataset(name)


def test_planetoid_reader_refuses_foreign_objects(tmp_path):
    root = make_root(tmp_path, "Cora")
    target = root / "planetoid" / "Cora" / "raw" / "ind.cora.x"
    target.chmod(0o644)
    target.write_bytes(pickle.dumps(os.getcwd))  # a global that is not data
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        load_dataset("Cora", root=root)


def test_planetoid_reader_matches_pyg_with_scipy(tmp_path):
    pytest.importorskip("scipy")
    for name in ("Cora", "CiteSeer"):
        shutil.copytree(package_data_dir() / "planetoid" / name / "raw",
                        tmp_path / "pyg" / name / "raw")
        expected = Planetoid(str(tmp_path / "pyg"), name)[0]
        actual = load_dataset(name)[0]
        for key in expected.keys():
            assert torch.equal(expected[key], actual[key]), (name, key)


def test_planetoid_loads_without_scipy(tmp_path):
    """scipy is not a core dependency: Planetoid files must be read without it."""
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'scipy' or name.startswith('scipy.'):\n"
        "            raise ImportError('scipy is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pyg_attn.datasets import load_dataset\n"
        f"data = load_dataset('Cora', cache_dir={str(tmp_path)!r})[0]\n"
        "assert data.num_nodes == 2708 and data.x.shape == (2708, 1433)\n"
        "assert not any(m.split('.')[0] == 'scipy' for m in sys.modules)\n"
        "print('ok')\n"
    )
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(repo),
                                                                    os.environ.get("PYTHONPATH")])))
    env.pop(DATA_ENV, None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
