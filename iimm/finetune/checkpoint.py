"""Save and restore a fine-tuned run: its trained parameters plus how the model was prepared.

Only the trained parameters are stored (safetensors), with a JSON sidecar
holding the method, its options, the base model name and weights identity,
and provenance; :func:`load_trained` prepares a fresh base model the same way
and loads them, so a run is re-created exactly without storing the frozen
weights again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["save_trained", "load_trained"]


def save_trained(model: Any, path: str | os.PathLike) -> Path:
    """Write the trainable parameters of a prepared model to ``path`` (``.safetensors``) plus ``path.json``."""
    from safetensors.torch import save_file

    from iimm._io import atomic_path, atomic_write_json, sha256_file
    from iimm.provenance import provenance

    from .methods import finetune_state

    state = finetune_state(model)
    if not state:
        raise ValueError("model was not prepared with iimm.finetune.prepare; nothing to save")
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.model.named_parameters() if p.requires_grad}
    if not tensors:
        raise ValueError("model has no trainable parameters to save")
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "model": model.name, "weights": getattr(model, "weights_id", None), "method": state["method"],
        "options": state["options"], "train_dataset": state.get("train_dataset"), "classnames": state.get("classnames"),
        "num_classes": int(tensors["probe_head.bias"].numel()) if "probe_head.bias" in tensors else None,
        "sha256": sha256_file(path), "provenance": provenance({"method": state["method"]}, state["options"].get("seed")),
    }
    atomic_write_json(path.with_suffix(path.suffix + ".json"), meta)
    return path


def load_trained(base: Any, path: str | os.PathLike) -> Any:
    """Prepare the fresh base model ``base`` as recorded next to ``path`` and load the trained parameters."""
    import torch
    from safetensors.torch import load_file

    from iimm._io import sha256_file

    from .methods import finetune_state, prepare

    path = Path(path)
    side = path.with_suffix(path.suffix + ".json")
    if not path.exists() or not side.exists():
        raise FileNotFoundError(f"trained run {path} (and its sidecar {side.name}) not found; save it with save_trained")
    meta = json.loads(side.read_text())
    if sha256_file(path) != meta["sha256"]:
        raise ValueError(f"{path} does not match the checksum in {side.name}: the file is corrupt or was replaced")
    if meta["weights"] is not None and getattr(base, "weights_id", None) not in (None, meta["weights"]):
        raise ValueError(f"base model weights {base.weights_id!r} differ from the run's {meta['weights']!r}")
    opts = dict(meta["options"])
    if meta["method"] == "probe":
        opts["num_classes"] = meta["num_classes"]
    if "towers" in opts:
        opts["towers"] = tuple(opts["towers"])
    prepare(base, meta["method"], **opts)
    tensors = load_file(str(path))
    params = {n: p for n, p in base.model.named_parameters() if p.requires_grad}
    if set(params) != set(tensors):
        raise ValueError(f"{path} holds other parameters than method {meta['method']!r} trains on this model")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n].to(p.device, p.dtype))
    state = finetune_state(base)
    state["train_dataset"] = meta.get("train_dataset")
    state["classnames"] = meta.get("classnames")
    return base
