"""The study's result store: one atomic JSON file per unit, claims, failure records.

Layout under ``cache_dir``::

    results/<stage>/<key>.json   the unit's result, with provenance and a checksum
    arrays/<stage>/<key>.npz     arrays a result refers to (embeddings), with their checksum in the result
    claims/<stage>/<key>.claim   held while a worker runs the unit
    failed/<stage>/<key>.json    the last error of a failed unit (removed on success)
    events.jsonl                 append-only log of unit starts, completions and failures

A result file appears only through an atomic rename (:mod:`iimm._io`), so a
worker killed mid-write leaves no result, and the unit is redone. A result whose
checksum does not match is treated as absent. A claim is created with
``O_CREAT | O_EXCL`` (one winner), refreshed by a heartbeat thread while the
unit runs, and is *stale* when it has not been refreshed for ``stale_after``
seconds or when its process is gone (same host); a stale claim may be broken
by another worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping

from .._io import atomic_write_json
from .units import Unit

__all__ = ["ResultStore", "Claim"]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _checksum(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Claim:
    """A held claim on a unit; refreshed in the background until :meth:`release`."""

    def __init__(self, path: Path, token: str, heartbeat_s: float):
        self.path = path
        self.token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file if it is still ours."""
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.path.read_text()).get("token") == self.token:
                self.path.unlink()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class ResultStore:
    """Results, claims and failure records of one study's units.

    Parameters
    ----------
    root : the study's ``cache_dir``.
    stale_after : seconds after which an unrefreshed claim is stale.
    """

    def __init__(self, root: str | os.PathLike, stale_after: float = 600.0):
        if stale_after <= 0:
            raise ValueError(f"stale_after must be > 0, got {stale_after}")
        self.root = Path(root)
        self.stale_after = float(stale_after)

    # paths ---------------------------------------------------------------------------------
    def result_path(self, unit: Unit) -> Path:
        return self._result_path(unit.stage, unit.key)

    def _result_path(self, stage: str, key: str) -> Path:
        return self.root / "results" / stage / f"{key}.json"

    def claim_path(self, unit: Unit) -> Path:
        return self.root / "claims" / unit.stage / f"{unit.key}.claim"

    def failure_path(self, unit: Unit) -> Path:
        return self.root / "failed" / unit.stage / f"{unit.key}.json"

    # results -------------------------------------------------------------------------------
    def load(self, unit: Unit) -> dict[str, Any] | None:
        """The stored entry of ``unit`` (keys ``result``, ``provenance``, ...) or None if absent or corrupt."""
        return self.load_key(unit.stage, unit.key)

    def has_key(self, stage: str, key: str) -> bool:
        return self.load_key(stage, key) is not None

    def load_key(self, stage: str, key: str) -> dict[str, Any] | None:
        """The stored entry of the unit ``stage/key``, or None if absent or corrupt (checksum mismatch)."""
        path = self._result_path(stage, key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or entry.get("sha256") != _checksum(entry.get("result")):
            return None
        return entry

    def result(self, unit: Unit) -> dict[str, Any] | None:
        """Only the result payload of ``unit``, or None."""
        entry = self.load(unit)
        return None if entry is None else entry["result"]

    def has(self, unit: Unit) -> bool:
        return self.load(unit) is not None

    def save(self, unit: Unit, result: Mapping[str, Any], wall_time_s: float, provenance: Mapping[str, Any]) -> Path:
        """Write ``unit``'s result atomically (JSON with a checksum of the payload)."""
        result = json.loads(_canonical(result))  # what a reader will see
        entry = {
            "key": unit.key, "stage": unit.stage, "label": unit.label, "params": unit.params, "deps": [list(d) for d in unit.deps],
            "result": result, "sha256": _checksum(result), "wall_time_s": float(wall_time_s),
            "provenance": dict(provenance),
        }
        path = atomic_write_json(self.result_path(unit), entry)
        with contextlib.suppress(FileNotFoundError):
            self.failure_path(unit).unlink()
        return path

    def remove_partials(self, unit: Unit) -> int:
        """Delete temporary files left by a writer of ``unit`` that was killed; call only while holding its claim."""
        n = 0
        for folder in (self.result_path(unit).parent, self.array_dir(unit.stage)):
            if folder.is_dir():
                for p in folder.glob(f".{unit.key}.*.tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                        n += 1
        return n

    def array_dir(self, stage: str) -> Path:
        """Folder for a stage's array files (``arrays/<stage>``), named ``<key>.<ext>``."""
        return self.root / "arrays" / stage

    # failures ------------------------------------------------------------------------------
    def record_failure(self, unit: Unit, exc: BaseException) -> None:
        atomic_write_json(self.failure_path(unit), {
            "key": unit.key, "stage": unit.stage, "label": unit.label, "params": unit.params,
            "error_type": type(exc).__name__, "error": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname(), "pid": os.getpid(),
        })

    def failure(self, unit: Unit) -> dict[str, Any] | None:
        try:
            return json.loads(self.failure_path(unit).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # claims --------------------------------------------------------------------------------
    def _claim_info(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written or garbage: judged by its age only

    def is_stale(self, path: Path) -> bool:
        """Whether the claim at ``path`` is abandoned (too old, or its process is gone on this host)."""
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if age > self.stale_after:
            return True
        info = self._claim_info(path)
        if info and info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            return not _pid_alive(info["pid"])
        return False

    def claimed(self, unit: Unit) -> bool:
        """Whether a live claim on ``unit`` exists."""
        path = self.claim_path(unit)
        return path.exists() and not self.is_stale(path)

    def claim(self, unit: Unit) -> Claim | None:
        """Claim ``unit`` for this process, breaking a stale claim; None if another worker holds it."""
        path = self.claim_path(unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        info = {"token": token, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "unit": unit.label}
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self.is_stale(path):
                    return None
                # break the stale claim: only one breaker wins the rename
                broken = path.with_name(f"{path.name}.broken.{token}")
                try:
                    os.rename(path, broken)
                except FileNotFoundError:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    broken.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(info))
            return Claim(path, token, heartbeat_s=max(0.05, self.stale_after / 4))
        return None

    # events --------------------------------------------------------------------------------
    def log_event(self, unit: Unit, event: str, **extra: Any) -> None:
        """Append one JSON line (unit key, stage, event, time, pid) to ``events.jsonl``."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": unit.key, "stage": unit.stage, "event": event, "time": time.time(), "pid": os.getpid(), **extra},
                          default=str) + "\n"
        fd = os.open(self.root / "events.jsonl", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def iter_partials(self) -> Iterator[Path]:
        """Temporary files anywhere under the store (left by killed writers)."""
        yield from (p for p in self.root.rglob("*.tmp") if p.is_file())
