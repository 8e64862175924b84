"""The labelled image dataset returned by :func:`iimm.data.load_dataset`."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["LabeledDataset", "to_rgb_image", "targets_of"]


def to_rgb_image(img: Any) -> Image.Image:
    """A PIL RGB image from a PIL image or a uint8 array (H, W) / (H, W, 1|3|4).

    Grayscale data (MNIST, digits) becomes 3-channel, as every model's
    preprocessing expects.
    """
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        raise ValueError(f"array images must be uint8; got {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return Image.fromarray(arr).convert("RGB")
    raise ValueError(f"cannot make an image of an array of shape {arr.shape}")


def targets_of(ds: Any) -> np.ndarray:
    """Integer labels of a torchvision-style dataset, without decoding images where possible."""
    for attr in ("targets", "labels", "_labels"):
        val = getattr(ds, attr, None)
        if val is not None and len(val) == len(ds):
            return np.asarray(val, dtype=np.int64)
    samples = getattr(ds, "_samples", None) or getattr(ds, "samples", None)
    if samples is not None and len(samples) == len(ds):
        return np.asarray([s[1] for s in samples], dtype=np.int64)
    return np.asarray([int(ds[i][1]) for i in range(len(ds))], dtype=np.int64)


class LabeledDataset(torch.utils.data.Dataset):
    """A split of a labelled image dataset: ``ds[i] -> (image, label)``.

    ``image`` is ``transform(PIL RGB image)`` (the PIL image when no
    transform is set). The dataset carries what zero-shot evaluation needs.

    Attributes
    ----------
    name, split : dataset name and ``"train"`` / ``"val"`` / ``"test"``.
    classnames, templates : class names and prompt templates (``"{}"``).
    targets : int64 labels, one per item (``labels`` is an alias).
    indices : positions of the items in the source part they come from.
    fingerprint : hash identifying the items (for the embedding cache).
    """

    def __init__(
        self,
        name: str,
        split: str,
        source: Any,
        indices: np.ndarray,
        source_targets: np.ndarray,
        classnames: Sequence[str],
        templates: Sequence[str],
        transform: Callable | None = None,
        *,
        source_id: str = "",
    ) -> None:
        self.name = name
        self.split = split
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        source_targets = np.asarray(source_targets, dtype=np.int64)
        if len(source_targets) != len(source):
            raise ValueError(f"{name}: {len(source_targets)} labels for {len(source)} source items")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise ValueError(f"{name}: split indices out of range for {len(source)} source items")
        self.targets = source_targets[self.indices]
        self.classnames = list(classnames)
        self.templates = list(templates)
        if self.targets.size and (self.targets.min() < 0 or self.targets.max() >= len(self.classnames)):
            raise ValueError(
                f"{name}: labels span [{self.targets.min()}, {self.targets.max()}] but there are "
                f"{len(self.classnames)} class names"
            )
        self.transform = transform
        self.source_id = source_id
        h = hashlib.sha256()
        h.update(f"{name}|{split}|{source_id}|{len(source)}".encode())
        h.update(self.indices.tobytes())
        h.update(self.targets.tobytes())
        self.fingerprint = h.hexdigest()[:16]

    @property
    def labels(self) -> np.ndarray:
        return self.targets

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def __len__(self) -> int:
        return int(self.indices.size)

    def image(self, i: int) -> Image.Image:
        """The PIL RGB image of item ``i`` (no transform)."""
        j = int(self.indices[i])
        if isinstance(self.source, np.ndarray):
            return to_rgb_image(self.source[j])
        item = self.source[j]
        return to_rgb_image(item[0] if isinstance(item, tuple) else item)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        img = self.image(i)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[i])

    def with_transform(self, transform: Callable | None) -> "LabeledDataset":
        """A shallow copy with another transform."""
        import copy

        new = copy.copy(self)
        new.transform = transform
        return new

    def subset(self, n: int) -> "LabeledDataset":
        """The first ``n`` items (a deterministic slice, e.g. for tests and benchmarks)."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}")
        src_targets = np.zeros(len(self.source), dtype=np.int64)
        src_targets[self.indices] = self.targets
        return LabeledDataset(self.name, self.split, self.source, self.indices[:n], src_targets,
                              self.classnames, self.templates, self.transform, source_id=self.source_id)

    def __repr__(self) -> str:
        return f"LabeledDataset({self.name!r}, split={self.split!r}, n={len(self)}, classes={self.n_classes})"
