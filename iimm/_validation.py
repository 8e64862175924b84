"""Input validation shared by every measure and score.

Every public function of :mod:`iimm.measures` and :mod:`iimm.transferability`
goes through these helpers, so that bad input fails the same way everywhere:
a ``ValueError`` (or ``TypeError``) whose message names the argument and the
problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "to_numpy",
    "check_matrix",
    "check_labels",
    "check_classes_have",
    "unit_normalize",
]


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a numpy array without copying where possible.

    Accepts numpy arrays, array-likes and torch tensors (any device, with or
    without grad). torch is never imported here: a tensor is recognised by its
    ``detach``/``cpu`` methods.
    """
    if x is None:
        raise ValueError(f"{name} is None")
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        x = x.detach()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        return x.cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} cannot be converted to an array: {exc}") from exc


def check_matrix(x: Any, name: str, *, min_rows: int = 1) -> np.ndarray:
    """Validate a 2-D floating point matrix and return it as float64.

    Raises
    ------
    ValueError
        If ``x`` is not 2-D, is empty, has fewer than ``min_rows`` rows,
        is not numeric, or contains NaN or inf.
    """
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, d); got {arr.ndim}-D with shape {arr.shape}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero columns (shape {arr.shape})")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {arr.shape[0]}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or inf values (in {bad} of {arr.shape[0]} rows)")
    return arr


def check_labels(labels: Any, n: int, n_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Validate integer class labels of length ``n``.

    If ``n_classes`` is given, labels must lie in ``[0, n_classes)``.
    Float arrays holding whole numbers are accepted; anything else is an error.
    """
    arr = to_numpy(labels, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integers; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but there are {n} samples")
    if arr.dtype == bool:
        raise ValueError(f"{name} must be integers, not booleans")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integers; got non-integer values of dtype {arr.dtype}")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers; got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if n and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0; got minimum {arr.min()}")
    if n_classes is not None and n and arr.max() >= n_classes:
        raise ValueError(
            f"{name} must lie in [0, {n_classes}) (one per class text embedding); got maximum {arr.max()}"
        )
    return arr


def check_classes_have(labels: np.ndarray, at_least: int, what: str) -> np.ndarray:
    """Check that every class present has ``at_least`` samples.

    Returns the sorted array of classes present. Raises if fewer than two
    classes are present or if a class is too small for ``what``.
    """
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"{what} needs at least 2 classes; got {classes.size}")
    small = classes[counts < at_least]
    if small.size:
        raise ValueError(
            f"{what} needs at least {at_least} samples per class; "
            f"class(es) {small[:10].tolist()} have fewer"
        )
    return classes


def unit_normalize(x: np.ndarray, name: str) -> np.ndarray:
    """Divide each row by its Euclidean norm; zero rows are an error."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        raise ValueError(
            f"{name} has {int(zero.sum())} zero-norm row(s) (first at index {int(np.argmax(zero))}); "
            "they cannot be unit-normalised"
        )
    return x / norms
