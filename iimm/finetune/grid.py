"""Hyper-parameter grid search selected on validation accuracy (Section 4.1).

The paper's grid: learning rate {1e-2, 1e-3, 1e-4, 1e-5} x weight decay
{1e-3, 1e-4, 1e-5}, times LoRA rank {2, 4, 8, 16} or CLIP-Adapter reduction
{4, 8, 16, 32}. Every trial is trained from a fresh model, recorded in the
runs table (not only the winner), and the trial with the best validation
accuracy is selected (ties: the first in grid order).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ._common import dataset_name
from .methods import _OPTIONS, METHODS, prepare
from .records import run_record, runs_table
from .train import TrainConfig, TrainResult, train

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["PAPER_GRID", "METHOD_GRIDS", "paper_grid", "expand_grid", "grid_search", "GridResult"]

PAPER_GRID: dict[str, tuple[float, ...]] = {"lr": (1e-2, 1e-3, 1e-4, 1e-5), "weight_decay": (1e-3, 1e-4, 1e-5)}
METHOD_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {"lora": {"rank": (2, 4, 8, 16)}, "adapter": {"reduction": (4, 8, 16, 32)}}


def paper_grid(method: str) -> dict[str, tuple[Any, ...]]:
    """The paper's grid for ``method`` (lr x weight decay, plus rank or reduction)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    return {**PAPER_GRID, **METHOD_GRIDS.get(method, {})}


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid's value lists, in key order then value order."""
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid must be a non-empty mapping name -> list of values")
    keys = list(grid)
    values = []
    for k in keys:
        v = grid[k]
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
            v = [v]
        if len(v) == 0:
            raise ValueError(f"grid[{k!r}] is empty")
        values.append(list(v))
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


@dataclass
class GridResult:
    """All trials of a grid search and the selected one."""

    runs: "pd.DataFrame"
    results: list[TrainResult]
    best_index: int
    model: Any
    evaluations: "pd.DataFrame | None" = None

    @property
    def best(self) -> TrainResult:
        return self.results[self.best_index]

    @property
    def best_run_id(self) -> str:
        return str(self.runs.loc[self.best_index, "run_id"])


def grid_search(
    method: str,
    dataset: Any,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    model: str | Callable[[], Any] = "clip",
    val_dataset: Any = None,
    pretrained: bool = True,
    device: str = "cpu",
    config: TrainConfig | None = None,
    method_options: Mapping[str, Any] | None = None,
    eval_datasets: Any = None,
    zero_shot: Any = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    **train_overrides: Any,
) -> GridResult:
    """Train one run per grid point and select on validation accuracy.

    Parameters
    ----------
    method:
        A fine-tuning method of :data:`~iimm.finetune.METHODS`.
    dataset, val_dataset:
        The task (see :func:`~iimm.finetune.train`); a validation set is required.
    grid:
        ``name -> values``; names are :class:`TrainConfig` fields (``lr``,
        ``weight_decay``, ...) or options of :func:`prepare` (``rank``,
        ``reduction``, ...). ``None``: :func:`paper_grid` of the method.
    model:
        A registry name for :func:`iimm.models.load_model` (loaded fresh for
        each trial with ``pretrained`` on ``device``) or a zero-argument
        callable returning a fresh :class:`~iimm.models.DualEncoder`.
    config, **train_overrides:
        Training settings shared by every trial (epochs, batch size, seed, ...).
    method_options:
        Fixed options of :func:`prepare` for every trial.
    eval_datasets, zero_shot:
        If given, the selected model is evaluated on these tasks
        (:func:`~iimm.finetune.evaluate`) and their test accuracies are added
        to its run record.
    checkpoint_dir:
        Per-trial resumable checkpoints ``<dir>/<run_id>.pt``.

    Returns
    -------
    GridResult with the ``runs`` table (one row per trial, ``selected`` marking
    the winner), every :class:`TrainResult`, the selected trained model and,
    with ``eval_datasets``, its evaluation table.
    """
    from iimm.provenance import config_hash

    from .evaluate import evaluate

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    if val_dataset is None and not isinstance(dataset, str):
        raise ValueError("grid_search selects on validation accuracy: give val_dataset (or a dataset name)")
    grid = paper_grid(method) if grid is None else grid
    points = expand_grid(grid)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    method_fields = set(_OPTIONS[method])
    unknown = sorted(set(grid) - train_fields - method_fields)
    if unknown:
        raise ValueError(f"grid has unknown key(s) {unknown} for method {method!r}; "
                         f"allowed: training {sorted(train_fields)} and method options {sorted(method_fields)}")
    base_cfg = dataclasses.replace(config or TrainConfig(), **train_overrides)
    fixed_opts = dict(method_options or {})
    if isinstance(model, str):
        from iimm.models import load_model

        name = model

        def factory() -> Any:
            return load_model(name, device=device, pretrained=pretrained)
    elif callable(model):
        factory = model
    else:
        raise ValueError(f"model must be a registry name or a callable returning a DualEncoder; got {type(model).__name__}")

    data_key = dataset if isinstance(dataset, str) else [dataset_name(dataset), len(dataset)]
    results: list[TrainResult] = []
    records: list[dict[str, Any]] = []
    best_model, best_index, best_val = None, -1, -float("inf")
    for point in points:
        cfg = dataclasses.replace(base_cfg, **{k: v for k, v in point.items() if k in train_fields})
        opts = {**fixed_opts, **{k: v for k, v in point.items() if k in method_fields}}
        if "seed" in _OPTIONS[method] and "seed" not in opts:
            opts["seed"] = cfg.seed
        m = prepare(factory(), method, **opts)
        ckpt = None
        if checkpoint_dir is not None:
            key = config_hash({"model": getattr(m, "name", None), "weights": getattr(m, "weights_id", None), "method": method,
                               "options": opts, "config": dataclasses.asdict(cfg), "dataset": data_key})
            ckpt = Path(checkpoint_dir) / f"{key}.pt"
        res = train(m, dataset, val_dataset, config=cfg, checkpoint=ckpt, progress=progress)
        results.append(res)
        records.append(run_record(res))
        if res.val_accuracy > best_val:
            best_val, best_index, best_model = res.val_accuracy, len(results) - 1, m
        del m
    if best_model is None:
        raise ValueError("no trial produced a validation accuracy")
    evaluations = None
    if eval_datasets is not None:
        evaluations = evaluate(best_model, eval_datasets, zero_shot=zero_shot, run_id=records[best_index]["run_id"], progress=progress)
        records[best_index] = run_record(results[best_index], run_id=records[best_index]["run_id"],
                                         test_accuracy=dict(zip(evaluations["eval_dataset"], evaluations["accuracy"])))
    runs = runs_table(records)
    return GridResult(runs=runs, results=results, best_index=best_index, model=best_model, evaluations=evaluations)
