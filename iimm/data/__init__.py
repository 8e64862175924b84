"""Datasets: registry, loaders, splits (paper Section 4.1 and Appendix A.1).

>>> from iimm.data import load_dataset, dataset_info
>>> ds = load_dataset("sklearn-digits", split="test")     # doctest: +SKIP
>>> ds.classnames, ds.templates, ds.targets               # doctest: +SKIP

Importing this package needs numpy only; torch/torchvision are imported by
:func:`load_dataset`.
"""

from .registry import (
    OFFLINE_DATASETS,
    PAPER_DATASETS,
    DatasetInfo,
    dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
    register_imagefolder,
    unregister_dataset,
)
from .sources import DatasetNotFoundError, read_idx
from .splits import SPLIT_SEED, VAL_FRACTION, VAL_MAX, make_splits, split_indices, splits_file

__all__ = [
    "OFFLINE_DATASETS",
    "PAPER_DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "SPLIT_SEED",
    "VAL_FRACTION",
    "VAL_MAX",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "make_splits",
    "read_idx",
    "register_dataset",
    "register_imagefolder",
    "split_indices",
    "splits_file",
    "unregister_dataset",
]

# The offline sandbox models and tasks are registered like the paper's (cheap: numpy only).
from .. import sandbox as _sandbox  # noqa: E402,F401
