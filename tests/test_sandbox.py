"""Tests of the offline sandbox (issue 7): world generator, tasks, tokenizer, pretraining, registry."""

from __future__ import annotations

import argparse
import json
import math
import os
import re

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from iimm.sandbox import world as W  # noqa: E402
from iimm.sandbox.pretrain import PROFILES, Profile, build_tokenizer, images_to_tensor, pretrain  # noqa: E402
from iimm.sandbox.tasks import PROCEDURAL_TASKS, REAL_TASKS, generate_task, list_tasks, task_info  # noqa: E402
from iimm.sandbox.tokenizer import SandboxTokenizer, split_words  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IIMM_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.delenv("IIMM_SANDBOX_PROFILE", raising=False)
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- world


def test_generator_is_deterministic_and_order_independent():
    a_img, a_cap = W.generate_pairs(40, seed=3)
    b_img, b_cap = W.generate_pairs(40, seed=3)
    assert a_img.dtype == np.uint8 and a_img.shape == (40, 32, 32, 3)
    np.testing.assert_array_equal(a_img, b_img)
    assert a_cap == b_cap
    # sample i depends on (seed, i) only: a slice generated alone is identical
    c_img, c_cap = W.generate_pairs(10, seed=3, start=30)
    np.testing.assert_array_equal(c_img, a_img[30:])
    assert c_cap == a_cap[30:]
    d_img, d_cap = W.generate_pairs(40, seed=4)
    assert not np.array_equal(d_img, a_img) and d_cap != a_cap


def test_render_known_scene():
    scene = W.Scene(kind="object", shape="square", color=(200, 10, 10), radius=12.0, centers=[(32.0, 32.0)],
                    background="plain", bg_colors=((0, 0, 250), (0, 0, 250)))
    img = W.render(scene)
    assert tuple(img[16, 16]) == (200, 10, 10)  # inside the square
    assert tuple(img[0, 0]) == (0, 0, 250) and tuple(img[31, 31]) == (0, 0, 250)
    # a square of circumradius 12 (supersampled px) has side 2*12*0.9/sqrt(2)*... ~ 15 px at 64 -> ~7.6 px at 32
    inside = np.all(img == (200, 10, 10), axis=-1).sum()
    side = 2 * 12.0 * 0.9 / math.sqrt(2) / 2
    assert abs(inside - side ** 2) < 4 * side  # up to the anti-aliased border
    checker = W.Scene(kind="texture", background="checkered", bg_colors=((0, 0, 0), (255, 255, 255)), bg_period=8)
    t = W.render(checker)
    frac_white = (t[..., 0] == 255).mean()
    assert frac_white == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="background"):
        W.render(W.Scene(kind="texture", background="plaid"))


def test_glyphs_use_bundled_fonts_and_differ():
    for f in W.FONTS:
        assert W.font_path(f).is_file()
    base = dict(kind="glyph", radius=16.0, centers=[(32.0, 32.0)], color=(0, 0, 0),
                bg_colors=((255, 255, 255), (255, 255, 255)))
    a = W.render(W.Scene(glyph="A", font="DejaVuSans.ttf", **base))
    b = W.render(W.Scene(glyph="A", font="cmr10.ttf", **base))
    o = W.render(W.Scene(glyph="O", font="DejaVuSans.ttf", **base))
    assert (a < 128).sum() > 15  # ink is present
    assert not np.array_equal(a, b) and not np.array_equal(a, o)
    with pytest.raises(FileNotFoundError, match="nosuchfont"):
        W.font_path("nosuchfont.ttf")


def test_generator_rejects_bad_input():
    with pytest.raises(ValueError, match="n must be"):
        W.generate_pairs(-1)
    with pytest.raises(ValueError, match="seed"):
        W.generate_pairs(3, seed=-2)


# ----------------------------------------------------------------------------- tokenizer


def _naive_tokenize(text: str, vocab: list[str], ctx: int, n_buckets: int) -> list[int]:
    import zlib

    words = re.findall(r"[a-z]+|[0-9]", text.lower())
    ids = []
    for w in words:
        if w in vocab:
            ids.append(3 + vocab.index(w))
        else:
            ids.append(3 + len(vocab) + zlib.crc32(w.encode()) % n_buckets)
    eot = 3 + len(vocab) + n_buckets
    row = [2] + ids[: ctx - 2] + [eot]
    return row + [0] * (ctx - len(row))


def test_tokenizer_matches_naive_implementation():
    tok = build_tokenizer()
    texts = ["A red circle on the LEFT!", "the digit 7", 'a photo of the number: "3".', "a zebra sneaker",
             " ".join(["red"] * 30)]
    got = tok(texts)
    assert got.dtype == torch.long and got.shape == (5, 16)
    for row, text in zip(got.tolist(), texts):
        assert row == _naive_tokenize(text, tok.words, 16, tok.n_buckets)
    # the end token is the largest id, as open_clip's argmax pooling needs
    assert tok.eot_token_id == tok.vocab_size - 1 == int(got.max())
    assert SandboxTokenizer.from_state(json.loads(json.dumps(tok.state()))) == tok
    with pytest.raises(ValueError, match="context_length"):
        SandboxTokenizer(["a"], context_length=2)
    with pytest.raises(ValueError, match="single lower-case"):
        SandboxTokenizer(["two words"])


def test_captions_tokenize_within_context_and_vocabulary():
    tok = build_tokenizer()
    _, captions = W.generate_pairs(3000, seed=11)
    vocab = set(tok.words)
    for c in captions:
        assert tok.n_tokens(c) <= tok.context_length, c
        assert set(split_words(c)) <= vocab, c  # no caption word falls into an OOV bucket
    assert len(set(captions)) > 500  # varied templates
    for name in list_tasks():
        info = task_info(name)
        for t in info["templates"]:
            for c in info["classes"]:
                assert tok.n_tokens(t.format(c)) <= tok.context_length, (name, t, c)


# ----------------------------------------------------------------------------- tasks


def test_task_suite_metadata():
    names = list_tasks()
    assert len(names) >= 9
    assert set(names) == set(PROCEDURAL_TASKS) | set(REAL_TASKS)
    for name in names:
        info = task_info(name)
        assert len(info["classes"]) == len(set(info["classes"])) >= 2
        assert all("{}" in t for t in info["templates"])
    with pytest.raises(ValueError, match="unknown sandbox task"):
        task_info("sandbox-nope")


def test_procedural_task_labels_images_and_determinism():
    imgs, labels = generate_task("sandbox-colors", "test", 33, seed=0)
    np.testing.assert_array_equal(labels, np.arange(33) % 11)
    imgs2, _ = generate_task("sandbox-colors", "test", 33, seed=0)
    np.testing.assert_array_equal(imgs, imgs2)
    train, _ = generate_task("sandbox-colors", "train", 33, seed=0)
    assert not np.array_equal(train, imgs)  # independent streams
    # textures task: no object drawn, a 'plain' image has (nearly) one colour
    t, tl = generate_task("sandbox-textures", "test", 8, seed=0)
    assert t[0].reshape(-1, 3).std(axis=0).max() < 1.0 and tl[0] == 0
    assert t[1].reshape(-1, 3).std(axis=0).max() > 20  # striped
    with pytest.raises(ValueError, match="procedural"):
        generate_task("sandbox-mnist", "test", 5)
    with pytest.raises(ValueError, match="split"):
        generate_task("sandbox-shapes", "val", 5)


def test_every_class_in_every_split():
    pytest.importorskip("iimm.data")
    from iimm.data import dataset_info, load_dataset
    from iimm.data.sources import DatasetNotFoundError
    from iimm.data.splits import make_splits
    from iimm.sandbox.registry import register_sandbox_tasks
    from iimm.sandbox.tasks import DEFAULT_SIZES

    # procedural tasks at their registered sizes: labels are i mod C (checked above), splits by the data registry
    for name in PROCEDURAL_TASKS:
        c = len(task_info(name)["classes"])
        labels = np.arange(DEFAULT_SIZES["train"]) % c
        sp = make_splits(DEFAULT_SIZES["train"])
        for part in ("train", "val"):
            assert set(labels[sp[part]]) == set(range(c)), (name, part)
        assert set(np.arange(DEFAULT_SIZES["test"]) % c) == set(range(c))
    # through the registry at the default sizes, real data where installed
    register_sandbox_tasks()
    missing = []
    try:
        for name in ("sandbox-shapes", *REAL_TASKS):
            c = len(task_info(name)["classes"])
            try:
                sizes = {}
                for split in ("train", "val", "test"):
                    ds = load_dataset(name, split, record_split=False)
                    assert set(np.unique(ds.targets)) == set(range(c)), (name, split)
                    sizes[split] = len(ds)
                # every task keeps 1000 train-pool and 500 test images (real ones: seeded subsets;
                # without a test split, one pool of 1500 of which 20% is held out for test)
                pool, test = (1000, 500) if dataset_info(name).has_test else (1200, 300)
                assert (sizes["train"] + sizes["val"], sizes["val"], sizes["test"]) == (pool, pool // 10, test), (name, sizes)
            except DatasetNotFoundError as exc:
                missing.append(f"{name}: {exc}")
        ds = load_dataset("sandbox-sklearn-digits", "test", record_split=False)
        img, _ = ds[0]
        assert img.size == (32, 32) and img.mode == "RGB"
    finally:
        register_sandbox_tasks()
    if len(missing) == len(REAL_TASKS):
        pytest.skip("no real offline dataset installed: " + "; ".join(missing))


def test_capped_index_is_a_seeded_sorted_subset():
    from iimm.sandbox.registry import capped_index

    a = capped_index(1000, 100, "sandbox-mnist", "train", seed=0)
    assert a.shape == (100,) and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    np.testing.assert_array_equal(a, capped_index(1000, 100, "sandbox-mnist", "train", seed=0))
    assert not np.array_equal(a, capped_index(1000, 100, "sandbox-mnist", "test", seed=0))
    assert not np.array_equal(a, capped_index(1000, 100, "sandbox-mnist", "train", seed=1))
    assert a.max() > 500  # a random subset, not the first items of a class-ordered source
    np.testing.assert_array_equal(capped_index(80, 100, "x", "train", seed=0), np.arange(80))


# ----------------------------------------------------------------------------- pretraining and registry


def test_images_to_tensor_equals_model_preprocess():
    import iimm.models as M
    from PIL import Image

    from iimm.sandbox.registry import register_sandbox_models

    register_sandbox_models()
    m = M.load_model("sandbox-clip", pretrained=False)
    imgs, _ = W.generate_pairs(3, seed=1)
    ref = torch.stack([m.preprocess(Image.fromarray(x)) for x in imgs])
    torch.testing.assert_close(images_to_tensor(imgs), ref, atol=1e-5, rtol=0)


def test_pretraining_is_deterministic(tmp_path):
    tiny = Profile("tiny", n_pairs=96, steps=2, batch_size=32, arch="small")
    out = {}
    for k in ("a", "b"):
        pretrain("sandbox-siglip", tiny, seed=5, out=tmp_path / f"{k}.pt", cache_pairs=False, evaluate=False, log=None)
        out[k] = torch.load(tmp_path / f"{k}.pt", weights_only=True)["state_dict"]
    assert out["a"].keys() == out["b"].keys()
    for key in out["a"]:
        assert torch.equal(out["a"][key], out["b"][key]), key
    rec = json.loads((tmp_path / "a.json").read_text())
    assert rec["seed"] == 5 and rec["config"]["sandbox_pretrain"] == "sandbox-siglip"
    with pytest.raises(ValueError, match="profile"):
        pretrain("sandbox-clip", "huge")
    with pytest.raises(ValueError, match="name"):
        pretrain("sandbox-vit", "smoke")


def test_coca_pretraining_step_runs(tmp_path):
    tiny = Profile("tiny", n_pairs=64, steps=2, batch_size=32, arch="small")
    rec = pretrain("sandbox-coca", tiny, out=tmp_path / "c.pt", cache_pairs=False, evaluate=False, log=None)
    assert math.isfinite(rec["loss_last"]) and rec["n_params"] > 0


# Threshold of the smoke test: the smoke profile's zero-shot accuracy on the easiest procedural
# task must beat chance by at least 8 binomial standard deviations of a chance-level classifier
# on the evaluated sample (about twice chance for the sizes used here).
SMOKE_SIGMAS = 8.0


def test_smoke_pretraining_learns_and_loads(tmp_path):
    import iimm.models as M
    from iimm.models import WeightsNotFoundError
    from iimm.sandbox.registry import register_sandbox_models

    rec = pretrain("sandbox-clip", "smoke", cache_pairs=tmp_path / "world.npz", log=None)
    assert rec["loss_last"] < rec["loss_first"]
    zs = rec["zero_shot"]
    assert set(zs) == set(PROCEDURAL_TASKS)
    best = max(zs, key=zs.get)
    c = len(task_info(best)["classes"])
    n = PROFILES["smoke"].eval_per_class * c
    chance = 1.0 / c
    threshold = chance + SMOKE_SIGMAS * math.sqrt(chance * (1 - chance) / n)
    assert zs[best] > threshold, (best, zs)

    register_sandbox_models()
    m = M.load_model("sandbox-clip@smoke")
    imgs, caps = W.generate_pairs(4, seed=0)
    from iimm.sandbox.pretrain import load_sandbox_model

    raw, tok, meta = load_sandbox_model(rec["checkpoint"])
    with torch.no_grad():
        torch.testing.assert_close(m.encode_image(images_to_tensor(imgs)), raw.encode_image(images_to_tensor(imgs), normalize=True))
        torch.testing.assert_close(m.encode_text(m.tokenize(caps)), raw.encode_text(tok(caps), normalize=True))
    assert meta["profile"]["name"] == "smoke"

    # a profile that has not been pretrained: a clear error naming the file and the command
    with pytest.raises(WeightsNotFoundError) as err:
        M.load_model("sandbox-clip@quick")
    msg = str(err.value)
    assert "sandbox-clip-quick.pt" in msg and "iimm sandbox pretrain --model sandbox-clip --profile quick" in msg


def test_cli_parses_and_lists_tasks(capsys):
    from iimm.sandbox.cli import add_cli

    parser = argparse.ArgumentParser(prog="iimm")
    sub = parser.add_subparsers(dest="command")
    add_cli(sub)
    args = parser.parse_args(["sandbox", "pretrain", "--model", "sandbox-coca", "--profile", "smoke"])
    assert args.model == ["sandbox-coca"] and args.profile == "smoke"
    args = parser.parse_args(["sandbox", "tasks"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_tasks())
    with pytest.raises(SystemExit):
        parser.parse_args(["sandbox", "pretrain", "--profile", "huge"])


def test_world_pairs_cache_roundtrip_and_corruption(tmp_path):
    from iimm.sandbox.pretrain import world_pairs

    path = tmp_path / "w.npz"
    imgs, caps = world_pairs(12, seed=2, cache=path)
    assert path.is_file() and path.with_suffix(".json").is_file()
    ref_imgs, ref_caps = W.generate_pairs(12, seed=2)
    np.testing.assert_array_equal(imgs, ref_imgs)
    assert caps == ref_caps
    again, _ = world_pairs(12, seed=2, cache=path)  # cache hit
    np.testing.assert_array_equal(again, ref_imgs)
    path.write_bytes(b"truncated")  # a corrupt entry is detected by its checksum and regenerated
    fixed, fixed_caps = world_pairs(12, seed=2, cache=path)
    np.testing.assert_array_equal(fixed, ref_imgs)
    assert fixed_caps == ref_caps


def test_registry_profiles(monkeypatch):
    import iimm.models as M
    from iimm.sandbox.registry import register_sandbox_models

    names = register_sandbox_models()
    assert {"sandbox-clip", "sandbox-siglip", "sandbox-coca", "sandbox-coca@smoke"} <= set(names)
    assert M.get_model_spec("sandbox-siglip@quick").checkpoint_path().name == "sandbox-siglip-quick.pt"
    assert M.get_model_spec("sandbox-siglip").checkpoint_path().name == "sandbox-siglip-full.pt"
    monkeypatch.setenv("IIMM_SANDBOX_PROFILE", "smoke")
    register_sandbox_models()
    spec = M.get_model_spec("sandbox-clip")
    assert spec.checkpoint_path().name == "sandbox-clip-smoke.pt"
    assert spec.model_cfg["vision_cfg"]["width"] == 64  # the smoke profile's small towers
    m = M.load_model("sandbox-siglip@smoke", pretrained=False)
    assert m.logit_bias is not None and m.tokenize(["a red circle"]).shape == (1, 16)
    monkeypatch.setenv("IIMM_SANDBOX_PROFILE", "huge")
    with pytest.raises(ValueError, match="IIMM_SANDBOX_PROFILE"):
        register_sandbox_models()
    monkeypatch.delenv("IIMM_SANDBOX_PROFILE")
    register_sandbox_models()


def test_cli_generate_task(tmp_path):
    from iimm.sandbox.cli import add_cli

    parser = argparse.ArgumentParser(prog="iimm")
    add_cli(parser.add_subparsers(dest="command"))
    out = tmp_path / "t.npz"
    args = parser.parse_args(["sandbox", "generate", "--task", "sandbox-counting", "--split", "test", "--n", "12",
                              "--out", str(out)])
    assert args.func(args) == 0
    with np.load(out) as z:
        ref, ref_labels = generate_task("sandbox-counting", "test", 12)
        np.testing.assert_array_equal(z["images"], ref)
        np.testing.assert_array_equal(z["labels"], ref_labels)
