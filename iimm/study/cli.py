"""``iimm study``: run, inspect and tabulate a declared study.

::

    iimm study run CONFIG [--profile NAME] [--executor local|ray] [--only STAGE ...] [--dry-run]
    iimm study status CONFIG [--profile NAME]
    iimm study tables CONFIG [--profile NAME]

``run`` executes every unit not yet cached (progress bar per stage, one summary
line at the end) and assembles the tables; the exit code is 1 when a unit
failed or was blocked. ``--dry-run`` lists the units, how many are cached and an
estimate of the remaining time, and runs nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Sequence

from .config import STAGES, StudyConfig, load_config

__all__ = ["add_cli", "main", "dry_run", "status_report"]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``iimm study {run,status,tables}`` on the top-level sub-parsers."""
    p = subparsers.add_parser("study", help="run a declared study (units, resumable cache, local/Ray executors)",
                              description=__doc__.replace("``", "").replace("::\n", ""),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="study_command", metavar="ACTION")
    sub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("config", help="study YAML file")
        q.add_argument("--profile", default=None, help="profile of the config to apply (its profiles: section)")

    run = sub.add_parser("run", help="run every unit that is not cached, then write the tables")
    common(run)
    run.add_argument("--executor", choices=("local", "ray"), default=None, help="override executor.kind")
    run.add_argument("--address", default=None, help="Ray cluster address (ray executor)")
    run.add_argument("--workers", type=int, default=None, help="process-pool size for CPU units (local executor)")
    run.add_argument("--only", action="append", choices=STAGES, default=None, metavar="STAGE",
                     help=f"run only this stage (repeatable; one of {', '.join(STAGES)})")
    run.add_argument("--dry-run", action="store_true", help="list units and what remains; run nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    st = sub.add_parser("status", help="units cached, failed, running and pending per stage")
    common(st)
    st.set_defaults(func=_cmd_status)

    tb = sub.add_parser("tables", help="(re)assemble the parquet tables from the cache")
    common(tb)
    tb.set_defaults(func=_cmd_tables)


def _load(args: argparse.Namespace) -> StudyConfig:
    cfg = load_config(args.config, profile=args.profile)
    changes = {}
    if getattr(args, "executor", None):
        changes["kind"] = args.executor
    if getattr(args, "address", None):
        changes["address"] = args.address
    if getattr(args, "workers", None):
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        changes["workers"] = args.workers
    return cfg.with_executor(**changes) if changes else cfg


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def status_report(cfg: StudyConfig, only: Sequence[str] | None = None, list_units: bool = False) -> tuple[str, dict]:
    """Text report of units per stage (cached/failed/running/pending) and an estimate of what remains.

    The estimate multiplies each stage's pending count by the mean wall time of its cached units
    (unknown for a stage with none cached yet).
    """
    from .executors import store_for
    from .units import expand_units

    units = expand_units(cfg, only=only)
    store = store_for(cfg)
    lines = []
    counts: dict[str, dict[str, int]] = {}
    total_est, unknown = 0.0, []
    for stage in STAGES:
        su = [u for u in units if u.stage == stage]
        if not su:
            continue
        c = {"total": len(su), "cached": 0, "failed": 0, "running": 0, "pending": 0}
        times = []
        for u in su:
            e = store.load(u)
            if e is not None:
                c["cached"] += 1
                times.append(float(e.get("wall_time_s", 0.0)))
                state = "cached"
            elif store.claimed(u):
                c["running"] += 1
                state = "running"
            elif store.failure(u) is not None:
                c["failed"] += 1
                state = "failed"
            else:
                c["pending"] += 1
                state = "pending"
            if list_units:
                lines.append(f"  {state:<8} {u.key[:12]}  {u.label}")
            if state == "failed" and not list_units:
                f = store.failure(u) or {}
                lines.append(f"  failed   {u.label}: {f.get('error_type')}: {f.get('error', '')[:200]}")
        remaining = c["pending"] + c["failed"] + c["running"]
        est = ""
        if remaining:
            if times:
                t = statistics.fmean(times) * remaining
                total_est += t
                est = f", ~{_fmt_s(t)} left"
            else:
                unknown.append(stage)
                est = ", time left unknown"
        counts[stage] = c
        lines.append(f"{stage:>13}: {c['total']} units, {c['cached']} cached, {c['failed']} failed, "
                     f"{c['running']} running, {c['pending']} pending{est}")
    total = sum(c["total"] for c in counts.values())
    cached = sum(c["cached"] for c in counts.values())
    tail = f"study {cfg.name}: {total} units, {cached} cached, {total - cached} to run"
    if total - cached:
        known = f"estimated {_fmt_s(total_est)}" if total_est > 0 else ""
        if unknown:
            known += (" plus " if known else "time ") + f"unknown for {', '.join(unknown)} (no unit cached yet)"
        tail += f", {known}"
    lines.append(tail)
    return "\n".join(lines), counts


def dry_run(cfg: StudyConfig, only: Sequence[str] | None = None) -> str:
    """The dry-run listing: every unit with its state, per-stage counts and the estimate."""
    text, _ = status_report(cfg, only=only, list_units=True)
    return text


def _cmd_run(args: argparse.Namespace) -> int:
    from .executors import run_units
    from .tables import write_outputs
    from .units import expand_units

    cfg = _load(args)
    if args.dry_run:
        print(dry_run(cfg, only=args.only))
        return 0
    units = expand_units(cfg, only=args.only)
    summary = run_units(cfg, units, progress=not args.no_progress)
    _, paths, _ = write_outputs(cfg, expand_units(cfg))
    print(summary.line(cfg.name) + f"; tables in {next(iter(paths.values())).parent}")
    for o in summary.outcomes:
        if o.status in ("failed", "blocked"):
            print(f"  {o.status}: {o.label}: {o.error}", file=sys.stderr)
    return 0 if summary.ok else 1


def _cmd_status(args: argparse.Namespace) -> int:
    text, counts = status_report(_load(args))
    print(text)
    return 1 if any(c["failed"] for c in counts.values()) else 0


def _cmd_tables(args: argparse.Namespace) -> int:
    from .executors import _setup_worker
    from .tables import write_outputs
    from .units import expand_units

    cfg = _load(args)
    _setup_worker(cfg)
    tables, paths, files = write_outputs(cfg, expand_units(cfg))
    for name, p in paths.items():
        print(f"{name}: {len(tables[name])} rows -> {p}")
    if files:
        print(f"embeddings: {len(files)} files -> {files[0].parent}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m iimm.study.cli run CONFIG``), same as ``iimm study``."""
    parser = argparse.ArgumentParser(prog="iimm")
    sub = parser.add_subparsers(dest="command")
    sub.required = True
    add_cli(sub)
    args = parser.parse_args(["study", *(argv if argv is not None else sys.argv[1:])])
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"iimm study: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
