"""Vision-language dual encoders: registry, ``load_model``, ``DualEncoder``, ``zero_shot_head``.

>>> import iimm.models as m
>>> model = m.load_model("clip", pretrained=False)          # doctest: +SKIP
>>> head = m.zero_shot_head(model, ["cat", "dog"], ["a photo of a {}."])  # doctest: +SKIP
"""

from .registry import (
    PAPER_MODELS,
    ModelSpec,
    get_model_spec,
    list_models,
    register_model,
    tiny_model_cfg,
    unregister_model,
)
from .wrapper import (
    DualEncoder,
    MissingTokenizerWarning,
    WeightsNotFoundError,
    format_templates,
    hub_reachable,
    load_model,
    zero_shot_head,
)

__all__ = [
    "PAPER_MODELS",
    "ModelSpec",
    "DualEncoder",
    "MissingTokenizerWarning",
    "WeightsNotFoundError",
    "format_templates",
    "get_model_spec",
    "hub_reachable",
    "list_models",
    "load_model",
    "register_model",
    "tiny_model_cfg",
    "unregister_model",
    "zero_shot_head",
]

# The offline sandbox models and tasks are registered like the paper's (cheap: numpy only).
from .. import sandbox as _sandbox  # noqa: E402,F401
