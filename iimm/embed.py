"""Zero-shot embeddings of a dataset split, with an on-disk cache.

``embed(model, dataset, split)`` returns the unit image embeddings ``I``
(N, d), the labels, and the class text embeddings ``T`` (C, d, one
zero-shot head row per class, CLIP prompt ensembling) that every measure of
the paper (Eq. 1-3: inter-modal, intra-modal, IIMM) and every transferability
baseline is computed from.

Cache entries are keyed by (model name, weights id, model architecture,
dataset, split, the split's items, preprocessing, class names and templates,
dtype, code version). Each entry is a safetensors file of arrays plus a JSON
sidecar with the key, provenance, the file's size and SHA-256; both are
written atomically, the sidecar last. An entry whose file is missing,
truncated or altered is detected, removed and recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Embeddings", "embed", "cache_key", "cache_paths", "load_cached", "add_cli", "EMBED_CODE_VERSION"]

# bump when a change of this module changes the numbers it computes
EMBED_CODE_VERSION = "1"
_ARRAYS = ("images", "labels", "texts")


@dataclass
class Embeddings:
    """Embeddings of one (model, dataset, split).

    Attributes
    ----------
    images : float32 (N, d), unit rows (image embeddings ``I``).
    labels : int64 (N,), class index of each image.
    texts : float32 (C, d), unit rows (class text embeddings ``T``, zero-shot head).
    classnames : the C class names, in label order.
    metadata : model, weights, dataset, split, cache key, provenance, ``cache_hit``, ``cache_path``.
    """

    images: np.ndarray
    labels: np.ndarray
    texts: np.ndarray
    classnames: list[str]
    metadata: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    @property
    def dim(self) -> int:
        return int(self.images.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.texts.shape[0])

    def predictions(self) -> np.ndarray:
        """Zero-shot predictions ``argmax_c <I_i, T_c>`` (int64, N)."""
        return np.argmax(self.images @ self.texts.T, axis=1).astype(np.int64)

    def zero_shot_accuracy(self) -> float:
        """Fraction of images whose most similar class text is their label."""
        return float(np.mean(self.predictions() == self.labels))


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)[:80] or "_"


def _code_version() -> str:
    from . import __version__

    return f"iimm-{__version__}/embed-{EMBED_CODE_VERSION}"


def cache_key(model: Any, dataset: Any, dtype: str = "fp32") -> dict:
    """The fields that identify a cache entry (JSON-serialisable)."""
    return {
        "model": model.name,
        "weights": model.weights_id,
        "architecture": model.info.get("architecture", ""),
        "tokenizer_is_real": bool(model.tokenizer_is_real),
        "dataset": dataset.name,
        "split": dataset.split,
        "n_items": len(dataset),
        "items": dataset.fingerprint,
        "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(model.preprocess_cfg.items())},
        "preprocess_repr": repr(model.preprocess),
        "classnames": list(dataset.classnames),
        "templates": [t if isinstance(t, str) else repr(t) for t in dataset.templates],
        "dtype": dtype,
        "code_version": _code_version(),
    }


def cache_paths(key: dict, cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(arrays file, JSON sidecar) of the entry for ``key``."""
    from .paths import embeddings_dir
    from .provenance import config_hash

    root = Path(cache_dir).expanduser() if cache_dir is not None else embeddings_dir()
    stem = root / _safe(key["model"]) / _safe(key["dataset"]) / f"{_safe(key['split'])}-{config_hash(key)}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def load_cached(key: dict, cache_dir: str | os.PathLike | None = None, verify: bool = True) -> Embeddings | None:
    """The cached entry for ``key``, or ``None`` if absent.

    A present but damaged entry (sidecar unreadable, key mismatch, arrays file
    missing, of the wrong size or checksum, or with bad shapes) is removed with
    a ``RuntimeWarning`` and ``None`` is returned, so the caller recomputes.
    """
    from safetensors.numpy import load_file

    from ._io import sha256_file

    arrays_path, meta_path = cache_paths(key, cache_dir)
    if not meta_path.exists():
        if arrays_path.exists():  # arrays without sidecar: an interrupted write
            _remove(arrays_path)
        return None
    problem = ""
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != json.loads(json.dumps(key)):
            problem = "its key does not match"
        elif not arrays_path.is_file():
            problem = f"{arrays_path.name} is missing"
        elif arrays_path.stat().st_size != meta["file"]["bytes"]:
            problem = f"{arrays_path.name} has {arrays_path.stat().st_size} bytes, expected {meta['file']['bytes']}"
        elif verify and sha256_file(arrays_path) != meta["file"]["sha256"]:
            problem = f"{arrays_path.name} fails its SHA-256 checksum"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem, meta = f"its sidecar is unreadable ({exc})", {}
    arrays: dict = {}
    if not problem:
        try:
            arrays = load_file(str(arrays_path))
            n, d, c = meta["shapes"]["n"], meta["shapes"]["d"], meta["shapes"]["c"]
            if (arrays["images"].shape != (n, d) or arrays["labels"].shape != (n,)
                    or arrays["texts"].shape != (c, d)):
                problem = "array shapes differ from the sidecar"
        except Exception as exc:  # safetensors raises its own error types
            problem = f"its arrays cannot be read ({exc})"
    if problem:
        warnings.warn(f"embedding cache entry {meta_path} is damaged ({problem}); recomputing", RuntimeWarning,
                      stacklevel=3)
        _remove(arrays_path, meta_path)
        return None
    md = dict(meta)
    md.update(cache_hit=True, cache_path=str(arrays_path))
    return Embeddings(arrays["images"], arrays["labels"].astype(np.int64), arrays["texts"],
                      list(meta["classnames"]), md)


def _store(emb: Embeddings, key: dict, cache_dir: str | os.PathLike | None) -> Path:
    from safetensors.numpy import save_file

    from ._io import atomic_path, atomic_write_json, sha256_file
    from .provenance import config_hash, provenance

    arrays_path, meta_path = cache_paths(key, cache_dir)
    _remove(meta_path)  # an old sidecar must never describe the new arrays
    with atomic_path(arrays_path) as tmp:
        save_file({"images": np.ascontiguousarray(emb.images), "labels": np.ascontiguousarray(emb.labels),
                   "texts": np.ascontiguousarray(emb.texts)}, str(tmp))
    meta = {
        "key": key,
        "key_hash": config_hash(key),
        "classnames": list(emb.classnames),
        "shapes": {"n": emb.n, "d": emb.dim, "c": emb.n_classes},
        "file": {"name": arrays_path.name, "bytes": arrays_path.stat().st_size, "sha256": sha256_file(arrays_path)},
        "provenance": provenance(key, None),
        "compute": {k: emb.metadata[k] for k in ("seconds", "seconds_images", "device", "batch_size", "num_workers") if k in emb.metadata},
    }
    atomic_write_json(meta_path, meta)
    return arrays_path


def _default_workers(device: Any) -> int:
    """DataLoader workers: on an accelerator, all but one CPU (at most 8); on the CPU, the cores torch's
    own threads leave free (workers that compete with the encoder for cores slow it down)."""
    import torch

    cpus = os.cpu_count() or 1
    if torch.device(device).type == "cpu":
        return max(0, min(4, cpus - torch.get_num_threads()))
    return max(0, min(8, cpus - 1))


def embed(
    model: Any,
    dataset: Any,
    split: str = "test",
    *,
    batch_size: int = 256,
    device: Any = None,
    dtype: str = "fp32",
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
    root: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    progress: bool = True,
    verify: bool = True,
) -> Embeddings:
    """Embed one split of a dataset with a dual encoder (cached).

    Parameters
    ----------
    model:
        A :class:`iimm.models.DualEncoder`, or a model name for
        :func:`iimm.models.load_model` (with ``weights``, ``pretrained``).
    dataset:
        A dataset from :func:`iimm.data.load_dataset` (its own split is used
        and ``split`` must match), or a dataset name (loaded with ``root``).
    batch_size, num_workers:
        DataLoader batch size and worker processes (decoding and
        preprocessing overlap the encoder; default: ``min(8, cpus - 1)`` on an
        accelerator, the cores left free by torch's threads on the CPU).
    device:
        Where to run the encoder (default: the model's device).
    dtype:
        ``"fp32"``, or ``"fp16"`` / ``"bf16"`` autocast; outputs are float32.
    cache, cache_dir:
        Use the embedding cache (default dir :func:`iimm.paths.embeddings_dir`).
    verify:
        Check the SHA-256 of a cache hit (otherwise only its size).

    Returns
    -------
    Embeddings with unit-norm ``images`` (N, d) and ``texts`` (C, d).
    """
    import torch

    from .data import load_dataset
    from .models import DualEncoder, load_model, zero_shot_head

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if dtype not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"dtype must be 'fp32', 'fp16' or 'bf16'; got {dtype!r}")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                    or num_workers < 0):
        raise ValueError(f"num_workers must be an int >= 0; got {num_workers!r}")
    if isinstance(model, str):
        model = load_model(model, device=device or "cpu", pretrained=pretrained, weights=weights)
    elif not isinstance(model, DualEncoder):
        raise ValueError(f"model must be a DualEncoder or a model name; got {type(model).__name__}")
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, split, root=root)
    elif getattr(dataset, "split", split) != split:
        raise ValueError(f"split={split!r} but the dataset given is its {dataset.split!r} split")
    for attr in ("classnames", "templates", "targets", "fingerprint", "with_transform"):
        if not hasattr(dataset, attr):
            raise ValueError(f"dataset must come from iimm.data.load_dataset (it lacks .{attr})")
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} split {split!r} is empty")
    if device is not None:
        model.to(device)
    dev = model.device
    if num_workers is None:
        num_workers = _default_workers(dev)

    key = cache_key(model, dataset, dtype)
    if cache:
        hit = load_cached(key, cache_dir, verify=verify)
        if hit is not None:
            return hit

    t0 = time.perf_counter()
    model.eval()
    loader = torch.utils.data.DataLoader(
        dataset.with_transform(model.preprocess), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=dev.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    autocast = dtype != "fp32"
    amp_dtype = torch.float16 if dtype == "fp16" else torch.bfloat16
    out: np.ndarray | None = None  # allocated at the first batch, when d is known
    labels = np.empty(len(dataset), dtype=np.int64)
    pos = 0
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x, **_):
            return x
    with torch.inference_mode(), torch.autocast(dev.type, dtype=amp_dtype, enabled=autocast):
        bar = tqdm(loader, total=len(loader), desc=f"embed {model.name}/{dataset.name}/{split}",
                   disable=not progress, leave=False)
        for images, ys in bar:
            feats = model.encode_image(images.to(dev, non_blocking=True), normalize=True)
            b = feats.shape[0]
            if out is None:
                out = np.empty((len(dataset), feats.shape[1]), dtype=np.float32)
            out[pos:pos + b] = feats.float().cpu().numpy()
            labels[pos:pos + b] = ys.numpy()
            pos += b
        t_images = time.perf_counter() - t0
        texts = zero_shot_head(model, dataset.classnames, dataset.templates).float().cpu().numpy()
    if pos != len(dataset):  # pragma: no cover - DataLoader contract
        raise RuntimeError(f"embedded {pos} of {len(dataset)} images")
    # renormalise in float32 (autocast outputs were normalised in reduced precision)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    meta = {
        "key": key,
        "seconds": round(time.perf_counter() - t0, 3),
        "seconds_images": round(t_images, 3),
        "device": str(dev),
        "batch_size": batch_size,
        "num_workers": num_workers,
        "cache_hit": False,
        "cache_path": None,
    }
    emb = Embeddings(out, labels, texts.astype(np.float32), list(dataset.classnames), meta)
    if cache:
        emb.metadata["cache_path"] = str(_store(emb, key, cache_dir))
    return emb


# ----------------------------------------------------------------------- CLI
def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``iimm embed``."""
    p = subparsers.add_parser(
        "embed", help="embed a dataset split with a model (cached)",
        description="Compute (or load from the cache) the zero-shot image and class text embeddings of a split.",
    )
    p.add_argument("--model", required=True, help="model name (clip, siglip, coca, eva02, sandbox-*, ARCH/TAG)")
    p.add_argument("--dataset", required=True, help="dataset name (see iimm.data.list_datasets())")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache dir (default $IIMM_EMBED_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="compute without reading or writing the cache")
    p.add_argument("--weights", default=None, metavar="PATH", help="local weights file for the model")
    p.add_argument("--random-init", action="store_true", help="randomly initialised model (no weights)")
    p.add_argument("--root", default=None, metavar="PATH", help="folder with the dataset's files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cli)
    return p


def _cli(args: argparse.Namespace) -> int:
    emb = embed(
        args.model, args.dataset, args.split, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        cache=not args.no_cache, cache_dir=args.cache, num_workers=args.num_workers, root=args.root,
        weights=args.weights, pretrained=not args.random_init, progress=True,
    )
    summary = {
        "model": args.model, "dataset": args.dataset, "split": args.split, "n_images": emb.n, "dim": emb.dim,
        "n_classes": emb.n_classes, "zero_shot_accuracy": round(emb.zero_shot_accuracy(), 6),
        "cache_hit": bool(emb.metadata.get("cache_hit")), "cache_path": emb.metadata.get("cache_path"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0
