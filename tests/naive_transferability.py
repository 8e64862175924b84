"""Naive reference implementations of the transferability scores (tests and benchmark).

Written from each paper's equations with explicit loops over samples, classes and
class pairs and explicit D x D matrices (NCTI and GBC through scikit-learn's PCA/LDA,
as the authors' scripts do). ``tests/test_transferability.py`` checks
:mod:`iimm.transferability` against them; ``benchmarks/bench_transferability.py``
times both.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

__all__ = [
    "naive_emms",
    "naive_gbc",
    "naive_hscore",
    "naive_logme",
    "naive_ncti_terms",
    "naive_sfda",
    "naive_transrate",
]


def naive_transrate(X, y, eps=1e-4):
    """Huang et al. 2022, Eq. 4-6, with an explicit d x d matrix per class."""
    n, d = X.shape
    mean = np.zeros(d)
    for row in X:
        mean += row / n
    Z = X - mean

    def rate(Zs):
        m = Zs.shape[0]
        A = np.eye(d)
        for z in Zs:
            A += np.outer(z, z) / (m * eps)
        return 0.5 * np.linalg.slogdet(A)[1]

    classes = sorted(set(y.tolist()))
    return rate(Z) - sum(rate(Z[y == c]) for c in classes) / len(classes)


def naive_logme(F, y):
    """You et al. 2021, Algorithm 1, with A = alpha I + beta F^T F formed explicitly."""
    n, D = F.shape
    FtF = F.T @ F
    sig = np.linalg.eigvalsh(FtF)
    evid = []
    for c in sorted(set(y.tolist())):
        t_vec = (y == c).astype(float)
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t_old = alpha / beta
            A = alpha * np.eye(D) + beta * FtF
            m = beta * np.linalg.solve(A, F.T @ t_vec)
            gamma = sum(beta * s / (alpha + beta * s) for s in sig)
            mm = float(m @ m)
            res = float(np.sum((F @ m - t_vec) ** 2))
            alpha = gamma / (mm + 1e-5)
            beta = (n - gamma) / (res + 1e-5)
            if abs(alpha / beta - t_old) / t_old <= 1e-3:
                break
        A = alpha * np.eye(D) + beta * FtF
        L = (
            n / 2 * math.log(beta)
            + D / 2 * math.log(alpha)
            - n / 2 * math.log(2 * math.pi)
            - beta / 2 * res
            - alpha / 2 * mm
            - 0.5 * np.linalg.slogdet(A)[1]
        )
        evid.append(L / n)
    return float(np.mean(evid))


def naive_hscore(X, y):
    """Bao et al. 2019: tr(cov(f)^+ cov(E[f|y])), sums over samples."""
    n, d = X.shape
    mu = X.mean(axis=0)
    cf = np.zeros((d, d))
    for row in X:
        cf += np.outer(row - mu, row - mu) / (n - 1)
    g = np.zeros_like(X)
    for c in set(y.tolist()):
        g[y == c] = X[y == c].mean(axis=0)
    gm = g.mean(axis=0)
    cg = np.zeros((d, d))
    for row in g:
        cg += np.outer(row - gm, row - gm) / (n - 1)
    return float(np.trace(np.linalg.pinv(cf, rcond=1e-15) @ cg))


def naive_gbc(X, y, gaussian, pca_dim=64):
    """Pandy et al. 2022, Eq. 3-4: explicit covariance matrices and a double loop over pairs."""
    k = min(pca_dim, X.shape[0], X.shape[1])
    Z = PCA(n_components=k, svd_solver="full").fit_transform(X)
    stats = {}
    for c in sorted(set(y.tolist())):
        Zc = Z[y == c]
        mu = Zc.mean(axis=0)
        var = np.maximum(Zc.var(axis=0), 1e-4)
        if gaussian == "spherical":
            cov = np.eye(k) * var.mean()
        else:
            cov = np.diag(var)
        stats[c] = (mu, cov)
    total = 0.0
    for ci, (mi, Si) in stats.items():
        for cj, (mj, Sj) in stats.items():
            if ci == cj:
                continue
            S = (Si + Sj) / 2
            dm = mi - mj
            db = dm @ np.linalg.inv(S) @ dm / 8 + 0.5 * (
                np.linalg.slogdet(S)[1] - 0.5 * np.linalg.slogdet(Si)[1] - 0.5 * np.linalg.slogdet(Sj)[1]
            )
            total += math.exp(-db)
    return -total


def _naive_fda_proba(X, y, lam=None):
    """Regularised FDA of SFDA written with S_w^{-1} (no eigendecomposition)."""
    n, d = X.shape
    classes = sorted(set(y.tolist()))
    priors = np.array([np.mean(y == c) for c in classes])
    means = np.array([X[y == c].mean(axis=0) for c in classes])
    Sw = np.zeros((d, d))
    for j, c in enumerate(classes):
        Sw += priors[j] * np.cov(X[y == c].T, bias=True)
    if lam is None:
        A = Sw  # power iteration of the SFDA code (3 rounds)
        v = A.sum(axis=1)
        for _ in range(3):
            u = A @ v / np.linalg.norm(A @ v)
            v = A @ u / np.linalg.norm(A @ u)
        lam = max(math.exp(-5 * float(v @ A @ u)), 1e-10)
    Sws = (1 - lam) * Sw + lam * np.trace(Sw) / d * np.eye(d)
    W = means @ np.linalg.inv(Sws)
    logits = np.zeros((n, len(classes)))
    for i in range(n):
        for j in range(len(classes)):
            logits[i, j] = W[j] @ X[i] - 0.5 * W[j] @ means[j] + math.log(priors[j])
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    return P / P.sum(axis=1, keepdims=True), lam


def naive_sfda(X, y):
    """Shao et al. 2022: FDA posteriors, ConfMix (Eq. 5), refit, mean true-class probability."""
    X = X.copy()
    n = len(y)
    classes = sorted(set(y.tolist()))
    P, lam = _naive_fda_proba(X, y)
    P = np.exp(P) / np.exp(P).sum(axis=1, keepdims=True)
    means = np.array([X[y == c].mean(axis=0) for c in classes])
    mixed = np.zeros_like(X)
    for i in range(n):
        others = np.mean([means[j] for j in range(len(classes)) if j != y[i]], axis=0)
        p = P[i, y[i]]
        mixed[i] = p * X[i] + (1 - p) * others
    P2, _ = _naive_fda_proba(mixed, y, lam)
    return float(np.mean([P2[i, y[i]] for i in range(n)]))


def naive_ncti_terms(X, y, n_components):
    """Wang et al. 2023, the authors' pipeline with scikit-learn's PCA and LDA."""
    Z = PCA(n_components=n_components, svd_solver="full").fit_transform(X)
    ev = np.var(Z, axis=0, ddof=1)
    temp = max(math.exp(-ev[:32].sum()), 1e-10)
    if temp == 1e-10:
        clf = LinearDiscriminantAnalysis(solver="svd")
    else:
        clf = LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(temp))
    low = clf.fit_transform(Z, y)
    low = low - low.mean(axis=0)
    seli = np.linalg.norm(low, ord="nuc")
    P = clf.predict_proba(Z)
    ncc = float(np.mean([P[i, y[i]] for i in range(len(y))]))
    vc = math.log(sum(np.linalg.norm(P[y == c], ord="nuc") for c in sorted(set(y.tolist()))))
    return {"seli": seli, "ncc": ncc, "vc": vc}, temp


def _simplex_by_bisection(v):
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        tau = (lo + hi) / 2
        if np.maximum(v - tau, 0).sum() > 1:
            lo = tau
        else:
            hi = tau
    return np.maximum(v - (lo + hi) / 2, 0)


def naive_emms(X, y, embs, max_iter=1, tol=1e-8):
    """Meng/Shao et al.: standardise, alternate lstsq for w and simplex-projected lstsq for t."""
    n = len(y)
    width = max(e.shape[1] for e in embs)
    Zs = []
    for e in embs:
        Z = np.array([e[y[i]] for i in range(n)])
        Z = (Z - Z.mean(axis=0)) / (Z.std(axis=0) + 1e-8)
        Zs.append(np.hstack([Z, np.zeros((n, width - Z.shape[1]))]))
    Xs = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    K = len(Zs)
    t = np.full(K, 1 / K)
    Tm = sum(t[k] * Zs[k] for k in range(K))
    for _ in range(max_iter):
        w = np.linalg.lstsq(Xs, Tm, rcond=None)[0]
        pred = Xs @ w
        A = np.stack([Z.reshape(-1) for Z in Zs], axis=1)
        t_ls = np.linalg.lstsq(A, pred.reshape(-1), rcond=None)[0]
        t_new = _simplex_by_bisection(t_ls)
        Tm = sum(t_new[k] * Zs[k] for k in range(K))
        done = np.abs(t_new - t).sum() < tol
        t = t_new
        if done:
            break
    return -float(np.sum((pred - Tm) ** 2)) / n
