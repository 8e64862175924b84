"""Fine-tuning of dual encoders and their in-domain / out-of-domain evaluation.

>>> from iimm.finetune import prepare, train, evaluate, grid_search   # doctest: +SKIP
>>> model = prepare(load_model("clip"), "lora", rank=8)               # doctest: +SKIP
>>> result = train(model, "eurosat", epochs=30, lr=1e-3)              # doctest: +SKIP
>>> table = evaluate(model, ["eurosat", "mnist"], zero_shot=load_model("clip"))  # doctest: +SKIP

Methods (Section 4.1 of the paper): ``full``, ``bitfit``, ``attention``,
``lora``, ``adapter`` (CLIP-Adapter) and ``probe`` (linear probe, in domain
only); the zero-shot base model is ``zeroshot`` in tables.
"""

from .adapter import CLIPAdapter
from .checkpoint import load_trained, save_trained
from .evaluate import EVALUATION_COLUMNS, evaluate, gain_over_zero_shot_error, zero_shot_accuracies
from .grid import METHOD_GRIDS, PAPER_GRID, GridResult, expand_grid, grid_search, paper_grid
from .methods import (
    METHODS,
    LinearProjAttention,
    count_parameters,
    lora_merged,
    lora_targets,
    merge_lora,
    method_of,
    prepare,
    trainable_parameter_names,
)
from .records import RUNS_COLUMNS, evaluations_table, read_table, run_record, runs_table, write_table
from .train import TrainConfig, TrainResult, classification_loss, train

__all__ = [
    "METHODS",
    "PAPER_GRID",
    "METHOD_GRIDS",
    "RUNS_COLUMNS",
    "EVALUATION_COLUMNS",
    "CLIPAdapter",
    "LinearProjAttention",
    "GridResult",
    "TrainConfig",
    "TrainResult",
    "prepare",
    "train",
    "evaluate",
    "grid_search",
    "paper_grid",
    "expand_grid",
    "zero_shot_accuracies",
    "gain_over_zero_shot_error",
    "classification_loss",
    "count_parameters",
    "trainable_parameter_names",
    "method_of",
    "lora_targets",
    "lora_merged",
    "merge_lora",
    "run_record",
    "runs_table",
    "evaluations_table",
    "write_table",
    "read_table",
    "save_trained",
    "load_trained",
]
