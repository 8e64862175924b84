"""Train / validation / test splits (paper, Appendix A.1).

Validation is 10% of the training pool, at most 5000 samples, drawn without
replacement with a fixed seed; the rest of the pool is the training split.
Datasets without an official test split first hold out a fixed-seed test
fraction. The indices are recorded as JSON under ``<datasets_dir>/splits/``
so that every run sees, and can check, the same split.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "SPLIT_SEED",
    "VAL_FRACTION",
    "VAL_MAX",
    "HOLDOUT_TEST_FRACTION",
    "SplitIndices",
    "make_splits",
    "split_indices",
    "splits_file",
]

SPLIT_SEED = 0
VAL_FRACTION = 0.10
VAL_MAX = 5000
HOLDOUT_TEST_FRACTION = 0.20
SPLITS = ("train", "val", "test")


class SplitIndices(dict):
    """``{"train": idx, "val": idx, "test": idx}``: indices into the source parts.

    For a dataset with an official test split, train/val index the official
    training part and test indexes the official test part; otherwise all
    three index the single source part (``"all"``).
    """

    holdout: bool = False


def make_splits(
    n: int,
    *,
    holdout_test: bool = False,
    seed: int = SPLIT_SEED,
    val_fraction: float = VAL_FRACTION,
    val_max: int = VAL_MAX,
    test_fraction: float = HOLDOUT_TEST_FRACTION,
) -> SplitIndices:
    """Deterministic split indices of a training pool of ``n`` samples.

    Parameters
    ----------
    n:
        Size of the official training part, or of the whole dataset when
        ``holdout_test`` (no official test split).
    holdout_test:
        Hold out ``round(test_fraction * n)`` samples as the test split first.

    Returns
    -------
    SplitIndices with sorted int64 arrays ``train`` and ``val`` (and ``test``
    when held out); ``val`` has ``min(val_max, round(val_fraction * pool))``
    samples, ``train`` the rest of the pool.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n must be an int >= 3; got {n!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction}")
    rng = np.random.default_rng(seed)
    out = SplitIndices()
    pool = np.arange(n)
    if holdout_test:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
        perm = rng.permutation(n)
        n_t = max(1, int(round(test_fraction * n)))
        out["test"] = np.sort(perm[:n_t]).astype(np.int64)
        pool = np.sort(perm[n_t:])
        out.holdout = True
    n_val = min(int(val_max), max(1, int(round(val_fraction * pool.size))))
    chosen = rng.choice(pool.size, size=n_val, replace=False)
    mask = np.zeros(pool.size, dtype=bool)
    mask[chosen] = True
    out["val"] = pool[mask].astype(np.int64)
    out["train"] = pool[~mask].astype(np.int64)
    return out


def splits_file(name: str, root: Path | None = None) -> Path:
    """Where the split record of dataset ``name`` is kept."""
    from ..paths import datasets_dir

    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return (Path(root) if root is not None else datasets_dir()) / "splits" / f"{safe}.json"


def split_indices(name: str, n: int, *, holdout_test: bool = False, record: bool = True,
                  seed: int = SPLIT_SEED) -> SplitIndices:
    """Split indices of dataset ``name``, checked against (or written to) its record.

    The indices are a pure function of ``(n, holdout_test, seed)``; the JSON
    record makes them inspectable and catches a dataset whose size changed
    (``ValueError``).
    """
    splits = make_splits(n, holdout_test=holdout_test, seed=seed)
    if not record:
        return splits
    path = splits_file(name)
    payload = {
        "dataset": name,
        "seed": seed,
        "n": int(n),
        "holdout_test": bool(holdout_test),
        "val_fraction": VAL_FRACTION,
        "val_max": VAL_MAX,
        "holdout_test_fraction": HOLDOUT_TEST_FRACTION if holdout_test else None,
        "val": splits["val"].tolist(),
    }
    if holdout_test:
        payload["test"] = splits["test"].tolist()
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            stored = None
        if isinstance(stored, dict):
            if stored.get("n") != payload["n"] or stored.get("holdout_test") != payload["holdout_test"]:
                raise ValueError(
                    f"dataset {name!r} has a training pool of {n} samples (holdout_test={holdout_test}) but its "
                    f"split record {path} was made for {stored.get('n')} (holdout_test={stored.get('holdout_test')}): "
                    f"the data changed; delete the record to accept the new split"
                )
            if stored.get("seed") == seed and stored.get("val") == payload["val"] and stored.get("test") == payload.get("test"):
                return splits
    try:
        from .._io import atomic_write_json

        atomic_write_json(path, payload)
    except OSError as exc:  # read-only cache: the split is still deterministic
        warnings.warn(f"could not record the split of {name!r} at {path}: {exc}", RuntimeWarning, stacklevel=2)
    return splits
