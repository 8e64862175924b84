"""Study configuration: a YAML file validated into typed, frozen config objects.

A study declares the paper's grid (Section 4, "Training details"): base models x
datasets, the fine-tuning methods with their hyper-parameter grids, epochs,
batch size, seeds, and where results go. Every error names the file, the line
and the dotted key, e.g.::

    configs/paper.yaml:41: finetune.methods.lora.grid.rank: expected a list of
    positive integers, got ['a']

Schema (every section optional except ``study``, ``models`` and ``datasets``)::

    study: paper                      # name of the study
    seed: 0
    device: auto                      # auto | cpu | cuda | cuda:N
    cache_dir: null                   # unit results; default <IIMM_CACHE>/studies/<study>
    output_dir: null                  # parquet tables; default <cache_dir>/tables
    checkpoint_dir: null              # training checkpoints; default <IIMM_CHECKPOINTS>/studies/<study>
    plugins: []                       # modules or .py files imported in every worker
    models: [clip, {name: siglip, pretrained: true, weights: null, options: {}}]
    datasets: [mnist, {name: svhn, options: {root: /data}}]
    prepare:                          # model-preparation hooks (e.g. sandbox pretraining)
      - {hook: "iimm.sandbox:pretrain_hook", models: [sandbox-clip], options: {}}
    embed: {batch_size: 256, num_workers: 0, options: {}}
    measures: {enabled: true, split: train}
    baselines: {enabled: true, split: train, emms: true}
    finetune:
      enabled: true
      epochs: 30
      batch_size: 128
      optimizer: sgd
      seeds: [0]
      checkpoints: selected           # all | selected | none: per-trial training checkpoints, outside the cache
      options: {}                     # TrainConfig overrides for iimm.finetune.train (momentum, warmup, ...)
      grid: {lr: [1.0e-2, ...], weight_decay: [...]}      # default grid of every method
      methods:
        full: {models: [clip, siglip]}
        lora: {models: [clip], grid: {rank: [2, 4, 8, 16]}, options: {}}   # options of iimm.finetune.prepare
        probe: {models: []}           # an empty list switches a method off (useful in profiles)
    evaluate: {enabled: true, split: test, datasets: null, batch_size: 256}
    executor:
      kind: local                     # local | ray
      workers: 1                      # local: process pool size for CPU units
      address: null                   # ray: cluster address; null starts a local instance
      num_cpus: null                  # ray: CPUs of a local instance
      threads: null                   # torch and BLAS threads of every unit (same numbers on every executor)
      stale_lock_s: 600               # a claim not refreshed for this long is stale
      resources: {train: {num_gpus: 1}}   # ray resource requests per stage
    profile: null                     # default profile
    profiles:
      smoke: {datasets: [mnist], finetune: {epochs: 1}}

A profile is merged over the base document (mappings recursively, everything
else replaced) before validation, so a profile can change steps, tasks and grids.
Numbers such as ``1e-3`` (a string for YAML 1.1) are accepted where a float is
expected.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "ConfigError",
    "ModelSpec",
    "DatasetSpec",
    "PrepareSpec",
    "EmbedConfig",
    "MeasuresConfig",
    "BaselinesConfig",
    "MethodConfig",
    "FinetuneConfig",
    "EvaluateConfig",
    "ExecutorConfig",
    "StudyConfig",
    "load_config",
    "parse_config",
    "METHODS",
    "STAGES",
    "GRID_KEYS",
]

#: fine-tuning method names (CONTRIBUTING.md)
METHODS: tuple[str, ...] = ("full", "bitfit", "attention", "lora", "adapter", "probe")
#: unit stages, in execution order
STAGES: tuple[str, ...] = ("prepare_model", "embed", "measures", "baselines", "train", "evaluate")
#: hyper-parameters a grid may vary, per method (paper: lr, weight decay, LoRA rank, adapter reduction)
GRID_KEYS: dict[str, tuple[str, ...]] = {
    "full": ("lr", "weight_decay"),
    "bitfit": ("lr", "weight_decay"),
    "attention": ("lr", "weight_decay"),
    "lora": ("lr", "weight_decay", "rank", "alpha"),
    "adapter": ("lr", "weight_decay", "reduction"),
    "probe": ("lr", "weight_decay"),
}
_INT_GRID_KEYS = {"rank", "reduction"}
_OPTIMIZERS = ("sgd", "adamw")
_SPLITS = ("train", "val", "test")
_CHECKPOINTS = ("all", "selected", "none")
_LOCATION_KEYS = ("cache_dir", "output_dir", "checkpoint_dir", "executor")


class ConfigError(ValueError):
    """A study configuration error; the message names file, line and key."""


# ----------------------------------------------------------------------------- typed config


@dataclass(frozen=True)
class ModelSpec:
    """A base model: registry name, random init or pretrained, optional weights file."""

    name: str
    pretrained: bool = True
    weights: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pretrained": self.pretrained, "weights": self.weights, "options": dict(self.options)}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: registry name plus keyword options of its loader."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True)
class PrepareSpec:
    """A model-preparation hook (``module:function`` or a registered name) run once per listed model."""

    hook: str
    models: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbedConfig:
    batch_size: int = 256
    num_workers: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MeasuresConfig:
    enabled: bool = True
    split: str = "train"


@dataclass(frozen=True)
class BaselinesConfig:
    enabled: bool = True
    split: str = "train"
    emms: bool = True


@dataclass(frozen=True)
class MethodConfig:
    """One fine-tuning method: the models it applies to, its grid and extra options."""

    name: str
    models: tuple[str, ...]
    grid: Mapping[str, tuple[Any, ...]]
    options: Mapping[str, Any] = field(default_factory=dict)

    def grid_points(self) -> list[dict[str, Any]]:
        """The exhaustive grid, in declaration order (last key varies fastest)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]


@dataclass(frozen=True)
class FinetuneConfig:
    enabled: bool = True
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    seeds: tuple[int, ...] = (0,)
    checkpoints: str = "selected"
    options: Mapping[str, Any] = field(default_factory=dict)
    methods: tuple[MethodConfig, ...] = ()


@dataclass(frozen=True)
class EvaluateConfig:
    enabled: bool = True
    split: str = "test"
    datasets: tuple[str, ...] | None = None
    batch_size: int = 256


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"
    workers: int = 1
    address: str | None = None
    num_cpus: int | None = None
    threads: int | None = None
    stale_lock_s: float = 600.0
    resources: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    """A validated study. ``raw`` is the merged document (profile applied) used for hashing."""

    name: str
    seed: int
    device: str
    cache_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    plugins: tuple[str, ...]
    models: tuple[ModelSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    prepare: tuple[PrepareSpec, ...]
    embed: EmbedConfig
    measures: MeasuresConfig
    baselines: BaselinesConfig
    finetune: FinetuneConfig
    evaluate: EvaluateConfig
    executor: ExecutorConfig
    profile: str | None
    path: Path | None
    raw: Mapping[str, Any]

    def content(self) -> dict[str, Any]:
        """The merged document without where-and-how keys (cache/output/checkpoint folders, executor).

        Its hash (``config_hash`` in every table) identifies the study's science, so the same
        study run elsewhere or with another executor has the same hash.
        """
        return {k: v for k, v in self.raw.items() if k not in _LOCATION_KEYS}

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def dataset(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)

    def eval_datasets(self) -> tuple[str, ...]:
        return self.evaluate.datasets if self.evaluate.datasets is not None else tuple(d.name for d in self.datasets)

    def with_executor(self, **changes: Any) -> "StudyConfig":
        """A copy with executor fields replaced (the CLI's ``--executor``)."""
        return dataclasses.replace(self, executor=dataclasses.replace(self.executor, **changes))


# ----------------------------------------------------------------------------- YAML with line numbers


def _lines_of(node: Any, path: tuple, lines: dict[tuple, int], source: str) -> None:
    """Record the 1-based line of every key/item path of a composed YAML node tree."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(str(p) for p in (*path, key))
                raise ConfigError(f"{source}:{line}: {dotted}: duplicate key (first at line {seen[key]})")
            seen[key] = line
            lines[(*path, key)] = line
            _lines_of(value_node, (*path, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _lines_of(item, (*path, i), lines, source)


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}:1: the file is empty")
        lines: dict[tuple, int] = {(): node.start_mark.line + 1}
        _lines_of(node, (), lines, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{source}:{line}: invalid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()
    return data, lines


def _merge(base: Any, over: Any, base_lines: dict, over_lines: dict, bpath: tuple, opath: tuple) -> Any:
    """Profile merge: mappings recursively, anything else replaced; lines follow the winner."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if k in base:
                out[k] = _merge(base[k], v, base_lines, over_lines, (*bpath, k), (*opath, k))
            else:
                out[k] = v
                _relocate(over_lines, (*opath, k), base_lines, (*bpath, k))
        return out
    for p in [p for p in base_lines if p[: len(bpath)] == bpath and len(p) > len(bpath)]:
        del base_lines[p]
    _relocate(over_lines, opath, base_lines, bpath)
    return over


def _relocate(src: dict, spath: tuple, dst: dict, dpath: tuple) -> None:
    for p, line in src.items():
        if p[: len(spath)] == spath:
            dst[dpath + p[len(spath):]] = line


# ----------------------------------------------------------------------------- validation


class _Ctx:
    """Validation context: turns a dotted path into ``file:line: key: message`` errors."""

    def __init__(self, source: str, lines: Mapping[tuple, int]):
        self.source = source
        self.lines = lines

    def line(self, path: tuple) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1

    def error(self, path: tuple, msg: str) -> ConfigError:
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[") or "<top>"
        return ConfigError(f"{self.source}:{self.line(path)}: {dotted}: {msg}")

    # scalar checkers -------------------------------------------------------------------------
    def mapping(self, value: Any, path: tuple, allowed: Sequence[str] | None = None, required: Sequence[str] = ()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(path, f"expected a mapping, got {_show(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.error((*path, k), f"keys must be strings, got {_show(k)}")
            if allowed is not None and k not in allowed:
                raise self.error((*path, k), f"unknown key {k!r} (allowed: {', '.join(allowed)})")
        for k in required:
            if k not in value:
                raise self.error(path, f"missing required key {k!r}")
        return value

    def string(self, value: Any, path: tuple, choices: Sequence[str] | None = None, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(path, f"expected a non-empty string, got {_show(value)}")
        if choices is not None and value not in choices:
            raise self.error(path, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def boolean(self, value: Any, path: tuple) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, got {_show(value)}")
        return value

    def integer(self, value: Any, path: tuple, minimum: int | None = None, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {_show(value)}")
        if minimum is not None and value < minimum:
            raise self.error(path, f"expected an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: tuple, positive: bool = False, nonnegative: bool = False) -> float:
        out: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                out = None
        if out is None or not math.isfinite(out):
            raise self.error(path, f"expected a finite number, got {_show(value)}")
        if positive and out <= 0:
            raise self.error(path, f"expected a number > 0, got {value}")
        if nonnegative and out < 0:
            raise self.error(path, f"expected a number >= 0, got {value}")
        return out

    def seq(self, value: Any, path: tuple, nonempty: bool = True) -> list:
        if not isinstance(value, list):
            raise self.error(path, f"expected a list, got {_show(value)}")
        if nonempty and not value:
            raise self.error(path, "expected a non-empty list")
        return value

    def options(self, value: Any, path: tuple) -> dict:
        return dict(self.mapping(value, path))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TOP_KEYS = (
    "study", "seed", "device", "cache_dir", "output_dir", "checkpoint_dir", "plugins", "models", "datasets", "prepare",
    "embed", "measures", "baselines", "finetune", "evaluate", "executor", "profile", "profiles",
)


def _resolve_path(value: str, base: Path) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return p if p.is_absolute() else (base / p).resolve()


def _unique(ctx: _Ctx, names: list[str], path: tuple, what: str) -> None:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ctx.error((*path, i), f"{what} {n!r} listed twice")
        seen[n] = i


def _validate(doc: dict, ctx: _Ctx, base_dir: Path, path: Path | None, profile: str | None) -> StudyConfig:
    doc = ctx.mapping(doc, (), _TOP_KEYS, required=("study", "models", "datasets"))
    name = ctx.string(doc["study"], ("study",))
    if not all(c.isalnum() or c in "-_." for c in name):
        raise ctx.error(("study",), f"use letters, digits, '-', '_' or '.' only, got {name!r}")
    seed = ctx.integer(doc.get("seed", 0), ("seed",), minimum=0)
    device = ctx.string(doc.get("device", "auto"), ("device",))
    if not (device in ("auto", "cpu", "cuda", "mps") or device.startswith("cuda:")):
        raise ctx.error(("device",), f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}")

    from ..paths import cache_root, checkpoints_dir

    cache_dir = doc.get("cache_dir")
    cache = (_resolve_path(ctx.string(cache_dir, ("cache_dir",)), base_dir) if cache_dir is not None
             else cache_root() / "studies" / name)
    out_dir = doc.get("output_dir")
    output = _resolve_path(ctx.string(out_dir, ("output_dir",)), base_dir) if out_dir is not None else cache / "tables"
    ck_dir = doc.get("checkpoint_dir")
    ckpts = (_resolve_path(ctx.string(ck_dir, ("checkpoint_dir",)), base_dir) if ck_dir is not None
             else checkpoints_dir() / "studies" / name)

    plugins = []
    for i, p in enumerate(ctx.seq(doc.get("plugins", []), ("plugins",), nonempty=False)):
        p = ctx.string(p, ("plugins", i))
        plugins.append(str(_resolve_path(p, base_dir)) if p.endswith(".py") else p)

    # models -------------------------------------------------------------------------------
    models = []
    for i, m in enumerate(ctx.seq(doc["models"], ("models",))):
        mp = ("models", i)
        if isinstance(m, str):
            m = {"name": m}
        m = ctx.mapping(m, mp, ("name", "pretrained", "weights", "options"), required=("name",))
        weights = ctx.string(m.get("weights"), (*mp, "weights"), optional=True)
        models.append(ModelSpec(
            name=ctx.string(m["name"], (*mp, "name")),
            pretrained=ctx.boolean(m.get("pretrained", True), (*mp, "pretrained")),
            weights=str(_resolve_path(weights, base_dir)) if weights else None,
            options=ctx.options(m.get("options"), (*mp, "options")),
        ))
    _unique(ctx, [m.name for m in models], ("models",), "model")
    model_names = [m.name for m in models]

    datasets = []
    for i, d in enumerate(ctx.seq(doc["datasets"], ("datasets",))):
        dp = ("datasets", i)
        if isinstance(d, str):
            d = {"name": d}
        d = ctx.mapping(d, dp, ("name", "options"), required=("name",))
        datasets.append(DatasetSpec(name=ctx.string(d["name"], (*dp, "name")), options=ctx.options(d.get("options"), (*dp, "options"))))
    _unique(ctx, [d.name for d in datasets], ("datasets",), "dataset")
    dataset_names = [d.name for d in datasets]

    def model_list(value: Any, p: tuple) -> tuple[str, ...]:
        names = [ctx.string(v, (*p, j)) for j, v in enumerate(ctx.seq(value, p))]
        for j, n in enumerate(names):
            if n not in model_names:
                raise ctx.error((*p, j), f"model {n!r} is not in models ({', '.join(model_names)})")
        _unique(ctx, names, p, "model")
        return tuple(names)

    prepare = []
    for i, h in enumerate(ctx.seq(doc.get("prepare", []), ("prepare",), nonempty=False)):
        hp = ("prepare", i)
        h = ctx.mapping(h, hp, ("hook", "models", "options"), required=("hook", "models"))
        prepare.append(PrepareSpec(hook=ctx.string(h["hook"], (*hp, "hook")), models=model_list(h["models"], (*hp, "models")),
                                   options=ctx.options(h.get("options"), (*hp, "options"))))
    prepared = [m for p in prepare for m in p.models]
    if len(prepared) != len(set(prepared)):
        raise ctx.error(("prepare",), "a model is prepared by more than one hook")

    e = ctx.mapping(doc.get("embed"), ("embed",), ("batch_size", "num_workers", "options"))
    embed = EmbedConfig(batch_size=ctx.integer(e.get("batch_size", 256), ("embed", "batch_size"), 1),
                        num_workers=ctx.integer(e.get("num_workers", 0), ("embed", "num_workers"), 0),
                        options=ctx.options(e.get("options"), ("embed", "options")))

    m = ctx.mapping(doc.get("measures"), ("measures",), ("enabled", "split"))
    measures = MeasuresConfig(enabled=ctx.boolean(m.get("enabled", True), ("measures", "enabled")),
                              split=ctx.string(m.get("split", "train"), ("measures", "split"), _SPLITS))
    b = ctx.mapping(doc.get("baselines"), ("baselines",), ("enabled", "split", "emms"))
    baselines = BaselinesConfig(enabled=ctx.boolean(b.get("enabled", True), ("baselines", "enabled")),
                                split=ctx.string(b.get("split", "train"), ("baselines", "split"), _SPLITS),
                                emms=ctx.boolean(b.get("emms", True), ("baselines", "emms")))

    # fine-tuning ------------------------------------------------------------------------------
    fp = ("finetune",)
    f = ctx.mapping(doc.get("finetune"), fp, ("enabled", "epochs", "batch_size", "optimizer", "seeds", "checkpoints",
                                               "options", "grid", "methods"))
    default_grid = ctx.mapping(f.get("grid"), (*fp, "grid"))

    def grid_values(key: str, values: Any, p: tuple) -> tuple:
        vals = ctx.seq(values, p)
        if key in _INT_GRID_KEYS:
            out = tuple(ctx.integer(v, (*p, j), 1) for j, v in enumerate(vals))
        elif key == "alpha":
            out = tuple(ctx.number(v, (*p, j), positive=True) for j, v in enumerate(vals))
        elif key == "lr":
            out = tuple(ctx.number(v, (*p, j), positive=True) for j, v in enumerate(vals))
        else:
            out = tuple(ctx.number(v, (*p, j), nonnegative=True) for j, v in enumerate(vals))
        if len(set(out)) != len(out):
            raise ctx.error(p, f"repeated grid values {list(out)}")
        return out

    for k in default_grid:
        if k not in {g for keys in GRID_KEYS.values() for g in keys}:
            raise ctx.error((*fp, "grid", k), f"unknown grid key {k!r}")
    methods = []
    mdoc = ctx.mapping(f.get("methods"), (*fp, "methods"), METHODS)
    for meth, spec in mdoc.items():
        mp = (*fp, "methods", meth)
        spec = ctx.mapping(spec, mp, ("models", "grid", "options"), required=("models",))
        if isinstance(spec["models"], list) and not spec["models"]:
            continue  # `models: []` switches a method off (e.g. in a profile)
        own = ctx.mapping(spec.get("grid"), (*mp, "grid"))
        grid: dict[str, tuple] = {}
        for k, v in default_grid.items():
            if k in GRID_KEYS[meth]:
                grid[k] = grid_values(k, v, (*fp, "grid", k))
        for k, v in own.items():
            if k not in GRID_KEYS[meth]:
                raise ctx.error((*mp, "grid", k), f"unknown grid key {k!r} for method {meth} (allowed: {', '.join(GRID_KEYS[meth])})")
            grid[k] = grid_values(k, v, (*mp, "grid", k))
        if "lr" not in grid:
            raise ctx.error((*mp, "grid"), "no learning rates: give grid.lr here or in finetune.grid")
        grid.setdefault("weight_decay", (0.0,))
        order = [k for k in GRID_KEYS[meth] if k in grid]
        methods.append(MethodConfig(name=meth, models=model_list(spec["models"], (*mp, "models")),
                                    grid={k: grid[k] for k in order}, options=ctx.options(spec.get("options"), (*mp, "options"))))
    seeds = tuple(ctx.integer(s, (*fp, "seeds", j), 0) for j, s in enumerate(ctx.seq(f.get("seeds", [0]), (*fp, "seeds"))))
    if len(set(seeds)) != len(seeds):
        raise ctx.error((*fp, "seeds"), "repeated seeds")
    finetune = FinetuneConfig(
        enabled=ctx.boolean(f.get("enabled", True), (*fp, "enabled")),
        epochs=ctx.integer(f.get("epochs", 30), (*fp, "epochs"), 1),
        batch_size=ctx.integer(f.get("batch_size", 128), (*fp, "batch_size"), 1),
        optimizer=ctx.string(f.get("optimizer", "sgd"), (*fp, "optimizer"), _OPTIMIZERS),
        seeds=seeds,
        checkpoints=ctx.string(f.get("checkpoints", "selected"), (*fp, "checkpoints"), _CHECKPOINTS),
        options=ctx.options(f.get("options"), (*fp, "options")),
        methods=tuple(methods),
    )

    ep = ("evaluate",)
    ev = ctx.mapping(doc.get("evaluate"), ep, ("enabled", "split", "datasets", "batch_size"))
    eval_ds = None
    if ev.get("datasets") is not None:
        eval_ds = tuple(ctx.string(v, (*ep, "datasets", j)) for j, v in enumerate(ctx.seq(ev["datasets"], (*ep, "datasets"))))
        for j, n in enumerate(eval_ds):
            if n not in dataset_names:
                raise ctx.error((*ep, "datasets", j), f"dataset {n!r} is not in datasets ({', '.join(dataset_names)})")
    evaluate = EvaluateConfig(enabled=ctx.boolean(ev.get("enabled", True), (*ep, "enabled")),
                              split=ctx.string(ev.get("split", "test"), (*ep, "split"), _SPLITS),
                              datasets=eval_ds, batch_size=ctx.integer(ev.get("batch_size", 256), (*ep, "batch_size"), 1))

    xp = ("executor",)
    x = ctx.mapping(doc.get("executor"), xp, ("kind", "workers", "address", "num_cpus", "threads", "stale_lock_s", "resources"))
    resources: dict[str, dict[str, float]] = {}
    for st, req in ctx.mapping(x.get("resources"), (*xp, "resources"), STAGES).items():
        req = ctx.mapping(req, (*xp, "resources", st), ("num_cpus", "num_gpus", "memory"))
        resources[st] = {k: ctx.number(v, (*xp, "resources", st, k), nonnegative=True) for k, v in req.items()}
    executor = ExecutorConfig(
        kind=ctx.string(x.get("kind", "local"), (*xp, "kind"), ("local", "ray")),
        workers=ctx.integer(x.get("workers", 1), (*xp, "workers"), 1),
        address=ctx.string(x.get("address"), (*xp, "address"), optional=True),
        num_cpus=ctx.integer(x.get("num_cpus"), (*xp, "num_cpus"), 1, optional=True),
        threads=ctx.integer(x.get("threads"), (*xp, "threads"), 1, optional=True),
        stale_lock_s=ctx.number(x.get("stale_lock_s", 600), (*xp, "stale_lock_s"), positive=True),
        resources=resources,
    )
    return StudyConfig(name=name, seed=seed, device=device, cache_dir=cache, output_dir=output, checkpoint_dir=ckpts, plugins=tuple(plugins),
                       models=tuple(models), datasets=tuple(datasets), prepare=tuple(prepare), embed=embed,
                       measures=measures, baselines=baselines, finetune=finetune, evaluate=evaluate,
                       executor=executor, profile=profile, path=path, raw=doc)


def parse_config(text: str, source: str = "<string>", base_dir: str | os.PathLike | None = None,
                 profile: str | None = None) -> StudyConfig:
    """Validate YAML ``text`` into a :class:`StudyConfig`.

    Parameters
    ----------
    text : the YAML document.
    source : file name used in error messages.
    base_dir : folder that relative paths are resolved against (default: the working directory).
    profile : name of a ``profiles:`` entry merged over the document; default the document's ``profile``.

    Raises
    ------
    ConfigError
        A ``ValueError`` whose message names the source file, line, key and problem.
    """
    data, lines = _read_yaml(text, source)
    ctx = _Ctx(source, lines)
    doc = dict(ctx.mapping(data, (), _TOP_KEYS))
    profiles = ctx.mapping(doc.pop("profiles", None), ("profiles",))
    chosen = profile if profile is not None else ctx.string(doc.pop("profile", None), ("profile",), optional=True)
    doc.pop("profile", None)
    if chosen is not None:
        if chosen not in profiles:
            where = ("profile",) if profile is None else ("profiles",)
            raise ctx.error(where, f"no profile {chosen!r} (defined: {', '.join(profiles) or 'none'})")
        over = ctx.mapping(profiles[chosen], ("profiles", chosen))
        for k in over:
            if k not in _TOP_KEYS or k in ("profiles", "profile"):
                raise ctx.error(("profiles", chosen, k), f"unknown key {k!r} in a profile")
        merged_lines = dict(lines)
        doc = _merge(doc, over, merged_lines, dict(lines), (), ("profiles", chosen))
        ctx = _Ctx(source, merged_lines)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    path = Path(source) if source != "<string>" and Path(source).exists() else None
    return _validate(doc, ctx, base.resolve(), path.resolve() if path else None, chosen)


def load_config(path: str | os.PathLike, profile: str | None = None) -> StudyConfig:
    """Read and validate a study YAML file; relative paths in it are relative to the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"study config {str(p)!r} not found")
    return parse_config(p.read_text(encoding="utf-8"), source=str(p), base_dir=p.resolve().parent, profile=profile)
