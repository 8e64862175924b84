"""Model registry: short names -> how to build an open_clip dual encoder.

The paper's four base models (Section 4.1) are registered at import:

======== ====================== ==========================
name     open_clip architecture pretrained tag
======== ====================== ==========================
clip     ViT-B-32               openai
siglip   ViT-B-16-SigLIP        webli
coca     coca_ViT-B-32          laion2b_s13b_b90k
eva02    EVA02-B-16             merged2b_s8b_b131k
======== ====================== ==========================

Other models are added with :func:`register_model`, either as an open_clip
``(architecture, pretrained)`` pair, as a custom open_clip model config dict
(``model_cfg``) with an optional local checkpoint, or as a factory callable.
Besides registered names, :func:`iimm.load_model` also accepts
``"ARCH/TAG"`` (any open_clip pair), a bare open_clip architecture name, and
a local directory holding ``open_clip_config.json`` plus weights.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

__all__ = [
    "ModelSpec",
    "register_model",
    "unregister_model",
    "list_models",
    "get_model_spec",
    "tiny_model_cfg",
    "PAPER_MODELS",
]

PathLike = Union[str, os.PathLike]
CheckpointSource = Union[PathLike, Callable[[], PathLike], None]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model.

    Exactly one of ``architecture`` (a built-in open_clip config name),
    ``model_cfg`` (an open_clip model config dict with ``embed_dim``,
    ``vision_cfg``, ``text_cfg`` and optionally ``multimodal_cfg`` /
    ``custom_text`` / ``init_logit_bias``) or ``factory`` (a callable
    returning an open_clip-like ``nn.Module``) is set.

    Attributes
    ----------
    pretrained:
        open_clip pretrained tag (with ``architecture``), or ``None``.
    checkpoint:
        Local weights file (or a zero-argument callable returning its path,
        resolved at load time). Used when ``pretrained=True`` is requested.
    missing_hint:
        Sentence appended to the error when ``checkpoint`` does not exist,
        saying how to make it (e.g. ``"run `iimm sandbox pretrain`"``).
    preprocess_cfg:
        Overrides of open_clip's ``PreprocessCfg`` (mean, std, interpolation,
        resize_mode, size).
    quick_gelu:
        Force QuickGELU activations (OpenAI CLIP weights need it).
    tokenizer:
        ``None`` (derive from the config like open_clip), an open_clip model
        name to take the tokenizer from, or a callable ``list[str] -> LongTensor``.
    """

    name: str
    architecture: str | None = None
    pretrained: str | None = None
    model_cfg: Mapping[str, Any] | None = None
    factory: Callable[..., Any] | None = None
    checkpoint: CheckpointSource = None
    missing_hint: str = ""
    preprocess_cfg: Mapping[str, Any] | None = None
    quick_gelu: bool | None = None
    tokenizer: str | Callable[[list[str]], Any] | None = None
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def checkpoint_path(self) -> Path | None:
        """The checkpoint path (resolving a callable), or ``None``."""
        ck = self.checkpoint
        if ck is None:
            return None
        if callable(ck):
            ck = ck()
            if ck is None:
                return None
        return Path(ck).expanduser()

    @property
    def kind(self) -> str:
        """``"open_clip"``, ``"config"`` or ``"factory"``."""
        if self.factory is not None:
            return "factory"
        if self.model_cfg is not None:
            return "config"
        return "open_clip"


_REGISTRY: dict[str, ModelSpec] = {}
_LOCK = threading.Lock()

PAPER_MODELS: dict[str, tuple[str, str]] = {
    "clip": ("ViT-B-32", "openai"),
    "siglip": ("ViT-B-16-SigLIP", "webli"),
    "coca": ("coca_ViT-B-32", "laion2b_s13b_b90k"),
    "eva02": ("EVA02-B-16", "merged2b_s8b_b131k"),
}


def _check_model_cfg(cfg: Mapping[str, Any], name: str) -> None:
    if not isinstance(cfg, Mapping):
        raise ValueError(f"model_cfg for {name!r} must be a dict; got {type(cfg).__name__}")
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise ValueError(f"model_cfg for {name!r} lacks the open_clip key(s) {missing}")
    for k in ("vision_cfg", "text_cfg"):
        if not isinstance(cfg[k], Mapping):
            raise ValueError(f"model_cfg[{k!r}] for {name!r} must be a dict")


def register_model(
    name: str,
    architecture: str | None = None,
    pretrained: str | None = None,
    *,
    model_cfg: Mapping[str, Any] | None = None,
    factory: Callable[..., Any] | None = None,
    checkpoint: CheckpointSource = None,
    missing_hint: str = "",
    preprocess_cfg: Mapping[str, Any] | None = None,
    quick_gelu: bool | None = None,
    tokenizer: str | Callable[[list[str]], Any] | None = None,
    description: str = "",
    overwrite: bool = False,
    **extra: Any,
) -> ModelSpec:
    """Register a model under a short ``name`` and return its :class:`ModelSpec`.

    Examples
    --------
    >>> register_model("my-clip", "ViT-B-16", "laion2b_s34b_b88k")            # doctest: +SKIP
    >>> register_model("tiny-test", model_cfg=tiny_model_cfg("clip"))          # doctest: +SKIP
    >>> register_model("sandbox-clip", model_cfg=cfg, checkpoint=ckpt_path,
    ...                missing_hint="run `iimm sandbox pretrain`")            # doctest: +SKIP

    Raises
    ------
    ValueError
        On an empty name, a name already registered (unless ``overwrite``),
        or not exactly one of ``architecture`` / ``model_cfg`` / ``factory``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    given = [k for k, v in (("architecture", architecture), ("model_cfg", model_cfg), ("factory", factory)) if v is not None]
    if len(given) != 1:
        raise ValueError(
            f"register_model({name!r}) needs exactly one of architecture, model_cfg or factory; got {given or 'none'}"
        )
    if architecture is not None:
        import open_clip

        if architecture not in open_clip.list_models():
            raise ValueError(f"architecture {architecture!r} is not an open_clip model config (see open_clip.list_models())")
        if pretrained is not None and not open_clip.get_pretrained_cfg(architecture, pretrained) and not os.path.isfile(pretrained):
            tags = open_clip.list_pretrained_tags_by_model(architecture)
            raise ValueError(f"pretrained {pretrained!r} is neither an open_clip tag of {architecture} ({tags}) nor a file")
    elif pretrained is not None:
        raise ValueError("pretrained (an open_clip tag) is only valid with architecture; use checkpoint= for a weights file")
    if model_cfg is not None:
        _check_model_cfg(model_cfg, name)
        model_cfg = copy.deepcopy(dict(model_cfg))
    if factory is not None and not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable")
    spec = ModelSpec(
        name=name,
        architecture=architecture,
        pretrained=pretrained,
        model_cfg=model_cfg,
        factory=factory,
        checkpoint=checkpoint,
        missing_hint=missing_hint,
        preprocess_cfg=dict(preprocess_cfg) if preprocess_cfg else None,
        quick_gelu=quick_gelu,
        tokenizer=tokenizer,
        description=description,
        extra=dict(extra),
    )
    with _LOCK:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"model {name!r} is already registered (pass overwrite=True to replace it)")
        _REGISTRY[name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (``ValueError`` if absent)."""
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"model {name!r} is not registered")
        del _REGISTRY[name]


def list_models() -> list[str]:
    """Registered model names, in registration order."""
    return list(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec | None:
    """The :class:`ModelSpec` registered under ``name``, or ``None``."""
    return _REGISTRY.get(name)


def tiny_model_cfg(family: str = "clip", embed_dim: int = 32, image_size: int = 32, context_length: int = 16) -> dict:
    """A tiny open_clip model config of one of the paper's four model families.

    Builds in well under a second and runs fast on a CPU; used by tests and
    as a starting point for small models. The families keep what makes each
    architecture different: ``"clip"`` (causal text transformer, argmax
    pooling), ``"siglip"`` (``init_logit_bias``, non-causal text with
    last-token pooling, 32k vocabulary), ``"coca"`` (attentional pooler,
    CLS-embedded text, multimodal decoder) and ``"eva02"`` (timm EVA-02 image
    tower).
    """
    width = 64
    text = {"context_length": context_length, "vocab_size": 49408, "width": width, "heads": 2, "layers": 2}
    vision = {"image_size": image_size, "layers": 2, "width": width, "head_width": 32, "patch_size": 8}
    if family == "clip":
        return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text}
    if family == "siglip":
        return {
            "embed_dim": embed_dim,
            "init_logit_bias": -10,
            "custom_text": True,
            "vision_cfg": {**vision, "no_ln_pre": True, "final_ln_after_pool": True, "pool_type": "avg"},
            "text_cfg": {
                **text,
                "vocab_size": 32000,
                "no_causal_mask": True,
                "proj_bias": True,
                "pool_type": "last",
                "norm_kwargs": {"eps": 1e-6},
            },
        }
    if family == "coca":
        return {
            "embed_dim": embed_dim,
            "custom_text": True,
            "vision_cfg": {**vision, "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
            "text_cfg": {**text, "embed_cls": True, "output_tokens": True},
            "multimodal_cfg": {"context_length": context_length, "vocab_size": 49408, "width": width, "heads": 2, "layers": 1, "attn_pooler_heads": 2},
        }
    if family == "eva02":
        return {
            "embed_dim": embed_dim,
            "custom_text": True,
            "vision_cfg": {
                "image_size": image_size,
                "timm_model_name": "eva02_tiny_patch14_224",
                "timm_model_pretrained": False,
                "timm_pool": "token",
                "timm_proj": "linear",
            },
            "text_cfg": text,
        }
    raise ValueError(f"family must be one of 'clip', 'siglip', 'coca', 'eva02'; got {family!r}")


def _register_paper_models() -> None:
    descriptions = {
        "clip": "OpenAI CLIP ViT-B/32 (Radford et al., 2021)",
        "siglip": "SigLIP ViT-B/16, WebLI (Zhai et al., 2023)",
        "coca": "CoCa ViT-B/32, LAION-2B (Yu et al., 2022); contrastive embeddings",
        "eva02": "EVA-02-CLIP B/16, Merged-2B (Sun et al., 2023)",
    }
    for short, (arch, tag) in PAPER_MODELS.items():
        _REGISTRY[short] = ModelSpec(name=short, architecture=arch, pretrained=tag, description=descriptions[short])


_register_paper_models()
