"""``iimm sandbox``: pretrain the sandbox models, generate world data, list the tasks.

* ``iimm sandbox pretrain [--model NAME ...] [--profile smoke|quick|full] [--seed N] [--force]``
* ``iimm sandbox generate [--n N] [--seed S] [--out FILE.npz] [--task NAME --split train|test]``
* ``iimm sandbox tasks``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_cli", "pretrain_all"]


def _same_config(path: Path, name: str, profile: str, seed: int) -> bool:
    """True if ``path`` exists with a provenance record of this code's config and seed."""
    from ..provenance import config_hash
    from . import models as SM
    from .pretrain import PROFILES, WORLD_VERSION, build_tokenizer

    side = path.with_suffix(".json")
    if not (path.is_file() and side.is_file()):
        return False
    try:
        rec = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    from dataclasses import asdict

    want = {"sandbox_pretrain": name, "profile": asdict(PROFILES[profile]),
            "model_cfg": SM.model_config(name, build_tokenizer().vocab_size, PROFILES[profile].arch), "world_version": WORLD_VERSION}
    return rec.get("seed") == seed and config_hash(rec.get("config", {})) == config_hash(json.loads(json.dumps(want)))


def pretrain_all(models: list[str] | None = None, profile: str = "full", seed: int = 0, force: bool = False,
                 out_dir: str | Path | None = None) -> dict[str, dict]:
    """Pretrain the given sandbox models (all by default), skipping up-to-date checkpoints."""
    from . import models as SM
    from .pretrain import checkpoint_path, pretrain

    out: dict[str, dict] = {}
    for name in models or list(SM.SANDBOX_MODELS):
        path = checkpoint_path(name, profile, root=out_dir)
        if not force and _same_config(path, name, profile, seed):
            print(f"[{name}/{profile}] up to date: {path} (use --force to retrain)")
            out[name] = json.loads(path.with_suffix(".json").read_text())
            continue
        out[name] = pretrain(name, profile, seed, out=path)
    return out


def _cmd_pretrain(args: argparse.Namespace) -> int:
    recs = pretrain_all(args.model, args.profile, args.seed, args.force, args.out)
    for name, rec in recs.items():
        zs = ", ".join(f"{k}={v:.2f}" for k, v in rec.get("zero_shot", {}).items())
        print(f"{name}: train {rec['seconds']['train']:.0f}s  {rec['checkpoint']}\n  zero-shot: {zs}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import numpy as np

    from .._io import atomic_path

    if args.task:
        from .tasks import generate_task

        images, labels = generate_task(args.task, args.split, args.n, seed=args.seed)
        out = Path(args.out or f"{args.task}-{args.split}-s{args.seed}-n{args.n}.npz")
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, images=images, labels=labels)
    else:
        from .pretrain import world_pairs

        if args.out:
            world_pairs(args.n, args.seed, cache=Path(args.out))
            out = Path(args.out)
        else:
            from ..paths import datasets_dir
            from .pretrain import WORLD_VERSION

            world_pairs(args.n, args.seed, cache=True)
            out = datasets_dir() / "sandbox" / f"world-v{WORLD_VERSION}-s{args.seed}-n{args.n}.npz"
    print(out)
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import list_tasks, task_info

    for name in list_tasks():
        info = task_info(name)
        print(f"{name:26s} {len(info['classes']):3d} classes  coverage={info['coverage']:6s}  {info['description']}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``iimm sandbox ...`` on the ``iimm`` command's sub-parsers."""
    from . import models as SM

    p = subparsers.add_parser("sandbox", help="the offline sandbox: world, tasks, pretrained models")
    sub = p.add_subparsers(dest="sandbox_command", metavar="SANDBOX_COMMAND")
    sub.required = True

    pp = sub.add_parser("pretrain", help="pretrain sandbox models (checkpoints outside git)")
    pp.add_argument("--model", action="append", choices=list(SM.SANDBOX_MODELS),
                    help="model to pretrain (repeatable; default: all)")
    pp.add_argument("--profile", choices=["smoke", "quick", "full"], default="full")
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--out", default=None, help="checkpoint folder (default: <checkpoints_dir>/sandbox)")
    pp.add_argument("--force", action="store_true", help="retrain even if an up-to-date checkpoint exists")
    pp.set_defaults(func=_cmd_pretrain)

    pg = sub.add_parser("generate", help="generate world pairs (or a task split) into an .npz file")
    pg.add_argument("--n", type=int, default=10000)
    pg.add_argument("--seed", type=int, default=0)
    pg.add_argument("--out", default=None, help="output .npz (default: the world cache under datasets_dir)")
    pg.add_argument("--task", default=None, help="a procedural task name instead of world pairs")
    pg.add_argument("--split", choices=["train", "test"], default="train")
    pg.set_defaults(func=_cmd_generate)

    pt = sub.add_parser("tasks", help="list the sandbox tasks")
    pt.set_defaults(func=_cmd_tasks)
