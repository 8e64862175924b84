"""The committed sandbox study (``data/sandbox``, issue 7) matches the config that produced it.

The book is built from these tables, so they must hold every (base model, task, method) of the
full profile of ``configs/sandbox.yaml``, consistent values, the embeddings that Figure 1 reads,
and provenance that names the config and a commit of this repository.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "data" / "sandbox"
CONFIG = REPO / "configs" / "sandbox.yaml"

pytestmark = pytest.mark.skipif(not (STUDY / "provenance.json").is_file(),
                                reason="data/sandbox is not shipped in this checkout")


@pytest.fixture(scope="module")
def config():
    from iimm.study import load_config

    return load_config(CONFIG)


@pytest.fixture(scope="module")
def tables():
    from iimm.study import read_tables

    return read_tables(STUDY)


@pytest.fixture(scope="module")
def provenance():
    return json.loads((STUDY / "provenance.json").read_text())


def test_provenance_names_the_config_and_a_commit_of_this_repository(config, provenance, tables):
    from iimm.provenance import config_hash

    assert Path(provenance["config_path"]).name == "sandbox.yaml"
    assert provenance["profile"] in (None, "full")
    assert provenance["config_hash"] == config_hash(config.content())
    assert re.fullmatch(r"[0-9a-f]{40}", provenance["git_commit"])
    for df in tables.values():
        assert set(df["config_hash"]) == {provenance["config_hash"]}
        assert df["git_commit"].str.fullmatch(r"[0-9a-f]{40}").all()
    if shutil.which("git") and (REPO / ".git").exists():
        for commit in {provenance["git_commit"], *tables["runs"]["git_commit"]}:
            rc = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                                capture_output=True).returncode
            if rc != 0 and subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"],
                                          capture_output=True, text=True).stdout.strip() == "true":
                pytest.skip("shallow clone: the producing commit is not in the local history")
            assert rc == 0, f"commit {commit} that produced data/sandbox is not in this repository"


def test_every_model_task_and_method_of_the_config_is_present(config, tables):
    from iimm.study import expand_units

    units = expand_units(config)
    models = {m.name for m in config.models}
    datasets = {d.name for d in config.datasets}
    pairs = {(m, d) for m in models for d in datasets}
    for name in ("measures", "baselines"):
        df = tables[name]
        assert set(zip(df["model"], df["dataset"])) == pairs and len(df) == len(pairs), name
    train = [u for u in units if u.stage == "train"]
    runs = tables["runs"]
    assert set(runs["run_id"]) == {u.key for u in train}, "runs differ from the config's grid trials"
    groups = {(u.params["model"]["name"], u.params["method"], u.params["dataset"]["name"]) for u in train}
    assert set(zip(runs["model"], runs["method"], runs["dataset"])) == groups
    assert runs.groupby(["model", "method", "dataset"])["selected"].sum().eq(1).all()
    assert {"full", "bitfit", "attention", "lora", "adapter", "probe"} <= set(runs["method"])
    ev = tables["evaluations"]
    selected = runs[runs["selected"]]
    assert set(ev["run_id"]) == set(selected["run_id"])
    per_run = ev.groupby("run_id")["eval_dataset"].apply(frozenset)
    assert (per_run == frozenset(datasets)).all(), "a selected run was not tested on every task"


def test_values_are_consistent(tables):
    measures = tables["measures"].set_index(["model", "dataset"])
    ev = tables["evaluations"]
    probe = ev["method"] == "probe"
    acc = ev.loc[~probe | ev["in_domain"], "accuracy"]
    assert acc.between(0, 1).all()
    assert ev.loc[probe & ~ev["in_domain"], "accuracy"].isna().all()  # the probe has no OOD head
    zs = measures.loc[list(zip(ev["model"], ev["eval_dataset"])), "zero_shot_accuracy"].to_numpy()
    np.testing.assert_allclose(ev["zero_shot_accuracy"].to_numpy(), zs)
    assert measures["iimm"].notna().all() and np.isfinite(measures["iimm"]).all()
    # IIMM = (inter-modal + intra-images) / 2 (paper, Sec. 3.2)
    np.testing.assert_allclose(measures["iimm"], (measures["inter_modal"] + measures["intra_images"]) / 2, atol=1e-9)
    runs = tables["runs"]
    assert (runs["trainable_params"] <= runs["total_params"]).all()
    assert runs["val_accuracy"].between(0, 1).all()


def test_figure_embeddings_are_shipped_for_every_model_and_task(config, tables):
    from safetensors.numpy import load_file

    from iimm.study import embeddings_file

    measures = tables["measures"]
    for m, d in zip(measures["model"], measures["dataset"]):
        f = embeddings_file(STUDY, m, d)
        assert f.is_file(), f"missing {f.relative_to(REPO)}"
        e = load_file(str(f))
        n_classes = int(measures[(measures.model == m) & (measures.dataset == d)]["n_classes"].iloc[0])
        assert e["texts"].shape[0] == n_classes and e["images"].shape[1] == e["texts"].shape[1]
        assert e["labels"].shape == (e["images"].shape[0],) and 0 <= e["labels"].min() and e["labels"].max() < n_classes
        np.testing.assert_allclose(np.linalg.norm(e["images"], axis=1), 1, atol=1e-4)
    total = sum(p.stat().st_size for p in STUDY.rglob("*") if p.is_file())
    assert total <= 30 * 2**20, f"data/sandbox holds {total / 2**20:.1f} MB (limit 30 MB)"
