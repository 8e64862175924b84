"""What each unit does: thin calls into embed, measures, transferability and finetune.

Every stage function has the signature ``fn(config, unit, deps) -> dict``
(``deps`` maps a dependency key to its cached result) and returns a
JSON-serialisable result; :func:`iimm.study.executors.run_unit` stores it.

The model stage is pluggable: a ``prepare:`` entry of the config names a hook,
either registered with :func:`register_prepare_hook` or given as
``"package.module:function"``. A hook is called as
``hook(model_spec, options, seed=..., device=...)`` and returns a JSON-able
dict; if it has a ``"weights"`` entry, later units load that model from that
file. (The sandbox study uses this for ``iimm.sandbox``'s pretraining.)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from .config import ModelSpec, StudyConfig
from .units import Unit, select_trial

__all__ = ["register_prepare_hook", "resolve_hook", "load_plugins", "run_stage", "remove_partials", "result_usable",
           "STAGE_FUNCTIONS"]

PrepareHook = Callable[..., Mapping[str, Any]]
_HOOKS: dict[str, PrepareHook] = {}


def register_prepare_hook(name: str, fn: PrepareHook, overwrite: bool = False) -> None:
    """Register ``fn`` as the ``prepare:`` hook ``name`` (``fn(model_spec, options, *, seed, device) -> dict``)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise ValueError(f"fn for hook {name!r} must be callable")
    if name in _HOOKS and not overwrite and _HOOKS[name] is not fn:
        raise ValueError(f"prepare hook {name!r} is already registered (pass overwrite=True)")
    _HOOKS[name] = fn


def resolve_hook(name: str) -> PrepareHook:
    """A registered hook, or ``module:function`` imported; ValueError naming what was tried otherwise."""
    if name in _HOOKS:
        return _HOOKS[name]
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"prepare hook {name!r}: cannot import {attr!r} from {mod!r} ({exc})") from exc
        if not callable(fn):
            raise ValueError(f"prepare hook {name!r} is not callable")
        return fn
    raise ValueError(f"prepare hook {name!r} is neither registered ({', '.join(sorted(_HOOKS)) or 'none'}) "
                     "nor of the form 'package.module:function'")


_LOADED_PLUGINS: set[str] = set()


def load_plugins(plugins: tuple[str, ...] | list[str]) -> None:
    """Import each plugin once per process: a module name, or a ``.py`` file path (registers models, datasets, hooks)."""
    for plugin in plugins:
        if plugin in _LOADED_PLUGINS:
            continue
        if plugin.endswith(".py"):
            path = Path(plugin)
            if not path.is_file():
                raise FileNotFoundError(f"plugin file {plugin!r} not found")
            name = "iimm_plugin_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
        else:
            importlib.import_module(plugin)
        _LOADED_PLUGINS.add(plugin)


# ----------------------------------------------------------------------------- helpers


def _device(config: StudyConfig) -> str:
    if config.device != "auto":
        return config.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_spec(d: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec(name=d["name"], pretrained=d["pretrained"], weights=d.get("weights"), options=d.get("options", {}))


def _prepared_weights(unit: Unit, deps: Mapping[str, Any]) -> str | None:
    for st, k in unit.deps:
        if st == "prepare_model" and deps[k].get("weights"):
            return str(deps[k]["weights"])
    return None


def _load_model(config: StudyConfig, spec: Mapping[str, Any], unit: Unit, deps: Mapping[str, Any]):
    from ..models import load_model

    weights = _prepared_weights(unit, deps) or spec.get("weights")
    return load_model(spec["name"], device=_device(config), pretrained=bool(spec["pretrained"]) or weights is not None,
                      weights=weights, **dict(spec.get("options", {})))


def _dataset(spec: Mapping[str, Any], split: str):
    from ..data import load_dataset

    return load_dataset(spec["name"], split, **dict(spec.get("options", {})))


def _float(x: Any) -> float:
    return float(x)


def result_usable(config: StudyConfig, unit: Unit, result: Mapping[str, Any]) -> bool:
    """Whether a cached result can still be used: the files it points to outside its JSON exist.

    A prepared model's weights file or an embedding array file that was deleted makes the
    unit run again instead of failing its dependants.
    """
    if unit.stage == "prepare_model" and result.get("weights"):
        return Path(result["weights"]).is_file()
    if unit.stage == "embed":
        path = Path(config.cache_dir) / result["file"]
        return path.is_file() and path.stat().st_size > 0
    return True


# ----------------------------------------------------------------------------- stages


def stage_prepare_model(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]) -> dict[str, Any]:
    """Run the model's ``prepare:`` hook (e.g. pretraining a sandbox model) and record what it returns."""
    p = unit.params
    hook = resolve_hook(p["hook"])
    out = hook(_model_spec(p["model"]), dict(p["options"]), seed=int(p["seed"]), device=_device(config))
    if not isinstance(out, Mapping):
        raise ValueError(f"prepare hook {p['hook']!r} must return a mapping, got {type(out).__name__}")
    return dict(out)


def _embeddings(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]):
    from ..embed import embed

    p = unit.params
    model = _load_model(config, p["model"], unit, deps)
    # the arrays are kept in the study cache; iimm.embed's own cache only if embed.options asks for it
    options = {"cache": False, **dict(p["options"])}
    return embed(model, _dataset(p["dataset"], p["split"]), split=p["split"], batch_size=config.embed.batch_size,
                 num_workers=config.embed.num_workers, progress=False, **options)


def stage_embed(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]) -> dict[str, Any]:
    """Zero-shot image and class-text embeddings of one (model, dataset, split), saved in the study cache."""
    import numpy as np

    emb = _embeddings(config, unit, deps)
    images = np.asarray(emb.images, dtype=np.float32)
    texts = np.asarray(emb.texts, dtype=np.float32)
    labels = np.asarray(emb.labels, dtype=np.int64)
    path = _array_path(config, unit)
    _save_arrays(path, {"images": images, "texts": texts, "labels": labels})
    from .._io import sha256_file

    return {"file": str(path.relative_to(config.cache_dir)), "sha256": sha256_file(path), "n_images": int(images.shape[0]),
            "dim": int(images.shape[1]), "n_classes": int(texts.shape[0]), "classnames": list(emb.classnames)}


def _array_path(config: StudyConfig, unit: Unit) -> Path:
    return Path(config.cache_dir) / "arrays" / unit.stage / f"{unit.key}.npz"


def remove_partials(config: StudyConfig, unit: Unit) -> None:
    """Delete a killed writer's temporary checkpoint files of ``unit`` (call while holding its claim)."""
    folder = Path(config.checkpoint_dir)
    if unit.stage == "train" and folder.is_dir():
        for p in folder.glob(f".{unit.key}.*.tmp"):
            p.unlink(missing_ok=True)


def _save_arrays(path: Path, arrays: Mapping[str, Any]) -> None:
    import numpy as np

    from .._io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _load_arrays(config: StudyConfig, result: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np

    from .._io import sha256_file

    path = Path(config.cache_dir) / result["file"]
    if not path.is_file() or sha256_file(path) != result["sha256"]:
        raise RuntimeError(f"embedding file {path} is missing or does not match its checksum; "
                           "delete the embed result to recompute it")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def stage_measures(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]) -> dict[str, Any]:
    """IIMM and the other measures (Section 3, Appendix A.1) on the measures split; zero-shot accuracy on the test split."""
    import numpy as np

    from ..measures import all_measures

    (_, k_fit), *rest = unit.deps
    fit = _load_arrays(config, deps[k_fit])
    test = _load_arrays(config, deps[rest[0][1]]) if rest else fit
    measures = all_measures(fit["images"], fit["texts"], fit["labels"])
    pred = np.argmax(test["images"] @ test["texts"].T, axis=1)
    return {"measures": {k: _float(v) for k, v in measures.items()},
            "zero_shot_accuracy": float(np.mean(pred == test["labels"])),
            "n_images": int(fit["images"].shape[0]), "n_classes": int(fit["texts"].shape[0])}


def stage_baselines(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]) -> dict[str, Any]:
    """Transferability scores (TransRate, SFDA, NCTI, EMMS, LogME, H-score, GBC) of the image features.

    EMMS gets the model's own class-text embeddings as its label embeddings.
    """
    from ..transferability import all_scores

    (_, k), = unit.deps
    arr = _load_arrays(config, deps[k])
    label_embeddings = [arr["texts"]] if unit.params["emms"] else None
    scores = all_scores(arr["images"], arr["labels"], label_embeddings=label_embeddings)
    return {"scores": {k: _float(v) for k, v in scores.items()}, "n_images": int(arr["images"].shape[0])}


def _checkpoint_path(config: StudyConfig, key: str) -> Path:
    """Where the training checkpoint of trial ``key`` lives: ``checkpoint_dir``, outside the results cache."""
    return Path(config.checkpoint_dir) / f"{key}.pt"


#: methods whose prepare() takes a ``seed`` for the initialisation of new weights
_SEEDED_METHODS = ("lora", "adapter", "probe")


def _train_trial(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]):
    """Load a fresh model, prepare it for the unit's method and train it; returns ``(model, TrainResult)``.

    With ``finetune.checkpoints`` other than ``none`` the run keeps a resumable per-epoch
    checkpoint; called again after it finished, training is skipped and the best epoch restored.
    """
    from ..finetune import prepare, train

    p = unit.params
    hp = dict(p["hparams"])
    lr, wd = hp.pop("lr"), hp.pop("weight_decay", 0.0)
    opts = {**dict(p["method_options"]), **hp}
    if p["method"] in _SEEDED_METHODS:
        opts.setdefault("seed", int(p["seed"]))
    model = prepare(_load_model(config, p["model"], unit, deps), p["method"], **opts)
    ckpt = _checkpoint_path(config, unit.key) if config.finetune.checkpoints != "none" else None
    result = train(model, _dataset(p["dataset"], "train"), _dataset(p["dataset"], "val"),
                   lr=lr, weight_decay=wd, epochs=int(p["epochs"]), batch_size=int(p["batch_size"]),
                   optimizer=p["optimizer"], seed=int(p["seed"]), checkpoint=ckpt, progress=False,
                   **dict(p["train_options"]))
    return model, result


def stage_train(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]) -> dict[str, Any]:
    """One grid-search trial (Section 4.1): prepare, train, record the run (best epoch on validation)."""
    _, res = _train_trial(config, unit, deps)
    return {"best_epoch": int(res.best_epoch), "val_accuracy": _float(res.val_accuracy),
            "trainable_params": int(res.trainable_params), "total_params": int(res.total_params),
            "wall_time_s": float(res.wall_time_s), "device": str(res.device), "n_train": int(res.n_train),
            "n_val": int(res.n_val), "history": [{k: _float(v) for k, v in h.items()} for h in res.history]}


def stage_evaluate(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]) -> dict[str, Any]:
    """Test the trial selected on validation accuracy on every evaluation dataset (ID and OOD, Section 4.1).

    The selected model comes from its training checkpoint when there is one, else it is
    retrained (deterministic given its seed). With ``finetune.checkpoints: selected`` the
    checkpoints of the other trials of the group are deleted afterwards.
    """
    from ..finetune import evaluate

    p = unit.params
    run_id = select_trial([(k, deps[k]) for k in p["trials"]])
    train_unit = _train_unit(config, run_id)
    model, _ = _train_trial(config, train_unit, deps)
    datasets = {d["name"]: _dataset(d, p["split"]) for d in p["eval_datasets"]}
    df = evaluate(model, datasets, split=p["split"], train_dataset=p["train_dataset"], run_id=run_id,
                  batch_size=config.evaluate.batch_size)
    rows = [{"dataset": str(r.eval_dataset), "accuracy": _float(r.accuracy), "n_images": int(r.n_images), "note": str(r.note)}
            for r in df.itertuples()]
    if config.finetune.checkpoints == "selected":
        for k in p["trials"]:
            if k != run_id:
                _checkpoint_path(config, k).unlink(missing_ok=True)
    return {"run_id": run_id, "evaluations": rows}


def _train_unit(config: StudyConfig, key: str) -> Unit:
    from .units import expand_units

    for u in expand_units(config, only=["train"]):
        if u.key == key:
            return u
    raise RuntimeError(f"train unit {key} is not part of study {config.name!r}")


STAGE_FUNCTIONS: dict[str, Callable[[StudyConfig, Unit, Mapping[str, Any]], dict[str, Any]]] = {
    "prepare_model": stage_prepare_model,
    "embed": stage_embed,
    "measures": stage_measures,
    "baselines": stage_baselines,
    "train": stage_train,
    "evaluate": stage_evaluate,
}


def run_stage(config: StudyConfig, unit: Unit, deps: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``unit`` with its stage function and return its JSON-able result."""
    try:
        fn = STAGE_FUNCTIONS[unit.stage]
    except KeyError:
        raise ValueError(f"unit {unit.label!r} has unknown stage {unit.stage!r}") from None
    return fn(config, unit, deps)
