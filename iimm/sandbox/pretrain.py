"""Pretraining the sandbox base models on the sandbox world.

Each model is an open_clip model class trained with its open_clip loss
(:mod:`iimm.sandbox.models`) on seeded captioned images of
:mod:`iimm.sandbox.world`: AdamW, linear warm-up then cosine decay
(``open_clip_train.scheduler.cosine_lr``), gradient clipping, the logit scale
clamped at 100 as in open_clip's training script. Data order comes from a
seeded ``torch.Generator`` and ``torch.use_deterministic_algorithms`` is on,
so one (model, profile, seed) gives the same weights on one machine (thread
count recorded in the provenance).

Profiles (per model; times measured on 2 shared CPU cores are in the
checkpoint's provenance JSON):

======= ======== ======= ====== ====== =========================================
profile pairs    steps   batch  towers use
======= ======== ======= ====== ====== =========================================
smoke   3,000    300     64     small  tests (tens of seconds)
quick   12,000   200     128    base   a first look (about a minute per model)
full    40,000   1,000   128    base   the sandbox study
======= ======== ======= ====== ====== =========================================

Checkpoints go to ``checkpoints_dir()/sandbox/<name>-<profile>.pt``
(``{"state_dict": ..., "sandbox": metadata}``, loadable by
``open_clip.load_checkpoint``) with a provenance JSON beside them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import models as SM
from . import world as W
from .tokenizer import SandboxTokenizer

__all__ = [
    "Profile",
    "PROFILES",
    "WORLD_VERSION",
    "build_tokenizer",
    "checkpoint_path",
    "world_pairs",
    "images_to_tensor",
    "pretrain",
    "zero_shot_accuracy",
    "evaluate_zero_shot",
    "load_sandbox_model",
]

# bump when the world generator changes what a (seed, index) renders
WORLD_VERSION = 3


@dataclass(frozen=True)
class Profile:
    """Pretraining budget of one profile."""

    name: str
    n_pairs: int
    steps: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 0  # 0: 10% of steps
    eval_per_class: int = 20  # zero-shot evaluation samples per class (test split)
    arch: str = "base"  # tower size class (iimm.sandbox.models.SIZES)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_pairs=3000, steps=300, batch_size=64, lr=2e-3, eval_per_class=10, arch="small"),
    "quick": Profile("quick", n_pairs=12000, steps=400, batch_size=128, lr=1e-3, eval_per_class=20),
    "full": Profile("full", n_pairs=40000, steps=1000, batch_size=128, lr=1e-3, eval_per_class=40),
}


def _check_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}; got {profile!r}")
    return PROFILES[profile]


def _check_name(name: str) -> str:
    if name not in SM.SANDBOX_MODELS:
        raise ValueError(f"name must be one of {list(SM.SANDBOX_MODELS)}; got {name!r}")
    return name


@functools.lru_cache(maxsize=1)
def build_tokenizer() -> SandboxTokenizer:
    """The sandbox tokenizer, from the frozen word list ``iimm/sandbox/vocab.json`` (package data).

    The list holds every word of the world's captions and of the tasks' class
    names and templates; it is frozen so that checkpoints stay loadable.
    """
    from importlib import resources

    data = json.loads(resources.files("iimm.sandbox").joinpath("vocab.json").read_text(encoding="utf-8"))
    return SandboxTokenizer(data["words"], int(data["context_length"]), int(data["n_buckets"]))


def checkpoint_path(name: str, profile: str = "full", root: str | Path | None = None) -> Path:
    """Where ``iimm sandbox pretrain`` writes the checkpoint of a model and profile."""
    from ..paths import checkpoints_dir

    _check_name(name)
    _check_profile(profile)
    base = Path(root) if root is not None else checkpoints_dir() / "sandbox"
    return base / f"{name}-{profile}.pt"


# ----------------------------------------------------------------------------- data


def world_pairs(n: int, seed: int = 0, cache: bool | str | Path = True) -> tuple[np.ndarray, list[str]]:
    """``n`` world image-caption pairs, cached in an ``.npz`` file.

    Parameters
    ----------
    cache:
        ``True``: ``datasets_dir()/sandbox/world-v{V}-s{seed}-n{n}.npz``;
        a path: that file; ``False``: generate without caching.

    The file is written atomically with a JSON sidecar holding its SHA-256; a
    file whose checksum does not match is regenerated.
    """
    from .._io import atomic_path, atomic_write_json, sha256_file

    if cache is False:
        return W.generate_pairs(n, seed)
    if cache is True:
        from ..paths import datasets_dir

        path = datasets_dir() / "sandbox" / f"world-v{WORLD_VERSION}-s{seed}-n{n}.npz"
    else:
        path = Path(cache)
    side = path.with_suffix(".json")
    if path.is_file() and side.is_file():
        try:
            meta = json.loads(side.read_text())
            if meta.get("sha256") == sha256_file(path):
                with np.load(path, allow_pickle=False) as z:
                    images, captions = z["images"], [str(c) for c in z["captions"]]
                if images.shape == (n, W.IMAGE_SIZE, W.IMAGE_SIZE, 3) and len(captions) == n:
                    return images, captions
        except (ValueError, OSError, KeyError):
            pass  # corrupt entry: regenerate below
    images, captions = W.generate_pairs(n, seed)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=images, captions=np.asarray(captions, dtype=str))
    from ..provenance import provenance

    atomic_write_json(side, {"sha256": sha256_file(path), "n": n, "seed": seed, "world_version": WORLD_VERSION,
                             "provenance": provenance({"what": "sandbox world pairs", "n": n}, seed)})
    return images, captions


def images_to_tensor(images: np.ndarray):
    """uint8 (N, 32, 32, 3) -> normalised float tensor (N, 3, 32, 32).

    Equal (to float rounding) to the eval ``preprocess`` of ``iimm.load_model``
    applied to the 32x32 PIL images (resize to 32 is the identity).
    """
    import torch

    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3); got {arr.dtype} {arr.shape}")
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(SM.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SM.STD).view(1, 3, 1, 1)
    return (x - mean) / std


# ----------------------------------------------------------------------------- evaluation


def zero_shot_accuracy(model: Any, tokenizer: Callable, images: np.ndarray, labels: np.ndarray,
                       classnames: Sequence[str], templates: Sequence[str], batch_size: int = 512) -> float:
    """Top-1 zero-shot accuracy of an open_clip model (CLIP convention, prompt-ensembled head)."""
    import torch
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    model.eval()
    with torch.no_grad():
        head = build_zero_shot_classifier(model, tokenizer, list(classnames), list(templates),
                                          num_classes_per_batch=None)
        correct = 0
        for i in range(0, len(images), batch_size):
            feats = model.encode_image(images_to_tensor(images[i:i + batch_size]), normalize=True)
            pred = (feats @ head).argmax(dim=1).numpy()
            correct += int((pred == np.asarray(labels[i:i + batch_size])).sum())
    return correct / len(images)


def evaluate_zero_shot(model: Any, tokenizer: Callable, per_class: int = 20, seed: int = 0,
                       tasks: Sequence[str] | None = None) -> dict[str, float]:
    """Zero-shot accuracy on the test split of each procedural task (``per_class`` samples per class)."""
    from .tasks import PROCEDURAL_TASKS, generate_task, task_info

    out: dict[str, float] = {}
    for name in tasks or list(PROCEDURAL_TASKS):
        info = task_info(name)
        images, labels = generate_task(name, "test", per_class * len(info["classes"]), seed=seed)
        out[name] = zero_shot_accuracy(model, tokenizer, images, labels, info["classes"], info["templates"])
    return out


# ----------------------------------------------------------------------------- training


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    import random

    import torch

    prev = torch.are_deterministic_algorithms_enabled()
    state_py, state_np = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev)
            random.setstate(state_py)
            np.random.set_state(state_np)


def _loss_value(name: str, model: Any, loss_fn: Any, x: Any, tokens: Any):
    if name == "sandbox-coca":
        out = model(x, tokens)
        parts = loss_fn(out["image_features"], out["text_features"], out["logits"], out["labels"], out["logit_scale"])
        return parts[0] + parts[1]
    img = model.encode_image(x, normalize=True)
    txt = model.encode_text(tokens, normalize=True)
    if name == "sandbox-siglip":
        return loss_fn(img, txt, model.logit_scale.exp(), model.logit_bias)
    return loss_fn(img, txt, model.logit_scale.exp())


def pretrain(name: str, profile: str | Profile = "quick", seed: int = 0, *, out: str | Path | None = None,
             cache_pairs: bool | str | Path = True, evaluate: bool = True,
             log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Pretrain one sandbox model and write its checkpoint and provenance.

    Parameters
    ----------
    name:
        ``sandbox-clip``, ``sandbox-siglip`` or ``sandbox-coca``.
    profile:
        ``smoke``, ``quick``, ``full`` or a :class:`Profile`.
    seed:
        Seeds the world (pairs), the initialisation and the data order.
    out:
        Checkpoint path (default :func:`checkpoint_path`).
    cache_pairs:
        Passed to :func:`world_pairs` as ``cache``.
    evaluate:
        Measure zero-shot accuracy on the procedural tasks after training.

    Returns
    -------
    dict
        The provenance record written beside the checkpoint: config, losses,
        timings, zero-shot accuracies, checkpoint path and SHA-256.
    """
    import torch
    from open_clip_train.scheduler import cosine_lr

    from .._io import atomic_path, atomic_write_json, sha256_file
    from ..provenance import provenance

    _check_name(name)
    prof = _check_profile(profile)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    say = log or (lambda s: None)
    path = Path(out) if out is not None else checkpoint_path(name, prof.name)
    tok = build_tokenizer()
    cfg = SM.model_config(name, tok.vocab_size, prof.arch)

    t0 = time.perf_counter()
    images, captions = world_pairs(prof.n_pairs, seed, cache=cache_pairs)
    tokens = tok(captions)
    t_data = time.perf_counter() - t0
    n_long = int(sum(tok.n_tokens(c) > tok.context_length for c in captions))
    if n_long:
        raise RuntimeError(f"{n_long} captions exceed the context length {tok.context_length}")

    losses: list[float] = []
    t1 = time.perf_counter()
    with _deterministic(seed):
        model = SM.build_model(cfg)
        model.train()
        loss_fn = SM.build_loss(name, pad_id=tok.pad_token_id)
        decay = [p for n_, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n_]
        no_decay = [p for n_, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n_)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": prof.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=prof.lr, betas=(0.9, 0.98), eps=1e-6)
        warmup = prof.warmup or max(1, prof.steps // 10)
        sched = cosine_lr(opt, prof.lr, warmup, prof.steps)
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(prof.n_pairs, generator=gen)
        pos = 0
        for step in range(prof.steps):
            if pos + prof.batch_size > prof.n_pairs:
                order, pos = torch.randperm(prof.n_pairs, generator=gen), 0
            idx = order[pos:pos + prof.batch_size]
            pos += prof.batch_size
            sched(step)
            x = images_to_tensor(images[idx.numpy()])
            loss = _loss_value(name, model, loss_fn, x, tokens[idx])
            if not torch.isfinite(loss):
                raise RuntimeError(f"pretraining {name} diverged at step {step} (loss {loss.item()})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, float(np.log(100)))
            losses.append(float(loss.item()))
            if step % max(1, prof.steps // 10) == 0 or step == prof.steps - 1:
                say(f"[{name}/{prof.name}] step {step + 1}/{prof.steps} loss {losses[-1]:.4f}")
    t_train = time.perf_counter() - t1

    zs: dict[str, float] = {}
    t2 = time.perf_counter()
    if evaluate:
        zs = evaluate_zero_shot(model, tok, per_class=prof.eval_per_class, seed=seed)
        say(f"[{name}/{prof.name}] zero-shot: " + ", ".join(f"{k}={v:.3f}" for k, v in zs.items()))
    t_eval = time.perf_counter() - t2

    meta = {
        "name": name,
        "profile": asdict(prof),
        "model_cfg": cfg,
        "tokenizer": tok.state(),
        "world_version": WORLD_VERSION,
        "seed": seed,
    }
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "sandbox": meta}, tmp)
    record = provenance({"sandbox_pretrain": name, "profile": asdict(prof), "model_cfg": cfg,
                         "world_version": WORLD_VERSION}, seed)
    record.update({
        "checkpoint": str(path),
        "sha256": sha256_file(path),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "torch_threads": torch.get_num_threads(),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_curve": losses[:: max(1, len(losses) // 50)],
        "seconds": {"data": round(t_data, 2), "train": round(t_train, 2), "eval": round(t_eval, 2)},
        "zero_shot": zs,
    })
    atomic_write_json(path.with_suffix(".json"), record)
    say(f"[{name}/{prof.name}] wrote {path} (train {t_train:.1f}s)")
    return record


def load_sandbox_model(path: str | Path):
    """Load a checkpoint written by :func:`pretrain` into a new open_clip model.

    Returns ``(model, tokenizer, metadata)``; the model is in eval mode.

    Raises
    ------
    FileNotFoundError
        If ``path`` is missing (the message names it and the command that makes it).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sandbox checkpoint not found: {path}. Make it with `iimm sandbox pretrain`.")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    meta = ck["sandbox"]
    model = SM.build_model(meta["model_cfg"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, SandboxTokenizer.from_state(meta["tokenizer"]), meta
