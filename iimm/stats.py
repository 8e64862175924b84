r"""Statistics of the book: outcomes of fine-tuning, correlation and regression tables, prediction.

Everything here reads the study tables of ``CONTRIBUTING.md`` (``measures``,
``baselines``, ``runs``, ``evaluations``) and reduces them to the quantities of the
paper (Sec. 4.1):

* gain over zero-shot error :math:`g = (\mathrm{acc} - \mathrm{acc}_0) / (1 - \mathrm{acc}_0)`
  (:func:`gain_over_zero_shot_error`);
* Spearman's :math:`r_s` with its p-value (Tables 1, 2, 4; :func:`spearman_table`, scipy);
* simple OLS of an outcome on one measure with slope, p-value and :math:`R^2`
  (Tables 3, 5, 6; :func:`ols_table`, statsmodels) and its confidence band
  (96% in the paper's Figures 3-4; :func:`confidence_band`);
* prediction of the gain of unseen tasks from a line fitted on the others
  (Contribution 2; :func:`leave_one_task_out`, :func:`k_task_prediction`).

pandas, scipy and statsmodels are imported inside the functions, so importing this
module costs nothing.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "gain_over_zero_shot_error",
    "Study",
    "StudyNotFoundError",
    "load_study",
    "outcome_table",
    "spearman_table",
    "OLSFit",
    "ols_fit",
    "ols_table",
    "confidence_band",
    "leave_one_task_out",
    "k_task_prediction",
    "prediction_summary",
    "load_paper_results",
    "paper_model_name",
    "attach_paper",
    "MEASURE_COLUMNS",
    "SCORE_COLUMNS",
    "PAPER_MEASURE_NAMES",
]

#: columns of ``measures.parquet`` holding ``iimm.all_measures`` keys
MEASURE_COLUMNS: tuple[str, ...] = (
    "inter_modal", "intra_images", "intra_texts", "iimm", "correct_label_alignment",
    "incorrect_label_alignment", "modality_gap", "silhouette_cosine", "silhouette_euclidean",
    "davies_bouldin", "calinski_harabasz", "clustering_entropy",
)
#: columns of ``baselines.parquet`` holding ``iimm.all_scores`` keys
SCORE_COLUMNS: tuple[str, ...] = (
    "transrate", "sfda", "ncti", "emms", "logme", "hscore", "gbc_spherical", "gbc_diagonal",
)
#: our column name -> the name the paper's tables use (``data/reference/paper_results.csv``)
PAPER_MEASURE_NAMES: dict[str, str] = {
    "iimm": "IIMM", "emms": "EMMS", "ncti": "NCTI", "sfda": "SFDA", "transrate": "TransRate",
}
_PAPER_MODELS = {"clip": "CLIP", "siglip": "SigLIP", "coca": "CoCa", "eva02": "EVA-02"}
_PROVENANCE = ("iimm_version", "git_commit", "date", "config_hash", "seed")
_STUDY_HINT = "run `iimm study run configs/sandbox.yaml`"


# --------------------------------------------------------------------------- outcomes


def gain_over_zero_shot_error(accuracy: Any, zero_shot_accuracy: Any) -> Any:
    r"""Gain over zero-shot error :math:`(\mathrm{acc} - \mathrm{acc}_0)/(1 - \mathrm{acc}_0)` (paper Sec. 4.1).

    Accepts scalars, arrays or pandas Series (returned as the same kind for Series).
    1 means the fine-tuned model makes no error; 0 no change; negative a loss.

    Raises
    ------
    ValueError
        If an accuracy is NaN or outside [0, 1], or a zero-shot accuracy equals 1
        (the gain is undefined when there is no zero-shot error).
    """
    acc = np.asarray(accuracy, dtype=float)
    zs = np.asarray(zero_shot_accuracy, dtype=float)
    for name, a in (("accuracy", acc), ("zero_shot_accuracy", zs)):
        if np.isnan(a).any():
            raise ValueError(f"{name} contains NaN")
        if ((a < 0) | (a > 1)).any():
            raise ValueError(f"{name} must lie in [0, 1]; got values from {a.min():g} to {a.max():g}")
    if (zs >= 1).any():
        raise ValueError("zero_shot_accuracy equals 1: the gain over zero-shot error is undefined (no error to reduce)")
    out = (acc - zs) / (1.0 - zs)
    if hasattr(accuracy, "index") and hasattr(accuracy, "to_numpy"):
        import pandas as pd

        return pd.Series(out, index=accuracy.index, name="gain")
    return float(out) if out.ndim == 0 else out


def outcome_table(
    runs: "pd.DataFrame | None",
    evaluations: "pd.DataFrame",
    measures: "pd.DataFrame | None" = None,
    baselines: "pd.DataFrame | None" = None,
) -> "pd.DataFrame":
    """One row per (model, method, dataset) of fine-tuning, with its outcomes and the zero-shot scores.

    Only evaluations of the trials marked ``selected`` in ``runs`` count (all of them when
    ``runs`` is None). Columns: ``model``, ``method``, ``dataset`` (trained on),
    ``zero_shot_accuracy``, ``accuracy`` (fine-tuned, in domain), ``gain`` (over zero-shot
    error), ``id_change`` (``accuracy - zero_shot_accuracy``), ``ood_change`` (mean over the
    other evaluated tasks of fine-tuned minus zero-shot accuracy; negative = forgetting),
    ``ood_relative_change`` (the same divided by the zero-shot accuracy), ``n_ood``, ``n_runs``,
    then the measure and baseline columns of that (model, dataset) when given.
    Several selected trials of one group (seeds) are averaged.
    """
    import pandas as pd

    need = {"run_id", "model", "method", "train_dataset", "eval_dataset", "accuracy", "zero_shot_accuracy", "in_domain"}
    missing = need - set(evaluations.columns)
    if missing:
        raise ValueError(f"evaluations lacks column(s) {sorted(missing)}")
    ev = evaluations[evaluations["method"] != "zeroshot"]
    if runs is not None and len(runs):
        if not {"run_id", "selected"} <= set(runs.columns):
            raise ValueError("runs needs columns run_id and selected")
        chosen = set(runs.loc[runs["selected"].astype(bool), "run_id"])
        ev = ev[ev["run_id"].isin(chosen)]
    if ev.empty:
        raise ValueError("no evaluations of selected fine-tuning runs in the study")
    ev = ev.assign(change=ev["accuracy"] - ev["zero_shot_accuracy"])
    ev = ev.assign(relative_change=ev["change"] / ev["zero_shot_accuracy"].where(ev["zero_shot_accuracy"] > 0))
    keys = ["run_id", "model", "method", "train_dataset"]
    idd = ev[ev["in_domain"].astype(bool)][keys + ["accuracy", "zero_shot_accuracy"]]
    ood = (
        ev[~ev["in_domain"].astype(bool)]
        .groupby(keys)
        .agg(ood_change=("change", "mean"), ood_relative_change=("relative_change", "mean"), n_ood=("change", "size"))
        .reset_index()
    )
    per_run = idd.merge(ood, on=keys, how="left")
    per_run["n_ood"] = per_run["n_ood"].fillna(0).astype(int)
    per_run = per_run.rename(columns={"train_dataset": "dataset"})
    out = (
        per_run.groupby(["model", "method", "dataset"], sort=True)
        .agg(
            zero_shot_accuracy=("zero_shot_accuracy", "mean"),
            accuracy=("accuracy", "mean"),
            ood_change=("ood_change", "mean"),
            ood_relative_change=("ood_relative_change", "mean"),
            n_ood=("n_ood", "max"),
            n_runs=("run_id", "nunique"),
        )
        .reset_index()
    )
    gain = np.full(len(out), math.nan)
    # no zero-shot error (or a missing accuracy): the gain is undefined, NaN
    ok = ((out["zero_shot_accuracy"] < 1) & out["zero_shot_accuracy"].notna() & out["accuracy"].notna()).to_numpy()
    gain[ok] = gain_over_zero_shot_error(out["accuracy"].to_numpy()[ok], out["zero_shot_accuracy"].to_numpy()[ok])
    out.insert(5, "gain", gain)
    out.insert(6, "id_change", out["accuracy"] - out["zero_shot_accuracy"])
    for table, cols in ((measures, MEASURE_COLUMNS), (baselines, SCORE_COLUMNS)):
        if table is None or table.empty:
            continue
        present = [c for c in cols if c in table.columns]
        extra = table[["model", "dataset", *present]].drop_duplicates(["model", "dataset"])
        out = out.merge(extra, on=["model", "dataset"], how="left")
    return out


# --------------------------------------------------------------------------- the study


class StudyNotFoundError(FileNotFoundError):
    """The study folder, or its tables, do not exist."""


@dataclass
class Study:
    """The result tables of one study folder (see :func:`load_study`)."""

    path: Path
    measures: "pd.DataFrame"
    runs: "pd.DataFrame"
    evaluations: "pd.DataFrame"
    baselines: "pd.DataFrame | None" = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def outcomes(
        self,
        models: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        datasets: Sequence[str] | None = None,
    ) -> "pd.DataFrame":
        """:func:`outcome_table` of this study, restricted to the given models/methods/datasets (None = all)."""
        out = outcome_table(self.runs, self.evaluations, self.measures, self.baselines)
        return _restrict(out, models=models, methods=methods, datasets=datasets)

    def describe(self) -> dict[str, Any]:
        """Models, datasets, methods, grid, dates, commits and config hashes of the study, from its tables."""
        frames = [f for f in (self.measures, self.baselines, self.runs, self.evaluations) if f is not None]
        grid: dict[str, list[float]] = {}
        for col in ("lr", "weight_decay", "rank", "reduction", "epochs", "seed"):
            if col in self.runs.columns:
                vals = sorted({float(v) for v in self.runs[col].dropna()})
                if vals:
                    grid[col] = [int(v) if v.is_integer() and col in ("rank", "reduction", "epochs", "seed") else v
                                 for v in vals]

        def values(col: str) -> list[str]:
            return sorted({str(v) for f in frames if col in f.columns for v in f[col].dropna()})

        dates = values("date")
        return {
            "path": str(self.path),
            "name": self.provenance.get("study") or self.path.name,
            "models": sorted(set(self.measures["model"]) | set(self.runs.get("model", []))),
            "datasets": sorted(set(self.measures["dataset"])),
            "methods": sorted(set(self.runs["method"])) if "method" in self.runs else [],
            "grid": grid,
            "n_runs": int(len(self.runs)),
            "n_selected": int(self.runs["selected"].astype(bool).sum()) if "selected" in self.runs else 0,
            "date_first": dates[0] if dates else None,
            "date_last": dates[-1] if dates else None,
            "git_commits": values("git_commit"),
            "config_hashes": values("config_hash"),
            "iimm_versions": values("iimm_version"),
            "devices": sorted({str(v) for v in self.runs["device"].dropna()}) if "device" in self.runs else [],
        }


def _restrict(df: "pd.DataFrame", *, models=None, methods=None, datasets=None, dataset_col: str = "dataset"):
    for col, keep in (("model", models), ("method", methods), (dataset_col, datasets)):
        if keep is None or col not in df.columns:
            continue
        if isinstance(keep, str):
            keep = [keep]
        keep = list(keep)
        unknown = sorted(set(keep) - set(df[col]))
        if unknown:
            raise ValueError(f"{col} {unknown} not in the study (it has {sorted(set(df[col]))})")
        df = df[df[col].isin(keep)]
    return df.reset_index(drop=True)


def load_study(study: str | os.PathLike) -> Study:
    """Read ``measures``, ``runs``, ``evaluations`` (required) and ``baselines`` parquet tables of a study folder.

    ``provenance.json`` beside them is read when present.

    Raises
    ------
    StudyNotFoundError
        Naming the folder or the missing table, and the command that produces it.
    """
    import pandas as pd

    path = Path(study).expanduser()
    if not path.is_dir():
        raise StudyNotFoundError(f"no study cache found at {path}; {_STUDY_HINT}")
    required = ("measures", "runs", "evaluations")
    missing = [n for n in required if not (path / f"{n}.parquet").is_file()]
    if missing:
        raise StudyNotFoundError(
            f"study cache {path} lacks {', '.join(m + '.parquet' for m in missing)}; "
            f"{_STUDY_HINT} (or `iimm study tables CONFIG` to assemble the tables)"
        )
    tables = {n: pd.read_parquet(path / f"{n}.parquet") for n in required}
    base = path / "baselines.parquet"
    prov_path = path / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    return Study(
        path=path,
        measures=tables["measures"],
        runs=tables["runs"],
        evaluations=tables["evaluations"],
        baselines=pd.read_parquet(base) if base.is_file() else None,
        provenance=prov,
    )


# --------------------------------------------------------------------------- correlation and regression


def _xy(df: "pd.DataFrame", x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    for c in (x, y):
        if c not in df.columns:
            raise ValueError(f"column {c!r} not in the table (columns: {list(df.columns)})")
    sub = df[[x, y]].astype(float)
    sub = sub[np.isfinite(sub[x]) & np.isfinite(sub[y])]
    return sub[x].to_numpy(), sub[y].to_numpy()


def _groups(df: "pd.DataFrame", by: str | Sequence[str] | None) -> Iterable[tuple[dict[str, Any], "pd.DataFrame"]]:
    if by is None:
        yield {}, df
        return
    keys = [by] if isinstance(by, str) else list(by)
    for missing in set(keys) - set(df.columns):
        raise ValueError(f"group column {missing!r} not in the table")
    for vals, sub in df.groupby(keys, sort=True):
        vals = vals if isinstance(vals, tuple) else (vals,)
        yield dict(zip(keys, vals)), sub


def spearman_table(
    df: "pd.DataFrame", measures: Sequence[str], outcome: str, by: str | Sequence[str] | None = "model"
) -> "pd.DataFrame":
    """Spearman's :math:`r_s` and two-sided p-value of each measure vs ``outcome``, per group (paper Tables 1, 2, 4).

    Columns: the ``by`` columns, ``measure``, ``r``, ``p``, ``n``. Rows with NaN in the pair are
    dropped; fewer than 3 points or a constant column give NaN (scipy's convention).
    """
    import pandas as pd
    from scipy import stats as st

    rows = []
    for key, sub in _groups(df, by):
        for m in measures:
            x, y = _xy(sub, m, outcome)
            if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                r = p = math.nan
            else:
                res = st.spearmanr(x, y)
                r, p = float(res.statistic), float(res.pvalue)
            rows.append({**key, "measure": m, "r": r, "p": p, "n": len(x)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class OLSFit:
    """Simple linear regression ``y = intercept + slope * x`` (statsmodels OLS)."""

    slope: float
    intercept: float
    p_value: float  #: two-sided t-test of slope = 0
    r2: float
    n: int
    slope_se: float
    result: Any = field(repr=False, compare=False, default=None)  #: the statsmodels results object

    def predict(self, x: Any, level: float | None = None) -> "pd.DataFrame":
        """Fitted mean at ``x``; with ``level``, the confidence band of the mean and the prediction interval."""
        return _predict(self.result, np.asarray(x, dtype=float), level)


def _predict(result: Any, x: np.ndarray, level: float | None) -> "pd.DataFrame":
    import pandas as pd

    exog = np.column_stack([np.ones_like(x), x])
    if level is None:
        return pd.DataFrame({"x": x, "fit": exog @ result.params})
    _check_level(level)
    frame = result.get_prediction(exog).summary_frame(alpha=1.0 - level)
    return pd.DataFrame({
        "x": x,
        "fit": frame["mean"].to_numpy(),
        "lower": frame["mean_ci_lower"].to_numpy(),
        "upper": frame["mean_ci_upper"].to_numpy(),
        "pred_lower": frame["obs_ci_lower"].to_numpy(),
        "pred_upper": frame["obs_ci_upper"].to_numpy(),
    })


def _check_level(level: float) -> None:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"level must lie in (0, 1); got {level!r}")


def ols_fit(x: Any, y: Any) -> OLSFit:
    """Fit ``y = a + b x`` by ordinary least squares (statsmodels) and return slope, its p-value and R^2.

    Raises
    ------
    ValueError
        If x and y differ in length, hold NaN/inf, have fewer than 3 points, or x is constant.
    """
    import statsmodels.api as sm

    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length; got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite (no NaN or inf)")
    if x.size < 3:
        raise ValueError(f"an OLS fit with a p-value needs at least 3 points; got {x.size}")
    if np.ptp(x) == 0:
        raise ValueError("x is constant: the slope is not identifiable")
    res = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    return OLSFit(
        slope=float(res.params[1]), intercept=float(res.params[0]), p_value=float(res.pvalues[1]),
        r2=float(res.rsquared), n=int(x.size), slope_se=float(res.bse[1]), result=res,
    )


def ols_table(
    df: "pd.DataFrame", measures: Sequence[str], outcome: str, by: str | Sequence[str] | None = "model"
) -> "pd.DataFrame":
    """Simple OLS of ``outcome`` on each measure, per group (paper Tables 3, 5, 6).

    Columns: the ``by`` columns, ``measure``, ``slope``, ``intercept``, ``p`` (of the slope),
    ``r2``, ``n``. Groups with fewer than 3 points or a constant measure give NaN.
    """
    import pandas as pd

    rows = []
    for key, sub in _groups(df, by):
        for m in measures:
            x, y = _xy(sub, m, outcome)
            try:
                f = ols_fit(x, y)
                vals = {"slope": f.slope, "intercept": f.intercept, "p": f.p_value, "r2": f.r2}
            except ValueError:
                vals = {"slope": math.nan, "intercept": math.nan, "p": math.nan, "r2": math.nan}
            rows.append({**key, "measure": m, **vals, "n": len(x)})
    return pd.DataFrame(rows)


def confidence_band(x: Any, y: Any, grid: Any = None, level: float = 0.96, n_grid: int = 100) -> "pd.DataFrame":
    """OLS line of ``y`` on ``x`` with its confidence band for the mean (and prediction interval).

    The paper's Figures 3 and 4 draw a 96% band. Columns: ``x`` (``grid``, default ``n_grid``
    points spanning x), ``fit``, ``lower``, ``upper`` (band of the mean), ``pred_lower``,
    ``pred_upper`` (interval for a new observation).
    """
    _check_level(level)
    fit = ols_fit(x, y)
    xs = np.asarray(x, dtype=float)
    g = np.linspace(xs.min(), xs.max(), n_grid) if grid is None else np.asarray(grid, dtype=float).ravel()
    return fit.predict(g, level)


# --------------------------------------------------------------------------- prediction


def leave_one_task_out(
    df: "pd.DataFrame", predictor: str, outcome: str = "gain", level: float = 0.9, task: str = "dataset"
) -> "pd.DataFrame":
    """Predict each task's ``outcome`` from an OLS line on ``predictor`` fitted on the other tasks.

    ``df`` holds one row per task (e.g. one base model and one method of :func:`outcome_table`).
    Columns: ``task`` value, ``actual``, ``predicted``, ``lower``/``upper`` (the ``level``
    prediction interval of the held-out fit), ``error`` (predicted - actual), ``covered``,
    and ``mean_baseline`` (the mean outcome of the other tasks: the no-skill predictor).
    Needs at least 4 tasks (3 to fit a line with an interval).
    """
    import pandas as pd

    _check_level(level)
    if task not in df.columns:
        raise ValueError(f"task column {task!r} not in the table")
    if df[task].duplicated().any():
        raise ValueError(f"leave_one_task_out needs one row per {task}; filter to one model and method first")
    x, y = _xy(df, predictor, outcome)
    names = df.loc[np.isfinite(df[predictor].astype(float)) & np.isfinite(df[outcome].astype(float)), task].to_numpy()
    if len(x) < 4:
        raise ValueError(f"leave-one-task-out needs at least 4 tasks with {predictor} and {outcome}; got {len(x)}")
    rows = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        try:
            pred = ols_fit(x[keep], y[keep]).predict([x[i]], level).iloc[0]
            p, lo, hi = float(pred["fit"]), float(pred["pred_lower"]), float(pred["pred_upper"])
        except ValueError:  # constant predictor on the training tasks
            p = lo = hi = math.nan
        rows.append({
            task: names[i], "actual": y[i], "predicted": p, "lower": lo, "upper": hi, "error": p - y[i],
            "covered": bool(lo <= y[i] <= hi), "mean_baseline": float(y[keep].mean()),
        })
    return pd.DataFrame(rows)


def k_task_prediction(
    df: "pd.DataFrame",
    predictor: str,
    outcome: str = "gain",
    ks: Sequence[int] | None = None,
    *,
    level: float = 0.9,
    max_subsets: int = 200,
    seed: int = 0,
) -> "pd.DataFrame":
    """Fit on ``k`` tasks, predict the others: the paper's claim that a few benchmarks suffice.

    For each ``k`` (default 3 .. n-1), every subset of ``k`` tasks (or ``max_subsets`` of them drawn
    with ``seed`` when there are more) is used to fit the OLS line; the remaining tasks are predicted.
    Columns: ``k``, ``n_subsets``, ``mae`` (mean absolute error over subsets and held-out tasks),
    ``mae_sd`` (spread of the per-subset MAE), ``mae_mean_baseline`` (predicting the mean of the
    k tasks), ``coverage`` (share of held-out tasks inside the ``level`` prediction interval).
    """
    import pandas as pd

    _check_level(level)
    x, y = _xy(df, predictor, outcome)
    n = len(x)
    if n < 4:
        raise ValueError(f"k-task prediction needs at least 4 tasks; got {n}")
    ks = list(range(3, n)) if ks is None else list(ks)
    for k in ks:
        if not (3 <= k <= n - 1):
            raise ValueError(f"k must lie in [3, {n - 1}] for {n} tasks; got {k}")
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        total = math.comb(n, k)
        if total <= max_subsets:
            subsets = [np.array(s) for s in itertools.combinations(range(n), k)]
        else:
            seen: set[tuple[int, ...]] = set()
            while len(seen) < max_subsets:
                seen.add(tuple(sorted(rng.choice(n, size=k, replace=False).tolist())))
            subsets = [np.array(s) for s in sorted(seen)]
        maes, base, covered, count = [], [], 0, 0
        for s in subsets:
            rest = np.setdiff1d(np.arange(n), s)
            try:
                pred = ols_fit(x[s], y[s]).predict(x[rest], level)
            except ValueError:
                continue
            err = np.abs(pred["fit"].to_numpy() - y[rest])
            maes.append(err.mean())
            base.append(np.abs(y[s].mean() - y[rest]).mean())
            covered += int(((pred["pred_lower"].to_numpy() <= y[rest]) & (y[rest] <= pred["pred_upper"].to_numpy())).sum())
            count += rest.size
        rows.append({
            "k": k, "n_subsets": len(maes),
            "mae": float(np.mean(maes)) if maes else math.nan,
            "mae_sd": float(np.std(maes, ddof=1)) if len(maes) > 1 else math.nan,
            "mae_mean_baseline": float(np.mean(base)) if base else math.nan,
            "coverage": covered / count if count else math.nan,
        })
    return pd.DataFrame(rows)


def prediction_summary(
    df: "pd.DataFrame",
    predictors: Sequence[str],
    outcome: str = "gain",
    by: str | Sequence[str] | None = "model",
    level: float = 0.9,
    task: str = "dataset",
) -> "pd.DataFrame":
    """Leave-one-task-out MAE, interval coverage and mean interval width of each predictor, per group.

    Columns: the ``by`` columns, ``predictor``, ``mae``, ``mae_mean_baseline``, ``coverage``,
    ``interval_width``, ``n``. Groups with fewer than 4 usable tasks are skipped.
    """
    import pandas as pd

    rows = []
    for key, sub in _groups(df, by):
        for pname in predictors:
            if pname not in sub.columns or sub[pname].isna().all():
                continue
            try:
                lo = leave_one_task_out(sub, pname, outcome, level=level, task=task)
            except ValueError:
                continue
            ok = lo.dropna(subset=["predicted"])
            rows.append({
                **key, "predictor": pname,
                "mae": float(ok["error"].abs().mean()),
                "mae_mean_baseline": float((ok["mean_baseline"] - ok["actual"]).abs().mean()),
                "coverage": float(ok["covered"].mean()),
                "interval_width": float((ok["upper"] - ok["lower"]).mean()),
                "n": int(len(ok)),
            })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the paper's numbers


def load_paper_results(path: str | os.PathLike | None = None) -> "pd.DataFrame":
    """The paper's reported Tables 1-6 in long form (``data/reference/paper_results.csv``)."""
    import pandas as pd

    if path is None:
        from .paths import repo_root

        root = repo_root()
        if root is None:
            raise FileNotFoundError("paper_results.csv: pass its path (data/reference/paper_results.csv of the repository)")
        path = root / "data" / "reference" / "paper_results.csv"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paper reference table not found at {path}")
    return pd.read_csv(path)


def paper_model_name(model: str) -> str | None:
    """The paper's name of the base model that ``model`` stands for (``sandbox-clip`` -> ``CLIP``), or None."""
    key = model.lower().removeprefix("sandbox-")
    return _PAPER_MODELS.get(key)


def attach_paper(
    table: "pd.DataFrame", paper: "pd.DataFrame", table_number: int, by: str | None = "model"
) -> "pd.DataFrame":
    """Add ``paper_value``, ``paper_p`` and ``paper_p_note`` columns: the paper's cell for each row, where it exists.

    Rows are matched on ``measure`` (our names, e.g. ``iimm`` -> ``IIMM``) and, with ``by``, on the
    paper's counterpart of the model (:func:`paper_model_name`); pooled tables (Table 5) use
    ``by=None``.
    """
    ref = paper[paper["table"] == table_number]
    lookup: dict[tuple[str, str], tuple[float, float, str]] = {}
    for _, r in ref.iterrows():
        note = "" if (isinstance(r.get("p_value_note"), float) or r.get("p_value_note") is None) else str(r["p_value_note"])
        lookup[(str(r["base_model"]), str(r["measure"]))] = (float(r["value"]), float(r["p_value"]), note)
    vals, ps, notes = [], [], []
    for _, row in table.iterrows():
        m = PAPER_MEASURE_NAMES.get(row["measure"], row["measure"])
        model = "all" if by is None else paper_model_name(str(row[by]))
        hit = lookup.get((model, m)) if model else None
        vals.append(hit[0] if hit else math.nan)
        ps.append(hit[1] if hit else math.nan)
        notes.append(hit[2] if hit else "")
    return table.assign(paper_value=vals, paper_p=ps, paper_p_note=notes)
