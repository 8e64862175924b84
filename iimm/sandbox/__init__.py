"""The offline sandbox (issue 7): a procedural captioned-image world, a task suite, small base models.

* :mod:`iimm.sandbox.world`: seeded 32x32 RGB scenes (shapes, colours, sizes,
  positions, textures, counts, glyphs in matplotlib's fonts) with captions;
* :mod:`iimm.sandbox.tasks`: thirteen downstream classification tasks
  (procedural and real offline data), class names and templates as package data;
* :mod:`iimm.sandbox.models` / :mod:`iimm.sandbox.pretrain`: ``sandbox-clip``,
  ``sandbox-siglip``, ``sandbox-coca`` built and trained with open_clip's own
  classes and losses;
* :mod:`iimm.sandbox.registry`: registers the models into :mod:`iimm.models`
  and the tasks into :mod:`iimm.data` (:func:`register_all`);
* :mod:`iimm.sandbox.cli`: ``iimm sandbox pretrain|generate|tasks``.

The pretraining function is :func:`iimm.sandbox.pretrain.pretrain` (not re-exported here, so
that ``iimm.sandbox.pretrain`` stays the module). Importing this package registers the sandbox models and tasks (cheap: no data
is generated and no weights are read until a model or dataset is loaded) and
needs numpy only (torch is imported by the functions that train or load models).
"""

from __future__ import annotations

from .pretrain import PROFILES, build_tokenizer, checkpoint_path, evaluate_zero_shot, world_pairs
from .registry import default_profile, register_all, register_sandbox_models, register_sandbox_tasks
from .tasks import PROCEDURAL_TASKS, REAL_TASKS, generate_task, list_tasks, task_info
from .tokenizer import SandboxTokenizer
from .world import generate_pairs

__all__ = [
    "PROFILES",
    "PROCEDURAL_TASKS",
    "REAL_TASKS",
    "SandboxTokenizer",
    "build_tokenizer",
    "checkpoint_path",
    "default_profile",
    "evaluate_zero_shot",
    "generate_pairs",
    "generate_task",
    "list_tasks",
    "register_all",
    "register_sandbox_models",
    "register_sandbox_tasks",
    "task_info",
    "world_pairs",
]

register_all()
