"""Shared pieces of training and evaluation: datasets, loaders, class heads, accuracy."""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "resolve_dataset",
    "dataset_name",
    "make_loader",
    "class_tokens",
    "text_head",
    "classify",
    "accuracy",
    "seed_everything",
]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int; got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(int(seed))


def resolve_dataset(spec: Any, split: str, name: str = "dataset") -> Any:
    """A torch Dataset with ``classnames``/``templates``: given directly or by registry name."""
    if spec is None:
        raise ValueError(f"{name} is None")
    if isinstance(spec, str):
        from iimm.data import load_dataset  # lazy: only when a name is given

        ds = load_dataset(spec, split)
        if getattr(ds, "name", None) is None:
            try:
                ds.name = spec
            except AttributeError:  # pragma: no cover - frozen datasets
                pass
        return ds
    for attr in ("classnames", "templates"):
        if not getattr(spec, attr, None):
            raise ValueError(f"{name} must have a non-empty .{attr} attribute (class names and prompt templates)")
    try:
        n = len(spec)
    except TypeError as exc:
        raise ValueError(f"{name} must be a sized torch Dataset; got {type(spec).__name__}") from exc
    if n == 0:
        raise ValueError(f"{name} is empty")
    return spec


def dataset_name(ds: Any, default: str = "dataset") -> str:
    """The dataset's registry name (``.name``) or ``default``."""
    return str(getattr(ds, "name", None) or default)


class _Collate:
    """Stack (image, label) pairs; PIL images go through the model's eval transform."""

    def __init__(self, transform: Callable | None) -> None:
        self.transform = transform

    def __call__(self, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for item in batch:
            x, y = item[0], item[1]
            if not torch.is_tensor(x):
                if self.transform is None:
                    raise ValueError("dataset yields non-tensor images and the model has no preprocess transform")
                x = self.transform(x)
            xs.append(x)
            ys.append(int(y))
        return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)


def make_loader(
    ds: Any, model: Any, batch_size: int, *, shuffle: bool, seed: int = 0, num_workers: int = 0, device: torch.device | None = None
) -> torch.utils.data.DataLoader:
    """Deterministic DataLoader: with ``shuffle`` the order depends only on ``seed``."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen if shuffle else None,
        num_workers=num_workers,
        collate_fn=_Collate(getattr(model, "preprocess", None)),
        pin_memory=device is not None and device.type == "cuda",
        drop_last=False,
    )


def class_tokens(model: Any, classnames: Sequence[str], templates: Sequence[Any], max_templates: int | None = None) -> tuple[torch.Tensor, int, int]:
    """Token ids of every (class, template) prompt, class-major: ``(C * T, L)``, ``C``, ``T``."""
    from iimm.models import format_templates

    templates = list(templates)
    if max_templates is not None:
        if isinstance(max_templates, bool) or not isinstance(max_templates, int) or max_templates < 1:
            raise ValueError(f"max_templates must be a positive int or None; got {max_templates!r}")
        templates = templates[:max_templates]
    prompts = format_templates(list(classnames), templates)
    flat = [p for ps in prompts for p in ps]
    return model.tokenize(flat), len(prompts), len(templates)


def text_head(model: Any, tokens: torch.Tensor, n_classes: int, n_templates: int, batch_size: int = 256) -> torch.Tensor:
    """Class text embeddings ``w_c = normalize(mean_t normalize(f_text(prompt_{c,t})))``, (C, d) float32.

    Same convention as :func:`iimm.models.zero_shot_head`; differentiable when
    grad is enabled (used while the text tower trains).
    """
    chunks = [model.encode_text(tokens[i:i + batch_size], normalize=True).float() for i in range(0, len(tokens), batch_size)]
    emb = torch.cat(chunks).reshape(n_classes, n_templates, -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def classify(model: Any, images: torch.Tensor, head: torch.Tensor | None, probe: torch.nn.Module | None = None) -> torch.Tensor:
    """Class logits of a batch: ``logit_scale * f_img . w_c (+ logit_bias)``, or the probe's."""
    feats = model.encode_image(images, normalize=True)
    if probe is not None:
        return probe(feats.to(probe.weight.dtype))
    return model.logits(feats.float(), head)


@torch.no_grad()
def accuracy(model: Any, loader: torch.utils.data.DataLoader, head: torch.Tensor | None, probe: torch.nn.Module | None = None,
             progress: bool = False, desc: str = "eval") -> tuple[float, int]:
    """Top-1 accuracy of the zero-shot (or probe) classifier over ``loader``: ``(accuracy, n)``."""
    from tqdm.auto import tqdm

    device = model.device
    correct = n = 0
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
        pred = classify(model, x.to(device, non_blocking=True), head, probe).argmax(dim=-1).cpu()
        correct += int((pred == y).sum())
        n += int(y.numel())
    if n == 0:
        raise ValueError("cannot compute accuracy on an empty dataset")
    return correct / n, n
