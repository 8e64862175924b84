"""Figures and styled tables of the book (seaborn / matplotlib / pandas Styler).

The notebooks call these so that every page looks the same: regression panels with the OLS
line, its confidence band (96% as in the paper's Figures 3-4) and slope, p and :math:`R^2`;
tables with the paper's value beside ours and significant cells (p < 0.05) in bold; a header
saying which study the numbers come from. Statistics come from :mod:`iimm.stats`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import stats

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "format_p",
    "study_markdown",
    "significance_table",
    "regression_panel",
    "regression_grid",
    "scatter_with_fit",
    "geometry_view",
    "prediction_plot",
    "save_figure",
    "MEASURE_LABELS",
]

#: display names of the measure and score columns
MEASURE_LABELS: dict[str, str] = {
    "iimm": "IIMM", "inter_modal": "Inter-modal", "intra_images": "Intra-images", "intra_texts": "Intra-texts",
    "correct_label_alignment": "Correct label alignment", "incorrect_label_alignment": "Incorrect label alignment",
    "modality_gap": "Modality gap", "silhouette_cosine": "Silhouette (cos)", "silhouette_euclidean": "Silhouette (Euclidean)",
    "davies_bouldin": "Davies-Bouldin", "calinski_harabasz": "Calinski-Harabasz", "clustering_entropy": "Clustering entropy",
    "transrate": "TransRate", "sfda": "SFDA", "ncti": "NCTI", "emms": "EMMS", "logme": "LogME", "hscore": "H-score",
    "gbc_spherical": "GBC (spherical)", "gbc_diagonal": "GBC (diagonal)",
    "gain": "gain over zero-shot error", "ood_change": "mean OOD accuracy change", "accuracy": "fine-tuned accuracy",
}


def format_p(p: float, note: str = "") -> str:
    """A p-value as the paper prints it: ``< 0.001`` below 10^-3, else three decimals."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    if note == "<":
        return f"< {p:.3f}"
    if p < 1e-3:
        return "< 0.001"
    return f"{p:.3f}"


def _fmt_list(values: Sequence[Any], limit: int = 12) -> str:
    vals = [f"`{v}`" for v in values]
    return ", ".join(vals[:limit]) + (f" and {len(vals) - limit} more" if len(vals) > limit else "")


def study_markdown(study: "stats.Study", *, models=None, methods=None, datasets=None) -> str:
    """Markdown paragraph naming the study behind a page: models, datasets, methods, grid, date, commit."""
    d = study.describe()
    grid = "; ".join(f"{k} {v}" for k, v in d["grid"].items()) or "not recorded"
    date = d["date_first"] if d["date_first"] == d["date_last"] else f"{d['date_first']} to {d['date_last']}"
    shown = []
    for label, sel in (("models", models), ("methods", methods), ("datasets", datasets)):
        if sel:
            shown.append(f"{label} {_fmt_list(sel if not isinstance(sel, str) else [sel])}")
    lines = [
        f"**Study `{d['name']}`** read from `{d['path']}`:",
        f"models {_fmt_list(d['models'])}; datasets {_fmt_list(d['datasets'])}; methods {_fmt_list(d['methods'])};",
        f"grid: {grid}; {d['n_runs']} training trials ({d['n_selected']} selected by validation accuracy);",
        f"computed {date}; commit {_fmt_list(d['git_commits'], 3) or 'unknown'}; config hash {_fmt_list(d['config_hashes'], 3) or 'unknown'}"
        + (f"; devices {_fmt_list(d['devices'], 4)}" if d["devices"] else "") + ".",
    ]
    if shown:
        lines.append("This page shows " + "; ".join(shown) + ".")
    return " ".join(lines)


def significance_table(
    long: "pd.DataFrame",
    value: str,
    *,
    p: str = "p",
    row: str = "measure",
    col: str | None = "model",
    value_label: str | None = None,
    alpha: float = 0.05,
    digits: int = 2,
    paper: bool = True,
    row_labels: dict[str, str] | None = None,
):
    """Wide styled table: one column block per value of ``col``, ours beside the paper's.

    Each block has our ``value`` and ``p`` and, where :func:`iimm.stats.attach_paper` found the
    same cell in the paper, ``paper <value>`` and ``paper p``. A value and its p-value are bold
    where that p < ``alpha``, as the paper bolds significant cells; the paper's ``< 10^-3``
    cells print as ``< 0.001``. ``col=None`` gives a single block (pooled tables).
    Returns a pandas ``Styler``.
    """
    import pandas as pd

    label = value_label or value
    names = {**MEASURE_LABELS, **(row_labels or {})}
    with_paper = paper and "paper_value" in long.columns and bool(long["paper_value"].notna().any())
    groups = [("", long)] if col is None else [(str(g), sub) for g, sub in long.groupby(col, sort=False)]
    data: dict[tuple[str, str], pd.Series] = {}
    sig: dict[tuple[str, str], pd.Series] = {}
    ptext: dict[tuple[str, str], pd.Series] = {}
    for g, sub in groups:
        sub = sub.set_index(row)
        ours = sub[p].astype(float) < alpha
        data[(g, label)], data[(g, "p")] = sub[value].astype(float), sub[p].astype(float)
        sig[(g, label)] = sig[(g, "p")] = ours
        ptext[(g, "p")] = sub[p].astype(float).map(format_p)
        if with_paper:
            pv = sub["paper_p"].astype(float)
            note = sub["paper_p_note"].fillna("") if "paper_p_note" in sub else pd.Series("", index=sub.index)
            theirs = pv < alpha
            data[(g, f"paper {label}")], data[(g, "paper p")] = sub["paper_value"].astype(float), pv
            sig[(g, f"paper {label}")] = sig[(g, "paper p")] = theirs
            ptext[(g, "paper p")] = pd.Series([format_p(a, n) for a, n in zip(pv, note)], index=sub.index)
    wide = pd.DataFrame(data)
    bold = pd.DataFrame(sig).reindex(wide.index).fillna(False).astype(bool)
    text = pd.DataFrame(ptext).reindex(wide.index)
    shown = wide.copy().astype(object)
    for c in wide.columns:
        if c in text.columns:
            shown[c] = text[c].fillna("")
        else:
            shown[c] = wide[c].map(lambda v: "" if math.isnan(v) else f"{v:.{digits}f}")
    idx = [names.get(i, i) for i in wide.index]
    shown.index = idx
    bold.index = idx
    if col is None:
        shown.columns = [c[1] for c in shown.columns]
        bold.columns = [c[1] for c in bold.columns]
    css = bold.reindex(columns=shown.columns).replace({True: "font-weight: bold", False: ""})
    return (
        shown.style.format(escape="html")
        .apply(lambda _: css, axis=None)
        .set_table_styles([{"selector": "th, td", "props": "padding: 2px 8px; text-align: right; white-space: nowrap;"}])
    )


def _annotate(ax, fit: "stats.OLSFit") -> None:
    ax.text(
        0.03, 0.97, f"slope {fit.slope:.2f}\np {format_p(fit.p_value)}\n$R^2$ {fit.r2:.2f}",
        transform=ax.transAxes, va="top", ha="left", fontsize=8,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "linewidth": 0.5},
    )


def regression_panel(
    ax: Any,
    x: Any,
    y: Any,
    *,
    level: float = 0.96,
    labels: Sequence[str] | None = None,
    color: Any = None,
    annotate: bool = True,
) -> "stats.OLSFit | None":
    """Scatter ``y`` vs ``x`` with the OLS line, its ``level`` confidence band and slope/p/R^2 on ``ax``.

    Returns the fit, or None (and only the scatter) when there are fewer than 3 points.
    """
    import seaborn as sns

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    sns.scatterplot(x=x, y=y, ax=ax, color=color, s=30, zorder=3)
    if labels is not None:
        for xi, yi, t in zip(x, y, np.asarray(labels)[ok]):
            ax.annotate(str(t), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points", alpha=0.8)
    if x.size < 3 or np.ptp(x) == 0:
        ax.text(0.5, 0.5, "fewer than 3 tasks: no fit", transform=ax.transAxes, ha="center", fontsize=8)
        return None
    fit = stats.ols_fit(x, y)
    band = fit.predict(np.linspace(x.min(), x.max(), 100), level)
    ax.plot(band["x"], band["fit"], color=color or "C0", lw=1.5)
    ax.fill_between(band["x"], band["lower"], band["upper"], color=color or "C0", alpha=0.2, lw=0)
    if annotate:
        _annotate(ax, fit)
    return fit


def regression_grid(
    df: "pd.DataFrame",
    x: str,
    ys: Sequence[str],
    col: str,
    *,
    level: float = 0.96,
    col_order: Sequence[str] | None = None,
    label_col: str | None = "dataset",
    height: float = 2.8,
):
    """A grid of :func:`regression_panel`: one column per value of ``col``, one row per outcome in ``ys``.

    The paper's Figure 3 (``col="model"``) and Figure 4 (``col="method"``), with ``ys`` =
    ``["gain", "ood_change"]``. Returns ``(figure, fits)`` where ``fits`` is a long DataFrame
    of slope, p, R^2 and n per panel.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    order = list(col_order) if col_order is not None else sorted(df[col].unique())
    fig, axes = plt.subplots(len(ys), len(order), figsize=(height * 1.15 * len(order), height * len(ys)),
                             squeeze=False, sharex="col", sharey="row")
    rows = []
    for j, g in enumerate(order):
        sub = df[df[col] == g]
        for i, yname in enumerate(ys):
            ax = axes[i][j]
            fit = regression_panel(ax, sub[x], sub[yname], level=level,
                                   labels=sub[label_col] if label_col else None, color=f"C{i}")
            if i == 0:
                ax.set_title(str(g))
            ax.set_xlabel(MEASURE_LABELS.get(x, x) if i == len(ys) - 1 else "")
            ax.set_ylabel(MEASURE_LABELS.get(yname, yname) if j == 0 else "")
            if yname in ("ood_change", "id_change"):
                ax.axhline(0, color="grey", lw=0.5, ls=":")
            rows.append({col: g, "outcome": yname, "slope": fit.slope if fit else math.nan,
                         "p": fit.p_value if fit else math.nan, "r2": fit.r2 if fit else math.nan,
                         "n": int(sub[[x, yname]].dropna().shape[0])})
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def scatter_with_fit(
    df: "pd.DataFrame", x: str, y: str, *, hue: str = "model", level: float = 0.96,
    label_col: str | None = "dataset", ax: Any = None,
):
    """All points coloured by ``hue`` with one pooled OLS line and band (the paper's Figure 2)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    sub = df[[x, y, hue] + ([label_col] if label_col else [])].dropna(subset=[x, y])
    fit = None
    if len(sub) >= 3 and np.ptp(sub[x].astype(float)) > 0:
        fit = stats.ols_fit(sub[x], sub[y])
        band = fit.predict(np.linspace(sub[x].min(), sub[x].max(), 100), level)
        ax.plot(band["x"], band["fit"], color="black", lw=1.2)
        ax.fill_between(band["x"], band["lower"], band["upper"], color="grey", alpha=0.2, lw=0,
                        label=f"OLS, {level:.0%} band")
        _annotate(ax, fit)
    sns.scatterplot(data=sub, x=x, y=y, hue=hue, style=hue, s=45, ax=ax, zorder=3)
    if label_col:
        for _, r in sub.iterrows():
            ax.annotate(str(r[label_col]), (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points", alpha=0.7)
    ax.set_xlabel(MEASURE_LABELS.get(x, x))
    ax.set_ylabel(MEASURE_LABELS.get(y, y))
    ax.legend(fontsize=8, loc="lower right")
    return ax.figure, fit


def geometry_view(images: Any, texts: Any, labels: Any, *, ax: Any, title: str = "", max_points: int = 400, seed: int = 0):
    """2-D PCA view of unit-normalised image and class-text embeddings (Figure 1's geometry panels).

    Images are coloured by class (small dots, at most ``max_points`` drawn, seeded), class texts
    are black stars; the PCA is fitted on both modalities together so the modality gap shows.
    """
    import seaborn as sns
    from sklearn.decomposition import PCA

    img = np.asarray(images, dtype=float)
    txt = np.asarray(texts, dtype=float)
    lab = np.asarray(labels)
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    if len(img) > max_points:
        keep = np.random.default_rng(seed).choice(len(img), max_points, replace=False)
        img, lab = img[keep], lab[keep]
    xy = PCA(n_components=2, random_state=seed).fit_transform(np.vstack([img, txt]))
    n = len(img)
    sns.scatterplot(x=xy[:n, 0], y=xy[:n, 1], hue=lab.astype(str), palette="tab10", s=10, alpha=0.6,
                    legend=False, ax=ax, linewidth=0)
    ax.scatter(xy[n:, 0], xy[n:, 1], marker="*", s=90, c="black", label="class texts", zorder=4)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    return ax


def prediction_plot(loto: "pd.DataFrame", *, ax: Any = None, task: str = "dataset", title: str = ""):
    """Leave-one-task-out predictions vs actual outcomes with their prediction intervals and the y = x line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.2))
    d = loto.dropna(subset=["predicted"])
    yerr = np.vstack([d["predicted"] - d["lower"], d["upper"] - d["predicted"]])
    ax.errorbar(d["actual"], d["predicted"], yerr=yerr, fmt="o", ms=5, capsize=3, lw=1, color="C0",
                label="predicted (interval)")
    lo = float(np.nanmin([d["actual"].min(), d["lower"].min()]))
    hi = float(np.nanmax([d["actual"].max(), d["upper"].max()]))
    ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label="y = x")
    for _, r in d.iterrows():
        ax.annotate(str(r[task]), (r["actual"], r["predicted"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted from the other tasks")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return ax


def save_figure(fig: Any, output_dir: str | os.PathLike, name: str, dpi: int = 110) -> Path:
    """Save ``fig`` as ``<output_dir>/<name>.png`` (folder created) and return the path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
