"""Expansion of a study into units of work with content-addressed keys.

A study (Section 4 of the paper: base models x datasets x fine-tuning methods x
hyper-parameter grid, every selected checkpoint tested on every dataset) is
expanded into six kinds of unit, run in this order:

``prepare_model`` (model)
    an optional hook that produces a base model (e.g. sandbox pretraining);
``embed`` (model, dataset, split)
    zero-shot image and class-text embeddings;
``measures`` (model, dataset)
    IIMM and the other embedding measures on the measures split, and the
    zero-shot accuracy on the evaluation split;
``baselines`` (model, dataset)
    the transferability scores on the image features;
``train`` (model, method, dataset, hyper-parameters, seed)
    one trial of the grid search;
``evaluate`` (model, method, dataset, seed)
    the trial selected on validation accuracy, tested on every evaluation dataset.

A unit's key is the SHA-256 of its parameters, the code version of its stage
(:data:`STAGE_VERSIONS`, bumped when a stage's results would change) and the
keys of the units it depends on, so that a change anywhere upstream gives new
keys downstream and nothing stale is reused. Execution details that do not
change results (batch size of embedding, workers, executor) are not part of keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .config import STAGES, StudyConfig

__all__ = ["Unit", "STAGE_VERSIONS", "expand_units", "unit_key", "select_trial"]

#: code version of each stage; part of every key of that stage.
STAGE_VERSIONS: dict[str, str] = {
    "prepare_model": "prepare-1",
    "embed": "embed-1",
    "measures": "measures-1",
    "baselines": "baselines-1",
    "train": "train-1",
    "evaluate": "evaluate-1",
}


@dataclass(frozen=True, eq=False)
class Unit:
    """One unit of work.

    Attributes
    ----------
    stage : one of :data:`iimm.study.config.STAGES`.
    key : content-addressed key (24 hex characters).
    params : JSON-serialisable parameters the stage needs.
    deps : ``(stage, key)`` of the units whose results this one reads.
    label : short human-readable description.
    """

    stage: str
    key: str
    params: Mapping[str, Any] = field(repr=False)
    deps: tuple[tuple[str, str], ...] = field(repr=False)
    label: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unit) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def unit_key(stage: str, params: Mapping[str, Any], deps: Iterable[tuple[str, str]] = ()) -> str:
    """Content-addressed key: SHA-256 of stage, stage code version, parameters and dependency keys."""
    if stage not in STAGE_VERSIONS:
        raise ValueError(f"stage must be one of {', '.join(STAGE_VERSIONS)}, got {stage!r}")
    blob = json.dumps({"stage": stage, "version": STAGE_VERSIONS[stage], "params": params, "deps": [list(d) for d in deps]},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _make(stage: str, params: dict[str, Any], deps: Iterable[Unit], label: str) -> Unit:
    deps = tuple((d.stage, d.key) for d in deps)
    return Unit(stage=stage, key=unit_key(stage, params, deps), params=params, deps=deps, label=f"{stage} {label}")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand_units(config: StudyConfig, only: Iterable[str] | None = None) -> list[Unit]:
    """All units of a study in execution order (stage by stage, then models, datasets, methods, grid).

    Parameters
    ----------
    config : the validated study.
    only : if given, keep only units of these stages (their dependencies are then expected in the cache).
    """
    only_set = set(only) if only is not None else None
    if only_set is not None:
        bad = sorted(only_set - set(STAGES))
        if bad:
            raise ValueError(f"only: unknown stage(s) {', '.join(bad)} (stages: {', '.join(STAGES)})")
    units: list[Unit] = []

    prepare: dict[str, Unit] = {}
    for spec in config.prepare:
        for name in spec.models:
            params = {"model": config.model(name).as_dict(), "hook": spec.hook, "options": dict(spec.options),
                      "seed": config.seed}
            prepare[name] = _make("prepare_model", params, (), name)
    units.extend(prepare.values())

    def model_deps(name: str) -> tuple[Unit, ...]:
        return (prepare[name],) if name in prepare else ()

    embed: dict[tuple[str, str, str], Unit] = {}
    splits: list[str] = []
    if config.measures.enabled:
        splits += [config.measures.split, config.evaluate.split]
    if config.baselines.enabled:
        splits.append(config.baselines.split)
    splits = list(dict.fromkeys(splits))
    for m in config.models:
        for d in config.datasets:
            for split in splits:
                params = {"model": m.as_dict(), "dataset": d.as_dict(), "split": split, "options": dict(config.embed.options)}
                embed[m.name, d.name, split] = _make("embed", params, model_deps(m.name), f"{m.name}/{d.name}/{split}")
    units.extend(embed.values())

    if config.measures.enabled:
        for m in config.models:
            for d in config.datasets:
                s, t = config.measures.split, config.evaluate.split
                params = {"model": m.name, "dataset": d.name, "split": s, "zero_shot_split": t, "seed": config.seed}
                deps = [embed[m.name, d.name, s]] + ([embed[m.name, d.name, t]] if t != s else [])
                units.append(_make("measures", params, deps, f"{m.name}/{d.name}"))
    if config.baselines.enabled:
        for m in config.models:
            for d in config.datasets:
                s = config.baselines.split
                params = {"model": m.name, "dataset": d.name, "split": s, "emms": config.baselines.emms, "seed": config.seed}
                units.append(_make("baselines", params, [embed[m.name, d.name, s]], f"{m.name}/{d.name}"))

    ft = config.finetune
    groups: list[tuple[str, str, str, int, list[Unit]]] = []
    if ft.enabled:
        train_units: list[Unit] = []
        for meth in ft.methods:
            for mname in [m.name for m in config.models if m.name in meth.models]:
                for d in config.datasets:
                    for seed in ft.seeds:
                        trials = []
                        for hp in meth.grid_points():
                            params = {
                                "model": config.model(mname).as_dict(), "method": meth.name, "dataset": d.as_dict(),
                                "hparams": hp, "seed": seed, "epochs": ft.epochs, "batch_size": ft.batch_size,
                                "optimizer": ft.optimizer, "train_options": dict(ft.options),
                                "method_options": dict(meth.options),
                            }
                            hps = " ".join(f"{k}={_fmt(v)}" for k, v in hp.items())
                            trials.append(_make("train", params, model_deps(mname), f"{mname}/{meth.name}/{d.name} {hps} seed={seed}"))
                        train_units.extend(trials)
                        groups.append((mname, meth.name, d.name, seed, trials))
        units.extend(train_units)
        if config.evaluate.enabled:
            eval_ds = [config.dataset(n).as_dict() for n in config.eval_datasets()]
            for mname, meth, dname, seed, trials in groups:
                params = {"model": config.model(mname).as_dict(), "method": meth, "train_dataset": dname,
                          "seed": seed, "eval_datasets": eval_ds, "split": config.evaluate.split,
                          "trials": [t.key for t in trials]}
                units.append(_make("evaluate", params, [*trials, *model_deps(mname)],
                                   f"{mname}/{meth}/{dname} seed={seed}"))

    if only_set is not None:
        units = [u for u in units if u.stage in only_set]
    return units


def select_trial(records: list[tuple[str, Mapping[str, Any]]]) -> str:
    """Key of the trial with the highest validation accuracy; ties go to the first in grid order.

    ``records`` are ``(train_key, run_record)`` pairs in grid order; a NaN accuracy never wins.
    """
    if not records:
        raise ValueError("records: no trials to select from")
    best_key, best = None, float("-inf")
    for key, rec in records:
        acc = float(rec.get("val_accuracy", float("nan")))
        if acc == acc and acc > best:
            best_key, best = key, acc
    return best_key if best_key is not None else records[0][0]
