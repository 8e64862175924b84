"""Executors: run a study's units locally or on Ray, resumably.

Both executors walk the stages in order (:data:`iimm.study.config.STAGES`) and
hand every unit whose dependencies are cached to :func:`run_unit`, which does
the same thing wherever it runs: skip if cached, claim, run the stage, write
the result atomically, or record the failure. Results therefore never depend on
the executor, and a study interrupted at any point resumes where it stopped.

``local``
    in-process and sequential; ``executor.workers > 1`` runs the CPU-only
    stages (measures, baselines) in a process pool.
``ray``
    every unit a Ray task with per-stage resource requests (``num_gpus=1`` for
    embed/train/evaluate when the study runs on CUDA, one CPU otherwise, or
    ``executor.resources``); on a running cluster (``executor.address``) or a
    local instance.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from .cache import ResultStore
from .config import STAGES, StudyConfig
from .units import Unit

__all__ = ["Outcome", "Summary", "run_unit", "run_units", "store_for", "CPU_STAGES"]

#: stages that need only numpy/scipy (the local process pool runs these)
CPU_STAGES = ("measures", "baselines")


@dataclass
class Outcome:
    """What happened to one unit: ``ran``, ``cached``, ``failed``, ``busy`` (claimed elsewhere) or ``blocked``."""

    key: str
    stage: str
    label: str
    status: str
    wall_time_s: float = 0.0
    error: str | None = None


@dataclass
class Summary:
    """Counts of a run; ``ok`` is False when any unit failed or was blocked."""

    outcomes: list[Outcome] = field(default_factory=list)
    wall_time_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0 and self.count("blocked") == 0

    def line(self, name: str) -> str:
        return (f"study {name}: {len(self.outcomes)} units: {self.count('ran')} run, {self.count('cached')} cached, "
                f"{self.count('failed')} failed, {self.count('blocked')} blocked in {self.wall_time_s:.1f} s")


def store_for(config: StudyConfig) -> ResultStore:
    return ResultStore(config.cache_dir, stale_after=config.executor.stale_lock_s)


def _setup_worker(config: StudyConfig, stage: str | None = None) -> None:
    """Import the study's plugins; set torch's thread count for stages that use torch."""
    from .stages import load_plugins

    load_plugins(config.plugins)
    uses_torch = stage is not None and stage not in CPU_STAGES
    if config.executor.threads is not None and (uses_torch or "torch" in sys.modules):
        import torch

        if torch.get_num_threads() != config.executor.threads:
            torch.set_num_threads(config.executor.threads)


@contextlib.contextmanager
def _thread_limits(threads: int | None) -> Iterator[None]:
    """Limit BLAS/OpenMP pools (threadpoolctl) to ``threads``: sums in the same order on every executor."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def run_unit(config: StudyConfig, unit: Unit) -> Outcome:
    """Run one unit where this function is called: skip if cached, else claim, run, store or record the failure."""
    from ..provenance import provenance
    from .stages import remove_partials, result_usable, run_stage

    store = store_for(config)

    def cached() -> bool:
        entry = store.load(unit)
        return entry is not None and result_usable(config, unit, entry["result"])

    if cached():
        return Outcome(unit.key, unit.stage, unit.label, "cached")
    claim = store.claim(unit)
    if claim is None:
        return Outcome(unit.key, unit.stage, unit.label, "busy")
    try:
        if cached():  # finished by another worker between our check and our claim
            return Outcome(unit.key, unit.stage, unit.label, "cached")
        store.remove_partials(unit)
        remove_partials(config, unit)
        _setup_worker(config, unit.stage)
        store.log_event(unit, "start", label=unit.label)
        t0 = time.perf_counter()
        try:
            deps = {}
            for st, k in unit.deps:
                dep = store.load_key(st, k)
                if dep is None:
                    raise RuntimeError(f"dependency {st}/{k} of {unit.label} is not in the cache {config.cache_dir}")
                deps[k] = dep["result"]
            with _thread_limits(config.executor.threads):
                result = run_stage(config, unit, deps)
            wall = time.perf_counter() - t0
            store.save(unit, result, wall, provenance(unit.params, config.seed))
        except Exception as exc:  # a failing unit is recorded and the study goes on
            wall = time.perf_counter() - t0
            store.record_failure(unit, exc)
            store.log_event(unit, "failed", error=f"{type(exc).__name__}: {exc}")
            return Outcome(unit.key, unit.stage, unit.label, "failed", wall, f"{type(exc).__name__}: {exc}")
        store.log_event(unit, "done", wall_time_s=wall)
        return Outcome(unit.key, unit.stage, unit.label, "ran", wall)
    finally:
        claim.release()


def _missing(store: ResultStore, unit: Unit) -> list[str]:
    """Dependencies of ``unit`` missing from the store, as ``stage/key``."""
    return [f"{st}/{k}" for st, k in unit.deps if not store.has_key(st, k)]


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{desc:>13}", unit="unit", disable=not enabled or total == 0, file=sys.stderr,
                dynamic_ncols=True, leave=True)


def _default_resources(config: StudyConfig, stage: str) -> dict[str, float]:
    gpu = config.device.startswith("cuda")
    if config.device == "auto":
        import ray

        gpu = ray.cluster_resources().get("GPU", 0) > 0
    if stage in ("embed", "train", "evaluate", "prepare_model") and gpu:
        return {"num_gpus": 1.0, "num_cpus": 1.0}
    return {"num_cpus": 1.0}


def run_units(
    config: StudyConfig,
    units: Sequence[Unit],
    executor: str | None = None,
    progress: bool = True,
    poll_s: float = 0.5,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Summary:
    """Run ``units`` stage by stage with the ``local`` or ``ray`` executor and return a :class:`Summary`.

    Units whose dependencies are missing after their upstream stages ran (an
    upstream unit failed, or ``--only`` skipped it) are ``blocked``. Units
    claimed by another live worker are waited for.
    """
    kind = executor or config.executor.kind
    if kind not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {kind!r}")
    store = store_for(config)
    summary = Summary()
    t0 = time.perf_counter()
    backend = _RayBackend(config) if kind == "ray" else _LocalBackend(config)
    try:
        for stage in STAGES:
            todo = [u for u in units if u.stage == stage]
            if not todo:
                continue
            bar = _progress(len(todo), stage, progress)
            ready = []
            for u in todo:
                missing = _missing(store, u)
                if missing:
                    o = Outcome(u.key, u.stage, u.label, "blocked", error=f"missing dependencies: {', '.join(missing)}")
                    summary.outcomes.append(o)
                    bar.update(1)
                    if on_outcome:
                        on_outcome(o)
                else:
                    ready.append(u)
            while ready:
                busy: list[Unit] = []
                for u, o in backend.run(stage, ready):
                    if o.status == "busy":
                        busy.append(u)
                        continue
                    summary.outcomes.append(o)
                    bar.update(1)
                    if o.status == "failed":
                        bar.write(f"FAILED {o.label}: {o.error}", file=sys.stderr)
                    if on_outcome:
                        on_outcome(o)
                ready = busy
                if busy:
                    time.sleep(poll_s)
            bar.close()
    finally:
        backend.close()
    summary.wall_time_s = time.perf_counter() - t0
    return summary


class _LocalBackend:
    def __init__(self, config: StudyConfig):
        self.config = config
        self.pool: ProcessPoolExecutor | None = None
        torch = sys.modules.get("torch")
        self._saved_threads = torch.get_num_threads() if torch is not None else None

    def run(self, stage: str, units: list[Unit]) -> Iterable[tuple[Unit, Outcome]]:
        if stage in CPU_STAGES and self.config.executor.workers > 1 and len(units) > 1:
            if self.pool is None:
                import multiprocessing

                self.pool = ProcessPoolExecutor(self.config.executor.workers, mp_context=multiprocessing.get_context("spawn"))
            futures: dict[Future, Unit] = {self.pool.submit(run_unit, self.config, u): u for u in units}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield futures[f], f.result()
        else:
            for u in units:
                yield u, run_unit(self.config, u)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        torch = sys.modules.get("torch")
        if torch is not None and self._saved_threads is not None and torch.get_num_threads() != self._saved_threads:
            torch.set_num_threads(self._saved_threads)  # units ran in this process with executor.threads


class _RayBackend:
    def __init__(self, config: StudyConfig):
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError("the ray executor needs Ray: pip install 'iimm[ray]'") from exc
        self.ray = ray
        self.config = config
        self.started = False
        if not ray.is_initialized():
            # workers of a local instance see this package and the same cache locations
            env = {k: v for k, v in os.environ.items() if k.startswith("IIMM_") or k in ("HF_HUB_OFFLINE", "HF_HOME")}
            env["PYTHONPATH"] = os.pathsep.join(p for p in [_package_parent(), os.environ.get("PYTHONPATH", "")] if p)
            kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": True}
            if config.executor.address:
                ray.init(address=config.executor.address, **kwargs)
            else:
                ray.init(num_cpus=config.executor.num_cpus, include_dashboard=False, **kwargs)
            self.started = True
        self.remote = ray.remote(max_retries=0)(run_unit)
        self.config_ref = ray.put(config)

    def run(self, stage: str, units: list[Unit]) -> Iterable[tuple[Unit, Outcome]]:
        res = dict(_default_resources(self.config, stage))
        res.update(self.config.executor.resources.get(stage, {}))
        refs = {self.remote.options(**res).remote(self.config_ref, u): u for u in units}
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for r in done:
                u = refs[r]
                try:
                    yield u, self.ray.get(r)
                except Exception as exc:  # the worker died (OOM, lost node): record it here, leave no result
                    store_for(self.config).record_failure(u, exc)
                    yield u, Outcome(u.key, u.stage, u.label, "failed", error=f"ray task failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

