"""Per-step cost of iimm.finetune.train against a bare PyTorch loop, and trainable fractions.

For each method the same prepared model is trained for one epoch of ``--steps``
steps by :func:`iimm.finetune.train` (data loading from a Dataset, class head,
loss, SGD with momentum, cosine schedule, progress bar off) and by a bare loop
doing the same forward/backward/step on pre-batched tensors. Both run
``--repeats`` times, interleaved, after one warm-up; the medians are compared
(target: ratio <= 1.1). Also printed: trainable / total parameters per method.

    python benchmarks/bench_finetune.py                 # small CPU model
    python benchmarks/bench_finetune.py --model ViT-B-32 --device cuda --batch-size 128
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F


class _Task(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, classnames: list[str]) -> None:
        self.x, self.y, self.classnames = x, y, classnames
        self.templates = ["a photo of a {}.", "a {} thing."]
        self.name = "bench"

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def _small_cfg() -> dict:
    return {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 4},
    }


def _bare_epoch(model, method: str, batches, tokens, n_cls: int, n_tpl: int, lr: float, device) -> float:
    """Plain PyTorch: the same forward / cross-entropy / backward / SGD step / schedule."""
    params = [p for p in model.model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    total = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    text_trains = any(p.requires_grad for n, p in model.model.named_parameters()
                      if n.startswith(("text.", "transformer.", "token_embedding", "positional_embedding", "ln_final", "text_projection", "text_adapter")))
    probe = getattr(model.model, "probe_head", None) if method == "probe" else None

    def head():
        emb = model.encode_text(tokens, normalize=True).float().reshape(n_cls, n_tpl, -1)
        return F.normalize(emb.mean(1), dim=-1)

    with torch.no_grad():
        fixed = None if text_trains else head()
    model.model.train(method not in ("adapter", "probe"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        feats = model.encode_image(x, normalize=True)
        logits = probe(feats) if probe is not None else model.logits(feats, fixed if fixed is not None else head())
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    sync()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    from iimm.finetune import METHODS, count_parameters, prepare, train
    from iimm.models import load_model, register_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bench-small", help="registry/open_clip name; default: a small 4-layer ViT at 64 px")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.model == "bench-small":
        register_model("bench-small", model_cfg=_small_cfg(), overwrite=True)
    base = load_model(args.model, device=device, pretrained=False, seed=0)
    size = base.image_size
    n = args.batch_size * args.steps
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, *size, generator=g)
    y = torch.randint(0, args.classes, (n,), generator=g)
    task = _Task(x, y, [f"class {i}" for i in range(args.classes)])
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size]) for i in range(0, n, args.batch_size)]
    print(f"model {args.model} on {device}, batch {args.batch_size}, {args.steps} steps/epoch, "
          f"median of {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"{'method':<10} {'trainable':>12} {'total':>12} {'fraction':>9} {'iimm ms/step':>13} {'bare ms/step':>13} {'ratio':>6}")
    lr = 1e-3
    for method in args.methods.split(","):
        opts = {"num_classes": args.classes} if method == "probe" else {}
        ours, bare = [], []
        m_ours = prepare(copy.deepcopy(base), method, **opts)
        m_bare = prepare(copy.deepcopy(base), method, **opts)
        tokens = m_bare.tokenize([t.format(c) for c in task.classnames for t in task.templates]).to(device)
        for rep in range(args.repeats + 1):
            res = train(m_ours, task, None, epochs=1, batch_size=args.batch_size, lr=lr, warmup=0.0, grad_clip=None,
                        probe_init="random", progress=False, seed=rep)
            tb = _bare_epoch(m_bare, method, batches, tokens, args.classes, len(task.templates), lr, device)
            if rep:  # first round is warm-up
                ours.append(res.history[0]["time_s"] / args.steps)
                bare.append(tb / args.steps)
        trainable, total = count_parameters(m_ours)
        o, b = statistics.median(ours), statistics.median(bare)
        print(f"{method:<10} {trainable:>12,} {total:>12,} {trainable / total:>9.4%} {1e3 * o:>13.1f} {1e3 * b:>13.1f} {o / b:>6.2f}")


if __name__ == "__main__":
    main()
