"""Architectures of the sandbox base models: small open_clip models.

Each sandbox model is an open_clip model class built from a model config dict
(the format of ``open_clip/model_configs/*.json``), trained with the matching
open_clip loss, so that every fine-tuning method applies to it exactly as to
the paper's models (Section 4.1):

================= ===================== ================================ ==========================
name              open_clip class       loss                             notes
================= ===================== ================================ ==========================
sandbox-clip      ``CLIP``              ``ClipLoss`` (softmax InfoNCE)   ViT + causal text transformer
sandbox-siglip    ``CustomTextCLIP``    ``SigLipLoss`` (sigmoid)         learnable ``logit_bias``, bidirectional text
sandbox-coca      ``CoCa``              ``CoCaLoss`` (InfoNCE + caption) attentional pooler, text decoder
================= ===================== ================================ ==========================

All share the image size (32 px; ViT patch 8, smoke towers patch 4), the embedding width and the
word-level tokenizer of :mod:`iimm.sandbox.tokenizer` (context length 16).
The ``base`` towers (quick and full profiles) have about 1.5M parameters
(CoCa 2.4M); the ``small`` towers of the smoke profile about 0.23M.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .tokenizer import CONTEXT_LENGTH

__all__ = ["SANDBOX_MODELS", "model_config", "build_model", "build_loss", "MEAN", "STD"]

SANDBOX_MODELS: tuple[str, ...] = ("sandbox-clip", "sandbox-siglip", "sandbox-coca")

# open_clip's OPENAI_DATASET_MEAN/STD (the default PreprocessCfg of iimm.load_model)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# tower sizes per size class: the smoke profile (tests) uses a smaller model. The small towers
# use patch 4 (64 tokens): measured, patch 8 left their zero-shot colour accuracy at chance
# after 300 steps, patch 4 reached 0.78. The base towers use patch 8 (16 tokens), 2.5x cheaper
# to fine-tune and 3.4x cheaper to run than patch 4 (measured on 2 cores), which is what lets
# the full study fit its CPU budget; after the full profile's 1000 steps they reach 0.94 on
# colours (and stay near chance on shapes and letters, which the study then explains).
SIZES: dict[str, dict[str, int]] = {
    "base": {"embed_dim": 128, "width": 128, "vision_layers": 4, "text_layers": 3, "decoder_layers": 2, "patch": 8},
    "small": {"embed_dim": 64, "width": 64, "vision_layers": 2, "text_layers": 2, "decoder_layers": 1, "patch": 4},
}


def _vision(sz: dict[str, int], **over: Any) -> dict[str, Any]:
    cfg = {"image_size": 32, "patch_size": sz["patch"], "width": sz["width"], "layers": sz["vision_layers"],
           "head_width": 32, "mlp_ratio": 4.0}
    cfg.update(over)
    return cfg


def _text(sz: dict[str, int], vocab_size: int, **over: Any) -> dict[str, Any]:
    cfg = {"context_length": CONTEXT_LENGTH, "vocab_size": int(vocab_size), "width": sz["width"],
           "heads": sz["width"] // 32, "layers": sz["text_layers"], "mlp_ratio": 4.0}
    cfg.update(over)
    return cfg


def model_config(name: str, vocab_size: int, size: str = "base") -> dict[str, Any]:
    """The open_clip model config dict of a sandbox model with towers of a size class.

    ``custom_text`` selects open_clip's ``CustomTextCLIP`` (or ``CoCa`` when a
    ``multimodal_cfg`` is present), as in open_clip's own config files.
    ``size`` is a key of :data:`SIZES` (the ``smoke`` pretraining profile uses
    ``small``, the others ``base``). Image towers average-pool their patch tokens (CoCa:
    attentional pooler), which learns faster than class-token pooling at this
    scale.
    """
    if not isinstance(vocab_size, int) or vocab_size < 4:
        raise ValueError(f"vocab_size must be an int >= 4; got {vocab_size!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}; got {size!r}")
    sz = SIZES[size]
    heads = sz["width"] // 32
    if name == "sandbox-clip":
        return {"embed_dim": sz["embed_dim"], "vision_cfg": _vision(sz, pool_type="avg"),
                "text_cfg": _text(sz, vocab_size)}
    if name == "sandbox-siglip":
        return {
            "embed_dim": sz["embed_dim"],
            "vision_cfg": _vision(sz, pool_type="avg"),
            "text_cfg": _text(sz, vocab_size, no_causal_mask=True),
            "custom_text": True,
            # SigLIP's t' = log 10; its bias -10 suits batches of 32k (log-odds of a positive
            # pair ~ -log B); at batch 64-128 -5 is that prior (measured: with -10 the smoke
            # profile stayed at chance, with -5 it reached 0.85 on sandbox-colors)
            "init_logit_scale": math.log(10.0),
            "init_logit_bias": -5.0,
        }
    if name == "sandbox-coca":
        n_tokens = (32 // sz["patch"]) ** 2
        return {
            "embed_dim": sz["embed_dim"],
            "vision_cfg": _vision(sz, attentional_pool=True, attn_pooler_heads=heads,
                                  attn_pooler_queries=n_tokens + 1, output_tokens=True),
            "text_cfg": _text(sz, vocab_size, embed_cls=True, output_tokens=True),
            "multimodal_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": int(vocab_size), "width": sz["width"],
                               "heads": heads, "layers": sz["decoder_layers"], "attn_pooler_heads": heads},
            "custom_text": True,
        }
    raise ValueError(f"name must be one of {SANDBOX_MODELS}; got {name!r}")


def build_model(cfg: dict[str, Any]):
    """Instantiate the open_clip class a model config dict describes (as ``iimm.load_model`` does).

    For CoCa the text decoder is initialised explicitly (see the comment below).
    """
    import open_clip

    cfg = copy.deepcopy(cfg)
    custom = bool(cfg.pop("custom_text", False))
    if custom and "multimodal_cfg" in cfg:
        model = open_clip.CoCa(**cfg)
        # open_clip 3.3 never initialises the text decoder's text_projection (torch.empty:
        # garbage, NaN under deterministic mode) and its init_parameters() is broken;
        # use the std the decoder's init_parameters intends (width ** -0.5)
        import torch

        proj = model.text_decoder.text_projection
        with torch.no_grad():
            torch.nn.init.normal_(proj, std=proj.shape[0] ** -0.5)
        return model
    if custom:
        return open_clip.CustomTextCLIP(**cfg)
    return open_clip.CLIP(**cfg)


def build_loss(name: str, pad_id: int = 0):
    """The open_clip loss a sandbox model is pretrained with."""
    from open_clip.loss import ClipLoss, CoCaLoss, SigLipLoss

    if name == "sandbox-clip":
        return ClipLoss()
    if name == "sandbox-siglip":
        return SigLipLoss()
    if name == "sandbox-coca":
        # open_clip's CoCa defaults: caption weight 2, contrastive weight 1
        return CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0, pad_id=pad_id)
    raise ValueError(f"name must be one of {SANDBOX_MODELS}; got {name!r}")
