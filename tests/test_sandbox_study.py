"""The sandbox study's smoke profile runs end to end: pretraining, embeddings, measures,
baselines, fine-tuning and ID/OOD evaluation, into the four tables of CONTRIBUTING.md."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sandbox.yaml"
CHANCE_COLORS = 1 / 11  # sandbox-colors has 11 classes


@pytest.fixture(scope="module")
def smoke_tables(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("sandbox-smoke")
    mp.setenv("IIMM_CACHE", str(root / "cache"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    from iimm.study import run_study

    summary = run_study(str(CONFIG), profile="smoke")
    yield summary, root / "cache" / "studies" / "sandbox" / "tables"
    mp.undo()


def test_smoke_profile_yields_every_table(smoke_tables):
    summary, tables = smoke_tables
    assert summary.ok
    measures = pd.read_parquet(tables / "measures.parquet")
    baselines = pd.read_parquet(tables / "baselines.parquet")
    runs = pd.read_parquet(tables / "runs.parquet")
    evals = pd.read_parquet(tables / "evaluations.parquet")
    tasks = {"sandbox-colors", "sandbox-shapes"}
    assert set(measures["dataset"]) == tasks and set(measures["model"]) == {"sandbox-clip@smoke"}
    assert set(baselines["dataset"]) == tasks
    assert {"iimm", "inter_modal", "intra_images"} <= set(measures.columns)
    assert {"transrate", "logme", "emms"} <= set(baselines.columns)
    # two methods x two tasks, one trial each, each selected and tested on both tasks
    assert len(runs) == 4 and runs["selected"].all()
    assert set(runs["method"]) == {"full", "lora"}
    assert len(evals) == 8
    assert evals.groupby("run_id")["eval_dataset"].apply(set).map(len).eq(2).all()
    assert (evals["in_domain"] == (evals["train_dataset"] == evals["eval_dataset"])).all()
    for col in ("git_commit", "iimm_version", "config_hash"):
        assert measures[col].notna().all()


def test_pretrained_smoke_model_beats_chance_on_the_easiest_task(smoke_tables):
    _, tables = smoke_tables
    measures = pd.read_parquet(tables / "measures.parquet").set_index("dataset")
    # a trained dual encoder names colours well above chance (1/11); threshold 3x chance
    assert measures.loc["sandbox-colors", "zero_shot_accuracy"] > 3 * CHANCE_COLORS
