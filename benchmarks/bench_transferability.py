"""Benchmark: the transferability baselines at N = 10,000, D = 512, C = 100 on 2 cores.

For every score of :mod:`iimm.transferability` this prints the wall time, the peak
extra memory of numpy buffers (tracemalloc, measured in a separate run so that
tracing does not slow the timed run), and the time of the naive reference
implementation written from the paper (explicit loops over samples / classes /
class pairs and explicit D x D matrices; scikit-learn's PCA + LDA pipeline for
NCTI, as in the authors' script), with the speed ratio. Each score must finish
within 60 s at full size; the script exits with status 1 if one does not, or if
a score differs from its naive reference by more than 1e-6 (relative).

    python benchmarks/bench_transferability.py            # N=10k, D=512, C=100
    python benchmarks/bench_transferability.py --small    # N=2k, D=128, C=20
    python benchmarks/bench_transferability.py --no-naive # skip the naive timings
    python benchmarks/bench_transferability.py --threads 1 # one BLAS thread
"""

from __future__ import annotations

import argparse
import os

PARSER = argparse.ArgumentParser(description="Benchmark the transferability baselines against naive versions.")
PARSER.add_argument("--small", action="store_true", help="quick run: N=2000, D=128, C=20")
PARSER.add_argument("--no-naive", action="store_true", help="skip the naive reference timings")
PARSER.add_argument("--threads", type=int, default=2, help="BLAS threads (default 2, the target machine)")

if __name__ == "__main__":  # BLAS reads its thread count when numpy is imported
    _threads = str(PARSER.parse_known_args()[0].threads)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads

import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import naive_transferability as naive  # noqa: E402

from iimm import transferability as T  # noqa: E402

BUDGET_S = 60.0


def make_data(n: int, d: int, c: int, seed: int = 0):
    """Unit-norm features (like CLIP image embeddings) around C class centres, balanced."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    rng.shuffle(y)
    centres = rng.normal(size=(c, d)) / math.sqrt(d)
    x = centres[y] * 0.1 + rng.normal(size=(n, d)) / math.sqrt(d)  # overlapping classes
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    embs = [rng.normal(size=(c, d)), rng.normal(size=(c, 384))]  # text tower + MiniLM widths
    return x.astype(np.float32), y, embs


def cases(x, y, embs):
    """(name, fast callable, naive callable or None)."""
    xf = x.astype(np.float64)
    ncti_naive = lambda: (lambda t: t["seli"] + t["ncc"] - t["vc"])(naive.naive_ncti_terms(xf, y, 64)[0])  # noqa: E731
    return [
        ("transrate", lambda: T.transrate(x, y), lambda: naive.naive_transrate(xf, y)),
        ("sfda", lambda: T.sfda(x, y), lambda: naive.naive_sfda(xf, y)),
        ("ncti", lambda: T.ncti(x, y), ncti_naive),
        ("emms", lambda: T.emms(x, y, embs), lambda: naive.naive_emms(xf, y, embs)),
        ("logme", lambda: T.logme(x, y), lambda: naive.naive_logme(xf, y)),
        ("hscore", lambda: T.hscore(x, y), lambda: naive.naive_hscore(xf, y)),
        ("gbc_spherical", lambda: T.gbc(x, y, "spherical"), lambda: naive.naive_gbc(xf, y, "spherical")),
        ("gbc_diagonal", lambda: T.gbc(x, y, "diagonal"), lambda: naive.naive_gbc(xf, y, "diagonal")),
    ]


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def peak_mib(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def main(argv: list[str] | None = None) -> int:
    args = PARSER.parse_args(argv)
    n, d, c = (2000, 128, 20) if args.small else (10_000, 512, 100)
    x, y, embs = make_data(n, d, c)
    print(f"N={n}  D={d}  C={c}  BLAS threads={os.environ.get('OPENBLAS_NUM_THREADS', '?')}  numpy {np.__version__}")
    xw, yw, ew = make_data(200, 16, 4, seed=1)
    for _, fast, _ in cases(xw, yw, ew):  # warm-up: imports, BLAS thread pools
        fast()
    print(f"features {x.nbytes / 2**20:.1f} MiB (float32); budget {BUDGET_S:.0f} s per score\n")
    header = f"{'score':<14}{'time s':>9}{'peak MiB':>10}{'naive s':>10}{'speed-up':>10}{'rel diff':>10}  value"
    print(header)
    print("-" * len(header))
    ok = True
    for name, fast, slow in cases(x, y, embs):
        value, secs = timed(fast)
        mem = peak_mib(fast)
        if args.no_naive or slow is None:
            nsecs, ratio, diff = float("nan"), float("nan"), float("nan")
        else:
            ref, nsecs = timed(slow)
            ratio = nsecs / secs
            diff = abs(value - ref) / max(abs(ref), 1e-12)
            ok &= diff <= 1e-6
        ok &= secs <= BUDGET_S
        flag = "" if secs <= BUDGET_S else "  OVER BUDGET"
        print(f"{name:<14}{secs:>9.2f}{mem:>10.1f}{nsecs:>10.2f}{ratio:>9.1f}x{diff:>10.1e}  {value:.6g}{flag}", flush=True)
    print("\nall within budget and equal to the naive references" if ok else "\nFAILED: see the rows above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
