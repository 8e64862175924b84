"""Tests of iimm.measures against naive implementations written from the paper's formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import davies_bouldin_score, silhouette_score

import iimm
from iimm import measures

# --------------------------------------------------------------------------- naive references


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def naive_inter(X, T, y):
    """Paper Sec. 3.2, literally: double loop over images and incorrect texts."""
    total = 0.0
    for i, x in enumerate(X):
        s = 0.0
        for c, t in enumerate(T):
            if c != y[i]:
                s += float(np.dot(x, t))
        total += s / (len(T) - 1)
    return total / len(X)


def naive_intra(X):
    """Paper Sec. 3.2: 2 / (|I|(|I|-1)) * sum_{i<j} x_i . x_j."""
    n = len(X)
    s = sum(float(np.dot(X[i], X[j])) for i in range(n) for j in range(i + 1, n))
    return 2.0 * s / (n * (n - 1))


def naive_correct(X, T, y):
    return float(np.mean([np.dot(X[i], T[y[i]]) for i in range(len(X))]))


def naive_silhouette(X, T, dist):
    """App. A.1.3 silhouette over two clusters with an explicit distance matrix."""
    P = np.vstack([X, T])
    lab = np.r_[np.zeros(len(X), int), np.ones(len(T), int)]
    D = np.array([[dist(p, q) for q in P] for p in P])
    s = []
    for i in range(len(P)):
        own = (lab == lab[i]) & (np.arange(len(P)) != i)
        other = lab != lab[i]
        a = D[i, own].mean()
        b = D[i, other].mean()
        s.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)  # 0/0 -> 0, as Rousseeuw and sklearn
    return float(np.mean(s))


def naive_db(X, T):
    cx, cy = X.mean(0), T.mean(0)
    s_i = np.mean([np.linalg.norm(x - cx) for x in X])
    s_t = np.mean([np.linalg.norm(t - cy) for t in T])
    return (s_i + s_t) / np.linalg.norm(cx - cy)


def naive_ch(X, T):
    cx, cy = X.mean(0), T.mean(0)
    c = np.vstack([X, T]).mean(0)
    intra = sum(np.sum((x - cx) ** 2) for x in X) + sum(np.sum((t - cy) ** 2) for t in T)
    inter = len(X) * np.sum((cx - c) ** 2) + len(T) * np.sum((cy - c) ** 2)
    return intra / (inter / (len(X) + len(T) - 2))


def cosine_dist(p, q):
    return 1.0 - float(np.dot(p, q) / (np.linalg.norm(p) * np.linalg.norm(q)))


def euclid_dist(p, q):
    return float(np.linalg.norm(p - q))


@st.composite
def problems(draw, max_n=30, max_d=12, max_c=6):
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, max_d))
    c = draw(st.integers(2, max_c))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    shift = draw(st.floats(-2, 2))
    X = rng.normal(size=(n, d)) + shift
    T = rng.normal(size=(c, d))
    y = rng.integers(0, c, size=n)
    return X, T, y


# --------------------------------------------------------------------------- closed forms vs naive


@settings(max_examples=40, deadline=None)
@given(problems())
def test_iimm_terms_equal_naive(p):
    X, T, y = p
    Xn, Tn = unit(X), unit(T)
    assert iimm.inter_modal(X, T, y) == pytest.approx(naive_inter(Xn, Tn, y), abs=1e-9)
    assert iimm.incorrect_label_alignment(X, T, y) == pytest.approx(naive_inter(Xn, Tn, y), abs=1e-9)
    assert iimm.intra_images(X) == pytest.approx(naive_intra(Xn), abs=1e-9)
    assert iimm.intra_texts(T) == pytest.approx(naive_intra(Tn), abs=1e-9)
    assert iimm.correct_label_alignment(X, T, y) == pytest.approx(naive_correct(Xn, Tn, y), abs=1e-9)
    expected = (naive_inter(Xn, Tn, y) + naive_intra(Xn)) / 2
    assert iimm.iimm(X, T, y) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(problems())
def test_unnormalized_terms_equal_naive(p):
    X, T, y = p
    assert iimm.inter_modal(X, T, y, normalize=False) == pytest.approx(naive_inter(X, T, y), abs=1e-9, rel=1e-9)
    assert iimm.intra_images(X, normalize=False) == pytest.approx(naive_intra(X), abs=1e-9, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(problems(max_n=20))
def test_gap_db_ch_equal_naive(p):
    X, T, y = p
    Xn, Tn = unit(X), unit(T)
    assert iimm.modality_gap(X, T) == pytest.approx(np.linalg.norm(Xn.mean(0) - Tn.mean(0)), abs=1e-9)
    np.testing.assert_allclose(iimm.modality_gap_vector(X, T), Xn.mean(0) - Tn.mean(0), atol=1e-12)
    assume(np.linalg.norm(Xn.mean(0) - Tn.mean(0)) > 1e-6)  # coincident centroids are tested below
    assert iimm.davies_bouldin(X, T) == pytest.approx(naive_db(Xn, Tn), rel=1e-9)
    assert iimm.calinski_harabasz(X, T) == pytest.approx(naive_ch(Xn, Tn), rel=1e-9)


@settings(max_examples=20, deadline=None)
@given(problems(max_n=20))
def test_silhouette_equals_naive_and_sklearn(p):
    X, T, y = p
    Xn, Tn = unit(X), unit(T)
    stacked = np.vstack([Xn, Tn])
    lab = np.r_[np.zeros(len(X), int), np.ones(len(T), int)]
    for metric, dist in (("cosine", cosine_dist), ("euclidean", euclid_dist)):
        ours = iimm.silhouette(X, T, metric=metric)
        assert ours == pytest.approx(naive_silhouette(Xn, Tn, dist), abs=1e-9)
        assert ours == pytest.approx(silhouette_score(stacked, lab, metric=metric), abs=1e-9)


def test_euclidean_silhouette_blocks_do_not_change_result():
    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(257, 8)), rng.normal(size=(7, 8))
    full = iimm.silhouette(X, T, "euclidean", block_size=4096)
    assert iimm.silhouette(X, T, "euclidean", block_size=16) == pytest.approx(full, abs=1e-12)


def test_coincident_centroids_give_inf():
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    T = np.array([[0.0, 1.0], [0.0, -1.0]])
    assert iimm.davies_bouldin(X, T) == math.inf
    assert iimm.calinski_harabasz(X, T) == math.inf


def test_davies_bouldin_matches_sklearn_and_ch_relates_to_sklearn():
    from sklearn.metrics import calinski_harabasz_score

    rng = np.random.default_rng(1)
    X, T = unit(rng.normal(size=(50, 6)) + 1.0), unit(rng.normal(size=(8, 6)))
    stacked = np.vstack([X, T])
    lab = np.r_[np.zeros(50, int), np.ones(8, int)]
    assert iimm.davies_bouldin(X, T) == pytest.approx(davies_bouldin_score(stacked, lab), rel=1e-9)
    n = 58
    assert iimm.calinski_harabasz(X, T) * calinski_harabasz_score(stacked, lab) == pytest.approx((n - 2) ** 2, rel=1e-9)


def naive_kde_entropy(X):
    """-mean log p(x) with an explicit Gaussian product kernel (isotropic, Scott's rule)."""
    n, d = X.shape
    sigma = math.sqrt(np.mean(X.var(axis=0, ddof=1)))
    h = sigma * n ** (-1 / (d + 4))
    logs = []
    for x in X:
        dens = 0.0
        for z in X:
            k = 1.0
            for j in range(d):  # product of one-dimensional normal densities
                k *= math.exp(-((x[j] - z[j]) ** 2) / (2 * h * h)) / math.sqrt(2 * math.pi * h * h)
            dens += k
        logs.append(math.log(dens / n))
    return -float(np.mean(logs))


def test_clustering_entropy_equals_naive():
    rng = np.random.default_rng(2)
    X, T = rng.normal(size=(40, 5)), rng.normal(size=(6, 5))
    Xn, Tn = unit(X), unit(T)
    expected = (naive_kde_entropy(Xn) * 40 + naive_kde_entropy(Tn) * 6) / 46
    assert iimm.clustering_entropy(X, T, max_samples=None) == pytest.approx(expected, rel=1e-9)


def test_clustering_entropy_grows_with_spread():
    rng = np.random.default_rng(3)
    T = rng.normal(size=(6, 8))
    tight = unit(np.ones(8) + 0.05 * rng.normal(size=(200, 8)))
    loose = unit(np.ones(8) + 0.5 * rng.normal(size=(200, 8)))
    assert iimm.clustering_entropy(loose, T) > iimm.clustering_entropy(tight, T)
    with pytest.raises(ValueError, match="identical points"):
        iimm.clustering_entropy(np.ones((5, 3)), T[:, :3])


def test_clustering_entropy_subsampling_is_seeded():
    rng = np.random.default_rng(5)
    X, T = rng.normal(size=(300, 4)), rng.normal(size=(5, 4))
    a = iimm.clustering_entropy(X, T, max_samples=50, random_state=1)
    b = iimm.clustering_entropy(X, T, max_samples=50, random_state=1)
    assert a == b


# --------------------------------------------------------------------------- all_measures and streaming


def test_all_measures_keys_and_values():
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(60, 10)), rng.normal(size=(4, 10))
    y = rng.integers(0, 4, 60)
    out = iimm.all_measures(X, T, y)
    assert set(out) == {
        "inter_modal", "intra_images", "intra_texts", "iimm", "correct_label_alignment",
        "incorrect_label_alignment", "modality_gap", "silhouette_cosine", "silhouette_euclidean",
        "davies_bouldin", "calinski_harabasz", "clustering_entropy",
    }
    assert out["iimm"] == pytest.approx(iimm.iimm(X, T, y), abs=1e-12)
    assert out["silhouette_euclidean"] == pytest.approx(iimm.silhouette(X, T, "euclidean"), abs=1e-12)
    quick = iimm.all_measures(X, T, y, entropy=False, euclidean_silhouette=False)
    assert math.isnan(quick["clustering_entropy"]) and math.isnan(quick["silhouette_euclidean"])


def test_streaming_batches_equal_array():
    rng = np.random.default_rng(6)
    X, T = rng.normal(size=(1000, 16)), rng.normal(size=(9, 16))
    y = rng.integers(0, 9, 1000)
    batches = ((X[i : i + 97], y[i : i + 97]) for i in range(0, 1000, 97))
    assert iimm.iimm(batches, T) == pytest.approx(iimm.iimm(X, T, y), abs=1e-12)
    assert iimm.intra_images(iter([X[:500], X[500:]])) == pytest.approx(iimm.intra_images(X), abs=1e-12)
    acc = iimm.MeasureAccumulator()
    for i in range(0, 1000, 333):
        acc.update(X[i : i + 333], y[i : i + 333])
    got = acc.compute(T)
    assert got["inter_modal"] == pytest.approx(iimm.inter_modal(X, T, y), abs=1e-12)
    assert got["correct_label_alignment"] == pytest.approx(iimm.correct_label_alignment(X, T, y), abs=1e-12)
    assert got["modality_gap"] == pytest.approx(iimm.modality_gap(X, T), abs=1e-12)


def test_chunking_of_large_arrays_is_exact():
    rng = np.random.default_rng(7)
    X, T = rng.normal(size=(measures._CHUNK * 2 + 5, 4)), rng.normal(size=(3, 4))
    y = rng.integers(0, 3, len(X))
    Xn, Tn = unit(X), unit(T)
    s = Xn.sum(0)
    assert iimm.intra_images(X) == pytest.approx((s @ s - len(X)) / (len(X) * (len(X) - 1)), abs=1e-12)
    sims = Xn @ Tn.T
    inter = np.mean((sims.sum(1) - sims[np.arange(len(X)), y]) / 2)
    assert iimm.inter_modal(X, T, y) == pytest.approx(inter, abs=1e-12)


# --------------------------------------------------------------------------- invariances


def test_permutation_invariance():
    rng = np.random.default_rng(8)
    X, T = rng.normal(size=(40, 6)), rng.normal(size=(5, 6))
    y = rng.integers(0, 5, 40)
    base = iimm.all_measures(X, T, y)
    perm = rng.permutation(40)
    cls = rng.permutation(5)  # class c becomes cls[c]
    T2 = np.empty_like(T)
    T2[cls] = T
    moved = iimm.all_measures(X[perm], T2, cls[y[perm]])
    for k, v in base.items():
        assert moved[k] == pytest.approx(v, abs=1e-9), k


@settings(max_examples=30, deadline=None)
@given(problems())
def test_iimm_bounded_for_unit_vectors(p):
    X, T, y = p
    assert -1.0 - 1e-12 <= iimm.iimm(X, T, y) <= 1.0 + 1e-12


def test_identical_embeddings_give_maximal_iimm():
    v = np.ones((5, 3))
    assert iimm.iimm(v, np.ones((3, 3)), np.zeros(5, int)) == pytest.approx(1.0)


def test_torch_and_numpy_and_float32_agree():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    X, T = rng.normal(size=(80, 12)), rng.normal(size=(6, 12))
    y = rng.integers(0, 6, 80)
    ref = iimm.all_measures(X, T, y)
    got_t = iimm.all_measures(torch.from_numpy(X), torch.from_numpy(T), torch.from_numpy(y))
    got_32 = iimm.all_measures(X.astype(np.float32), T.astype(np.float32), y)
    got_16 = iimm.iimm(torch.from_numpy(X).half(), torch.from_numpy(T).half(), torch.from_numpy(y))
    for k in ref:
        assert got_t[k] == pytest.approx(ref[k], abs=1e-12), k
        assert got_32[k] == pytest.approx(ref[k], abs=1e-6, rel=1e-6), k
    assert got_16 == pytest.approx(ref["iimm"], abs=1e-3)


# --------------------------------------------------------------------------- validation


GOOD_X = np.random.default_rng(0).normal(size=(10, 4))
GOOD_T = np.random.default_rng(1).normal(size=(3, 4))
GOOD_Y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


@pytest.mark.parametrize(
    "images, texts, labels, match",
    [
        (np.where(np.eye(10, 4) == 1, np.nan, GOOD_X), GOOD_T, GOOD_Y, "NaN or inf"),
        (np.where(np.eye(10, 4) == 1, np.inf, GOOD_X), GOOD_T, GOOD_Y, "NaN or inf"),
        (GOOD_X, np.full((3, 4), np.nan), GOOD_Y, "texts contains NaN"),
        (GOOD_X[0], GOOD_T, GOOD_Y, "2-D"),
        (GOOD_X[None], GOOD_T, GOOD_Y, "2-D"),
        (GOOD_X, GOOD_T[:, :3], GOOD_Y, "same embedding dimension"),
        (GOOD_X, GOOD_T, GOOD_Y + 0.5, "integers"),
        (GOOD_X, GOOD_T, GOOD_Y.astype(str), "integers"),
        (GOOD_X, GOOD_T, GOOD_Y + 1, r"\[0, 3\)"),
        (GOOD_X, GOOD_T, GOOD_Y - 1, ">= 0"),
        (GOOD_X, GOOD_T, GOOD_Y[:5], "length 5"),
        (GOOD_X[:1], GOOD_T, GOOD_Y[:1], "at least 2 rows"),
        (GOOD_X, GOOD_T[:1], np.zeros(10, int), "texts needs at least 2 rows"),
        (np.vstack([np.zeros((1, 4)), GOOD_X[1:]]), GOOD_T, GOOD_Y, "zero-norm"),
        (GOOD_X, np.vstack([np.zeros((1, 4)), GOOD_T[1:]]), GOOD_Y, "zero-norm"),
    ],
)
def test_validation_errors(images, texts, labels, match):
    with pytest.raises(ValueError, match=match):
        iimm.iimm(images, texts, labels)


def test_validation_errors_other_functions():
    with pytest.raises(ValueError, match="metric"):
        iimm.silhouette(GOOD_X, GOOD_T, metric="manhattan")
    with pytest.raises(ValueError, match="at least 2 rows"):
        iimm.intra_texts(GOOD_T[:1])
    with pytest.raises(ValueError, match="labels are needed"):
        iimm.MeasureAccumulator().update(GOOD_X).compute(GOOD_T)
    with pytest.raises(ValueError, match="labels=None"):
        iimm.iimm(iter([(GOOD_X, GOOD_Y)]), GOOD_T, GOOD_Y)
    with pytest.raises(ValueError, match="real numbers"):
        iimm.intra_images(np.array([["a", "b"], ["c", "d"]]))
