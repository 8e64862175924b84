"""The sandbox's downstream task suite (the stand-in for the paper's nine datasets).

Thirteen classification tasks, with class names and prompt templates kept as
package data (``iimm/sandbox/tasks.json``), like the paper's datasets:

* nine procedural tasks drawn from the sandbox world, ranging from well covered
  by pretraining (``sandbox-shapes``, ``sandbox-colors``) through partly
  covered (letters, textures, counting, positions) to barely covered
  (``sandbox-shades``: fine colour names rare in captions;
  ``sandbox-rotated-letters`` and ``sandbox-noisy-shapes``: rotations and noise
  never seen in pretraining);
* four real offline datasets resized to the sandbox's 32x32 RGB
  (``sandbox-mnist``, ``sandbox-fashion-mnist``, ``sandbox-opencv-digits``,
  ``sandbox-sklearn-digits``), loaded through :mod:`iimm.data`.

Each task's ``coverage`` (package data) is a design property: how often the
pretraining captions name its classes in its image conditions. What a model
actually learned is measured: the zero-shot accuracies of each pretrained
checkpoint are in its provenance JSON (``iimm sandbox pretrain`` prints them).
For instance the fine shades, named in few captions, are still separated well
by the trained models (their colours lie near the basic colours' families).

A procedural task's ``train`` and ``test`` splits are independent seeded
streams with balanced classes (sample ``i`` has label ``i mod C``); image ``i``
is a pure function of ``(seed, task, split, i)``. The validation split is cut
from ``train`` by the dataset registry's rule (10% of train, at most 5000,
fixed seed), as in the paper.
"""

from __future__ import annotations

import functools
import json
import zlib
from importlib import resources
from typing import Any, Callable

import numpy as np

from . import world as W

__all__ = [
    "task_info",
    "list_tasks",
    "PROCEDURAL_TASKS",
    "REAL_TASKS",
    "DEFAULT_SIZES",
    "generate_task",
    "task_words",
]

DEFAULT_SIZES = {"train": 1000, "test": 500}


@functools.lru_cache(maxsize=1)
def _load_json() -> dict[str, Any]:
    text = resources.files("iimm.sandbox").joinpath("tasks.json").read_text(encoding="utf-8")
    return json.loads(text)


def list_tasks() -> list[str]:
    """Names of all sandbox tasks (procedural first, then real)."""
    return list(_load_json())


def task_info(name: str) -> dict[str, Any]:
    """Class names, prompt templates, description and coverage of a task (a copy)."""
    data = _load_json()
    if name not in data:
        raise ValueError(f"unknown sandbox task {name!r}; known: {list(data)}")
    return json.loads(json.dumps(data[name]))


def task_words() -> list[str]:
    """Every word of every task's class names and templates (for the tokenizer's vocabulary)."""
    from .tokenizer import split_words

    words: set[str] = set()
    for info in _load_json().values():
        for c in info["classes"]:
            words.update(split_words(c))
        for t in info["templates"]:
            words.update(split_words(t.replace("{}", " ")))
    return sorted(words)


# ----------------------------------------------------------------------------- procedural tasks

_NEUTRAL = ("white", "gray", "black")


def _neutral_background(scene: W.Scene, rng: np.random.Generator) -> None:
    name = str(rng.choice([c for c in _NEUTRAL if c != scene.color_name]))
    scene.background = "plain"
    scene.bg_names = (name, name)
    rgb = W._jitter(W.BASIC_COLORS[name], rng, 10)
    scene.bg_colors = (rgb, rgb)


def _shapes(rng: np.random.Generator, cls: str) -> W.Scene:
    return W.sample_object(rng, shape=cls, p_shade=0.0)


def _colors(rng: np.random.Generator, cls: str) -> W.Scene:
    scene = W.sample_object(rng, color=cls, size=str(rng.choice(["medium", "large"])))
    _neutral_background(scene, rng)
    return scene


def _shades(rng: np.random.Generator, cls: str) -> W.Scene:
    scene = W.sample_object(rng, shade=cls, size=str(rng.choice(["medium", "large"])))
    _neutral_background(scene, rng)
    return scene


def _letters(rng: np.random.Generator, cls: str) -> W.Scene:
    return W.sample_glyph(rng, glyph=cls)


def _rotated_letters(rng: np.random.Generator, cls: str) -> W.Scene:
    scene = W.sample_glyph(rng, glyph=cls, max_rotation=180.0)
    scene.noise = 30.0
    return scene


def _textures(rng: np.random.Generator, cls: str) -> W.Scene:
    return W.sample_texture(rng, texture=cls)


def _counting(rng: np.random.Generator, cls: str) -> W.Scene:
    return W.sample_count(rng, count=W.DIGIT_WORDS.index(cls))


def _positions(rng: np.random.Generator, cls: str) -> W.Scene:
    return W.sample_object(rng, position=cls, size=str(rng.choice(["small", "medium"])), p_shade=0.0)


def _noisy_shapes(rng: np.random.Generator, cls: str) -> W.Scene:
    scene = W.sample_object(rng, shape=cls, size=str(rng.choice(["small", "medium"])), texture="plain",
                            p_shade=0.0, max_rotation=180.0)
    bg = np.asarray(scene.bg_colors[0], np.float32)
    fg = np.asarray(scene.color, np.float32)
    scene.color = tuple(int(v) for v in np.rint(0.55 * bg + 0.45 * fg))  # low contrast
    scene.noise = 45.0
    return scene


PROCEDURAL_TASKS: dict[str, Callable[[np.random.Generator, str], W.Scene]] = {
    "sandbox-shapes": _shapes,
    "sandbox-colors": _colors,
    "sandbox-shades": _shades,
    "sandbox-letters": _letters,
    "sandbox-rotated-letters": _rotated_letters,
    "sandbox-textures": _textures,
    "sandbox-counting": _counting,
    "sandbox-positions": _positions,
    "sandbox-noisy-shapes": _noisy_shapes,
}

# sandbox task -> name of the real dataset in iimm.data
REAL_TASKS: dict[str, str] = {
    "sandbox-mnist": "mnist",
    "sandbox-fashion-mnist": "fashion-mnist",
    "sandbox-opencv-digits": "opencv-digits",
    "sandbox-sklearn-digits": "sklearn-digits",
}

_SPLIT_STREAM = {"train": 1, "test": 2}


def generate_task(name: str, split: str, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a procedural task split.

    Parameters
    ----------
    name:
        A key of :data:`PROCEDURAL_TASKS`.
    split:
        ``"train"`` or ``"test"`` (validation is cut from train by the registry).
    n:
        Number of samples (default :data:`DEFAULT_SIZES`); labels are balanced
        (``i mod C``), so every class occurs when ``n >= C``.
    seed:
        World seed; the task and split select independent streams.

    Returns
    -------
    images : uint8 (n, 32, 32, 3)
    labels : int64 (n,)
    """
    if name not in PROCEDURAL_TASKS:
        raise ValueError(f"name must be a procedural sandbox task {list(PROCEDURAL_TASKS)}; got {name!r}")
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be 'train' or 'test' for a procedural task; got {split!r}")
    n = DEFAULT_SIZES[split] if n is None else n
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    classes = task_info(name)["classes"]
    make = PROCEDURAL_TASKS[name]
    stream = zlib.crc32(name.encode()) * 4 + _SPLIT_STREAM[split]
    images = np.empty((n, W.IMAGE_SIZE, W.IMAGE_SIZE, 3), np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(classes)
    for i in range(n):
        rng = W._sample_rng(seed, stream, i)
        scene = make(rng, classes[int(labels[i])])
        images[i] = W.render(scene, rng)
    return images, labels
