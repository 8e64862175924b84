"""Result records of fine-tuning runs and the ``runs`` / ``evaluations`` tables.

One record per training trial: model, weights, method, hyper-parameters,
seed, dataset trained on, epochs, best epoch and its validation accuracy,
trainable and total parameter counts, wall time, device, test accuracy on
every evaluated task, and provenance (``iimm_version``, ``git_commit``,
``date``, ``config_hash``). Tables follow the ``runs.parquet`` and
``evaluations.parquet`` schemas of CONTRIBUTING.md and are written
atomically as parquet.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .train import TrainResult

__all__ = ["RUNS_COLUMNS", "PROVENANCE_COLUMNS", "run_id_for", "run_record", "runs_table", "evaluations_table",
           "write_table", "read_table"]

PROVENANCE_COLUMNS = ["iimm_version", "git_commit", "date", "config_hash"]
RUNS_COLUMNS = [
    "run_id", "model", "weights", "method", "dataset", "lr", "weight_decay", "rank", "reduction", "seed", "epochs",
    "best_epoch", "val_accuracy", "trainable_params", "total_params", "wall_time_s", "device", "selected",
    "hparams", "test_accuracy", *PROVENANCE_COLUMNS,
]


def _run_config(result: "TrainResult") -> dict[str, Any]:
    return {
        "model": result.model, "weights": result.weights, "method": result.method, "options": result.options,
        "config": result.config, "dataset": result.dataset,
    }


def run_id_for(result: "TrainResult") -> str:
    """Content hash of what defines a run (model, weights, method, options, training config, dataset)."""
    from iimm.provenance import config_hash

    return config_hash(_run_config(result))


def run_record(result: "TrainResult", *, test_accuracy: Mapping[str, float] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Flat record of one run for ``runs.parquet`` (``selected`` is set by :func:`runs_table`)."""
    from iimm.provenance import config_hash, provenance

    cfg = _run_config(result)
    prov = provenance(cfg, result.config.get("seed"))
    opts = result.options
    hparams = {"lr": result.config["lr"], "weight_decay": result.config["weight_decay"], **opts,
               **{k: result.config[k] for k in ("batch_size", "optimizer", "epochs", "warmup", "loss")}}
    return {
        "run_id": run_id or config_hash(cfg),
        "model": result.model,
        "weights": result.weights,
        "method": result.method,
        "dataset": result.dataset,
        "lr": float(result.config["lr"]),
        "weight_decay": float(result.config["weight_decay"]),
        "rank": float(opts["rank"]) if "rank" in opts else math.nan,
        "reduction": float(opts["reduction"]) if "reduction" in opts else math.nan,
        "seed": int(result.config["seed"]),
        "epochs": int(result.config["epochs"]),
        "best_epoch": int(result.best_epoch),
        "val_accuracy": float(result.val_accuracy),
        "trainable_params": int(result.trainable_params),
        "total_params": int(result.total_params),
        "wall_time_s": float(result.wall_time_s),
        "device": result.device,
        "selected": False,
        "hparams": json.dumps(hparams, sort_keys=True, default=str),
        "test_accuracy": json.dumps(dict(test_accuracy or {}), sort_keys=True),
        "iimm_version": prov["iimm_version"],
        "git_commit": prov["git_commit"],
        "date": prov["date"],
        "config_hash": config_hash(cfg),
    }


def runs_table(records: Iterable[Mapping[str, Any]]) -> "pd.DataFrame":
    """DataFrame of run records with ``selected`` = best validation accuracy per (model, method, dataset).

    Ties go to the first trial in record order; trials without a validation
    accuracy (NaN) are never selected.
    """
    import pandas as pd

    df = pd.DataFrame(list(records))
    if df.empty:
        return pd.DataFrame(columns=RUNS_COLUMNS)
    missing = [c for c in RUNS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"records lack column(s) {missing}")
    df = df[RUNS_COLUMNS + [c for c in df.columns if c not in RUNS_COLUMNS]].copy()
    df["selected"] = False
    for _, group in df.groupby(["model", "method", "dataset"], sort=False):
        valid = group["val_accuracy"].dropna()
        if len(valid):
            df.loc[valid.idxmax(), "selected"] = True
    return df.reset_index(drop=True)


def evaluations_table(frames: Iterable["pd.DataFrame"]) -> "pd.DataFrame":
    """Concatenate :func:`~iimm.finetune.evaluate` outputs into the ``evaluations`` table."""
    import pandas as pd

    from .evaluate import EVALUATION_COLUMNS

    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=EVALUATION_COLUMNS)
    for i, f in enumerate(frames):
        missing = [c for c in EVALUATION_COLUMNS if c not in f.columns]
        if missing:
            raise ValueError(f"frame {i} lacks column(s) {missing}")
    return pd.concat(frames, ignore_index=True)


def write_table(df: "pd.DataFrame", path: str | os.PathLike, *, seed: int | None = None) -> str:
    """Write ``df`` to parquet atomically, adding missing provenance columns; returns the path."""
    from iimm._io import atomic_path
    from iimm.provenance import config_hash, provenance

    out = df.copy()
    prov = provenance({"columns": list(df.columns), "rows": len(df)}, seed)
    defaults = {"iimm_version": prov["iimm_version"], "git_commit": prov["git_commit"], "date": prov["date"],
                "config_hash": config_hash(prov["config"]), "seed": seed}
    for col, value in defaults.items():
        if col not in out.columns:
            out[col] = value
    with atomic_path(path) as tmp:
        out.to_parquet(tmp, index=False)
    return str(path)


def read_table(path: str | os.PathLike) -> "pd.DataFrame":
    """Read a parquet table written by :func:`write_table`."""
    import pandas as pd

    if not os.path.exists(path):
        raise FileNotFoundError(f"table {path} does not exist")
    return pd.read_parquet(path)
