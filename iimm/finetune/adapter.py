"""CLIP-Adapter (Gao et al., 2021): residual bottleneck MLPs on the towers' outputs.

For a tower output ``f`` (before normalisation) the adapted feature is

    f' = ratio * A(f) + (1 - ratio) * f,   A(f) = ReLU(W_2 ReLU(W_1 f)),

with ``W_1`` of shape (d / reduction, d), ``W_2`` of shape (d, d / reduction),
no biases, and residual ratio 0.2 as in the paper's setting. The towers stay
frozen; only ``W_1`` and ``W_2`` of each adapter train.

The adapters live inside the open_clip module (``image_adapter``,
``text_adapter``) and its class is switched to a subclass whose
``encode_image`` / ``encode_text`` apply them, so every caller of the
:class:`iimm.models.DualEncoder` (training, the zero-shot head, evaluation,
embedding) sees the adapted features.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLIPAdapter", "attach_adapters", "adapted_class"]


class CLIPAdapter(nn.Module):
    """Bottleneck MLP with a residual mix: ``ratio * A(x) + (1 - ratio) * x``.

    Parameters
    ----------
    dim:
        Feature dimension ``d`` of the tower output.
    reduction:
        Bottleneck factor: the hidden layer has ``max(1, d // reduction)`` units.
    ratio:
        Weight of the adapter branch (0.2 in CLIP-Adapter and in the paper).
    """

    def __init__(self, dim: int, reduction: int = 4, ratio: float = 0.2) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int; got {dim!r}")
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"reduction must be a positive int; got {reduction!r}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must lie in [0, 1]; got {ratio!r}")
        hidden = max(1, dim // reduction)
        self.ratio = float(ratio)
        self.fc = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.fc(x) + (1.0 - self.ratio) * x


_ADAPTED: dict[type, type] = {}


def _normalize_default(fn: Any) -> bool:
    try:
        param = inspect.signature(fn).parameters.get("normalize")
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return bool(param.default) if param is not None and param.default is not inspect.Parameter.empty else False


def adapted_class(base: type) -> type:
    """The subclass of an open_clip model class whose encoders apply the adapters."""
    if getattr(base, "_iimm_adapted", False):
        return base
    cls = _ADAPTED.get(base)
    if cls is not None:
        return cls
    image_default = _normalize_default(base.encode_image)
    text_default = _normalize_default(base.encode_text)

    def encode_image(self, image, normalize: bool = image_default):  # type: ignore[no-untyped-def]
        feats = base.encode_image(self, image, normalize=False)
        adapter = getattr(self, "image_adapter", None)
        if adapter is not None:
            feats = adapter(feats)
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, text, normalize: bool = text_default):  # type: ignore[no-untyped-def]
        feats = base.encode_text(self, text, normalize=False)
        adapter = getattr(self, "text_adapter", None)
        if adapter is not None:
            feats = adapter(feats)
        return F.normalize(feats, dim=-1) if normalize else feats

    cls = type(
        f"Adapted{base.__name__}",
        (base,),
        {
            "encode_image": encode_image,
            "encode_text": encode_text,
            "_iimm_adapted": True,
            "__module__": __name__,
            "__doc__": f"{base.__name__} with CLIP-Adapter bottlenecks on the tower outputs.",
        },
    )
    _ADAPTED[base] = cls
    return cls


def attach_adapters(model: Any, *, reduction: int = 4, ratio: float = 0.2, towers: Sequence[str] = ("image", "text")) -> Any:
    """Freeze ``model`` and add trainable CLIP-Adapters on the chosen towers' outputs.

    Parameters
    ----------
    model:
        An :class:`iimm.models.DualEncoder`; edited in place.
    reduction, ratio:
        See :class:`CLIPAdapter`.
    towers:
        Which outputs get an adapter: ``"image"`` and/or ``"text"``.
    """
    module = model.model
    if getattr(type(module), "_iimm_adapted", False):
        raise ValueError("model already has CLIP-Adapters; load a fresh model")
    module.requires_grad_(False)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        dim = int(model.embed_dim)
    module.train(was_training)
    ref = next(module.parameters())
    for tower in towers:
        adapter = CLIPAdapter(dim, reduction=reduction, ratio=ratio).to(device=ref.device, dtype=ref.dtype)
        adapter.requires_grad_(True)
        setattr(module, f"{tower}_adapter", adapter)
    module.__class__ = adapted_class(type(module))
    return model
