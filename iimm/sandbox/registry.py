"""Registering the sandbox models and tasks into :mod:`iimm.models` and :mod:`iimm.data`.

Models: ``sandbox-clip``, ``sandbox-siglip``, ``sandbox-coca`` load the
checkpoint of the profile named by ``$IIMM_SANDBOX_PROFILE`` (default
``full``); ``NAME@smoke``, ``NAME@quick`` and ``NAME@full`` pin a profile. A
missing checkpoint fails with the file looked for and the
``iimm sandbox pretrain`` command that makes it.

Tasks: the thirteen tasks of :mod:`iimm.sandbox.tasks`, procedural ones
generated in memory (cached per process), real ones read through the
:mod:`iimm.data` loaders and resized to 32x32 RGB.
"""

from __future__ import annotations

import functools
import os
import zlib
from typing import Any

import numpy as np

__all__ = [
    "PROFILE_ENV",
    "default_profile",
    "register_sandbox_models",
    "register_sandbox_tasks",
    "register_all",
    "ResizedSource",
    "capped_index",
]

PROFILE_ENV = "IIMM_SANDBOX_PROFILE"


def default_profile() -> str:
    """The profile plain sandbox names load: ``$IIMM_SANDBOX_PROFILE`` or ``full``."""
    from .pretrain import PROFILES

    prof = os.environ.get(PROFILE_ENV, "full")
    if prof not in PROFILES:
        raise ValueError(f"${PROFILE_ENV} must be one of {list(PROFILES)}; got {prof!r}")
    return prof


def _ckpt_source(name: str, profile: str):
    def source():
        from .pretrain import checkpoint_path

        return checkpoint_path(name, profile)

    return source


def register_sandbox_models(overwrite: bool = True) -> list[str]:
    """Register the sandbox models (and their ``@profile`` variants); return the names."""
    from ..models.registry import register_model
    from . import models as SM
    from .pretrain import PROFILES, build_tokenizer

    tok = build_tokenizer()
    names = []
    for name in SM.SANDBOX_MODELS:
        for profile in (None, *PROFILES):
            reg = name if profile is None else f"{name}@{profile}"
            cfg = SM.model_config(name, tok.vocab_size, PROFILES[profile or default_profile()].arch)
            shown = "$IIMM_SANDBOX_PROFILE (default full)" if profile is None else profile
            hint = (f"The sandbox checkpoints are not in git: make it with "
                    f"`iimm sandbox pretrain --model {name} --profile {profile or default_profile()}`"
                    f" (or pretrain all models with `iimm sandbox pretrain`).")
            register_model(
                reg, model_cfg=cfg, checkpoint=_ckpt_source(name, profile or default_profile()), missing_hint=hint,
                preprocess_cfg={"mean": SM.MEAN, "std": SM.STD, "size": 32}, tokenizer=tok,
                description=f"offline sandbox model {name} (open_clip, pretrained on the sandbox world), profile {shown}",
                overwrite=overwrite, sandbox=True, family=name, profile=profile,
            )
            names.append(reg)
    return names


class ResizedSource:
    """A real dataset's images resized to ``size`` x ``size`` RGB, lazily per item.

    ``source`` is an array (N, H, W[, C]) or a dataset of ``(image, label)``;
    resizing uses PIL's bilinear filter (anti-aliased when shrinking).
    ``index`` (optional) keeps only those items of ``source``, in that order.
    """

    def __init__(self, source: Any, targets: np.ndarray, size: int = 32, index: np.ndarray | None = None) -> None:
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) != len(source):
            raise ValueError(f"{len(targets)} targets for {len(source)} images")
        if index is None:
            index = np.arange(len(targets), dtype=np.int64)
        index = np.asarray(index, dtype=np.int64)
        if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= len(targets))):
            raise ValueError(f"index must be a 1-D array of positions in [0, {len(targets)})")
        self.source = source
        self.index = index
        self.targets = targets[index]
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        from ..data.base import to_rgb_image

        item = self.source[int(self.index[i])]
        if isinstance(item, tuple):
            item = item[0]
        img = to_rgb_image(item)
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR)
        return img, int(self.targets[i])


@functools.lru_cache(maxsize=64)
def _procedural(name: str, part: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from .tasks import generate_task

    images, labels = generate_task(name, part, n, seed=seed)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _procedural_factory(name: str, n_train: int, n_test: int, seed: int):
    def factory(part: str, root: Any = None):
        if part not in ("train", "test"):
            raise ValueError(f"{name}: part must be 'train' or 'test'; got {part!r}")
        return _procedural(name, part, n_train if part == "train" else n_test, seed)

    return factory


def capped_index(n: int, cap: int, name: str, part: str, seed: int) -> np.ndarray:
    """Sorted positions of a seeded random subset of ``min(n, cap)`` of ``n`` items.

    The subset depends only on ``(name, part, seed, n, cap)``; a random subset
    (not the first ``cap``) because some sources are ordered by class.
    """
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([int(seed), zlib.crc32(f"{name}/{part}".encode())])
    return np.sort(rng.choice(n, size=cap, replace=False)).astype(np.int64)


def _real_factory(task: str, source_name: str, n_train: int, n_test: int, seed: int):
    caps = {"train": n_train, "test": n_test, "all": n_train + n_test}

    def factory(part: str, root: Any = None):
        from ..data.registry import _as_source, _resolve

        src = _resolve(source_name).factory(part, root)
        data, targets, _ = _as_source(src, source_name)
        index = capped_index(len(targets), caps.get(part, len(targets)), task, part, seed)
        return ResizedSource(data, targets, 32, index=index)

    return factory


def register_sandbox_tasks(n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                           overwrite: bool = True) -> list[str]:
    """Register the sandbox tasks into the dataset registry; return their names.

    Parameters
    ----------
    n_train, n_test:
        Sizes of a procedural task's training pool (validation is then 10% of
        it) and test split (default :data:`iimm.sandbox.tasks.DEFAULT_SIZES`); the real tasks keep a seeded random subset of at
        most as many (a source without a test split: at most
        ``n_train + n_test`` images, of which 20% are held out for test).
    seed:
        World seed of the procedural tasks and of the real tasks' subsets.
    """
    from ..data.registry import dataset_info, register_dataset
    from .tasks import DEFAULT_SIZES, PROCEDURAL_TASKS, REAL_TASKS, list_tasks, task_info

    n_train = DEFAULT_SIZES["train"] if n_train is None else n_train
    n_test = DEFAULT_SIZES["test"] if n_test is None else n_test
    for k, v in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(v, int) or v < 30:
            raise ValueError(f"{k} must be an int >= 30; got {v!r}")
    names = []
    for name in list_tasks():
        info = task_info(name)
        if name in PROCEDURAL_TASKS:
            register_dataset(name, _procedural_factory(name, n_train, n_test, seed), info["classes"],
                             info["templates"], has_test=True, title=name,
                             source=f"iimm.sandbox procedural task (seed {seed}, {n_train} train, {n_test} test)",
                             overwrite=overwrite, sandbox=True, coverage=info["coverage"],
                             description=info["description"])
        else:
            src = REAL_TASKS[name]
            has_test = dataset_info(src).has_test
            cap = (f"at most {n_train} train / {n_test} test images" if has_test
                   else f"at most {n_train + n_test} images")
            register_dataset(name, _real_factory(name, src, n_train, n_test, seed), info["classes"],
                             info["templates"], has_test=has_test, title=name,
                             source=f"{src} resized to 32x32 RGB, seeded subset of {cap} (seed {seed})", overwrite=overwrite, sandbox=True,
                             coverage=info["coverage"], description=info["description"], base_dataset=src)
        names.append(name)
    return names


def register_all() -> None:
    """Register the sandbox models and tasks (idempotent)."""
    register_sandbox_models(overwrite=True)
    register_sandbox_tasks(overwrite=True)
