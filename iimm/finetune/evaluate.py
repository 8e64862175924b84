"""In-domain and out-of-domain evaluation of a (fine-tuned) dual encoder.

Each evaluation task is classified with its own zero-shot head built from the
model's current text tower (:func:`iimm.models.zero_shot_head`), so a run
trained on task ``t`` is scored on ``t`` (in domain, ID) and on every other
task (out of domain, OOD), as in Section 4.1. Next to each accuracy the table
holds the base model's zero-shot accuracy and

    gain over zero-shot error = (acc_ft - acc_zs) / (1 - acc_zs)      (Section 4.2)

and the mean OOD change ``mean_{s != t} (acc_ft(s) - acc_zs(s))``.

The linear probe has no text head: it is scored on its own task only; its
OOD rows carry NaN accuracy and a note saying so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

from ._common import accuracy, dataset_name, make_loader, resolve_dataset
from .methods import finetune_state, lora_merged, method_of

__all__ = ["evaluate", "zero_shot_accuracies", "gain_over_zero_shot_error", "EVALUATION_COLUMNS"]

EVALUATION_COLUMNS = [
    "run_id", "model", "method", "train_dataset", "eval_dataset", "split", "n_images", "accuracy",
    "zero_shot_accuracy", "in_domain", "accuracy_change", "gain_over_zero_shot_error", "mean_ood_change", "note",
]

PROBE_NOTE = "linear probe: no text head, evaluated in domain only"


def gain_over_zero_shot_error(accuracy: float, zero_shot_accuracy: float) -> float:
    """``(acc - acc_zs) / (1 - acc_zs)``; NaN when either is NaN or ``acc_zs == 1``."""
    if accuracy is None or zero_shot_accuracy is None:
        return float("nan")
    a, z = float(accuracy), float(zero_shot_accuracy)
    if math.isnan(a) or math.isnan(z) or z >= 1.0:
        return float("nan")
    return (a - z) / (1.0 - z)


def _named_datasets(datasets: Any, split: str) -> list[tuple[str, Any]]:
    """[(name, dataset)] from a mapping, a sequence of names/datasets, or a single one."""
    if datasets is None:
        raise ValueError("datasets is None")
    if isinstance(datasets, Mapping):
        items = [(str(k), resolve_dataset(v, split, f"datasets[{k!r}]")) for k, v in datasets.items()]
    else:
        if isinstance(datasets, str) or hasattr(datasets, "classnames"):
            datasets = [datasets]
        items = []
        for i, d in enumerate(datasets):
            ds = resolve_dataset(d, split, f"datasets[{i}]")
            items.append((d if isinstance(d, str) else dataset_name(ds, f"dataset{i}"), ds))
    if not items:
        raise ValueError("datasets is empty")
    names = [n for n, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"datasets has duplicate names {dup}; pass a mapping name -> dataset")
    return items


def _task_accuracy(model: Any, ds: Any, batch_size: int, num_workers: int, progress: bool, desc: str, probe: Any = None) -> tuple[float, int]:
    import torch

    from iimm.models import zero_shot_head

    loader = make_loader(ds, model, batch_size, shuffle=False, num_workers=num_workers, device=model.device)
    head = None
    if probe is None:
        with torch.no_grad():
            head = zero_shot_head(model, list(ds.classnames), list(ds.templates))
    return accuracy(model, loader, head, probe, progress=progress, desc=desc)


def zero_shot_accuracies(model: Any, datasets: Any, *, split: str = "test", batch_size: int = 256,
                         num_workers: int = 0, progress: bool = False) -> dict[str, float]:
    """Zero-shot accuracy of ``model`` on each dataset: ``{name: accuracy}``."""
    out = {}
    was_training = model.model.training
    model.model.eval()
    try:
        with lora_merged(model):
            for name, ds in _named_datasets(datasets, split):
                out[name] = _task_accuracy(model, ds, batch_size, num_workers, progress, f"eval {name}")[0]
    finally:
        model.model.train(was_training)
    return out


def evaluate(
    model: Any,
    datasets: Any,
    *,
    split: str = "test",
    zero_shot: Any = None,
    train_dataset: str | None = None,
    run_id: str | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
) -> "pd.DataFrame":
    """Accuracy on every task's ``split`` with that task's zero-shot head; one row per task.

    Parameters
    ----------
    model:
        A :class:`iimm.models.DualEncoder`, fine-tuned or not (then method
        ``"zeroshot"``). LoRA is merged for the evaluation and restored after.
    datasets:
        Mapping ``name -> Dataset``, or a sequence of registry names / Datasets
        (named by their ``.name``). Datasets need ``classnames``/``templates``.
    zero_shot:
        The base model's zero-shot accuracies: a mapping ``name -> accuracy``,
        or the base :class:`~iimm.models.DualEncoder` itself (evaluated here).
        ``None``: the columns that need them are NaN (for an unprepared model
        its own accuracies are used).
    train_dataset:
        Name of the task trained on (default: recorded by :func:`train`);
        that row is ``in_domain``.
    run_id:
        Stored in the ``run_id`` column.

    Returns
    -------
    pandas.DataFrame with :data:`EVALUATION_COLUMNS` (the ``evaluations.parquet``
    schema of CONTRIBUTING.md plus ``split``, ``n_images``, ``accuracy_change``,
    ``gain_over_zero_shot_error``, ``mean_ood_change`` and ``note``).
    """
    import pandas as pd

    method = method_of(model)
    state = finetune_state(model) or {}
    if train_dataset is None:
        train_dataset = state.get("train_dataset")
    items = _named_datasets(datasets, split)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")

    if zero_shot is None:
        zs: Mapping[str, float] = {}
    elif isinstance(zero_shot, Mapping):
        zs = {str(k): float(v) for k, v in zero_shot.items()}
    elif hasattr(zero_shot, "encode_image"):
        if zero_shot is model and method != "zeroshot":
            raise ValueError("zero_shot must be the base model, not the fine-tuned model itself")
        zs = zero_shot_accuracies(zero_shot, dict(items), split=split, batch_size=batch_size,
                                  num_workers=num_workers, progress=progress)
    else:
        raise ValueError(f"zero_shot must be a mapping name -> accuracy, a base DualEncoder or None; got {type(zero_shot).__name__}")

    probe = getattr(model.model, "probe_head", None) if method == "probe" else None
    if method == "probe" and probe is None:
        raise ValueError("probe model has no trained probe_head; train it first")

    rows = []
    was_training = model.model.training
    model.model.eval()
    try:
        with lora_merged(model):
            for name, ds in items:
                in_domain = train_dataset is not None and name == train_dataset
                note = ""
                if method == "probe":
                    if not in_domain:
                        acc, n, note = float("nan"), len(ds), PROBE_NOTE
                    else:
                        if list(ds.classnames) != list(state.get("classnames", ds.classnames)):
                            raise ValueError(f"dataset {name!r} has other classnames than the probe was trained on")
                        acc, n = _task_accuracy(model, ds, batch_size, num_workers, progress, f"eval {name}", probe)
                        note = PROBE_NOTE
                else:
                    acc, n = _task_accuracy(model, ds, batch_size, num_workers, progress, f"eval {name}")
                if method == "zeroshot" and zero_shot is None:
                    zs = {**zs, name: acc}
                rows.append({
                    "run_id": run_id, "model": model.name, "method": method, "train_dataset": train_dataset,
                    "eval_dataset": name, "split": split, "n_images": int(n), "accuracy": float(acc),
                    "zero_shot_accuracy": float(zs.get(name, float("nan"))), "in_domain": bool(in_domain), "note": note,
                })
    finally:
        model.model.train(was_training)

    df = pd.DataFrame(rows)
    df["accuracy_change"] = df["accuracy"] - df["zero_shot_accuracy"]
    df["gain_over_zero_shot_error"] = [gain_over_zero_shot_error(a, z) for a, z in zip(df["accuracy"], df["zero_shot_accuracy"])]
    ood = df.loc[~df["in_domain"], "accuracy_change"].to_numpy(dtype=float)
    ood = ood[~np.isnan(ood)]
    df["mean_ood_change"] = float(ood.mean()) if ood.size and train_dataset is not None else float("nan")
    return df[EVALUATION_COLUMNS]
