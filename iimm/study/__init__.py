"""Declarative studies: YAML config -> units -> resumable cache -> parquet tables.

>>> from iimm.study import load_config, run_study          # doctest: +SKIP
>>> summary = run_study("configs/tiny.yaml")              # doctest: +SKIP
>>> summary.ok, summary.line("tiny")                      # doctest: +SKIP

The command line is ``iimm study run|status|tables CONFIG`` (:mod:`iimm.study.cli`).
"""

from __future__ import annotations

import os
from typing import Iterable

from .cache import Claim, ResultStore
from .config import STAGES, ConfigError, StudyConfig, load_config, parse_config
from .executors import Outcome, Summary, run_unit, run_units
from .stages import register_prepare_hook
from .tables import (TABLES, assemble_tables, embeddings_file, export_embeddings, read_tables, write_outputs,
                     write_tables)
from .units import STAGE_VERSIONS, Unit, expand_units, select_trial

__all__ = [
    "STAGES", "STAGE_VERSIONS", "TABLES", "Claim", "ConfigError", "Outcome", "ResultStore", "StudyConfig", "Summary",
    "Unit", "assemble_tables", "embeddings_file", "export_embeddings", "expand_units", "load_config", "parse_config",
    "read_tables", "register_prepare_hook",
    "run_study", "run_unit", "run_units", "select_trial", "write_outputs", "write_tables",
]


def run_study(config: StudyConfig | str | os.PathLike, *, profile: str | None = None, executor: str | None = None,
              only: Iterable[str] | None = None, progress: bool = True) -> Summary:
    """Run every uncached unit of a study (``executor``: ``local`` or ``ray``) and write its tables.

    Returns the :class:`Summary`; ``summary.ok`` is False if a unit failed or was blocked.
    """
    cfg = config if isinstance(config, StudyConfig) else load_config(config, profile=profile)
    summary = run_units(cfg, expand_units(cfg, only=only), executor=executor, progress=progress)
    write_outputs(cfg, expand_units(cfg))
    return summary
