"""``iimm finetune``: grid-search one (model, method, dataset) and evaluate the selected run.

    iimm finetune --model clip --method lora --dataset eurosat --eval eurosat mnist --out data/paper/
    iimm finetune --model clip --method full --dataset mnist --lr 1e-3 --weight-decay 1e-4 --epochs 5

Without ``--lr``/``--weight-decay``/``--rank``/``--reduction`` the paper's grid
is searched; each given option replaces that axis of the grid. Writes
``runs-<model>-<method>-<dataset>.parquet`` (every trial) and, with
``--eval``, ``evaluations-<model>-<method>-<dataset>.parquet`` into ``--out``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

__all__ = ["add_cli"]


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``iimm finetune``."""
    from .methods import METHODS

    p = subparsers.add_parser(
        "finetune", help="fine-tune a model on a task (grid search) and evaluate it ID/OOD",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model name (clip, siglip, coca, eva02, sandbox-*, ARCH/TAG)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--dataset", required=True, help="task to train on (iimm.data name; splits train/val)")
    p.add_argument("--eval", nargs="+", default=None, metavar="DATASET", help="tasks to test the selected run on")
    p.add_argument("--lr", type=float, nargs="+", default=None)
    p.add_argument("--weight-decay", type=float, nargs="+", default=None)
    p.add_argument("--rank", type=int, nargs="+", default=None, help="LoRA rank(s)")
    p.add_argument("--reduction", type=int, nargs="+", default=None, help="CLIP-Adapter reduction(s)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--random-init", action="store_true", help="randomly initialised model (no weights)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR", help="resumable per-trial checkpoints")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the parquet tables")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli)
    return p


def _cli(args: argparse.Namespace) -> int:
    from .grid import grid_search, paper_grid
    from .records import write_table

    grid: dict[str, Any] = dict(paper_grid(args.method))
    for key, values in (("lr", args.lr), ("weight_decay", args.weight_decay), ("rank", args.rank), ("reduction", args.reduction)):
        if values is None:
            continue
        if key not in grid:
            raise ValueError(f"--{key.replace('_', '-')} does not apply to method {args.method!r}")
        grid[key] = tuple(values)
    zero_shot = None
    if args.eval:
        from iimm.models import load_model

        zero_shot = load_model(args.model, device=args.device, pretrained=not args.random_init)
    out = grid_search(
        args.method, args.dataset, grid, model=args.model, pretrained=not args.random_init, device=args.device,
        eval_datasets=args.eval, zero_shot=zero_shot, checkpoint_dir=args.checkpoint_dir, progress=not args.quiet,
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, seed=args.seed,
    )
    stem = "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", s) for s in (args.model, args.method, args.dataset))
    folder = Path(args.out)
    runs_path = write_table(out.runs, folder / f"runs-{stem}.parquet", seed=args.seed)
    best = out.runs.loc[out.best_index]
    print(f"{len(out.runs)} trial(s); selected run {best['run_id']}: val_accuracy={best['val_accuracy']:.4f} "
          f"trainable={int(best['trainable_params'])}/{int(best['total_params'])} -> {runs_path}")
    if out.evaluations is not None:
        eval_path = write_table(out.evaluations, folder / f"evaluations-{stem}.parquet", seed=args.seed)
        for _, row in out.evaluations.iterrows():
            print(f"  {row['eval_dataset']:<20} acc={row['accuracy']:.4f} zero-shot={row['zero_shot_accuracy']:.4f} "
                  f"{'ID' if row['in_domain'] else 'OOD'}")
        print(f"-> {eval_path}")
    return 0
