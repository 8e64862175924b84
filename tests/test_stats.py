"""iimm.stats equals scipy/statsmodels and closed-form textbook formulas on known data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("statsmodels")
from scipy import stats as st  # noqa: E402

from iimm import stats  # noqa: E402


# --------------------------------------------------------------------------- gain


def test_gain_known_values():
    assert stats.gain_over_zero_shot_error(0.9, 0.6) == pytest.approx(0.75)
    assert stats.gain_over_zero_shot_error(0.6, 0.6) == 0.0
    assert stats.gain_over_zero_shot_error(1.0, 0.2) == pytest.approx(1.0)
    assert stats.gain_over_zero_shot_error(0.4, 0.6) == pytest.approx(-0.5)
    out = stats.gain_over_zero_shot_error(np.array([0.5, 0.8]), np.array([0.0, 0.5]))
    np.testing.assert_allclose(out, [0.5, 0.6])
    s = stats.gain_over_zero_shot_error(pd.Series([0.5, 0.8], index=["a", "b"]), pd.Series([0.0, 0.5], index=["a", "b"]))
    assert list(s.index) == ["a", "b"] and s["b"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    "acc, zs, msg",
    [(0.5, 1.0, "undefined"), (1.2, 0.5, "accuracy must lie in"), (0.5, -0.1, "zero_shot_accuracy must lie in"),
     (float("nan"), 0.5, "accuracy contains NaN")],
)
def test_gain_errors(acc, zs, msg):
    with pytest.raises(ValueError, match=msg):
        stats.gain_over_zero_shot_error(acc, zs)


# --------------------------------------------------------------------------- outcome table


def _tiny_tables():
    runs = pd.DataFrame({
        "run_id": ["r1", "r2", "r3"], "model": ["m"] * 3, "method": ["full"] * 3, "dataset": ["a", "a", "b"],
        "selected": [True, False, True],
    })
    zs = {"a": 0.5, "b": 0.2, "c": 0.4}
    ev = []
    acc = {("r1", "a"): 0.9, ("r1", "b"): 0.1, ("r1", "c"): 0.5,
           ("r2", "a"): 0.6, ("r2", "b"): 0.2, ("r2", "c"): 0.4,
           ("r3", "a"): 0.3, ("r3", "b"): 0.8, ("r3", "c"): 0.2}
    for (rid, e), a in acc.items():
        train = runs.set_index("run_id").loc[rid, "dataset"]
        ev.append({"run_id": rid, "model": "m", "method": "full", "train_dataset": train, "eval_dataset": e,
                   "accuracy": a, "zero_shot_accuracy": zs[e], "in_domain": e == train})
    ev.append({"run_id": "z", "model": "m", "method": "zeroshot", "train_dataset": "a", "eval_dataset": "a",
               "accuracy": 0.5, "zero_shot_accuracy": 0.5, "in_domain": True})
    measures = pd.DataFrame({"model": ["m", "m"], "dataset": ["a", "b"], "iimm": [0.3, 0.1]})
    return runs, pd.DataFrame(ev), measures


def test_outcome_table_uses_selected_runs_and_averages_ood():
    runs, ev, measures = _tiny_tables()
    out = stats.outcome_table(runs, ev, measures).set_index("dataset")
    assert list(out.index) == ["a", "b"]
    a, b = out.loc["a"], out.loc["b"]
    assert a["accuracy"] == 0.9 and a["zero_shot_accuracy"] == 0.5  # r1, not the unselected r2
    assert a["gain"] == pytest.approx((0.9 - 0.5) / 0.5)
    assert a["ood_change"] == pytest.approx(((0.1 - 0.2) + (0.5 - 0.4)) / 2)
    assert a["ood_relative_change"] == pytest.approx(((0.1 - 0.2) / 0.2 + (0.5 - 0.4) / 0.4) / 2)
    assert b["gain"] == pytest.approx((0.8 - 0.2) / 0.8)
    assert b["ood_change"] == pytest.approx(((0.3 - 0.5) + (0.2 - 0.4)) / 2)
    assert a["n_ood"] == 2 and a["iimm"] == 0.3 and b["iimm"] == 0.1
    assert set(out["method"]) == {"full"}  # the zero-shot rows are not fine-tuning outcomes


def test_outcome_table_errors():
    runs, ev, _ = _tiny_tables()
    with pytest.raises(ValueError, match="lacks column"):
        stats.outcome_table(runs, ev.drop(columns=["in_domain"]))
    with pytest.raises(ValueError, match="no evaluations of selected"):
        stats.outcome_table(runs.assign(selected=False), ev)


# --------------------------------------------------------------------------- Spearman and OLS


@pytest.fixture
def grouped():
    rng = np.random.default_rng(3)
    rows = []
    for g in ("g1", "g2", "g3"):
        x = rng.random(9)
        rows.append(pd.DataFrame({"model": g, "x": x, "z": rng.random(9), "y": 2 * x + 0.3 * rng.standard_normal(9)}))
    return pd.concat(rows, ignore_index=True)


def test_spearman_table_equals_scipy(grouped):
    t = stats.spearman_table(grouped, ["x", "z"], "y", by="model")
    assert len(t) == 6
    for _, row in t.iterrows():
        sub = grouped[grouped["model"] == row["model"]]
        r, p = st.spearmanr(sub[row["measure"]], sub["y"])
        assert row["r"] == pytest.approx(r, abs=1e-14) and row["p"] == pytest.approx(p, rel=1e-12)
        assert row["n"] == 9
    pooled = stats.spearman_table(grouped, ["x"], "y", by=None)
    assert pooled.loc[0, "r"] == pytest.approx(st.spearmanr(grouped["x"], grouped["y"]).statistic)


def test_spearman_table_nan_on_constant_and_dropped_nan(grouped):
    df = grouped.assign(c=1.0)
    df.loc[0, "x"] = np.nan
    t = stats.spearman_table(df, ["c", "x"], "y", by="model").set_index(["model", "measure"])
    assert math.isnan(t.loc[("g1", "c"), "r"])
    assert t.loc[("g1", "x"), "n"] == 8
    sub = df[(df["model"] == "g1")].dropna()
    assert t.loc[("g1", "x"), "r"] == pytest.approx(st.spearmanr(sub["x"], sub["y"]).statistic)


def test_ols_fit_equals_linregress_and_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    x = rng.random(12)
    y = 1.5 - 0.7 * x + 0.2 * rng.standard_normal(12)
    f = stats.ols_fit(x, y)
    lr = st.linregress(x, y)  # an independent implementation
    assert f.slope == pytest.approx(lr.slope, rel=1e-12)
    assert f.intercept == pytest.approx(lr.intercept, rel=1e-12)
    assert f.p_value == pytest.approx(lr.pvalue, rel=1e-9)
    assert f.r2 == pytest.approx(lr.rvalue**2, rel=1e-12)
    assert f.slope_se == pytest.approx(lr.stderr, rel=1e-12)
    res = sm.OLS(y, sm.add_constant(x)).fit()
    assert f.r2 == pytest.approx(res.rsquared) and f.n == 12


@pytest.mark.parametrize(
    "x, y, msg",
    [([1, 2], [1, 2], "at least 3"), ([1, 1, 1], [1, 2, 3], "constant"), ([1, 2, 3], [1, 2], "same length"),
     ([1, 2, np.nan], [1, 2, 3], "finite")],
)
def test_ols_fit_errors(x, y, msg):
    with pytest.raises(ValueError, match=msg):
        stats.ols_fit(x, y)


def test_ols_table_equals_statsmodels(grouped):
    import statsmodels.formula.api as smf

    t = stats.ols_table(grouped, ["x", "z"], "y", by="model")
    for _, row in t.iterrows():
        sub = grouped[grouped["model"] == row["model"]]
        res = smf.ols(f"y ~ {row['measure']}", data=sub).fit()
        assert row["slope"] == pytest.approx(res.params[row["measure"]], rel=1e-10)
        assert row["p"] == pytest.approx(res.pvalues[row["measure"]], rel=1e-9)
        assert row["r2"] == pytest.approx(res.rsquared, rel=1e-10)
    small = stats.ols_table(grouped.head(2), ["x"], "y", by=None)
    assert math.isnan(small.loc[0, "r2"]) and small.loc[0, "n"] == 2


def test_confidence_band_equals_textbook_formula():
    rng = np.random.default_rng(1)
    x = rng.random(10)
    y = 0.5 + x + 0.1 * rng.standard_normal(10)
    grid = np.array([-0.2, 0.1, 0.5, 0.9, 1.3])
    band = stats.confidence_band(x, y, grid=grid, level=0.96)
    n = len(x)
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    s = math.sqrt(resid @ resid / (n - 2))
    sxx = ((x - x.mean()) ** 2).sum()
    tq = st.t.ppf(0.98, n - 2)
    fit = a + b * grid
    half = tq * s * np.sqrt(1 / n + (grid - x.mean()) ** 2 / sxx)
    half_pred = tq * s * np.sqrt(1 + 1 / n + (grid - x.mean()) ** 2 / sxx)
    np.testing.assert_allclose(band["fit"], fit, rtol=1e-10)
    np.testing.assert_allclose(band["lower"], fit - half, rtol=1e-9)
    np.testing.assert_allclose(band["upper"], fit + half, rtol=1e-9)
    np.testing.assert_allclose(band["pred_lower"], fit - half_pred, rtol=1e-9)
    np.testing.assert_allclose(band["pred_upper"], fit + half_pred, rtol=1e-9)
    default = stats.confidence_band(x, y)
    assert len(default) == 100 and default["x"].min() == x.min() and default["x"].max() == x.max()
    # the band is narrowest at the mean of x
    assert np.argmin(default["upper"] - default["lower"]) == np.argmin(np.abs(default["x"] - x.mean()))
    with pytest.raises(ValueError, match="level"):
        stats.confidence_band(x, y, level=96)


# --------------------------------------------------------------------------- prediction


@pytest.fixture
def tasks():
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, 7) + 0.05 * rng.standard_normal(7)
    return pd.DataFrame({"dataset": [f"t{i}" for i in range(7)], "iimm": x, "gain": 0.2 + 0.6 * x + 0.05 * rng.standard_normal(7),
                         "other": rng.random(7)})


def test_leave_one_task_out_equals_naive_loop(tasks):
    lo = stats.leave_one_task_out(tasks, "iimm", "gain", level=0.9)
    x, y = tasks["iimm"].to_numpy(), tasks["gain"].to_numpy()
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        xs, ys = x[keep], y[keep]
        b, a = np.polyfit(xs, ys, 1)
        pred = a + b * x[i]
        n = keep.sum()
        s = math.sqrt(((ys - a - b * xs) ** 2).sum() / (n - 2))
        half = st.t.ppf(0.95, n - 2) * s * math.sqrt(1 + 1 / n + (x[i] - xs.mean()) ** 2 / ((xs - xs.mean()) ** 2).sum())
        row = lo.iloc[i]
        assert row["dataset"] == f"t{i}"
        assert row["predicted"] == pytest.approx(pred, rel=1e-9)
        assert row["lower"] == pytest.approx(pred - half, rel=1e-8)
        assert row["upper"] == pytest.approx(pred + half, rel=1e-8)
        assert row["error"] == pytest.approx(pred - y[i], abs=1e-12)
        assert row["covered"] == (pred - half <= y[i] <= pred + half)
        assert row["mean_baseline"] == pytest.approx(ys.mean())


def test_leave_one_task_out_errors(tasks):
    with pytest.raises(ValueError, match="at least 4"):
        stats.leave_one_task_out(tasks.head(3), "iimm")
    with pytest.raises(ValueError, match="one row per dataset"):
        stats.leave_one_task_out(pd.concat([tasks, tasks]), "iimm")


def test_k_task_prediction_with_n_minus_one_is_leave_one_out(tasks):
    n = len(tasks)
    k = stats.k_task_prediction(tasks, "iimm", "gain", ks=[n - 1], level=0.9)
    lo = stats.leave_one_task_out(tasks, "iimm", "gain", level=0.9)
    assert k.loc[0, "n_subsets"] == n
    assert k.loc[0, "mae"] == pytest.approx(lo["error"].abs().mean(), rel=1e-10)
    assert k.loc[0, "coverage"] == pytest.approx(lo["covered"].mean())
    assert k.loc[0, "mae_mean_baseline"] == pytest.approx((lo["mean_baseline"] - lo["actual"]).abs().mean())


def test_k_task_prediction_all_subsets_and_seeded_sampling(tasks):
    x, y = tasks["iimm"].to_numpy(), tasks["gain"].to_numpy()
    k3 = stats.k_task_prediction(tasks, "iimm", ks=[3]).iloc[0]
    maes = []
    for s in itertools.combinations(range(7), 3):
        rest = np.setdiff1d(np.arange(7), s)
        b, a = np.polyfit(x[list(s)], y[list(s)], 1)
        maes.append(np.abs(a + b * x[rest] - y[rest]).mean())
    assert k3["n_subsets"] == math.comb(7, 3)
    assert k3["mae"] == pytest.approx(np.mean(maes), rel=1e-9)
    a = stats.k_task_prediction(tasks, "iimm", ks=[3, 4], max_subsets=10, seed=1)
    b = stats.k_task_prediction(tasks, "iimm", ks=[3, 4], max_subsets=10, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert (a["n_subsets"] == 10).all()
    # exactly linear data: every fit predicts perfectly
    exact = tasks.assign(gain=0.1 + 0.5 * tasks["iimm"])
    assert stats.k_task_prediction(exact, "iimm", ks=[3])["mae"].iloc[0] < 1e-12
    with pytest.raises(ValueError, match="k must lie"):
        stats.k_task_prediction(tasks, "iimm", ks=[7])


def test_prediction_summary_matches_leave_one_out(tasks):
    df = pd.concat([tasks.assign(model="a"), tasks.assign(model="b", gain=tasks["gain"][::-1].to_numpy())])
    summ = stats.prediction_summary(df, ["iimm", "other", "absent"], "gain", by="model").set_index(["model", "predictor"])
    assert set(summ.index) == {("a", "iimm"), ("a", "other"), ("b", "iimm"), ("b", "other")}
    lo = stats.leave_one_task_out(df[df["model"] == "b"], "other", "gain")
    assert summ.loc[("b", "other"), "mae"] == pytest.approx(lo["error"].abs().mean())
    assert summ.loc[("b", "other"), "coverage"] == pytest.approx(lo["covered"].mean())
    # IIMM predicts the linear relation far better than the no-skill mean
    assert summ.loc[("a", "iimm"), "mae"] < summ.loc[("a", "iimm"), "mae_mean_baseline"] / 2


# --------------------------------------------------------------------------- paper reference and studies


def test_paper_reference_and_attach():
    paper = stats.load_paper_results()
    assert set(paper["table"]) == {1, 2, 3, 4, 5, 6}
    assert stats.paper_model_name("sandbox-clip") == "CLIP"
    assert stats.paper_model_name("eva02") == "EVA-02"
    assert stats.paper_model_name("sandbox-lit") is None
    t = pd.DataFrame({"model": ["sandbox-clip", "siglip", "sandbox-lit"], "measure": ["iimm", "sfda", "iimm"]})
    out = stats.attach_paper(t, paper, 1)
    assert out.loc[0, "paper_value"] == pytest.approx(0.91) and out.loc[0, "paper_p"] == pytest.approx(0.001)
    assert out.loc[1, "paper_value"] == pytest.approx(0.36)
    assert math.isnan(out.loc[2, "paper_value"])
    pooled = stats.attach_paper(pd.DataFrame({"measure": ["davies_bouldin"]}), paper, 5, by=None)
    assert pooled.loc[0, "paper_value"] == pytest.approx(0.54) and pooled.loc[0, "paper_p_note"] == "<"


def test_load_study_errors_name_the_folder_and_command(tmp_path):
    with pytest.raises(stats.StudyNotFoundError, match=r"no study cache found at .*nowhere.*iimm study run configs/sandbox.yaml"):
        stats.load_study(tmp_path / "nowhere")
    (tmp_path / "s").mkdir()
    pd.DataFrame({"model": ["m"], "dataset": ["a"]}).to_parquet(tmp_path / "s" / "measures.parquet")
    with pytest.raises(FileNotFoundError, match="lacks runs.parquet, evaluations.parquet"):
        stats.load_study(tmp_path / "s")


def test_study_outcomes_and_describe(tmp_path):
    runs, ev, measures = _tiny_tables()
    runs = runs.assign(lr=[1e-3, 1e-4, 1e-3], rank=np.nan, seed=0, epochs=3, device="cpu",
                       git_commit="abc", date="2026-01-01", config_hash="h")
    measures = measures.assign(zero_shot_accuracy=[0.5, 0.2], date="2026-01-02", git_commit="abc")
    for name, df in (("runs", runs), ("evaluations", ev), ("measures", measures)):
        df.to_parquet(tmp_path / f"{name}.parquet")
    S = stats.load_study(tmp_path)
    d = S.describe()
    assert d["models"] == ["m"] and d["datasets"] == ["a", "b"] and d["methods"] == ["full"]
    assert d["grid"]["lr"] == [1e-4, 1e-3] and "rank" not in d["grid"] and d["grid"]["epochs"] == [3]
    assert d["date_first"] == "2026-01-01" and d["date_last"] == "2026-01-02" and d["git_commits"] == ["abc"]
    assert d["n_runs"] == 3 and d["n_selected"] == 2
    assert list(S.outcomes(datasets=["b"])["dataset"]) == ["b"]
    with pytest.raises(ValueError, match=r"dataset \['zz'\] not in the study"):
        S.outcomes(datasets=["zz"])


def test_significance_table_bolds_significant_cells():
    from iimm import plots

    t = pd.DataFrame({"model": ["a", "a", "b", "b"], "measure": ["iimm", "sfda"] * 2, "r": [0.9, 0.1, 0.8, 0.2],
                      "p": [0.001, 0.6, 0.04, 0.0001], "paper_value": [0.91, np.nan, 0.88, np.nan],
                      "paper_p": [0.001, np.nan, 0.3, np.nan], "paper_p_note": ["<", "", "", ""]})
    html = plots.significance_table(t, "r", value_label="r_s").to_html()
    # ours: (a, iimm), (b, iimm), (b, sfda) -> value + p each = 6; paper: (a, iimm) -> 2
    css = plots.significance_table(t, "r", value_label="r_s")
    css._compute()
    styled = {k for k, v in css.ctx.items() if ("font-weight", "bold") in v}
    assert len(styled) == 8, styled
    assert "&lt; 0.001" in html and "0.600" in html
    assert plots.format_p(0.0004) == "< 0.001" and plots.format_p(0.0312) == "0.031" and plots.format_p(0.001, "<") == "< 0.001"
