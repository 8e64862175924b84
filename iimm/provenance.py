"""Provenance recorded with every cached result.

``provenance(config, seed)`` returns a JSON-serialisable dict with the
config, seed, package version, git commit, date, machine and library versions,
so that every number in ``data/`` can be traced to the code that made it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

__all__ = ["provenance", "git_commit", "library_versions", "config_hash"]

_LIBRARIES = ("numpy", "scipy", "pandas", "torch", "torchvision", "open_clip_torch", "peft", "scikit-learn", "statsmodels")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout holding this package (``+dirty`` if modified), or ``"unknown"``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "iimm"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that can change a number."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable SHA-256 (hex, 16 chars) of a JSON-serialisable config."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def provenance(config: Mapping[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """Provenance record for a result: config, seed, versions, commit, date, machine."""
    from . import __version__

    return {
        "config": dict(config or {}),
        "seed": seed,
        "iimm_version": __version__,
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "node": platform.node()},
        "libraries": library_versions(),
    }
