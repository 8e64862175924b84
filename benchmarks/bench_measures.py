"""Benchmark: iimm's closed-form IIMM against the naive blocked pairwise computation.

The official implementation computes the intra-images term with an O(N^2 d)
blocked matrix product and the inter-modal term from the full N x C similarity
matrix. This script times both at several N (d = 512, C = 100) in one run and
prints the speed ratio and the peak extra memory (tracemalloc, numpy buffers)
relative to the size of the float32 embedding matrix.

    python benchmarks/bench_measures.py            # N = 1k, 10k, 50k
    python benchmarks/bench_measures.py --sizes 1000 5000
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np

import iimm


def naive_iimm(images: np.ndarray, texts: np.ndarray, labels: np.ndarray, block: int = 4096) -> float:
    """The official way: normalise, blocked X @ X.T for the intra term, full X @ T.T for the inter term."""
    x = images / np.linalg.norm(images, axis=1, keepdims=True)
    t = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    n = x.shape[0]
    upper = 0.0
    for i in range(0, n, block):
        sims = x[i : i + block] @ x.T
        rows = np.arange(i, min(i + block, n))
        mask = np.arange(n)[None, :] > rows[:, None]  # j > i
        upper += float(sims[mask].sum())
    intra = 2.0 * upper / (n * (n - 1))
    s = x @ t.T
    s[np.arange(n), labels] = np.nan
    inter = float(np.nanmean(s, axis=1).mean())
    return (inter + intra) / 2


def measure(fn, *args, repeats: int = 1):
    """Best wall time of ``repeats`` untraced calls, then peak memory of one traced call
    (tracemalloc slows allocation-heavy code, so time and memory are measured apart)."""
    elapsed = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn(*args)
        elapsed = min(elapsed, time.perf_counter() - t0)
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"d={args.dim} C={args.classes}; peak memory is extra memory over the float32 inputs")
    header = f"{'N':>7} {'naive s':>9} {'iimm s':>9} {'speed-up':>9} {'naive peak/emb':>15} {'iimm peak/emb':>14} {'|diff|':>9}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        images = rng.normal(size=(n, args.dim)).astype(np.float32) + 0.3
        texts = rng.normal(size=(args.classes, args.dim)).astype(np.float32)
        labels = rng.integers(0, args.classes, n)
        emb_bytes = images.nbytes
        ref, t_naive, p_naive = measure(naive_iimm, images.astype(np.float64), texts.astype(np.float64), labels)
        iimm.iimm(images[:100], texts, labels[:100])  # warm-up: imports, thread pools
        got, t_fast, p_fast = measure(iimm.iimm, images, texts, labels, repeats=5)
        print(
            f"{n:>7} {t_naive:>9.3f} {t_fast:>9.4f} {t_naive / t_fast:>8.0f}x "
            f"{p_naive / emb_bytes:>15.2f} {p_fast / emb_bytes:>14.3f} {abs(ref - got):>9.1e}"
        )


if __name__ == "__main__":
    main()
