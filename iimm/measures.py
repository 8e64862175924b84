r"""Embedding-geometry measures of the IIMM paper (Niss et al.), exact and O(N d).

Notation (paper Sec. 3.2 and App. A.1): ``images`` are the image embeddings
:math:`x \in I` (N x d), ``texts`` the class text embeddings :math:`y \in T`
(C x d), ``labels`` give the class :math:`y(x)` of each image. By default every
row is unit-normalised first (``normalize=True``), as in the paper, and all
sums are accumulated in float64.

The pairwise sums of the paper have closed forms that avoid the N x N matrix:

* mean over :math:`i<j` of :math:`x_i^T x_j` is
  :math:`(\lVert\sum_i x_i\rVert^2 - \sum_i \lVert x_i\rVert^2) / (N(N-1))`;
* the mean similarity of :math:`x` to the incorrect class texts is
  :math:`(x^T \sum_c y_c - x^T y(x)) / (C-1)`;
* the mean cosine distance of a unit vector to a set is one minus its dot
  product with the set's mean.

So IIMM, its terms and the cosine silhouette cost O(N d) time and O(C d)
memory, and arrays are processed in row chunks so that no float64 copy of the
whole embedding matrix is made. An iterator of batches can be streamed through
:class:`MeasureAccumulator` (or passed directly to :func:`iimm`,
:func:`inter_modal`, :func:`intra_images` and :func:`correct_label_alignment`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from ._validation import check_labels, check_matrix, to_numpy, unit_normalize

__all__ = [
    "MeasureAccumulator",
    "all_measures",
    "calinski_harabasz",
    "clustering_entropy",
    "correct_label_alignment",
    "davies_bouldin",
    "iimm",
    "incorrect_label_alignment",
    "inter_modal",
    "intra_images",
    "intra_texts",
    "modality_gap",
    "modality_gap_vector",
    "silhouette",
]

_CHUNK = 8192
_BLOCK = 4096  # rows per block in the one-pass accumulator


# --------------------------------------------------------------------------- input handling


def _is_batch_stream(x: Any) -> bool:
    """True for iterators/generators of batches (not arrays, tensors or lists)."""
    return isinstance(x, Iterator) and not hasattr(x, "shape")


def _embedding_array(x: Any, name: str, min_rows: int) -> np.ndarray:
    """Validate shape and dtype of an embedding matrix without copying it to float64."""
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, d); got {arr.ndim}-D with shape {arr.shape}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero columns (shape {arr.shape})")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {arr.shape[0]}")
    return arr


def _chunk64(chunk: np.ndarray, name: str, normalize: bool, offset: int = 0) -> np.ndarray:
    """One row block as float64, checked for NaN/inf and optionally unit-normalised."""
    x = np.asarray(chunk, dtype=np.float64)
    if not np.isfinite(x).all():
        row = offset + int(np.argmax(~np.isfinite(x).all(axis=1)))
        raise ValueError(f"{name} contains NaN or inf values (first at row {row})")
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        zero = norms[:, 0] == 0
        if zero.any():
            raise ValueError(
                f"{name} has zero-norm row(s) (first at index {offset + int(np.argmax(zero))}); "
                "they cannot be unit-normalised"
            )
        x = x / norms
    return x


def _chunks(arr: np.ndarray, name: str, normalize: bool, chunk: int = _CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, arr.shape[0], chunk):
        yield start, _chunk64(arr[start : start + chunk], name, normalize, start)


def _texts64(texts: Any, normalize: bool, images_dim: int | None = None, min_rows: int = 2) -> np.ndarray:
    t = check_matrix(texts, "texts", min_rows=min_rows)
    if images_dim is not None and t.shape[1] != images_dim:
        raise ValueError(
            f"images and texts must have the same embedding dimension; got images d={images_dim}, texts d={t.shape[1]}"
        )
    return unit_normalize(t, "texts") if normalize else t


# --------------------------------------------------------------------------- streaming core


class MeasureAccumulator:
    r"""Running sums that give IIMM and its terms in one pass over image batches.

    Keeps :math:`\sum_i x_i`, :math:`\sum_i \lVert x_i\rVert^2`, the per-class
    sums :math:`\sum_{i: y(x_i)=c} x_i` and the class counts: O(C d) memory.

    Examples
    --------
    >>> acc = MeasureAccumulator()
    >>> for images, labels in loader:          # doctest: +SKIP
    ...     acc.update(images, labels)
    >>> acc.compute(texts)["iimm"]              # doctest: +SKIP
    """

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize
        self.n = 0
        self.total: np.ndarray | None = None
        self.sq_norms = 0.0
        self.class_sums: np.ndarray | None = None
        self.class_counts: np.ndarray | None = None
        self._labelled: bool | None = None

    def update(self, images: Any, labels: Any | None = None) -> "MeasureAccumulator":
        """Add a batch of image embeddings (and their integer labels)."""
        arr = _embedding_array(images, "images", 0)
        if self.total is not None and arr.shape[1] != self.total.shape[0]:
            raise ValueError(f"images batch has dimension {arr.shape[1]}, earlier batches had {self.total.shape[0]}")
        labelled = labels is not None
        if self._labelled is not None and labelled != self._labelled:
            raise ValueError("labels must be given with every batch or with none")
        self._labelled = labelled
        lab = check_labels(labels, arr.shape[0]) if labelled else None
        if self.total is None:
            self.total = np.zeros(arr.shape[1])
        # One cache-sized block at a time: the row norms give both the NaN/inf
        # check and the normalisation weights, so each block is read by BLAS
        # twice (norms, weighted sums) and never divided out. Half/single
        # precision input is summed within a block in float32 (BLAS speed) and
        # accumulated across blocks in float64; double input stays float64.
        work = np.float32 if arr.dtype in (np.float16, np.float32) else np.float64
        buf = np.empty((min(_BLOCK, arr.shape[0]), arr.shape[1]), dtype=work)  # reused: no allocation per block
        for start in range(0, arr.shape[0], _BLOCK):
            block = arr[start : start + _BLOCK]
            if block.dtype == work and block.flags.c_contiguous:
                x = block
            else:
                x = buf[: block.shape[0]]
                np.copyto(x, block, casting="unsafe")
            sq = np.einsum("ij,ij->i", x, x).astype(np.float64)
            if not np.isfinite(sq).all():
                if np.isfinite(x).all():  # float32 overflow of huge but finite values: redo in float64
                    x = x.astype(np.float64)
                    sq = np.einsum("ij,ij->i", x, x)
                if not np.isfinite(sq).all():
                    row = start + int(np.argmax(~np.isfinite(x).all(axis=1)))
                    raise ValueError(f"images contains NaN or inf values (first at row {row})")
            if self.normalize:
                if (sq == 0).any():
                    raise ValueError(
                        f"images has zero-norm row(s) (first at index {start + int(np.argmax(sq == 0))}); "
                        "they cannot be unit-normalised"
                    )
                w = 1.0 / np.sqrt(sq)
            else:
                w = np.ones_like(sq)
            self.sq_norms += float(sq @ (w * w))
            if lab is not None:
                # the class sums add up to the total: one scatter-add gives both
                self.total += self._add_class_sums(x, w.astype(x.dtype), lab[start : start + x.shape[0]])
            else:
                self.total += (w.astype(x.dtype) @ x).astype(np.float64)
            self.n += x.shape[0]
        return self

    def _add_class_sums(self, x: np.ndarray, w: np.ndarray, lab: np.ndarray) -> np.ndarray:
        """Add this block's weighted per-class sums; return the block's weighted total."""
        from scipy.sparse import csr_matrix

        n_cls = int(lab.max()) + 1 if lab.size else 0
        if self.class_sums is None:
            self.class_sums = np.zeros((0, x.shape[1]))
            self.class_counts = np.zeros(0, dtype=np.int64)
        if n_cls > self.class_sums.shape[0]:
            grow = n_cls - self.class_sums.shape[0]
            self.class_sums = np.vstack([self.class_sums, np.zeros((grow, x.shape[1]))])
            self.class_counts = np.concatenate([self.class_counts, np.zeros(grow, dtype=np.int64)])
        k = self.class_sums.shape[0]
        weights = csr_matrix((w, (lab, np.arange(lab.size))), shape=(k, lab.size))
        block_sums = np.asarray(weights @ x, dtype=np.float64)
        self.class_sums += block_sums
        self.class_counts += np.bincount(lab, minlength=k)
        return block_sums.sum(axis=0)

    # -- results ------------------------------------------------------------

    def _need(self, n: int = 2) -> None:
        if self.n < n:
            raise ValueError(f"the measures need at least {n} images; got {self.n}")

    def intra_images(self) -> float:
        r"""Mean :math:`x_i^T x_j` over :math:`i<j` (paper Sec. 3.2, intra-images measure)."""
        self._need()
        assert self.total is not None
        return float((self.total @ self.total - self.sq_norms) / (self.n * (self.n - 1)))

    def _texts(self, texts: Any) -> np.ndarray:
        self._need()
        assert self.total is not None
        t = _texts64(texts, self.normalize, self.total.shape[0])
        if not self._labelled:
            raise ValueError("labels are needed for the inter-modal terms; pass them to update()")
        assert self.class_sums is not None
        if self.class_sums.shape[0] > t.shape[0]:
            raise ValueError(
                f"labels must lie in [0, {t.shape[0]}) (one per class text embedding); "
                f"got maximum {self.class_sums.shape[0] - 1}"
            )
        return t

    def _correct_sum(self, t: np.ndarray) -> float:
        assert self.class_sums is not None
        k = self.class_sums.shape[0]
        return float(np.einsum("cd,cd->", self.class_sums, t[:k]))

    def inter_modal(self, texts: Any) -> float:
        r"""Mean over images of the mean :math:`x^T y'` over incorrect class texts (Sec. 3.2)."""
        t = self._texts(texts)
        assert self.total is not None
        all_sum = float(self.total @ t.sum(axis=0))
        return (all_sum - self._correct_sum(t)) / (self.n * (t.shape[0] - 1))

    def correct_label_alignment(self, texts: Any) -> float:
        r"""Mean :math:`x^T y(x)` (App. A.1.1)."""
        t = self._texts(texts)
        return self._correct_sum(t) / self.n

    def compute(self, texts: Any) -> dict[str, float]:
        """IIMM, its two terms, the correct-label alignment and the modality gap."""
        t = self._texts(texts)
        assert self.total is not None
        intra = self.intra_images()
        correct = self._correct_sum(t)
        inter = (float(self.total @ t.sum(axis=0)) - correct) / (self.n * (t.shape[0] - 1))
        gap = self.total / self.n - t.mean(axis=0)
        return {
            "inter_modal": inter,
            "intra_images": intra,
            "iimm": (inter + intra) / 2.0,
            "correct_label_alignment": correct / self.n,
            "modality_gap": float(np.linalg.norm(gap)),
        }


def _accumulate(images: Any, labels: Any | None, normalize: bool, n_classes: int | None = None) -> MeasureAccumulator:
    acc = MeasureAccumulator(normalize=normalize)
    if _is_batch_stream(images):
        if labels is not None:
            raise ValueError("when images is an iterator of (images, labels) batches, pass labels=None")
        for batch in images:
            if isinstance(batch, tuple) and len(batch) == 2:
                acc.update(*batch)
            else:
                acc.update(batch)
        return acc
    arr = _embedding_array(images, "images", 2)
    if labels is not None:
        labels = check_labels(labels, arr.shape[0], n_classes)
    return acc.update(arr, labels)


def _n_classes(texts: Any) -> int | None:
    if _is_batch_stream(texts):
        return None
    arr = to_numpy(texts, "texts")
    return int(arr.shape[0]) if arr.ndim == 2 else None


# --------------------------------------------------------------------------- IIMM and its terms


def inter_modal(images: Any, texts: Any, labels: Any = None, *, normalize: bool = True) -> float:
    r"""Inter-modal measure (paper Sec. 3.2): mean similarity of images to incorrect class texts.

    .. math:: \frac{1}{|I|}\sum_{x\in I}\frac{1}{|T|-1}\sum_{y'\in T\setminus y(x)} x^T y'

    Parameters
    ----------
    images : (N, d) array or tensor, or an iterator of ``(images, labels)`` batches
    texts : (C, d) class text embeddings
    labels : (N,) integers in ``[0, C)``; ``None`` when ``images`` is a batch iterator
    normalize : unit-normalise rows first (the paper's convention)
    """
    return _accumulate(images, labels, normalize, _n_classes(texts)).inter_modal(texts)


def incorrect_label_alignment(images: Any, texts: Any, labels: Any = None, *, normalize: bool = True) -> float:
    r"""Incorrect label alignment (App. A.1.1); the same quantity as :func:`inter_modal`.

    .. math:: \frac{1}{|I|}\sum_{x\in I}\frac{1}{|T|-1}\sum_{y'\in T\setminus y(x)} x^T y'
    """
    return inter_modal(images, texts, labels, normalize=normalize)


def correct_label_alignment(images: Any, texts: Any, labels: Any = None, *, normalize: bool = True) -> float:
    r"""Correct label alignment (App. A.1.1): :math:`\frac{1}{|I|}\sum_{x\in I} x^T y(x)`."""
    return _accumulate(images, labels, normalize, _n_classes(texts)).correct_label_alignment(texts)


def intra_images(images: Any, *, normalize: bool = True) -> float:
    r"""Intra-images measure (paper Sec. 3.2): mean pairwise similarity of image embeddings.

    .. math:: \frac{2}{|I|(|I|-1)}\sum_{i=1}^{|I|}\sum_{j=i+1}^{|I|} x_i^T x_j
              = \frac{\lVert\sum_i x_i\rVert^2 - \sum_i\lVert x_i\rVert^2}{|I|(|I|-1)}

    ``images`` may also be an iterator of batches (arrays or ``(images, labels)`` pairs).
    """
    return _accumulate(images, None, normalize).intra_images()


def intra_texts(texts: Any, *, normalize: bool = True) -> float:
    r"""Intra-texts measure (Sec. 4.2, Table 3): mean pairwise similarity of the class texts."""
    t = _texts64(texts, normalize)
    s = t.sum(axis=0)
    n = t.shape[0]
    return float((s @ s - np.einsum("ij,ij->", t, t)) / (n * (n - 1)))


def iimm(images: Any, texts: Any, labels: Any = None, *, normalize: bool = True) -> float:
    r"""The Inter-Intra Modal Measure (paper Sec. 3.2).

    .. math:: \mathrm{IIMM} = \tfrac12\left(\text{inter-modal measure} + \text{intra-images measure}\right)

    Parameters
    ----------
    images : (N, d) image embeddings, or an iterator of ``(images, labels)`` batches
    texts : (C, d) class text embeddings (one row per class, e.g. a zero-shot head)
    labels : (N,) integer classes in ``[0, C)`` (``None`` for a batch iterator)
    normalize : unit-normalise rows first (the paper's convention)

    Returns
    -------
    float
        In ``[-1, 1]`` for unit vectors; higher predicts larger gains from fine-tuning
        and more forgetting.
    """
    acc = _accumulate(images, labels, normalize, _n_classes(texts))
    return acc.compute(texts)["iimm"]


# --------------------------------------------------------------------------- gap


def modality_gap_vector(images: Any, texts: Any, *, normalize: bool = True) -> np.ndarray:
    r"""Modality gap vector (App. A.1.2, Liang et al. 2022): :math:`\bar{x} - \bar{y}`."""
    arr = _embedding_array(images, "images", 1)
    t = _texts64(texts, normalize, arr.shape[1], min_rows=1)
    total = np.zeros(arr.shape[1])
    for _, x in _chunks(arr, "images", normalize):
        total += x.sum(axis=0)
    return total / arr.shape[0] - t.mean(axis=0)


def modality_gap(images: Any, texts: Any, *, normalize: bool = True) -> float:
    r"""Euclidean modality gap :math:`\lVert\bar{x} - \bar{y}\rVert_2` (App. A.1.2)."""
    return float(np.linalg.norm(modality_gap_vector(images, texts, normalize=normalize)))


# --------------------------------------------------------------------------- clustering measures


def _two_clusters(images: Any, texts: Any, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    arr = _embedding_array(images, "images", 2)
    t = _texts64(texts, normalize, arr.shape[1])
    return arr, t


def _silhouette_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    denom = np.maximum(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (b - a) / denom
    return np.where(denom > 0, s, 0.0)


def _silhouette_cosine(arr: np.ndarray, t: np.ndarray) -> float:
    # cosine distance is defined on directions: normalise regardless of `normalize`
    t = unit_normalize(t, "texts")
    n, c = arr.shape[0], t.shape[0]
    s_img = np.zeros(arr.shape[1])
    for _, x in _chunks(arr, "images", True):
        s_img += x.sum(axis=0)
    s_txt = t.sum(axis=0)
    total = 0.0
    for _, x in _chunks(arr, "images", True):
        a = 1.0 - (x @ s_img - 1.0) / (n - 1)  # mean cosine distance to the other images
        b = 1.0 - (x @ s_txt) / c  # mean cosine distance to the texts
        total += _silhouette_values(a, b).sum()
    a_t = 1.0 - (t @ s_txt - 1.0) / (c - 1)
    b_t = 1.0 - (t @ s_img) / n
    total += _silhouette_values(a_t, b_t).sum()
    return float(total / (n + c))


def _euclid_block(x: np.ndarray, x_sq: np.ndarray, y: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    d2 = x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T)
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def _silhouette_euclidean(arr: np.ndarray, t: np.ndarray, normalize: bool, block: int) -> float:
    n, c = arr.shape[0], t.shape[0]
    t_sq = np.einsum("ij,ij->i", t, t)
    a_img = np.zeros(n)
    b_img = np.zeros(n)
    b_txt = np.zeros(c)
    for i0, xi in _chunks(arr, "images", normalize, block):
        xi_sq = np.einsum("ij,ij->i", xi, xi)
        d_it = _euclid_block(xi, xi_sq, t, t_sq)
        b_img[i0 : i0 + xi.shape[0]] = d_it.mean(axis=1)
        b_txt += d_it.sum(axis=0)
        for j0, xj in _chunks(arr, "images", normalize, block):
            d = _euclid_block(xi, xi_sq, xj, np.einsum("ij,ij->i", xj, xj))
            if i0 == j0:
                np.fill_diagonal(d, 0.0)
            a_img[i0 : i0 + xi.shape[0]] += d.sum(axis=1)
    a_img /= n - 1
    d_tt = _euclid_block(t, t_sq, t, t_sq)
    np.fill_diagonal(d_tt, 0.0)
    a_txt = d_tt.sum(axis=1) / (c - 1)
    b_txt /= n
    total = _silhouette_values(a_img, b_img).sum() + _silhouette_values(a_txt, b_txt).sum()
    return float(total / (n + c))


def silhouette(
    images: Any,
    texts: Any,
    metric: Literal["cosine", "euclidean"] = "cosine",
    *,
    normalize: bool = True,
    sample_size: int | None = None,
    random_state: int | None = 0,
    block_size: int = 2048,
) -> float:
    r"""Silhouette score of the two clusters images vs texts (App. A.1.3, Rousseeuw 1987).

    For each point, :math:`a` is its mean distance to the other members of its own
    modality and :math:`b` its mean distance to the other modality;
    :math:`s = (b-a)/\max(a, b)` and the score is the mean of :math:`s` over all
    :math:`|I|+|T|` points. Equals ``sklearn.metrics.silhouette_score`` on the
    stacked embeddings labelled by modality.

    ``metric="cosine"`` uses the closed form (O(N d)); ``"euclidean"`` is exact
    and computed in ``block_size`` x ``block_size`` distance blocks (O(N^2 d) time,
    bounded memory). ``sample_size`` subsamples images (seeded) for large N.
    """
    arr, t = _two_clusters(images, texts, normalize)
    if sample_size is not None and sample_size < arr.shape[0]:
        if sample_size < 2:
            raise ValueError(f"sample_size must be >= 2; got {sample_size}")
        idx = np.sort(np.random.default_rng(random_state).choice(arr.shape[0], sample_size, replace=False))
        arr = arr[idx]
    if metric == "cosine":
        return _silhouette_cosine(arr, t)
    if metric == "euclidean":
        return _silhouette_euclidean(arr, t, normalize, block_size)
    raise ValueError(f"metric must be 'cosine' or 'euclidean'; got {metric!r}")


def _centroid_and_spread(arr: np.ndarray, normalize: bool) -> tuple[np.ndarray, float, float]:
    """Centroid, mean distance to it and sum of squared distances to it (two chunked passes)."""
    total = np.zeros(arr.shape[1])
    for _, x in _chunks(arr, "images", normalize):
        total += x.sum(axis=0)
    centroid = total / arr.shape[0]
    dist_sum = 0.0
    sq_sum = 0.0
    for _, x in _chunks(arr, "images", normalize):
        diff = x - centroid
        sq = np.einsum("ij,ij->i", diff, diff)
        dist_sum += float(np.sqrt(sq).sum())
        sq_sum += float(sq.sum())
    return centroid, dist_sum / arr.shape[0], sq_sum


def davies_bouldin(images: Any, texts: Any, *, normalize: bool = True) -> float:
    r"""Two-cluster Davies-Bouldin index of the paper (App. A.1.3).

    .. math:: S_I = \frac{1}{|I|}\sum_{x\in I}\lVert x-\bar{x}\rVert_2,\quad
              M_{I,T} = \lVert\bar{x}-\bar{y}\rVert_2,\quad DB = \frac{S_I+S_T}{M_{I,T}}

    With exactly two clusters this coincides with scikit-learn's
    ``davies_bouldin_score``. Returns ``inf`` when the centroids coincide.
    """
    arr, t = _two_clusters(images, texts, normalize)
    cx, s_i, _ = _centroid_and_spread(arr, normalize)
    cy, s_t, _ = _centroid_and_spread(t, False)
    m = float(np.linalg.norm(cx - cy))
    return math.inf if m == 0.0 else (s_i + s_t) / m


def calinski_harabasz(images: Any, texts: Any, *, normalize: bool = True) -> float:
    r"""Two-cluster Calinski-Harabasz index as the paper defines it (App. A.1.3).

    .. math:: \mathrm{IntraSS} = \sum_{x\in I}\lVert x-\bar{x}\rVert^2 + \sum_{y\in T}\lVert y-\bar{y}\rVert^2,\quad
              \mathrm{InterSS} = |I|\lVert\bar{x}-\bar{c}\rVert^2 + |T|\lVert\bar{y}-\bar{c}\rVert^2,\quad
              CH = \frac{\mathrm{IntraSS}}{\mathrm{InterSS}/(|I|+|T|-2)}

    Note that this is not scikit-learn's ``calinski_harabasz_score``
    (:math:`\mathrm{InterSS}\,(n-2)/\mathrm{IntraSS}`): the paper's value equals
    :math:`(n-2)^2` divided by scikit-learn's, for :math:`n=|I|+|T|`.
    Returns ``inf`` when the centroids coincide.
    """
    arr, t = _two_clusters(images, texts, normalize)
    n_i, n_t = arr.shape[0], t.shape[0]
    cx, _, ss_i = _centroid_and_spread(arr, normalize)
    cy, _, ss_t = _centroid_and_spread(t, False)
    c = (n_i * cx + n_t * cy) / (n_i + n_t)
    inter = n_i * float(np.sum((cx - c) ** 2)) + n_t * float(np.sum((cy - c) ** 2))
    if inter == 0.0:
        return math.inf
    return (ss_i + ss_t) / (inter / (n_i + n_t - 2))


def _kde_entropy(x: np.ndarray, block: int = 2048) -> float:
    """Resubstitution entropy of one cluster under its Gaussian KDE: ``-mean log p(x)``."""
    n, d = x.shape
    if n < 2:
        raise ValueError(f"clustering entropy needs at least 2 points per cluster; got {n}")
    sigma = math.sqrt(float(np.mean(x.var(axis=0, ddof=1))))
    if sigma == 0.0:
        raise ValueError("clustering entropy is undefined for a cluster of identical points (zero variance)")
    h = sigma * n ** (-1.0 / (d + 4))  # Scott's rule, isotropic kernel
    from scipy.special import logsumexp

    sq = np.einsum("ij,ij->i", x, x)
    log_k = np.empty(n)
    for i0 in range(0, n, block):
        xi = x[i0 : i0 + block]
        d2 = sq[i0 : i0 + block, None] + sq[None, :] - 2.0 * (xi @ x.T)
        np.maximum(d2, 0.0, out=d2)
        log_k[i0 : i0 + block] = logsumexp(-d2 / (2.0 * h * h), axis=1)
    log_p = log_k - math.log(n) - 0.5 * d * math.log(2.0 * math.pi * h * h)
    return float(-np.mean(log_p))


def clustering_entropy(
    images: Any,
    texts: Any,
    *,
    normalize: bool = True,
    max_samples: int | None = 2000,
    random_state: int | None = 0,
) -> float:
    r"""Total clustering entropy of images and texts (App. A.1.3).

    .. math:: H_{total} = H(I)\frac{N_I}{N} + H(T)\frac{N_T}{N},\qquad
              H(X) = -\int p(x)\log p(x)\,dx \approx -\frac{1}{|X|}\sum_{x\in X}\log \hat p(x)

    Each cluster's density :math:`\hat p` is a Gaussian kernel density estimate
    (isotropic kernel, Scott's bandwidth :math:`h=\sigma n^{-1/(d+4)}` with
    :math:`\sigma^2` the mean per-dimension variance) evaluated at the cluster's own
    points (the resubstitution estimate of the differential entropy; the paper's
    :math:`-\sum p\log p` written as an expectation over the cluster's points).
    In high dimension the kernel is narrow next to the distances between points,
    so the estimate is dominated by :math:`\log n + \tfrac d2\log(2\pi h^2)`:
    it then measures the spread (log-volume) of each cluster.

    Cost: O(n^2 d) per cluster. Images are subsampled (seeded) to at most
    ``max_samples`` points (``None`` for all).
    """
    arr, t = _two_clusters(images, texts, normalize)
    n_full = arr.shape[0]
    if max_samples is not None and max_samples < n_full:
        if max_samples < 2:
            raise ValueError(f"max_samples must be >= 2; got {max_samples}")
        idx = np.sort(np.random.default_rng(random_state).choice(n_full, max_samples, replace=False))
        arr = arr[idx]
    x = np.vstack([c for _, c in _chunks(arr, "images", normalize)])
    h_i, h_t = _kde_entropy(x), _kde_entropy(t)
    n_i, n_t = n_full, t.shape[0]
    return (h_i * n_i + h_t * n_t) / (n_i + n_t)


# --------------------------------------------------------------------------- everything at once


def all_measures(
    images: Any,
    texts: Any,
    labels: Any,
    *,
    normalize: bool = True,
    entropy: bool = True,
    euclidean_silhouette: bool = True,
    sample_size: int | None = 5000,
    random_state: int | None = 0,
) -> dict[str, float]:
    """Every measure of the paper in one call.

    Keys: ``inter_modal``, ``intra_images``, ``intra_texts``, ``iimm``,
    ``correct_label_alignment``, ``incorrect_label_alignment``, ``modality_gap``,
    ``silhouette_cosine``, ``silhouette_euclidean``, ``davies_bouldin``,
    ``calinski_harabasz``, ``clustering_entropy``. The two O(N^2) measures
    (Euclidean silhouette, entropy) use at most ``sample_size`` images (seeded)
    and can be switched off (their value is then NaN); the entropy is also NaN,
    with a ``RuntimeWarning``, when a cluster has zero variance.
    """
    arr = _embedding_array(images, "images", 2)
    t = _texts64(texts, normalize, arr.shape[1])
    lab = check_labels(labels, arr.shape[0], t.shape[0])
    core = MeasureAccumulator(normalize=normalize).update(arr, lab).compute(t)
    out = {
        "inter_modal": core["inter_modal"],
        "intra_images": core["intra_images"],
        "intra_texts": intra_texts(t, normalize=False),
        "iimm": core["iimm"],
        "correct_label_alignment": core["correct_label_alignment"],
        "incorrect_label_alignment": core["inter_modal"],
        "modality_gap": core["modality_gap"],
        "silhouette_cosine": silhouette(arr, t, "cosine", normalize=normalize),
        "silhouette_euclidean": (
            silhouette(arr, t, "euclidean", normalize=normalize, sample_size=sample_size, random_state=random_state)
            if euclidean_silhouette
            else math.nan
        ),
        "davies_bouldin": davies_bouldin(arr, t, normalize=normalize),
        "calinski_harabasz": calinski_harabasz(arr, t, normalize=normalize),
        "clustering_entropy": math.nan,
    }
    if entropy:
        try:
            out["clustering_entropy"] = clustering_entropy(
                arr, t, normalize=normalize, max_samples=sample_size, random_state=random_state
            )
        except ValueError as exc:  # a degenerate cluster: the other measures still stand
            warnings.warn(f"clustering_entropy set to NaN: {exc}", RuntimeWarning, stacklevel=2)
    return out
