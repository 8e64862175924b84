"""A tiny offline study: the plugin of ``configs/tiny.yaml`` and of the study runner's tests.

Registers, idempotently:

- ``study-tiny``: a random-init open_clip CLIP of :func:`iimm.models.tiny_model_cfg`
  (2-layer ViT and text transformer, width 64, 16 px images, patch 8), built with
  ``pretrained: false``;
- ``tiny-digits-low`` / ``tiny-digits-high``: scikit-learn's 8x8 digits 0-4 and
  5-9 (the latter with inverted intensities), ``n_train`` training-pool images and
  ``n_test`` test images each, drawn in a fixed order; validation is the
  registry's 10 % of the training pool.

It runs the whole pipeline (embed, measures, baselines, fine-tuning, ID/OOD
evaluation) in about a minute on a CPU. The numbers mean nothing: the model is
untrained. :func:`materialize_hook` is a minimal ``prepare:`` hook (see
:mod:`iimm.study.stages`) that writes a model's weights to a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TINY_MODEL", "TINY_DATASETS", "register", "digits_task", "materialize_hook"]

TINY_MODEL = "study-tiny"
TINY_DATASETS = ("tiny-digits-low", "tiny-digits-high")
_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digits_task(digits: tuple[int, ...], invert: bool, part: str, n_train: int = 150, n_test: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 8, 8), labels 0..len(digits)-1)`` of a digits subset; deterministic."""
    from sklearn.datasets import load_digits

    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    d = load_digits()
    keep = np.flatnonzero(np.isin(d.target, digits))
    rng = np.random.default_rng(1234)
    keep = keep[rng.permutation(keep.size)]
    keep = keep[:n_train] if part == "train" else keep[n_train:n_train + n_test]
    images = (d.images[keep] * (255.0 / 16.0)).round().astype(np.uint8)
    if invert:
        images = 255 - images
    labels = np.searchsorted(np.asarray(digits), d.target[keep]).astype(np.int64)
    return images, labels


def materialize_hook(model: Any, options: dict, *, seed: int, device: str) -> dict:
    """A ``prepare:`` hook that writes a random-init model's weights to a file (the pluggable model stage in miniature).

    The weights are those of ``load_model(model.name, pretrained=False, seed=options["init_seed"])``
    (default: the study seed), saved atomically to ``options["dir"]`` (default
    ``<checkpoints_dir>/study-tiny``); later units load the model from that file.
    """
    import torch

    from .._io import atomic_path, sha256_file
    from ..models import load_model
    from ..paths import checkpoints_dir

    unknown = sorted(set(options) - {"init_seed", "dir"})
    if unknown:
        raise ValueError(f"materialize_hook options: unknown key(s) {unknown} (allowed: init_seed, dir)")
    init_seed = int(options.get("init_seed", seed))
    folder = Path(options["dir"]) if options.get("dir") else checkpoints_dir() / "study-tiny"
    path = folder / f"{model.name}-seed{init_seed}.pt"
    net = load_model(model.name, device="cpu", pretrained=False, seed=init_seed)
    with atomic_path(path) as tmp:
        torch.save(net.model.state_dict(), tmp)
    return {"weights": str(path), "sha256": sha256_file(path), "init_seed": init_seed}


def register() -> None:
    """Register the tiny model and the two tiny datasets (replacing earlier registrations)."""
    from ..data import register_dataset
    from ..models import register_model, tiny_model_cfg

    register_model(TINY_MODEL, model_cfg=tiny_model_cfg("clip", embed_dim=32, image_size=16, context_length=16),
                   description="tiny random-init CLIP for the study runner's tests", overwrite=True)
    for name, digits, invert in (("tiny-digits-low", (0, 1, 2, 3, 4), False), ("tiny-digits-high", (5, 6, 7, 8, 9), True)):
        def factory(part: str, root: Any = None, _d: tuple = digits, _i: bool = invert):
            return digits_task(_d, _i, part)

        register_dataset(name, factory, [_WORDS[k] for k in digits], ["a photo of the digit {}."],
                         title=name, source="sklearn.datasets.load_digits", overwrite=True)


register()
