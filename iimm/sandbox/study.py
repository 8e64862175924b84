"""The sandbox study's model stage: pretraining as a ``prepare:`` hook of :mod:`iimm.study`.

``configs/sandbox.yaml`` lists this module under ``plugins:`` (importing it
registers the sandbox models and tasks) and names :func:`pretrain_hook` in its
``prepare:`` section, so that ``iimm study run configs/sandbox.yaml`` builds the
base models from nothing before embedding, measuring and fine-tuning them.
"""

from __future__ import annotations

from typing import Any, Mapping

from .registry import register_all

__all__ = ["pretrain_hook", "split_profile"]

register_all()


def split_profile(name: str, default: str) -> tuple[str, str]:
    """``"sandbox-clip@quick"`` -> ``("sandbox-clip", "quick")``; a bare name gets ``default``."""
    family, _, profile = name.partition("@")
    return family, profile or default


def pretrain_hook(model_spec: Any, options: Mapping[str, Any], *, seed: int, device: str) -> dict[str, Any]:
    """Pretrain (or reuse an up-to-date checkpoint of) one sandbox model.

    The profile is the ``@profile`` suffix of the model name, else ``options["profile"]``,
    else ``full``. Returns the checkpoint path as ``weights`` (later units load it),
    with the pretraining record's timings and zero-shot accuracies.
    """
    from .cli import pretrain_all
    from .pretrain import checkpoint_path

    unknown = set(options) - {"profile"}
    if unknown:
        raise ValueError(f"sandbox pretrain hook: unknown option(s) {sorted(unknown)}; only 'profile' is accepted")
    family, profile = split_profile(model_spec.name, str(options.get("profile", "full")))
    rec = pretrain_all([family], profile, seed)[family]
    return {
        "weights": str(checkpoint_path(family, profile)),
        "model": family,
        "profile": profile,
        "seconds": rec.get("seconds", {}),
        "zero_shot": rec.get("zero_shot", {}),
        "sha256": rec.get("sha256"),
    }
