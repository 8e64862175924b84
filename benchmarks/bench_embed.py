"""Benchmark of iimm.embed.

1. Throughput: images/s of ``embed`` (DataLoader workers decoding and
   preprocessing, tqdm, zero-shot head, float32 copy-out) against a bare loop
   of ``model.encode_image`` over tensors preprocessed in advance, for the
   same model and batch size. Target ratio >= 0.9.
2. Cache hit: time to load a cached entry of 10,000 x 512 embeddings (with and
   without the SHA-256 check).

Usage::

    python benchmarks/bench_embed.py [--model clip] [--dataset mnist] [--n 256]
        [--batch-size 64] [--device cpu] [--num-workers 1] [--threads N]

Models are randomly initialised (no weights needed); throughput does not
depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def _dataset(name: str, n: int):
    from iimm.data import DatasetNotFoundError, load_dataset

    try:
        ds = load_dataset(name, "test", record_split=False)
    except DatasetNotFoundError as exc:
        print(f"[{name} not installed ({exc.__class__.__name__}); using sklearn-digits]", file=sys.stderr)
        ds = load_dataset("sklearn-digits", "test", record_split=False)
    return ds.subset(min(n, len(ds)))


def bench_throughput(args) -> dict:
    import torch

    from iimm.embed import embed
    from iimm.models import load_model

    model = load_model(args.model, device=args.device, pretrained=False)
    ds = _dataset(args.dataset, args.n)
    x = torch.stack([model.preprocess(ds.image(i)) for i in range(len(ds))])
    batches = list(torch.split(x, args.batch_size))
    with torch.inference_mode():  # warm-up (allocator, kernels)
        model.encode_image(batches[0].to(model.device))
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    cpu_bare, cpu_embed = [], []

    def bare() -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            for b in batches:
                model.encode_image(b.to(model.device, non_blocking=True)).float().cpu()
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        cpu_bare.append(time.process_time() - c0)
        return time.perf_counter() - t0

    workers = []

    def full() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        emb = embed(model, ds, "test", batch_size=args.batch_size, cache=False, num_workers=args.num_workers,
                    progress=False)
        cpu_embed.append(time.process_time() - c0)
        workers.append(emb.metadata["num_workers"])
        return time.perf_counter() - t0, emb.metadata["seconds_images"]

    t_bare, t_embed, t_pass = [], [], []
    for _ in range(args.repeats):  # interleave to share any drift in machine load
        t_bare.append(bare())
        total, image_pass = full()
        t_embed.append(total)
        t_pass.append(image_pass)
    n = len(ds)
    ips_bare, ips_embed, ips_pass = n / min(t_bare), n / min(t_embed), n / min(t_pass)
    prompts = len(ds.classnames) * len(ds.templates)
    return {"model": args.model, "dataset": ds.name, "n": n, "batch_size": args.batch_size,
            "num_workers": workers[-1], "device": str(model.device), "threads": torch.get_num_threads(),
            "bare_images_per_s": ips_bare, "embed_images_per_s": ips_embed, "pass_images_per_s": ips_pass,
            "ratio": ips_embed / ips_bare, "ratio_pass": ips_pass / ips_bare, "prompts": prompts,
            "head_s": min(t_embed) - min(t_pass), "cpu_ratio": min(cpu_bare) / min(cpu_embed)}


def bench_cache(n: int = 10_000, d: int = 512, c: int = 100, repeats: int = 5) -> dict:
    from iimm.embed import Embeddings, _store, load_cached

    rng = np.random.default_rng(0)
    images = rng.standard_normal((n, d)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts = rng.standard_normal((c, d)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    emb = Embeddings(images, rng.integers(0, c, n).astype(np.int64), texts, [f"c{i}" for i in range(c)], {})
    key = {"model": "bench", "weights": "synthetic", "dataset": "synthetic", "split": "test", "n": n}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _store(emb, key, tmp)
        t_store = time.perf_counter() - t0
        out = {}
        for verify in (True, False):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                hit = load_cached(key, tmp, verify=verify)
                times.append(time.perf_counter() - t0)
                assert hit is not None and np.array_equal(hit.images, images)
            out["load_s_verified" if verify else "load_s_size_only"] = min(times)
    out.update(store_s=t_store, n=n, d=d)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="clip")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-workers", type=int, default=None, help="default: embed's choice")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_throughput:
        r = bench_throughput(args)
        print(f"throughput  model={r['model']} dataset={r['dataset']} n={r['n']} batch={r['batch_size']} "
              f"workers={r['num_workers']} device={r['device']} torch_threads={r['threads']}")
        print(f"  bare encode_image loop (preloaded tensors): {r['bare_images_per_s']:8.1f} images/s")
        print(f"  iimm.embed (DataLoader, preprocessing, head): {r['embed_images_per_s']:8.1f} images/s")
        print(f"  CPU-time ratio bare/embed (this process; robust to other load, excludes worker processes): "
              f"{r['cpu_ratio']:.3f}")
        print(f"  iimm.embed image pass only (without the head): {r['pass_images_per_s']:8.1f} images/s")
        print(f"  ratio embed/bare, image pass: {r['ratio_pass']:.3f}   (target >= 0.9)")
        print(f"  ratio embed/bare, total:      {r['ratio']:.3f}   (includes the zero-shot head: "
              f"{r['prompts']} prompts, {r['head_s']:.2f} s, a fixed cost that vanishes for large n)")
    c = bench_cache()
    print(f"cache  {c['n']} x {c['d']} float32: store {c['store_s'] * 1e3:.1f} ms, "
          f"hit with SHA-256 check {c['load_s_verified'] * 1e3:.1f} ms, size check only {c['load_s_size_only'] * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
