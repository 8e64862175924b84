"""iimm: predict what fine-tuning does to vision-language dual encoders.

The Inter-Intra Modal Measure (IIMM, Niss et al.) and the embedding measures
of the paper need only numpy and are imported eagerly. Everything that needs
the deep-learning stack (models, embedding, fine-tuning, the study runner) is
imported lazily on first attribute access, so ``import iimm`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from .measures import (
    all_measures,
    calinski_harabasz,
    clustering_entropy,
    correct_label_alignment,
    davies_bouldin,
    iimm,
    incorrect_label_alignment,
    inter_modal,
    intra_images,
    intra_texts,
    modality_gap,
    modality_gap_vector,
    silhouette,
    MeasureAccumulator,
)
from .transferability import (
    all_scores,
    emms,
    gbc,
    hscore,
    label_embeddings_from_dual_encoder,
    label_embeddings_from_minilm,
    logme,
    ncti,
    normalize_across_models,
    sfda,
    transrate,
)

__version__ = "0.1.0"

# name -> submodule; resolved on first access (PEP 562).
_LAZY: dict[str, str] = {
    # models: registry and the DualEncoder wrapper
    "DualEncoder": "models",
    "WeightsNotFoundError": "models",
    "list_models": "models",
    "load_model": "models",
    "register_model": "models",
    "tiny_model_cfg": "models",
    "zero_shot_head": "models",
    # data: dataset registry and splits
    "DatasetNotFoundError": "data",
    "dataset_info": "data",
    "list_datasets": "data",
    "load_dataset": "data",
    "register_dataset": "data",
    "register_imagefolder": "data",
    # embeddings and their cache
    "Embeddings": "embed",
    "embed": "embed",
    # fine-tuning and ID/OOD evaluation
    "METHODS": "finetune",
    "TrainConfig": "finetune",
    "TrainResult": "finetune",
    "evaluate": "finetune",
    "evaluations_table": "finetune",
    "grid_search": "finetune",
    "load_trained": "finetune",
    "paper_grid": "finetune",
    "prepare": "finetune",
    "runs_table": "finetune",
    "save_trained": "finetune",
    "train": "finetune",
    # the study runner
    "StudyConfig": "study",
    "run_study": "study",
    # statistics and the book
    "gain_over_zero_shot_error": "stats",
    "load_study": "stats",
    "build_book": "book",
}

__all__ = [
    "__version__",
    "all_measures",
    "calinski_harabasz",
    "clustering_entropy",
    "correct_label_alignment",
    "davies_bouldin",
    "iimm",
    "incorrect_label_alignment",
    "inter_modal",
    "intra_images",
    "intra_texts",
    "modality_gap",
    "modality_gap_vector",
    "silhouette",
    "MeasureAccumulator",
    "all_scores",
    "emms",
    "gbc",
    "hscore",
    "label_embeddings_from_dual_encoder",
    "label_embeddings_from_minilm",
    "logme",
    "ncti",
    "normalize_across_models",
    "sfda",
    "transrate",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'iimm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
