"""Benchmark of the sandbox: world generation speed and pretraining cost per profile.

Prints images per second of the world generator, seconds per training step of
each sandbox model at each profile's tower size and batch, the projected
pretraining time of each profile (steps x seconds per step) and its ratio to
the budget of issue 7 (smoke: tens of seconds per model; quick: a couple of
minutes for all models; full: about 20 CPU-minutes for all models on 2 cores).

    python benchmarks/bench_sandbox.py [--threads 2] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

BUDGET_S = {"smoke": 60.0, "quick": 180.0, "full": 1200.0}  # all three models together


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model and profile (after 1 warm-up)")
    args = ap.parse_args()

    import torch

    from iimm.sandbox import models as SM
    from iimm.sandbox import world as W
    from iimm.sandbox.pretrain import PROFILES, _loss_value, build_tokenizer, images_to_tensor

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    images, captions = W.generate_pairs(1000, seed=123)
    gen = time.perf_counter() - t
    print(f"world generator: {1000 / gen:.0f} image-caption pairs/s")

    tok = build_tokenizer()
    tokens = tok(captions)
    for prof in PROFILES.values():
        total = 0.0
        for name in SM.SANDBOX_MODELS:
            torch.manual_seed(0)
            model = SM.build_model(SM.model_config(name, tok.vocab_size, prof.arch)).train()
            loss_fn = SM.build_loss(name)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            b = min(prof.batch_size, len(captions))
            x, tt = images_to_tensor(images[:b]), tokens[:b]
            times = []
            for i in range(args.steps + 1):
                t = time.perf_counter()
                loss = _loss_value(name, model, loss_fn, x, tt)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i:
                    times.append(time.perf_counter() - t)
            per_step = sorted(times)[len(times) // 2]
            proj = per_step * prof.steps
            total += proj
            n_params = sum(p.numel() for p in model.parameters())
            print(f"{prof.name:5s} {name:15s} {n_params / 1e6:5.2f}M params  batch {b:3d}  "
                  f"{per_step:6.3f} s/step  projected {proj:7.1f} s for {prof.steps} steps")
        print(f"{prof.name:5s} all models: projected {total:7.1f} s; budget {BUDGET_S[prof.name]:.0f} s; "
              f"ratio {total / BUDGET_S[prof.name]:.2f} (<= 1 meets the budget)")


if __name__ == "__main__":
    main()
