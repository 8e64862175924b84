"""Tests of iimm.finetune on tiny random-init open_clip models and small in-memory tasks."""

from __future__ import annotations

import math
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from iimm.finetune import (  # noqa: E402
    METHODS,
    RUNS_COLUMNS,
    EVALUATION_COLUMNS,
    LinearProjAttention,
    TrainConfig,
    classification_loss,
    count_parameters,
    evaluate,
    expand_grid,
    gain_over_zero_shot_error,
    grid_search,
    load_trained,
    lora_merged,
    merge_lora,
    paper_grid,
    prepare,
    read_table,
    runs_table,
    run_record,
    save_trained,
    train,
    trainable_parameter_names,
    write_table,
)
from iimm.models import load_model, register_model, tiny_model_cfg, zero_shot_head  # noqa: E402


# ----------------------------------------------------------------- fixtures
class Task(torch.utils.data.Dataset):
    """In-memory task with the attributes iimm.data datasets carry."""

    def __init__(self, x, y, name, classnames, templates=("a photo of a {} square.", "{}")):
        self.x, self.y, self.name = x, y, name
        self.classnames, self.templates = list(classnames), list(templates)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


_COLORS = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])


def colors(n: int, seed: int) -> Task:
    """Easy task: noisy uniformly coloured 32x32 images, 4 colour classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = _COLORS[y][:, :, None, None].expand(-1, 3, 32, 32) + 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    return Task(x, y, "colors", ["red", "green", "blue", "yellow"])


def digits(n: int = 120) -> Task:
    """scikit-learn digits 0-3 upsampled to 32x32 RGB."""
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, [0, 1, 2, 3])
    x = torch.tensor(d.images[keep][:n], dtype=torch.float32)[:, None] / 8.0 - 1.0
    x = F.interpolate(x, size=32, mode="nearest").repeat(1, 3, 1, 1)
    return Task(x, torch.tensor(d.target[keep][:n]), "digits", ["zero", "one", "two", "three"], ["the digit {}."])


@pytest.fixture(scope="module", autouse=True)
def _register():
    for fam in ("clip", "siglip", "coca"):
        register_model(f"tiny-ft-{fam}", model_cfg=tiny_model_cfg(fam), overwrite=True)
    yield


def tiny(family: str = "clip"):
    return load_model(f"tiny-ft-{family}", device="cpu", pretrained=False, seed=0)


TRAIN, VAL = colors(160, 0), colors(64, 1)
LR = {"full": 0.1, "bitfit": 0.3, "attention": 0.1, "lora": 0.1, "adapter": 0.3, "probe": 0.3}
FAST = dict(epochs=3, batch_size=32, progress=False)


def images(n=8, seed=3):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def class_logits(model, x, task=TRAIN):
    with torch.no_grad():
        head = zero_shot_head(model, task.classnames, task.templates)
        return model.logits(model.encode_image(x), head)


# ------------------------------------------------- trainable parameter sets
TEXT_BLOCKS = "transformer.resblocks"
VIS_BLOCKS = "visual.transformer.resblocks"


def test_full_trains_both_towers_only():
    m = prepare(tiny(), "full")
    names = set(trainable_parameter_names(m))
    all_names = {n for n, _ in m.model.named_parameters()}
    assert names == all_names - {"logit_scale"}
    assert any(n.startswith("visual.") for n in names) and "token_embedding.weight" in names


def test_bitfit_names_and_train_blocks():
    m = prepare(tiny(), "bitfit")
    expected = {n for n, _ in m.model.named_parameters() if n.endswith("bias") and n != "logit_bias"}
    assert set(trainable_parameter_names(m)) == expected
    assert count_parameters(m)[0] == sum(p.numel() for n, p in m.model.named_parameters() if n in expected)
    m1 = prepare(tiny(), "bitfit", train_blocks=1)
    names = set(trainable_parameter_names(m1))
    assert names and all(re.match(r"^(visual\.)?transformer\.resblocks\.0\..*bias$", n) for n in names)
    assert {n for n in expected if ".resblocks.0." in n} == names


def test_attention_in_proj_only():
    m = prepare(tiny(), "attention")
    expected = {f"{p}.{i}.attn.in_proj_weight" for p in (VIS_BLOCKS, TEXT_BLOCKS) for i in range(2)}
    assert set(trainable_parameter_names(m)) == expected
    assert count_parameters(m)[0] == 4 * 3 * 64 * 64
    m1 = prepare(tiny(), "attention", train_blocks=[1])
    assert set(trainable_parameter_names(m1)) == {f"{p}.1.attn.in_proj_weight" for p in (VIS_BLOCKS, TEXT_BLOCKS)}


def test_lora_targets_and_counts():
    m = prepare(tiny(), "lora", rank=4, alpha=8)
    names = trainable_parameter_names(m)
    assert all(".lora_A." in n or ".lora_B." in n for n in names)
    targets = {n.split(".lora_")[0] for n in names}
    assert targets == {f"{p}.{i}.attn.{proj}" for p in (VIS_BLOCKS, TEXT_BLOCKS) for i in range(2) for proj in ("in_proj", "out_proj")}
    d, r = 64, 4
    assert count_parameters(m)[0] == 4 * (r * (d + 3 * d) + r * (d + d))
    m2 = prepare(tiny(), "lora", rank=2, mlp=True)
    assert count_parameters(m2)[0] == 4 * 2 * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))
    layer = m.model.visual.transformer.resblocks[0].attn.in_proj
    assert layer.scaling["default"] == pytest.approx(8 / 4)


def test_adapter_and_probe_parameters():
    m = prepare(tiny(), "adapter", reduction=4)
    names = set(trainable_parameter_names(m))
    assert names == {f"{t}_adapter.fc.{i}.weight" for t in ("image", "text") for i in (0, 2)}
    assert count_parameters(m)[0] == 2 * 2 * 32 * 8  # two towers, (d x d/4) + (d/4 x d), d = 32
    p = prepare(tiny(), "probe", num_classes=4)
    assert set(trainable_parameter_names(p)) == {"probe_head.weight", "probe_head.bias"}
    assert count_parameters(p)[0] == 32 * 4 + 4


def test_vit_b32_count_formulas():
    """Paper-scale ViT-B-32 without weights: counts match closed-form formulas."""
    base = load_model("ViT-B-32", device="cpu", pretrained=False)
    blocks, dv, dt, r = 12, 768, 512, 8
    full_tower = sum(p.numel() for n, p in base.model.named_parameters() if n != "logit_scale")
    import copy

    counts = {}
    for method, opts in (("attention", {}), ("bitfit", {}), ("lora", {"rank": r})):
        counts[method] = count_parameters(prepare(copy.deepcopy(base), method, **opts))[0]
    counts["full"] = count_parameters(prepare(base, "full"))[0]
    assert counts["attention"] == blocks * 3 * dv**2 + blocks * 3 * dt**2
    # per block: ln_1, in_proj (3d), out_proj, ln_2, c_fc (4d), c_proj -> 11 d; plus ln_pre, ln_post, ln_final
    assert counts["bitfit"] == blocks * 11 * dv + 2 * dv + blocks * 11 * dt + dt
    # LoRA targets per block: in_proj (d -> 3d) and out_proj (d -> d): r (d + 3d) + r (d + d)
    assert counts["lora"] == sum(blocks * (r * (d + 3 * d) + r * (d + d)) for d in (dv, dt))
    assert counts["full"] == full_tower


# --------------------------------------------------------------- bad input
def test_bad_input_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        prepare(tiny(), "prefix")
    with pytest.raises(ValueError, match="unknown option"):
        prepare(tiny(), "bitfit", rank=4)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        prepare(tiny(), "lora", rank=0)
    with pytest.raises(ValueError, match="train_blocks"):
        prepare(tiny(), "attention", train_blocks=0)
    m = prepare(tiny(), "full")
    with pytest.raises(ValueError, match="already prepared"):
        prepare(m, "bitfit")
    with pytest.raises(ValueError, match="not prepared"):
        train(tiny(), TRAIN, VAL, **FAST)
    with pytest.raises(ValueError, match="lr must be"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="unknown training option"):
        train(m, TRAIN, VAL, learning_rate=0.1)
    with pytest.raises(ValueError, match="classnames"):
        train(m, torch.utils.data.TensorDataset(TRAIN.x, TRAIN.y), VAL, **FAST)
    with pytest.raises(ValueError, match="unknown key"):
        grid_search("lora", TRAIN, {"lr": [0.1], "depth": [2]}, model=tiny, val_dataset=VAL)


# ---------------------------------------------- frozen vs trained, learning
@pytest.mark.parametrize("method", METHODS)
def test_training_changes_only_trainable_and_learns(method):
    m = prepare(tiny(), method, **({"rank": 4} if method == "lora" else {}))
    zs_val = evaluate(tiny(), {"colors": VAL})["accuracy"].iloc[0]
    before = {n: p.detach().clone() for n, p in m.model.named_parameters()}
    res = train(m, TRAIN, VAL, lr=LR[method], **FAST)
    after = dict(m.model.named_parameters())
    trainable = set(trainable_parameter_names(m))
    assert trainable
    for n, p0 in before.items():
        if n in trainable:
            assert not torch.equal(after[n], p0), f"{n} did not change"
        else:
            assert torch.equal(after[n], p0), f"frozen {n} changed"
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < 0.7 * losses[0]
    assert res.val_accuracy > zs_val + 0.2
    assert res.val_accuracy == max(h["val_accuracy"] for h in res.history)
    assert res.history[res.best_epoch - 1]["val_accuracy"] == res.val_accuracy
    # the model is left at the best epoch: evaluating it reproduces the best validation accuracy
    assert evaluate(m, {"colors": VAL})["accuracy"].iloc[0] == pytest.approx(res.val_accuracy)


def test_text_head_recomputed_only_when_text_trains():
    """Frozen text tower: the class embeddings are computed once and stay exact."""
    m = prepare(tiny(), "adapter", towers=("image",))
    head0 = zero_shot_head(m, TRAIN.classnames, TRAIN.templates)
    train(m, TRAIN, VAL, lr=0.3, **FAST)
    assert torch.equal(zero_shot_head(m, TRAIN.classnames, TRAIN.templates), head0)
    m2 = prepare(tiny(), "attention")
    head0 = zero_shot_head(m2, TRAIN.classnames, TRAIN.templates)
    train(m2, TRAIN, VAL, lr=0.1, **FAST)
    assert not torch.allclose(zero_shot_head(m2, TRAIN.classnames, TRAIN.templates), head0)


def test_same_seed_same_result_and_other_seed_differs():
    runs = []
    for seed in (0, 0, 1):
        m = prepare(tiny(), "lora", rank=2, seed=seed)
        res = train(m, TRAIN, VAL, lr=0.1, seed=seed, **FAST)
        runs.append((res.history, {n: p.detach().clone() for n, p in m.model.named_parameters() if p.requires_grad}))
    (h0, p0), (h1, p1), (h2, p2) = runs
    assert [h["train_loss"] for h in h0] == [h["train_loss"] for h in h1]
    assert all(torch.equal(p0[n], p1[n]) for n in p0)
    assert any(not torch.equal(p0[n], p2[n]) for n in p0)


def test_checkpoint_resume_matches_uninterrupted(tmp_path):
    ref = prepare(tiny(), "attention")
    ref_res = train(ref, TRAIN, VAL, lr=0.1, **FAST)

    class Killed(Exception):
        pass

    def kill_after_2(epoch, record):
        if epoch == 2:
            raise Killed

    ck = tmp_path / "run.pt"
    m = prepare(tiny(), "attention")
    with pytest.raises(Killed):
        train(m, TRAIN, VAL, lr=0.1, checkpoint=ck, callback=kill_after_2, **FAST)
    assert ck.exists() and not list(tmp_path.glob(".run.pt.*"))
    m2 = prepare(tiny(), "attention")
    res = train(m2, TRAIN, VAL, lr=0.1, checkpoint=ck, **FAST)
    assert res.resumed_from_epoch == 2
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref_res.history]
    for (n, a), (_, b) in zip(ref.model.named_parameters(), m2.model.named_parameters()):
        assert torch.equal(a, b), n
    with pytest.raises(ValueError, match="another run"):
        train(prepare(tiny(), "attention"), TRAIN, VAL, lr=0.2, checkpoint=ck, **FAST)


# --------------------------------------------------------------------- LoRA
def test_lora_swap_is_exact_at_init_and_merge_matches():
    base, m = tiny(), prepare(tiny(), "lora", rank=4)
    x = images()
    assert isinstance(m.model.transformer.resblocks[0].attn, LinearProjAttention)
    # LoRA's B starts at zero: the swapped attention computes the same function
    torch.testing.assert_close(class_logits(m, x), class_logits(base, x), rtol=1e-5, atol=1e-5)
    train(m, TRAIN, VAL, lr=0.1, **FAST)
    unmerged = class_logits(m, x)
    base_w = {n: p.detach().clone() for n, p in m.model.named_parameters()}
    with lora_merged(m):
        merged = class_logits(m, x)
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(unmerged, class_logits(base, x), atol=1e-3)
    for n, p in m.model.named_parameters():  # exact restore after the merge
        assert torch.equal(p, base_w[n]), n
    merge_lora(m)
    from peft.tuners.lora import LoraLayer

    assert not any(isinstance(mod, LoraLayer) for mod in m.model.modules())
    torch.testing.assert_close(class_logits(m, x), unmerged, rtol=1e-4, atol=1e-4)
    assert count_parameters(m) == (0, count_parameters(tiny())[1])


def test_linear_proj_attention_matches_mha_with_masks():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    lin = LinearProjAttention.from_mha(mha)
    q, kv = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    causal = torch.full((5, 5), float("-inf")).triu(1)
    for args, kw in (((q, q, q), {"attn_mask": causal}), ((q, kv, kv), {}), ((q, q, q), {"attn_mask": causal.isinf()}),
                     ((q, kv, kv), {"key_padding_mask": torch.tensor([[False] * 6 + [True]] * 3)})):
        ref = mha(*args, need_weights=False, **kw)[0]
        torch.testing.assert_close(lin(*args, **kw)[0], ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------- SigLIP, CoCa heads
def test_siglip_sigmoid_head():
    m = prepare(tiny("siglip"), "attention")
    assert m.logit_bias is not None
    x = images(4)
    with torch.no_grad():
        head = zero_shot_head(m, TRAIN.classnames, TRAIN.templates)
        naive = m.logit_scale * m.encode_image(x) @ head.T + m.logit_bias
    torch.testing.assert_close(class_logits(m, x), naive)
    y = torch.tensor([0, 1, 2, 3])
    z = torch.randn(4, 4)
    ref = F.binary_cross_entropy_with_logits(z, F.one_hot(y, 4).float(), reduction="sum") / 4
    torch.testing.assert_close(classification_loss(z, y, "sigmoid"), ref)
    bias0 = m.model.logit_bias.detach().clone()
    res = train(m, TRAIN, VAL, lr=0.1, loss="sigmoid", **FAST)
    assert res.history[-1]["train_loss"] < 0.5 * res.history[0]["train_loss"]
    assert torch.equal(m.model.logit_bias, bias0)


def test_coca_and_adapter_applied_through_wrapper():
    m = prepare(tiny("coca"), "adapter", reduction=2)
    base = tiny("coca")
    x = images(4)
    with torch.no_grad():
        f0, f1 = base.encode_image(x, normalize=False), m.encode_image(x, normalize=False)
        adapter = m.model.image_adapter
        torch.testing.assert_close(f1, 0.2 * adapter.fc(f0) + 0.8 * f0)
    names = set(trainable_parameter_names(m))
    assert names == {f"{t}_adapter.fc.{i}.weight" for t in ("image", "text") for i in (0, 2)}
    res = train(m, TRAIN, VAL, lr=0.3, **FAST)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    lora = prepare(tiny("coca"), "lora", rank=2)  # the decoder and attentional pooler are not targeted
    assert not any(n.startswith(("text_decoder.", "visual.attn_pool.")) for n in trainable_parameter_names(lora))


@pytest.mark.parametrize("family", ["siglip", "coca"])
def test_lora_swap_exact_for_other_families(family):
    """CoCa's CLS text mask (3-D, per head) and SigLIP's unmasked text go through the swapped attention unchanged."""
    base, m = tiny(family), prepare(tiny(family), "lora", rank=2)
    x = images(4)
    torch.testing.assert_close(class_logits(m, x), class_logits(base, x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- evaluation
def test_evaluate_id_ood_and_gain():
    base = tiny()
    m = prepare(tiny(), "full")
    train(m, TRAIN, VAL, lr=0.1, **FAST)
    dig = digits()
    tasks = {"colors": VAL, "digits": dig}
    df = evaluate(m, tasks, zero_shot=base, run_id="r1")
    assert list(df.columns) == EVALUATION_COLUMNS
    assert df["in_domain"].tolist() == [True, False]
    zs = evaluate(base, tasks)
    assert zs["method"].eq("zeroshot").all()
    np.testing.assert_allclose(df["zero_shot_accuracy"], zs["accuracy"])
    # accuracy by hand: argmax of scale * img . head per task
    for name, task in tasks.items():
        pred = class_logits(m, task.x, task).argmax(1)
        assert df.set_index("eval_dataset").loc[name, "accuracy"] == pytest.approx((pred == task.y).float().mean().item())
    row = df.iloc[0]
    assert row["gain_over_zero_shot_error"] == pytest.approx((row["accuracy"] - row["zero_shot_accuracy"]) / (1 - row["zero_shot_accuracy"]))
    assert df["mean_ood_change"].iloc[0] == pytest.approx(df.iloc[1]["accuracy"] - df.iloc[1]["zero_shot_accuracy"])
    assert math.isnan(gain_over_zero_shot_error(0.5, 1.0))


def test_probe_is_in_domain_only():
    m = prepare(tiny(), "probe")
    train(m, TRAIN, VAL, lr=0.3, **FAST)
    df = evaluate(m, {"colors": VAL, "digits": digits(40)}, zero_shot={"colors": 0.25, "digits": 0.3})
    assert df.loc[0, "in_domain"] and not np.isnan(df.loc[0, "accuracy"])
    assert np.isnan(df.loc[1, "accuracy"]) and "in domain only" in df.loc[1, "note"]


def test_registry_dataset_by_name(tmp_path, monkeypatch):
    """Real data through iimm.data: PIL images, train/val/test splits resolved by name."""
    monkeypatch.setenv("IIMM_CACHE", str(tmp_path))
    m = prepare(tiny(), "probe")
    res = train(m, "sklearn-digits", epochs=1, batch_size=128, lr=0.3, progress=False)
    assert res.dataset == "sklearn-digits" and res.n_train > 1000 and res.n_val > 100
    assert not math.isnan(res.val_accuracy)
    df = evaluate(m, ["sklearn-digits"])
    assert df.loc[0, "in_domain"] and df.loc[0, "n_images"] > 300 and df.loc[0, "split"] == "test"


# -------------------------------------------------------- grid and records
def test_paper_grid_and_expand():
    g = paper_grid("lora")
    assert g["lr"] == (1e-2, 1e-3, 1e-4, 1e-5) and g["weight_decay"] == (1e-3, 1e-4, 1e-5) and g["rank"] == (2, 4, 8, 16)
    assert paper_grid("adapter")["reduction"] == (4, 8, 16, 32) and "rank" not in paper_grid("full")
    assert len(expand_grid(g)) == 4 * 3 * 4
    assert expand_grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_grid_search_records_every_trial(tmp_path):
    grid = {"lr": [1e-5, 0.1], "rank": [2, 4]}
    out = grid_search("lora", TRAIN, grid, model=tiny, val_dataset=VAL, eval_datasets={"colors": VAL, "digits": digits(40)},
                      zero_shot=tiny(), epochs=2, batch_size=32, progress=False)
    runs = out.runs
    assert len(runs) == 4 and list(runs.columns[: len(RUNS_COLUMNS)]) == RUNS_COLUMNS
    assert runs["run_id"].nunique() == 4 and runs["selected"].sum() == 1
    best = runs.loc[runs["selected"]].iloc[0]
    assert best["val_accuracy"] == runs["val_accuracy"].max() and best["lr"] == 0.1
    assert sorted(runs["rank"].tolist()) == [2, 2, 4, 4] and runs["reduction"].isna().all()
    assert (runs["trainable_params"] == [4 * r * 6 * 64 for r in (2, 4, 2, 4)]).all()
    assert runs["git_commit"].notna().all() and runs["iimm_version"].notna().all()
    assert set(out.evaluations["eval_dataset"]) == {"colors", "digits"}
    assert "colors" in best["test_accuracy"]
    path = write_table(runs, tmp_path / "runs.parquet", seed=0)
    back = read_table(path)
    assert back["run_id"].tolist() == runs["run_id"].tolist() and "seed" in back.columns


def test_runs_table_selects_per_group():
    m = prepare(tiny(), "bitfit")
    res = train(m, TRAIN, VAL, lr=0.3, epochs=1, batch_size=64, progress=False)
    r1 = run_record(res, run_id="a")
    r2 = {**r1, "run_id": "b", "val_accuracy": r1["val_accuracy"] + 0.1}
    r3 = {**r1, "run_id": "c", "dataset": "other"}
    table = runs_table([r1, r2, r3])
    assert table.set_index("run_id")["selected"].to_dict() == {"a": False, "b": True, "c": True}


@pytest.mark.parametrize("method", ["lora", "probe", "adapter"])
def test_save_and_load_trained_run(tmp_path, method):
    m = prepare(tiny(), method, **({"rank": 2} if method == "lora" else {}))
    train(m, TRAIN, VAL, lr=LR[method], epochs=1, batch_size=32, progress=False)
    path = save_trained(m, tmp_path / "run.safetensors")
    back = load_trained(tiny(), path)
    x = images(4)
    if method == "probe":
        with torch.no_grad():
            torch.testing.assert_close(back.model.probe_head(back.encode_image(x)), m.model.probe_head(m.encode_image(x)))
    else:
        torch.testing.assert_close(class_logits(back, x), class_logits(m, x))
    assert evaluate(back, {"colors": VAL})["in_domain"].all()
    path.write_bytes(path.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ValueError, match="checksum"):
        load_trained(tiny(), path)


def test_cli_grid_on_registry_dataset(tmp_path, monkeypatch, capsys):
    import argparse

    from iimm.finetune.cli import add_cli

    monkeypatch.setenv("IIMM_CACHE", str(tmp_path / "cache"))
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["finetune", "--model", "tiny-ft-clip", "--method", "adapter", "--dataset", "sklearn-digits",
                              "--random-init", "--lr", "0.3", "0.01", "--weight-decay", "0", "--reduction", "4",
                              "--epochs", "1", "--eval", "sklearn-digits", "--out", str(tmp_path), "--quiet"])
    assert args.func(args) == 0
    runs = read_table(tmp_path / "runs-tiny-ft-clip-adapter-sklearn-digits.parquet")
    assert len(runs) == 2 and runs["selected"].sum() == 1 and (runs["reduction"] == 4).all()
    ev = read_table(tmp_path / "evaluations-tiny-ft-clip-adapter-sklearn-digits.parquet")
    assert ev["in_domain"].tolist() == [True] and "selected run" in capsys.readouterr().out
    bad = parser.parse_args(["finetune", "--model", "tiny-ft-clip", "--method", "full", "--dataset", "x", "--rank", "4"])
    with pytest.raises(ValueError, match="does not apply"):
        bad.func(bad)
