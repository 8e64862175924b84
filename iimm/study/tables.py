"""Assemble the study's parquet tables from cached unit results.

Tables and columns are those of CONTRIBUTING.md ("Result tables"); every row
carries the provenance columns ``iimm_version``, ``git_commit``, ``date`` (of
the unit that computed it), ``config_hash`` (of :meth:`StudyConfig.content`: the config, profile
applied) and ``seed``. Units without a result (not run yet, failed) contribute
no rows; the tables can be rebuilt at any time from the cache alone.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Sequence

from .._io import atomic_path, atomic_write_json
from ..provenance import config_hash
from .cache import ResultStore
from .config import StudyConfig
from .units import Unit, select_trial

__all__ = ["TABLES", "EMBEDDINGS_DIR", "assemble_tables", "write_tables", "read_tables", "export_embeddings",
           "embeddings_file", "write_outputs"]

_PROV = ["iimm_version", "git_commit", "date", "config_hash", "seed"]
MEASURE_KEYS = ["inter_modal", "intra_images", "intra_texts", "iimm", "correct_label_alignment",
                "incorrect_label_alignment", "modality_gap", "silhouette_cosine", "silhouette_euclidean",
                "davies_bouldin", "calinski_harabasz", "clustering_entropy"]
SCORE_KEYS = ["transrate", "sfda", "ncti", "emms", "logme", "hscore", "gbc_spherical", "gbc_diagonal"]

#: table name -> columns (in order)
TABLES: dict[str, list[str]] = {
    "measures": ["model", "dataset", "split", "n_images", "n_classes", "zero_shot_accuracy", *MEASURE_KEYS, *_PROV],
    "baselines": ["model", "dataset", "split", *SCORE_KEYS, *_PROV],
    "runs": ["run_id", "model", "method", "dataset", "lr", "weight_decay", "rank", "reduction", "seed", "epochs",
             "best_epoch", "val_accuracy", "trainable_params", "total_params", "wall_time_s", "device", "selected",
             "iimm_version", "git_commit", "date", "config_hash"],
    "evaluations": ["run_id", "model", "method", "train_dataset", "eval_dataset", "accuracy", "zero_shot_accuracy",
                    "in_domain", *_PROV],
}
_NAN = float("nan")
#: sub-folder of a study's output folder that holds the exported embeddings
EMBEDDINGS_DIR = "embeddings"


def _prov(entry: dict[str, Any], chash: str, seed: int | None) -> dict[str, Any]:
    p = entry.get("provenance", {})
    out = {"iimm_version": p.get("iimm_version"), "git_commit": p.get("git_commit"), "date": p.get("date"),
           "config_hash": chash}
    if seed is not None:
        out["seed"] = seed
    return out


def _num(x: Any) -> float:
    return _NAN if x is None else float(x)


def assemble_tables(config: StudyConfig, units: Sequence[Unit], store: ResultStore | None = None) -> dict[str, Any]:
    """The four tables (pandas DataFrames) from whatever results of ``units`` are cached."""
    import pandas as pd

    store = store or ResultStore(config.cache_dir, config.executor.stale_lock_s)
    chash = config_hash(config.content())
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in TABLES}
    entries = {u.key: store.load(u) for u in units}
    zero_shot: dict[tuple[str, str], float] = {}

    for u in units:
        e = entries[u.key]
        if e is None:
            continue
        r = e["result"]
        if u.stage == "measures":
            row = {"model": u.params["model"], "dataset": u.params["dataset"], "split": u.params["split"],
                   "n_images": int(r["n_images"]), "n_classes": int(r["n_classes"]),
                   "zero_shot_accuracy": _num(r["zero_shot_accuracy"])}
            row.update({k: _num(r["measures"].get(k)) for k in MEASURE_KEYS})
            row.update(_prov(e, chash, u.params["seed"]))
            rows["measures"].append(row)
            zero_shot[u.params["model"], u.params["dataset"]] = row["zero_shot_accuracy"]
        elif u.stage == "baselines":
            row = {"model": u.params["model"], "dataset": u.params["dataset"], "split": u.params["split"]}
            row.update({k: _num(r["scores"].get(k)) for k in SCORE_KEYS})
            row.update(_prov(e, chash, u.params["seed"]))
            rows["baselines"].append(row)

    # runs, with the selection that the evaluate stage also uses
    selected: set[str] = set()
    by_group: dict[tuple, list[tuple[str, dict]]] = {}
    for u in units:
        e = entries[u.key]
        if u.stage == "train" and e is not None:
            p = u.params
            by_group.setdefault((p["model"]["name"], p["method"], p["dataset"]["name"], p["seed"]), []).append((u.key, e["result"]))
    for trials in by_group.values():
        selected.add(select_trial(trials))
    for u in units:
        e = entries[u.key]
        if u.stage != "train" or e is None:
            continue
        p, r, hp = u.params, e["result"], u.params["hparams"]
        row = {"run_id": u.key, "model": p["model"]["name"], "method": p["method"], "dataset": p["dataset"]["name"],
               "lr": float(hp["lr"]), "weight_decay": float(hp.get("weight_decay", 0.0)),
               "rank": _num(hp.get("rank")), "reduction": _num(hp.get("reduction")), "seed": int(p["seed"]),
               "epochs": int(p["epochs"]), "best_epoch": int(r["best_epoch"]), "val_accuracy": _num(r["val_accuracy"]),
               "trainable_params": int(r["trainable_params"]), "total_params": int(r["total_params"]),
               "wall_time_s": _num(r.get("wall_time_s", e.get("wall_time_s"))), "device": str(r.get("device", "")),
               "selected": u.key in selected}
        row.update(_prov(e, chash, None))
        rows["runs"].append(row)

    for u in units:
        e = entries[u.key]
        if u.stage != "evaluate" or e is None:
            continue
        p, r = u.params, e["result"]
        for ev in r["evaluations"]:
            zs = zero_shot.get((p["model"]["name"], ev["dataset"]), _num(ev.get("zero_shot_accuracy")))
            row = {"run_id": r["run_id"], "model": p["model"]["name"], "method": p["method"],
                   "train_dataset": p["train_dataset"], "eval_dataset": ev["dataset"], "accuracy": _num(ev["accuracy"]),
                   "zero_shot_accuracy": zs, "in_domain": ev["dataset"] == p["train_dataset"]}
            row.update(_prov(e, chash, int(p["seed"])))
            rows["evaluations"].append(row)

    out = {}
    for name, cols in TABLES.items():
        df = pd.DataFrame(rows[name], columns=cols)
        if name == "runs":
            df["selected"] = df["selected"].astype(bool)
            for c in ("rank", "reduction", "lr", "weight_decay", "val_accuracy", "wall_time_s"):
                df[c] = df[c].astype(float)
        if name == "evaluations":
            df["in_domain"] = df["in_domain"].astype(bool)
        out[name] = df
    return out


def write_tables(config: StudyConfig, tables: dict[str, Any]) -> dict[str, Path]:
    """Write each table to ``<output_dir>/<name>.parquet`` atomically, plus ``provenance.json``."""
    from ..provenance import provenance

    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in tables.items():
        dest = out_dir / f"{name}.parquet"
        for stale in out_dir.glob(f".{dest.name}.*.tmp"):  # left by a killed writer
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        with atomic_path(dest) as tmp:
            df.to_parquet(tmp, index=False)
        paths[name] = dest
    prov = provenance(json.loads(json.dumps(config.raw, default=str)), config.seed)
    prov.update({"study": config.name, "profile": config.profile, "config_path": str(config.path) if config.path else None,
                 "config_hash": config_hash(config.content()), "rows": {k: int(len(v)) for k, v in tables.items()}})
    atomic_write_json(out_dir / "provenance.json", prov)
    return paths


def read_tables(folder: str | Path) -> dict[str, Any]:
    """Load the four parquet tables of a study folder (those present)."""
    import pandas as pd

    folder = Path(folder)
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES if (folder / f"{name}.parquet").exists()}



def embeddings_file(folder: str | Path, model: str, dataset: str) -> Path:
    """``<folder>/embeddings/<model>__<dataset>.safetensors``: where :func:`export_embeddings` writes a pair."""
    safe = lambda x: "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in x)  # noqa: E731
    return Path(folder) / EMBEDDINGS_DIR / f"{safe(model)}__{safe(dataset)}.safetensors"


def export_embeddings(config: StudyConfig, units: Sequence[Unit], store: ResultStore | None = None, *,
                      split: str | None = None, max_images: int = 300) -> list[Path]:
    """Write a small sample of cached zero-shot embeddings next to the tables, for figures.

    For every cached ``embed`` unit of ``split`` (default: the evaluation split),
    at most ``max_images`` image embeddings (a seeded random subset, seed
    ``config.seed``, in their original order) with their labels and all class
    text embeddings go to :func:`embeddings_file` as float32 tensors
    ``images`` (N x d), ``labels`` (N,) and ``texts`` (C x d); the metadata
    holds the model, dataset, split, the full split size and the unit key.
    Files are written atomically; returns their paths.
    """
    import numpy as np
    from safetensors.numpy import save_file

    from .stages import _load_arrays

    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images must be a positive int; got {max_images!r}")
    split = split or config.evaluate.split
    store = store or ResultStore(config.cache_dir, config.executor.stale_lock_s)
    written = []
    for u in units:
        if u.stage != "embed" or u.params["split"] != split:
            continue
        entry = store.load(u)
        if entry is None:
            continue
        arrays = _load_arrays(config, entry["result"])
        n = int(arrays["images"].shape[0])
        keep = np.arange(n)
        if n > max_images:
            keep = np.sort(np.random.default_rng(config.seed).choice(n, size=max_images, replace=False))
        model, dataset = u.params["model"]["name"], u.params["dataset"]["name"]
        dest = embeddings_file(config.output_dir, model, dataset)
        tensors = {"images": np.ascontiguousarray(arrays["images"][keep], dtype=np.float32),
                   "labels": np.ascontiguousarray(arrays["labels"][keep], dtype=np.int64),
                   "texts": np.ascontiguousarray(arrays["texts"], dtype=np.float32)}
        meta = {"model": model, "dataset": dataset, "split": split, "n_split": str(n), "unit": u.key,
                "classnames": json.dumps(entry["result"].get("classnames", []))}
        with atomic_path(dest) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        written.append(dest)
    return written


def write_outputs(config: StudyConfig, units: Sequence[Unit]) -> tuple[dict[str, Any], dict[str, Path], list[Path]]:
    """Everything a study writes to its output folder from the cache: the tables, ``provenance.json``
    and the exported embeddings. Returns ``(tables, table paths, embedding files)``."""
    tables = assemble_tables(config, units)
    paths = write_tables(config, tables)
    return tables, paths, export_embeddings(config, units)
