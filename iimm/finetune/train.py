"""Fine-tuning loop: the zero-shot head as classifier, cross-entropy, SGD with a cosine schedule.

For a batch of images with unit embeddings ``f_i`` and class text embeddings
``w_c`` (the zero-shot head of the task, :func:`iimm.models.zero_shot_head`),
the logits are ``z_ic = logit_scale * f_i . w_c (+ logit_bias for SigLIP)``
and the loss is the cross-entropy over classes (Section 4.1, "Training
details"); ``loss="sigmoid"`` uses SigLIP's pairwise sigmoid loss instead.
The class embeddings are recomputed from the text tower at every step when a
text parameter trains and computed once when the text tower is frozen.
The probe's logits are its linear layer on the unit image embeddings.

Optimiser: SGD with momentum 0.9 (the paper's) or AdamW; per-step cosine
schedule after a linear warm-up; gradient-norm clipping; mixed precision on
CUDA only (bf16 where supported, else fp16 with loss scaling); the epoch with
the best validation accuracy is kept. With ``checkpoint=PATH`` the complete
training state is written atomically after every epoch and a killed run
continues from its last finished epoch with identical results.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ._common import accuracy, class_tokens, classify, dataset_name, make_loader, resolve_dataset, seed_everything, text_head
from .methods import STATE_ATTR, attach_probe, count_parameters, method_of, text_tower_trains

__all__ = ["TrainConfig", "TrainResult", "train", "classification_loss"]

_OPTIMIZERS = ("sgd", "adamw")
_LOSSES = ("ce", "sigmoid")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (defaults: the paper's setting, Section 4.1).

    Attributes
    ----------
    epochs, batch_size, lr, weight_decay:
        30 epochs, batch size 128; lr and weight decay come from the grid.
    optimizer:
        ``"sgd"`` (momentum ``momentum``) or ``"adamw"``.
    warmup:
        Fraction of all optimisation steps spent in linear warm-up before the
        cosine decay to zero.
    grad_clip:
        Max global gradient norm, or ``None``.
    seed:
        Seeds python/numpy/torch and the data order.
    amp:
        Mixed precision when training on CUDA (ignored on CPU).
    loss:
        ``"ce"`` (cross-entropy over classes) or ``"sigmoid"`` (SigLIP-style
        binary loss of every image-class pair).
    max_templates:
        Use only the first k prompt templates per class while the text tower
        trains (``None``: all); evaluation always uses all.
    probe_init:
        ``"zeroshot"`` starts the probe from ``logit_scale * w_c`` (and the
        logit bias), ``"random"`` from PyTorch's default initialisation.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    momentum: float = 0.9
    warmup: float = 0.05
    grad_clip: float | None = 1.0
    seed: int = 0
    amp: bool = True
    loss: str = "ce"
    max_templates: int | None = None
    probe_init: str = "zeroshot"
    eval_batch_size: int = 256
    num_workers: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{key} must be a positive int; got {v!r}")
        for key in ("lr", "weight_decay", "momentum"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{key} must be a finite number >= 0; got {v!r}")
        if self.lr == 0:
            raise ValueError("lr must be > 0")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}; got {self.optimizer!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}; got {self.loss!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be a fraction in [0, 1); got {self.warmup!r}")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise ValueError(f"grad_clip must be > 0 or None; got {self.grad_clip!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int; got {self.seed!r}")
        if self.probe_init not in ("zeroshot", "random"):
            raise ValueError(f"probe_init must be 'zeroshot' or 'random'; got {self.probe_init!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0; got {self.num_workers!r}")


@dataclass
class TrainResult:
    """What one run produced (the model itself is trained in place)."""

    model: str
    weights: str
    method: str
    options: dict[str, Any]
    config: dict[str, Any]
    dataset: str
    n_train: int
    n_val: int
    best_epoch: int
    val_accuracy: float
    trainable_params: int
    total_params: int
    wall_time_s: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Mean loss over the batch.

    ``ce``: ``-log softmax(z_i)[y_i]``. ``sigmoid`` (SigLIP): ``-sum_c log
    sigmoid(s_ic z_ic)`` with ``s_ic = +1`` for the true class and ``-1`` otherwise.
    """
    logits = logits.float()
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    if kind == "sigmoid":
        signs = 2.0 * F.one_hot(labels, logits.shape[1]).to(logits.dtype) - 1.0
        return -F.logsigmoid(signs * logits).sum(dim=1).mean()
    raise ValueError(f"loss must be one of {_LOSSES}; got {kind!r}")


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _trainable(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def _snapshot(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in params.items()}


def _restore(params: Mapping[str, torch.nn.Parameter], state: Mapping[str, torch.Tensor]) -> None:
    missing = sorted(set(params) - set(state))
    if missing:
        raise ValueError(f"saved state lacks trainable parameter(s) {missing[:5]}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n].to(p.device, p.dtype))


def _rng_state() -> dict[str, Any]:
    import random

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import random

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(
    model: Any,
    dataset: Any,
    val_dataset: Any = None,
    *,
    config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Fine-tune a prepared model on one task; the model is left at its best epoch.

    Parameters
    ----------
    model:
        A :class:`iimm.models.DualEncoder` after :func:`iimm.finetune.prepare`.
    dataset, val_dataset:
        torch Datasets of ``(image, label)`` with ``classnames`` and
        ``templates`` (images as tensors or PIL images, which go through
        ``model.preprocess``), or registry names for
        :func:`iimm.data.load_dataset` (splits ``"train"`` and ``"val"``; with a
        name and no ``val_dataset`` the ``"val"`` split is used). Without a
        validation set the last epoch is kept and ``val_accuracy`` is NaN.
    config, **overrides:
        A :class:`TrainConfig`; keyword overrides replace its fields.
    device:
        Move the model there first (default: where it is).
    checkpoint:
        File for a resumable per-epoch checkpoint (written atomically). If it
        exists and belongs to this run, training continues after its last
        epoch; if it belongs to another run, a ValueError.
    callback:
        Called as ``callback(epoch, record)`` after every epoch (and after the
        checkpoint is written).

    Returns
    -------
    TrainResult
    """
    from tqdm.auto import tqdm

    from iimm._io import atomic_path
    from iimm.provenance import config_hash

    cfg = config or TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"config must be a TrainConfig; got {type(cfg).__name__}")
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; TrainConfig has {[f.name for f in dataclasses.fields(TrainConfig)]}")
        cfg = dataclasses.replace(cfg, **overrides)
    method = method_of(model)
    if method == "zeroshot":
        raise ValueError("model was not prepared: call iimm.finetune.prepare(model, method, ...) first")
    module = model.model
    state = getattr(module, STATE_ATTR)
    if state.get("merged"):
        raise ValueError("model's LoRA was merged for good (merge_lora); prepare a fresh model to train")

    if isinstance(dataset, str) and val_dataset is None:
        val_dataset = dataset
    train_ds = resolve_dataset(dataset, "train", "dataset")
    val_ds = resolve_dataset(val_dataset, "val", "val_dataset") if val_dataset is not None else None
    name = dataset_name(train_ds, dataset if isinstance(dataset, str) else "dataset")
    classnames, templates = list(train_ds.classnames), list(train_ds.templates)
    if val_ds is not None and list(val_ds.classnames) != classnames:
        raise ValueError("val_dataset has different classnames from dataset")

    if device is not None:
        model.to(torch.device(device))
    dev = model.device
    seed_everything(cfg.seed)

    probe = None
    if method == "probe":
        probe = getattr(module, "probe_head", None)
        if probe is None or probe.out_features != len(classnames):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(state["options"].get("seed", 0))
                probe = attach_probe(model, len(classnames))
        if cfg.probe_init == "zeroshot":
            from iimm.models import zero_shot_head

            with torch.no_grad():
                w = zero_shot_head(model, classnames, templates)
                probe.weight.copy_((model.logit_scale.float() * w).to(probe.weight.dtype))
                bias = model.logit_bias
                probe.bias.fill_(float(bias) if bias is not None else 0.0)
        state["targets"] = [n for n, p in module.named_parameters() if p.requires_grad]

    params = _trainable(module)
    if not params:
        raise ValueError("model has no trainable parameters")
    text_trains = text_tower_trains(model)
    tokens_all = class_tokens(model, classnames, templates)
    tokens_train = class_tokens(model, classnames, templates, cfg.max_templates) if text_trains else tokens_all

    def full_head() -> torch.Tensor:
        with torch.no_grad():
            return text_head(model, tokens_all[0].to(dev), tokens_all[1], tokens_all[2], cfg.eval_batch_size)

    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup * total_steps))
    plist = list(params.values())
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(plist, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(plist, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, warmup_steps))
    use_amp = bool(cfg.amp and dev.type == "cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    trainable, total = count_parameters(model)
    run_key = config_hash({
        "model": model.name, "weights": getattr(model, "weights_id", None), "method": method,
        "options": state["options"], "config": dataclasses.asdict(cfg), "dataset": name,
        "n_train": len(train_ds), "n_val": len(val_ds) if val_ds is not None else 0,
        "params": sorted(params), "trainable": trainable,
    })

    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, best_val, wall, start_epoch = 0, -math.inf, 0.0, 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck.get("run_key") != run_key:
            raise ValueError(f"checkpoint {ckpt_path} belongs to another run (key {ck.get('run_key')} != {run_key}); "
                             "remove it or give another path")
        _restore(params, ck["params"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        history, best_state = ck["history"], ck["best_state"]
        best_epoch, best_val, wall, start_epoch = ck["best_epoch"], ck["best_val"], ck["wall_time_s"], ck["epoch"]
        _set_rng_state(ck["rng"])
    resumed_from = start_epoch

    frozen_towers = method in ("adapter", "probe")
    head_fixed = None if text_trains else full_head()
    val_loader = make_loader(val_ds, model, cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers, device=dev) if val_ds is not None else None

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        module.train(not frozen_towers)
        for extra in ("image_adapter", "text_adapter", "probe_head"):
            if getattr(module, extra, None) is not None:
                getattr(module, extra).train()
        loader = make_loader(train_ds, model, cfg.batch_size, shuffle=True, seed=cfg.seed * 100_003 + epoch,
                             num_workers=cfg.num_workers, device=dev)
        loss_sum: Any = torch.zeros((), device=dev)
        correct: Any = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        bar = tqdm(loader, desc=f"{method} {name} epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        for x, y in bar:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=use_amp):
                if probe is not None:
                    head = None
                elif head_fixed is not None:
                    head = head_fixed
                else:
                    head = text_head(model, tokens_train[0].to(dev), tokens_train[1], tokens_train[2], cfg.eval_batch_size)
                logits = classify(model, x, head, probe)
                loss = classification_loss(logits, y, cfg.loss)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(plist, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            # running sums stay on the device: no host sync per step
            n = y.numel()
            loss_sum = loss_sum + loss.detach().float() * n
            correct = correct + (logits.detach().argmax(-1) == y).sum()
            seen += n
            if progress and bar.n % 10 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}")
        loss_sum, correct = float(loss_sum), float(correct)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"training loss is {loss_sum} at epoch {epoch}; lower lr ({cfg.lr}) or enable grad_clip")
        module.eval()
        if val_loader is not None:
            head_eval = None if probe is not None else (head_fixed if head_fixed is not None else full_head())
            val_acc, _ = accuracy(model, val_loader, head_eval, probe)
        else:
            val_acc = float("nan")
        elapsed = time.perf_counter() - t0
        wall += elapsed
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                  "val_accuracy": val_acc, "lr": opt.param_groups[0]["lr"], "time_s": elapsed}
        history.append(record)
        score = val_acc if val_loader is not None else float(epoch)
        if score > best_val:
            best_val, best_epoch, best_state = score, epoch, _snapshot(params)
        if ckpt_path is not None:
            ck = {
                "run_key": run_key, "epoch": epoch, "params": _snapshot(params), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "history": history,
                "best_state": best_state, "best_epoch": best_epoch, "best_val": best_val, "wall_time_s": wall,
                "rng": _rng_state(),
            }
            with atomic_path(ckpt_path) as tmp:
                torch.save(ck, tmp)
        if callback is not None:
            callback(epoch, dict(record))

    if best_state is not None:
        _restore(params, best_state)
    module.eval()
    state["train_dataset"] = name
    state["classnames"] = classnames
    return TrainResult(
        model=model.name,
        weights=str(getattr(model, "weights_id", "")),
        method=method,
        options={k: (list(v) if isinstance(v, tuple) else v) for k, v in state["options"].items()},
        config=dataclasses.asdict(cfg),
        dataset=name,
        n_train=len(train_ds),
        n_val=len(val_ds) if val_ds is not None else 0,
        best_epoch=best_epoch,
        val_accuracy=float(best_val) if val_loader is not None else float("nan"),
        trainable_params=trainable,
        total_params=total,
        wall_time_s=wall,
        device=str(dev),
        history=history,
        resumed_from_epoch=resumed_from,
    )
