"""Where the project keeps what it downloads or computes outside git.

``IIMM_CACHE`` (default ``~/.cache/iimm``) holds model checkpoints, dataset
files fetched for offline use, and the embedding cache. Each can be moved
with its own variable.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "embeddings_dir", "datasets_dir", "checkpoints_dir", "repo_root"]


def cache_root() -> Path:
    """Root of the local cache: ``$IIMM_CACHE`` or ``~/.cache/iimm``."""
    return Path(os.environ.get("IIMM_CACHE", Path.home() / ".cache" / "iimm")).expanduser()


def embeddings_dir() -> Path:
    """Embedding cache: ``$IIMM_EMBED_CACHE`` or ``<cache_root>/embeddings``."""
    return Path(os.environ.get("IIMM_EMBED_CACHE", cache_root() / "embeddings")).expanduser()


def datasets_dir() -> Path:
    """Local dataset files: ``$IIMM_DATA`` or ``<cache_root>/datasets``."""
    return Path(os.environ.get("IIMM_DATA", cache_root() / "datasets")).expanduser()


def checkpoints_dir() -> Path:
    """Model checkpoints (sandbox pretraining, fine-tuned runs): ``$IIMM_CHECKPOINTS`` or ``<cache_root>/checkpoints``."""
    return Path(os.environ.get("IIMM_CHECKPOINTS", cache_root() / "checkpoints")).expanduser()


def repo_root() -> Path | None:
    """The source checkout holding this package (with ``data/`` and ``notebooks/``), if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else None
