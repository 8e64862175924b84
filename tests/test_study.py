"""Tests of the study runner: configs, units and keys, the resumable cache, executors, tables, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from iimm.study.cache import ResultStore
from iimm.study.cli import main as study_main
from iimm.study.config import ConfigError, load_config, parse_config
from iimm.study.units import expand_units, select_trial, unit_key

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "configs" / "paper.yaml"


# ----------------------------------------------------------------------------- configuration


def _err(text: str, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), source="s.yaml", **kw)
    return str(info.value)


BASE = """\
study: t
models: [m1]
datasets: [d1, d2]
"""


def test_paper_config_declares_the_papers_grid():
    cfg = load_config(PAPER)
    assert [m.name for m in cfg.models] == ["clip", "siglip", "coca", "eva02"]
    assert len(cfg.datasets) == 9
    ft = cfg.finetune
    assert (ft.epochs, ft.batch_size, ft.optimizer) == (30, 128, "sgd")
    methods = {m.name: m for m in ft.methods}
    assert set(methods) == {"full", "bitfit", "attention", "lora", "adapter", "probe"}
    assert methods["full"].models == ("clip", "siglip", "coca", "eva02")
    assert all(methods[m].models == ("clip",) for m in ("bitfit", "attention", "lora", "adapter", "probe"))
    assert methods["lora"].grid == {"lr": (1e-2, 1e-3, 1e-4, 1e-5), "weight_decay": (1e-3, 1e-4, 1e-5), "rank": (2, 4, 8, 16)}
    assert methods["adapter"].grid["reduction"] == (4, 8, 16, 32)
    units = expand_units(cfg)
    count = {s: sum(u.stage == s for u in units) for s in ("embed", "measures", "baselines", "train", "evaluate")}
    # trials: full 4 models x 9 datasets x 12; bitfit, attention, probe 9 x 12; lora and adapter 9 x 48
    assert count == {"embed": 4 * 9 * 2, "measures": 36, "baselines": 36,
                     "train": 4 * 9 * 12 + 3 * 9 * 12 + 2 * 9 * 48, "evaluate": 4 * 9 + 5 * 9}
    assert len({u.key for u in units}) == len(units)


def test_profile_overrides_grid_and_datasets():
    cfg = load_config(PAPER, profile="quick")
    assert [d.name for d in cfg.datasets] == ["eurosat", "dtd", "mnist"]
    methods = {m.name: m for m in cfg.finetune.methods}
    assert methods["lora"].grid == {"lr": (1e-3, 1e-5), "weight_decay": (1e-4,), "rank": (8,)}
    assert methods["full"].models == ("clip", "siglip", "coca", "eva02")  # untouched by the profile
    assert cfg.finetune.epochs == 5 and cfg.finetune.batch_size == 128
    assert cfg.profile == "quick"


@pytest.mark.parametrize("text, line, key", [
    (BASE + "epochs: 3\n", 4, "epochs: unknown key"),
    (BASE + "finetune:\n  methods:\n    full: {models: [m1]}\n  grid:\n    lr: [0.1]\n    momentum: [0.9]\n", 9, "finetune.grid.momentum"),
    (BASE + "finetune:\n  grid: {lr: [0.1]}\n  methods:\n    full:\n      models: [m1]\n      grid:\n        rank: [2]\n", 10, "finetune.methods.full.grid.rank"),
    (BASE + "finetune:\n  grid: {lr: [abc]}\n  methods: {full: {models: [m1]}}\n", 5, "finetune.grid.lr[0]"),
    (BASE + "finetune:\n  grid: {lr: [0.1]}\n  methods:\n    dora: {models: [m1]}\n", 7, "finetune.methods.dora"),
    (BASE + "finetune:\n  grid: {lr: [0.1]}\n  methods:\n    full: {models: [m2]}\n", 7, "finetune.methods.full.models[0]"),
    (BASE + "executor:\n  kind: slurm\n", 5, "executor.kind"),
    (BASE + "evaluate:\n  datasets: [d1, d3]\n", 5, "evaluate.datasets[1]"),
    (BASE + "seed: 1\nseed: 2\n", 5, "seed: duplicate key"),
    ("study: t\ndatasets: [d1]\n", 1, "missing required key 'models'"),
    (BASE + "finetune:\n  epochs: 0\n", 5, "finetune.epochs"),
])
def test_config_errors_name_key_and_line(text, line, key):
    msg = _err(text)
    assert msg.startswith(f"s.yaml:{line}: "), msg
    assert key in msg


def test_profile_errors_point_into_the_profile():
    text = BASE + "finetune:\n  grid: {lr: [0.1]}\n  methods: {full: {models: [m1]}}\nprofiles:\n  smoke:\n    finetune:\n      epochs: -1\n"
    assert parse_config(text).finetune.epochs == 30
    msg = _err(text, profile="smoke")
    assert msg.startswith("s.yaml:10: finetune.epochs:"), msg
    assert "no profile 'fast'" in _err(text, profile="fast")
    assert "s.yaml:6: profiles.smoke.bogus" in _err(BASE + "profiles:\n  smoke:\n    bogus: 1\n", profile="smoke")


def test_yaml_floats_and_relative_paths(tmp_path):
    cfg = parse_config(BASE + "cache_dir: c\noutput_dir: $HOME/x\nfinetune:\n  grid: {lr: [1e-3, 2.5e-4]}\n  methods: {full: {models: [m1]}}\n",
                       base_dir=tmp_path)
    assert cfg.finetune.methods[0].grid["lr"] == (1e-3, 2.5e-4)
    assert cfg.cache_dir == tmp_path / "c"
    assert cfg.output_dir == Path(os.environ["HOME"]) / "x"


# ----------------------------------------------------------------------------- units and keys


def _units(extra: str = "", **kw):
    cfg = parse_config(BASE + extra, **kw)
    return cfg, expand_units(cfg)


GRID = "finetune:\n  grid: {lr: [0.1, 0.01]}\n  methods: {full: {models: [m1]}, lora: {models: [m1], grid: {rank: [2]}}}\n"


def test_units_expand_with_content_addressed_keys():
    cfg, units = _units(GRID)
    by = {s: [u for u in units if u.stage == s] for s in ("prepare_model", "embed", "measures", "baselines", "train", "evaluate")}
    assert [len(by[s]) for s in by] == [0, 4, 2, 2, 8, 4]
    assert {u.params["split"] for u in by["embed"]} == {"train", "test"}
    # evaluate depends on exactly the trials of its (model, method, dataset, seed) group
    ev = by["evaluate"][0]
    assert [k for _, k in ev.deps] == [u.key for u in by["train"][:2]]
    # keys are deterministic and only change with what matters
    _, again = _units(GRID)
    assert [u.key for u in units] == [u.key for u in again]
    _, other_bs = _units(GRID + "embed: {batch_size: 7, num_workers: 3}\nexecutor: {kind: ray, workers: 4}\n")
    assert [u.key for u in units] == [u.key for u in other_bs]
    _, more_epochs = _units(GRID.replace("finetune:\n", "finetune:\n  epochs: 2\n"))
    changed = {u.stage for u, v in zip(units, more_epochs) if u.key != v.key}
    assert changed == {"train", "evaluate"}
    assert unit_key("train", {"a": 1}) != unit_key("embed", {"a": 1})
    with pytest.raises(ValueError, match="stage"):
        unit_key("bogus", {})


def test_prepare_hook_keys_propagate_downstream():
    hook = "prepare:\n  - {hook: 'pkg:fn', models: [m1], options: {steps: 10}}\n"
    _, a = _units(GRID + hook)
    _, b = _units(GRID + hook.replace("10", "20"))
    assert a[0].stage == "prepare_model" and sum(u.stage == "prepare_model" for u in a) == 1
    assert all(u.key != v.key for u, v in zip(a, b) if u.stage in ("prepare_model", "embed", "train", "evaluate"))
    # measures depend on embeddings, which depend on the prepared model
    assert all(u.key != v.key for u, v in zip(a, b))
    with pytest.raises(ConfigError, match="prepare.0.models|prepare\\[0\\].models"):
        parse_config(BASE + "prepare:\n  - {hook: 'pkg:fn', models: [zz]}\n", source="s.yaml")


def test_only_and_select_trial():
    cfg, _ = _units(GRID)
    assert {u.stage for u in expand_units(cfg, only=["train"])} == {"train"}
    with pytest.raises(ValueError, match="unknown stage"):
        expand_units(cfg, only=["nope"])
    nan = float("nan")
    assert select_trial([("a", {"val_accuracy": 0.5}), ("b", {"val_accuracy": 0.7}), ("c", {"val_accuracy": 0.7})]) == "b"
    assert select_trial([("a", {"val_accuracy": nan}), ("b", {"val_accuracy": 0.1})]) == "b"
    with pytest.raises(ValueError):
        select_trial([])


# ----------------------------------------------------------------------------- result store and claims


def _one_unit():
    _, units = _units(GRID)
    return units[0], units[1]


def test_store_atomic_results_and_checksum(tmp_path):
    store = ResultStore(tmp_path)
    u, v = _one_unit()
    assert store.load(u) is None and not store.has(u)
    store.save(u, {"x": 1.5, "nan": float("nan")}, 0.1, {"git_commit": "abc"})
    entry = store.load(u)
    assert entry["result"]["x"] == 1.5 and entry["result"]["nan"] != entry["result"]["nan"]
    assert not store.has(v)
    # a tampered result is not trusted
    path = store.result_path(u)
    path.write_text(path.read_text().replace("1.5", "2.5"))
    assert store.load(u) is None
    path.write_text("{trunc")
    assert store.load(u) is None
    # leftovers of a killed writer are removed by the next claimant
    (path.parent / f".{u.key}.json.abc123.json.tmp").write_text("partial")
    assert store.remove_partials(u) == 1 and not list(store.iter_partials())


def test_claims_are_exclusive_and_stale_claims_break(tmp_path):
    store = ResultStore(tmp_path, stale_after=60)
    u, _ = _one_unit()
    c = store.claim(u)
    assert c is not None and store.claimed(u)
    assert store.claim(u) is None  # held by a live process (this one)
    c.release()
    assert not store.claimed(u) and not store.claim_path(u).exists()
    # a claim of a dead process on this host is stale at once
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    import socket

    store.claim_path(u).write_text(json.dumps({"token": "t", "pid": int(dead), "host": socket.gethostname()}))
    c2 = store.claim(u)
    assert c2 is not None
    c2.release()
    # a claim from another host is stale only when it is not refreshed for stale_after seconds
    store.claim_path(u).write_text(json.dumps({"token": "t", "pid": 1, "host": "elsewhere"}))
    assert store.claim(u) is None
    old = time.time() - 120
    os.utime(store.claim_path(u), (old, old))
    c3 = store.claim(u)
    assert c3 is not None
    # the heartbeat keeps a live claim fresh
    fast = ResultStore(tmp_path, stale_after=0.4)
    c3.release()
    c4 = fast.claim(u)
    time.sleep(1.0)
    assert time.time() - fast.claim_path(u).stat().st_mtime < 0.4
    c4.release()
    with pytest.raises(ValueError):
        ResultStore(tmp_path, stale_after=0)


# ----------------------------------------------------------------------------- executor on a pluggable stage

PLUGIN = '''
import json, os, time
from iimm.study.stages import register_prepare_hook

def prepare(model, options, *, seed, device):
    if model.name == options.get("fail"):
        raise RuntimeError(f"cannot prepare {model.name}")
    time.sleep(float(options.get("sleep", 0)))
    return {"model": model.name, "seed": seed, "value": options["value"] * (seed + 1)}

register_prepare_hook("test-prepare", prepare, overwrite=True)
'''


def _hook_study(tmp_path: Path, fail: str = "none", sleep: float = 0.0, executor: str = "local") -> Path:
    (tmp_path / "plugin.py").write_text(PLUGIN)
    cfg = tmp_path / "hooks.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        study: hooks
        seed: 2
        device: cpu
        cache_dir: cache
        output_dir: tables
        plugins: [plugin.py]
        models: [a, b, c]
        datasets: [d]
        prepare:
          - hook: test-prepare
            models: [a, b, c]
            options: {{value: 5, fail: {fail}, sleep: {sleep}}}
        executor: {{kind: {executor}, num_cpus: 2}}
        """))
    return cfg


def test_failing_unit_is_recorded_and_the_study_goes_on(tmp_path, capsys):
    cfg_path = _hook_study(tmp_path, fail="b")
    rc = study_main(["run", str(cfg_path), "--only", "prepare_model", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 1
    assert "3 units: 2 run, 0 cached, 1 failed, 0 blocked" in out.out
    cfg = load_config(cfg_path)
    store = ResultStore(cfg.cache_dir)
    units = expand_units(cfg, only=["prepare_model"])
    assert [store.result(u) for u in units] == [{"model": "a", "seed": 2, "value": 15}, None, {"model": "c", "seed": 2, "value": 15}]
    fail = store.failure(units[1])
    assert fail["error_type"] == "RuntimeError" and "cannot prepare b" in fail["error"] and "Traceback" in fail["traceback"]
    # status names the failure and exits non-zero; a re-run retries only the failed unit
    assert study_main(["status", str(cfg_path)]) == 1
    assert "cannot prepare b" in capsys.readouterr().out
    rc = study_main(["run", str(cfg_path), "--only", "prepare_model", "--no-progress"])
    assert rc == 1 and "0 run, 2 cached, 1 failed" in capsys.readouterr().out
    done = [e for e in store.events() if e["event"] == "done"]
    assert sorted(e["key"] for e in done) == sorted([units[0].key, units[2].key])


def test_missing_dependencies_block_units(tmp_path, capsys):
    cfg_path = _hook_study(tmp_path)
    # measures need embeddings that were never computed: blocked, nothing runs, exit code 1
    assert study_main(["run", str(cfg_path), "--only", "measures", "--no-progress"]) == 1
    out = capsys.readouterr()
    assert "3 units: 0 run, 0 cached, 0 failed, 3 blocked" in out.out
    assert "missing dependencies: embed/" in out.err
    assert not (load_config(cfg_path).cache_dir / "events.jsonl").exists()


def test_concurrent_runs_never_run_a_unit_twice(tmp_path):
    cfg_path = _hook_study(tmp_path, sleep=0.4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "iimm.study.cli", "run", str(cfg_path), "--only", "prepare_model", "--no-progress"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    events = ResultStore(load_config(cfg_path).cache_dir).events()
    units = expand_units(load_config(cfg_path), only=["prepare_model"])
    for ev in ("start", "done"):
        assert sorted(e["key"] for e in events if e["event"] == ev) == sorted(u.key for u in units)
    assert sum(int(o.split(" run,")[0].split()[-1]) for o, _ in outs) == 3  # the two runs split the work


def test_dry_run_runs_nothing(tmp_path, capsys):
    cfg_path = _hook_study(tmp_path)
    assert study_main(["run", str(cfg_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    cfg = load_config(cfg_path)
    for u in expand_units(cfg):
        assert u.label in out and u.key[:12] in out
    assert "3 units, 0 cached, 0 failed, 0 running, 3 pending" in out
    assert not (cfg.cache_dir / "results").exists() and not cfg.output_dir.exists()
    # after a run the dry run counts the cached units and estimates from their wall times
    assert study_main(["run", str(cfg_path), "--only", "prepare_model", "--no-progress"]) == 0
    capsys.readouterr()
    assert study_main(["run", str(cfg_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 units, 3 cached" in out and out.count("cached ") >= 3


# ----------------------------------------------------------------------------- the tiny study end to end

TINY = REPO / "configs" / "tiny.yaml"
VOLATILE = {"date", "wall_time_s"}  # timing columns differ between two runs of the same units


def _tiny_config(root: Path, name: str, extra: str = "") -> Path:
    text = TINY.read_text() + textwrap.dedent(f"""
        cache_dir: {root / name / 'cache'}
        output_dir: {root / name / 'tables'}
        checkpoint_dir: {root / name / 'checkpoints'}
        """) + extra
    path = root / f"{name}.yaml"
    path.write_text(text)
    return path


def _assert_tables_equal(a: dict, b: dict) -> None:
    import pandas as pd

    assert set(a) == set(b) == {"measures", "baselines", "runs", "evaluations"}
    for name in a:
        x = a[name].drop(columns=[c for c in VOLATILE if c in a[name]])
        y = b[name].drop(columns=[c for c in VOLATILE if c in b[name]])
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=name)


@pytest.fixture(scope="module")
def study_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    mp = pytest.MonkeyPatch()
    mp.setenv("IIMM_CACHE", str(root / "iimm-cache"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def reference(study_root):
    """The tiny study run once, uninterrupted, locally (process pool of 2 for the CPU stages)."""
    from iimm.study.tables import read_tables

    cfg_path = _tiny_config(study_root, "reference")
    rc = study_main(["run", str(cfg_path), "--no-progress", "--workers", "2"])
    assert rc == 0
    cfg = load_config(cfg_path)
    return cfg_path, cfg, read_tables(cfg.output_dir)


def test_tiny_study_end_to_end(reference, capsys):
    import numpy as np

    from iimm.provenance import config_hash

    cfg_path, cfg, t = reference
    datasets = ["tiny-digits-low", "tiny-digits-high"]
    m, b, r, e = t["measures"], t["baselines"], t["runs"], t["evaluations"]
    # measures and baselines: one row per (model, dataset), every key finite where defined
    assert list(m["dataset"]) == datasets and set(m["model"]) == {"study-tiny"}
    assert (m["n_images"] == 135).all() and (m["n_classes"] == 5).all()   # 150 minus the 10 % validation split
    assert m[["iimm", "inter_modal", "intra_images", "silhouette_cosine"]].notna().all().all()
    assert m["zero_shot_accuracy"].between(0, 1).all()
    assert list(b["dataset"]) == datasets
    assert b[["transrate", "sfda", "logme", "hscore", "emms", "gbc_spherical"]].notna().all().all()
    # runs: methods x datasets x 2 learning rates, one selected per group, the best on validation
    assert len(r) == 8
    assert sorted(set(zip(r["method"], r["dataset"], r["lr"]))) == sorted(
        (mm, d, lr) for mm in ("full", "lora") for d in datasets for lr in (1e-2, 1e-3))
    assert r.loc[r["method"] == "lora", "rank"].eq(2).all() and r.loc[r["method"] == "full", "rank"].isna().all()
    assert r["reduction"].isna().all() and (r["epochs"] == 1).all()
    for _, g in r.groupby(["model", "method", "dataset"]):
        assert g["selected"].sum() == 1
        assert g.loc[g["selected"], "val_accuracy"].iloc[0] == g["val_accuracy"].max()
        assert g.index[g["selected"]][0] == g.index[g["val_accuracy"] == g["val_accuracy"].max()][0]  # ties: first
    assert (r.loc[r["method"] == "lora", "trainable_params"] < r.loc[r["method"] == "full", "trainable_params"].min()).all()
    # evaluations: each selected run on both datasets, ID iff trained there, zero-shot from the measures table
    assert len(e) == 8 and set(e["run_id"]) == set(r.loc[r["selected"], "run_id"])
    assert (e["in_domain"] == (e["train_dataset"] == e["eval_dataset"])).all()
    zs = dict(zip(m["dataset"], m["zero_shot_accuracy"]))
    assert np.allclose(e["zero_shot_accuracy"], e["eval_dataset"].map(zs))
    assert e["accuracy"].between(0, 1).all()
    # provenance on every table
    h = config_hash(cfg.content())
    for df in t.values():
        assert (df["config_hash"] == h).all() and df["git_commit"].notna().all() and df["iimm_version"].notna().all()
    # only the selected trials keep their training checkpoints
    assert sorted(p.stem for p in cfg.checkpoint_dir.glob("*.pt")) == sorted(r.loc[r["selected"], "run_id"])
    # a second run skips everything; status is clean
    capsys.readouterr()
    assert study_main(["run", str(cfg_path), "--no-progress"]) == 0
    assert "20 units: 0 run, 20 cached, 0 failed" in capsys.readouterr().out
    assert study_main(["status", str(cfg_path)]) == 0


def test_tiny_measures_match_a_hand_computation(reference):
    """The measures row equals all_measures on embeddings computed here with the model and data APIs."""
    import numpy as np
    import torch

    import iimm.study.tiny  # noqa: F401 - registers the tiny model and datasets
    from iimm.data import load_dataset
    from iimm.measures import all_measures
    from iimm.models import load_model, zero_shot_head

    _, cfg, t = reference
    model = load_model("study-tiny", device="cpu", pretrained=False)
    for split_name, row in t["measures"].set_index("dataset").iterrows():
        fit = load_dataset(split_name, "train", transform=model.preprocess)
        test = load_dataset(split_name, "test", transform=model.preprocess)
        with torch.no_grad():
            head = zero_shot_head(model, fit.classnames, fit.templates).numpy()
            img = model.encode_image(torch.stack([fit[i][0] for i in range(len(fit))])).numpy()
            img_t = model.encode_image(torch.stack([test[i][0] for i in range(len(test))])).numpy()
        expected = all_measures(img, head, fit.targets)
        for k in ("iimm", "inter_modal", "intra_images", "modality_gap", "silhouette_cosine"):
            assert row[k] == pytest.approx(expected[k], rel=1e-4, abs=1e-5), k
        acc = float(np.mean(np.argmax(img_t @ head.T, axis=1) == test.targets))
        assert row["zero_shot_accuracy"] == pytest.approx(acc)


def test_tables_are_rebuilt_from_the_cache(reference, capsys):
    import shutil

    from iimm.study.tables import read_tables

    cfg_path, cfg, t = reference
    shutil.rmtree(cfg.output_dir)
    assert study_main(["tables", str(cfg_path)]) == 0
    assert "runs: 8 rows" in capsys.readouterr().out
    _assert_tables_equal(read_tables(cfg.output_dir), t)


def test_deleted_files_are_recomputed(reference, capsys):
    """A result whose array file is gone is not used: the unit runs again, the tables do not change."""
    from iimm.study.tables import read_tables

    cfg_path, cfg, t = reference
    victim = sorted((cfg.cache_dir / "arrays" / "embed").glob("*.npz"))[0]
    victim.unlink()
    capsys.readouterr()
    assert study_main(["run", str(cfg_path), "--no-progress"]) == 0
    assert "20 units: 1 run, 19 cached, 0 failed" in capsys.readouterr().out
    assert victim.is_file()
    _assert_tables_equal(read_tables(cfg.output_dir), t)


def test_prepare_model_hook_feeds_later_units(study_root, capsys):
    """The pluggable model stage: a hook writes weights, the embed units load the model from them."""
    import numpy as np

    from iimm.data import load_dataset
    from iimm.embed import embed
    from iimm.models import load_model

    extra = f"prepare:\n  - {{hook: 'iimm.study.tiny:materialize_hook', models: [study-tiny], options: {{init_seed: 7, dir: {study_root / 'w'}}}}}\n"
    cfg_path = _tiny_config(study_root, "prepared", extra)
    args = ["run", str(cfg_path), "--profile", "smoke", "--only", "prepare_model", "--only", "embed", "--no-progress"]
    assert study_main(args) == 0
    cfg = load_config(cfg_path, profile="smoke")
    store = ResultStore(cfg.cache_dir)
    units = expand_units(cfg, only=["prepare_model", "embed"])
    prep = store.result(units[0])
    assert prep["weights"] == str(study_root / "w" / "study-tiny-seed7.pt") and prep["init_seed"] == 7
    train_embed = next(u for u in units if u.stage == "embed" and u.params["split"] == "train")
    with np.load(cfg.cache_dir / store.result(train_embed)["file"]) as z:
        cached = z["images"]
    direct = embed(load_model("study-tiny", pretrained=False, seed=7), load_dataset("tiny-digits-low", "train"), "train",
                   cache=False, num_workers=0, progress=False)
    seed0 = embed(load_model("study-tiny", pretrained=False, seed=0), load_dataset("tiny-digits-low", "train"), "train",
                  cache=False, num_workers=0, progress=False)
    np.testing.assert_allclose(cached, direct.images, rtol=1e-5, atol=1e-6)
    assert not np.allclose(cached, seed0.images, atol=1e-3)
    # the weights file vanished: the hook runs again, the embeddings (same key) stay cached
    Path(prep["weights"]).unlink()
    capsys.readouterr()
    assert study_main(args) == 0
    assert "1 run, 2 cached" in capsys.readouterr().out and Path(prep["weights"]).is_file()


def test_resume_after_sigkill(reference, study_root):
    """Kill a run with SIGKILL mid-way; the re-run finishes with every unit exactly once and equal tables."""
    import signal

    from iimm.study.tables import read_tables

    cfg_path = _tiny_config(study_root, "killed")
    cfg = load_config(cfg_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "iimm.study.cli", "run", str(cfg_path), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = ResultStore(cfg.cache_dir)
    deadline = time.time() + 120
    killed_during = None
    try:
        while time.time() < deadline and proc.poll() is None:
            ev = store.events()
            done = sum(e["event"] == "done" for e in ev)
            starts = [e for e in ev if e["event"] == "start"]
            if done >= 9 and len(starts) > done:  # a train unit is under way
                killed_during = starts[-1]["key"]
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and killed_during is None:
            proc.kill()
        proc.wait()
    assert killed_during is not None, f"the study finished or hung before it could be killed: {proc.stderr.read()[-2000:]}"
    units = expand_units(cfg)
    before = {u.key for u in units if store.has(u)}
    assert killed_during not in before and 0 < len(before) < len(units)

    assert study_main(["run", str(cfg_path), "--no-progress"]) == 0
    done = [e["key"] for e in store.events() if e["event"] == "done"]
    assert sorted(done) == sorted(u.key for u in units)          # every unit completed exactly once
    assert all(store.has(u) for u in units)
    for root in (cfg.cache_dir, cfg.output_dir, cfg.checkpoint_dir):
        assert not [p for p in Path(root).rglob("*") if p.name.endswith(".tmp") or ".broken." in p.name]
    assert not [p for p in (cfg.cache_dir / "claims").rglob("*") if p.is_file()]
    _assert_tables_equal(read_tables(cfg.output_dir), reference[2])


def test_ray_executor_matches_local(reference, study_root):
    from iimm.study.tables import read_tables

    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed")
    cfg_path = _tiny_config(study_root, "ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("IIMM_") or k == "HF_HUB_OFFLINE"}
                              | {"PYTHONPATH": str(REPO)}})
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"a local Ray instance cannot start here: {exc}")
    try:
        assert ray.available_resources().get("CPU", 0) >= 1
        rc = study_main(["run", str(cfg_path), "--executor", "ray", "--no-progress"])
    finally:
        ray.shutdown()
    assert rc == 0
    cfg = load_config(cfg_path)
    pids = {e["pid"] for e in ResultStore(cfg.cache_dir).events()}
    assert os.getpid() not in pids  # the units ran in Ray workers
    _assert_tables_equal(read_tables(cfg.output_dir), reference[2])
