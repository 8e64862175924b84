"""Tests of iimm.models: registry, DualEncoder wrapper, weights resolution, zero-shot head."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from iimm.models import (  # noqa: E402
    PAPER_MODELS,
    DualEncoder,
    MissingTokenizerWarning,
    WeightsNotFoundError,
    list_models,
    load_model,
    register_model,
    tiny_model_cfg,
    unregister_model,
    zero_shot_head,
)

FAMILIES = ["clip", "siglip", "coca", "eva02"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_models():
    names = {}
    for fam in FAMILIES:
        name = f"test-tiny-{fam}"
        register_model(name, model_cfg=tiny_model_cfg(fam), overwrite=True)
        names[fam] = name
    yield names
    for name in names.values():
        unregister_model(name)


def test_paper_models_registered():
    assert set(PAPER_MODELS) <= set(list_models())
    assert PAPER_MODELS["clip"] == ("ViT-B-32", "openai")
    assert PAPER_MODELS["siglip"] == ("ViT-B-16-SigLIP", "webli")
    assert PAPER_MODELS["coca"] == ("coca_ViT-B-32", "laion2b_s13b_b90k")
    assert PAPER_MODELS["eva02"] == ("EVA02-B-16", "merged2b_s8b_b131k")


@pytest.mark.parametrize("family", FAMILIES)
def test_wrapper_shapes_and_normalisation(tiny_models, family):
    import open_clip

    m = load_model(tiny_models[family], pretrained=False)
    assert isinstance(m, DualEncoder)
    expected_cls = {"clip": open_clip.CLIP, "siglip": open_clip.CustomTextCLIP,
                    "coca": open_clip.CoCa, "eva02": open_clip.CustomTextCLIP}[family]
    assert type(m.model) is expected_cls
    images = torch.randn(3, 3, 32, 32)
    tokens = m.tokenize(["a photo of a cat", "a dog", "x"])
    assert tokens.dtype == torch.long and tokens.shape == (3, 16)
    with torch.no_grad():
        fi = m.encode_image(images)
        ft = m.encode_text(tokens)
        raw = m.encode_image(images, normalize=False)
    assert fi.shape == (3, 32) and ft.shape == (3, 32)
    assert torch.allclose(fi.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(ft.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(raw / raw.norm(dim=1, keepdim=True), fi, atol=1e-5)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3), atol=1e-3)
    # logits: scale * cos (+ bias for SigLIP only)
    scale = m.logit_scale
    assert scale.ndim == 0 and torch.isclose(scale, m.model.logit_scale.exp().reshape(()))
    if family == "siglip":
        assert m.logit_bias is not None and float(m.logit_bias.detach()) == -10.0
    else:
        assert m.logit_bias is None
    with torch.no_grad():
        expected = scale * fi @ ft.T + (m.logit_bias if m.logit_bias is not None else 0.0)
        assert torch.allclose(m.logits(fi, ft), expected, atol=1e-5)
    assert m.embed_dim == 32


def test_coca_uses_contrastive_latent(tiny_models):
    m = load_model(tiny_models["coca"], pretrained=False)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        latent, _tokens = m.model.visual(images)
        assert torch.allclose(m.encode_image(images, normalize=False), latent, atol=1e-6)


def test_gradients_flow(tiny_models):
    m = load_model(tiny_models["clip"], pretrained=False)
    out = m.encode_image(torch.randn(2, 3, 32, 32)).sum()
    out.backward()
    assert m.model.visual.conv1.weight.grad is not None


def test_random_init_is_seeded(tiny_models):
    a = load_model(tiny_models["clip"], pretrained=False, seed=3)
    b = load_model(tiny_models["clip"], pretrained=False, seed=3)
    c = load_model(tiny_models["clip"], pretrained=False, seed=4)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert a.weights_id == "random-init:seed=3" and c.weights_id == "random-init:seed=4"


def test_zero_shot_head_matches_loop(tiny_models):
    m = load_model(tiny_models["clip"], pretrained=False)
    classes = ["cat", "dog", "car", "tree", "boat"]
    templates = ["a photo of a {}.", "a drawing of a {}.", lambda c: f"itap of the {c}"]
    head = zero_shot_head(m, classes, templates, batch_size=4)  # batches cross class boundaries
    rows = []
    with torch.no_grad():
        for c in classes:
            acc = []
            for t in templates:
                text = t(c) if callable(t) else t.format(c)
                e = m.model.encode_text(m.tokenize([text]))[0]
                acc.append(e / e.norm())
            mean = torch.stack(acc).mean(0)
            rows.append(mean / mean.norm())
    expected = torch.stack(rows)
    assert head.shape == (5, 32) and head.dtype == torch.float32
    assert torch.allclose(head, expected, atol=1e-5)
    assert torch.allclose(head.norm(dim=1), torch.ones(5), atol=1e-5)


def test_zero_shot_head_bad_input(tiny_models):
    m = load_model(tiny_models["clip"], pretrained=False)
    with pytest.raises(ValueError, match="classnames"):
        zero_shot_head(m, [], ["a {}"])
    with pytest.raises(ValueError, match="templates"):
        zero_shot_head(m, ["a"], ["no placeholder"])
    with pytest.raises(ValueError, match="batch_size"):
        zero_shot_head(m, ["a"], ["a {}"], batch_size=0)


def test_weights_file_and_checkpoint_roundtrip(tiny_models, tmp_path):
    src = load_model(tiny_models["clip"], pretrained=False, seed=7)
    path = tmp_path / "tiny.pt"
    torch.save(src.model.state_dict(), path)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = src.encode_image(images)
        via_weights = load_model(tiny_models["clip"], weights=path, seed=0)
        assert torch.allclose(via_weights.encode_image(images), expected, atol=1e-6)
    assert via_weights.weights_id.startswith("file:tiny.pt:")
    register_model("test-ckpt", model_cfg=tiny_model_cfg("clip"), checkpoint=lambda: path, overwrite=True)
    try:
        m = load_model("test-ckpt")
        with torch.no_grad():
            assert torch.allclose(m.encode_image(images), expected, atol=1e-6)
        assert m.weights_id == via_weights.weights_id
    finally:
        unregister_model("test-ckpt")


def test_missing_checkpoint_message(tmp_path):
    missing = tmp_path / "nope" / "model.safetensors"
    register_model("test-missing", model_cfg=tiny_model_cfg("clip"), checkpoint=missing,
                   missing_hint="Run `iimm sandbox pretrain` to make it.", overwrite=True)
    try:
        with pytest.raises(WeightsNotFoundError) as err:
            load_model("test-missing")
        msg = str(err.value)
        assert str(missing) in msg and "iimm sandbox pretrain" in msg and "weights=PATH" in msg
        assert isinstance(err.value, FileNotFoundError)
        load_model("test-missing", pretrained=False)  # random init still works
    finally:
        unregister_model("test-missing")


@pytest.mark.parametrize("name", ["siglip", "ViT-B-32/laion2b_s34b_b79k"])
def test_missing_pretrained_weights_fail_fast(name):
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as err:
        load_model(name)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0
    msg = str(err.value)
    assert "open_clip_model.safetensors" in msg and "Hugging Face cache" in msg
    assert "--weights PATH" in msg and "HF_HUB_OFFLINE" in msg


def test_missing_weights_file():
    with pytest.raises(WeightsNotFoundError, match="does-not-exist.pt"):
        load_model("clip", weights="/does-not-exist.pt")


def test_siglip_tokenizer_fallback_is_loud():
    cfg = tiny_model_cfg("siglip")
    cfg["text_cfg"]["hf_tokenizer_name"] = "timm/ViT-B-16-SigLIP"
    register_model("test-siglip-hf", model_cfg=cfg, overwrite=True)
    try:
        with pytest.warns(MissingTokenizerWarning, match="REAL TOKENIZER MISSING"):
            m = load_model("test-siglip-hf", pretrained=False)
        assert m.tokenizer_is_real is False and "timm/ViT-B-16-SigLIP" in m.tokenizer_warning
        tok = m.tokenize(["a photo of a dog"])
        assert tok.shape == (1, 16) and int(tok.max()) < 32000
        with torch.no_grad():
            assert m.encode_text(tok).shape == (1, 32)
    finally:
        unregister_model("test-siglip-hf")


def test_factory_registration():
    import open_clip

    def factory():
        return open_clip.CLIP(**tiny_model_cfg("clip", embed_dim=24))

    register_model("test-factory", factory=factory, overwrite=True)
    try:
        m = load_model("test-factory", pretrained=False)
        with torch.no_grad():
            assert m.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 24)
        assert m.preprocess_cfg["size"] == (32, 32)
    finally:
        unregister_model("test-factory")


def test_registry_errors():
    with pytest.raises(ValueError, match="exactly one"):
        register_model("x-none")
    with pytest.raises(ValueError, match="exactly one"):
        register_model("x-two", "ViT-B-32", model_cfg=tiny_model_cfg())
    with pytest.raises(ValueError, match="embed_dim"):
        register_model("x-bad", model_cfg={"vision_cfg": {}, "text_cfg": {}})
    with pytest.raises(ValueError, match="already registered"):
        register_model("clip", "ViT-B-32", "openai")
    with pytest.raises(ValueError, match="not an open_clip model config"):
        register_model("x-arch", "No-Such-Arch")
    with pytest.raises(ValueError, match="tag"):
        register_model("x-tag", "ViT-B-32", "no_such_tag")
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no-such-model")
    with pytest.raises(ValueError, match="precision"):
        load_model("clip", pretrained=False, precision="fp8")
    with pytest.raises(ValueError, match="family"):
        tiny_model_cfg("resnet")


def test_vit_b32_random_init_real_architecture():
    """The paper's CLIP architecture, random init: shapes, preprocessing, QuickGELU of the OpenAI tag."""
    from PIL import Image

    m = load_model("clip", pretrained=False)
    assert m.info["architecture"] == "ViT-B-32:quick_gelu=True"
    assert m.image_size == (224, 224)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    x = m.preprocess(img)
    assert x.shape == (3, 224, 224)
    with torch.no_grad():
        fi = m.encode_image(x[None])
        ft = m.encode_text(m.tokenize(["a photo of a cat."]))
    assert fi.shape == (1, 512) and ft.shape == (1, 512)
    assert torch.allclose(fi.norm(dim=1), torch.ones(1), atol=1e-5)


def test_random_init_coca_decoder_projection_is_seeded_and_finite():
    import torch

    from iimm.models import load_model, register_model, tiny_model_cfg

    register_model("tiny-coca-proj", model_cfg=tiny_model_cfg("coca"), overwrite=True)
    a = load_model("tiny-coca-proj", pretrained=False, seed=0).model.text_decoder.text_projection.detach()
    b = load_model("tiny-coca-proj", pretrained=False, seed=0).model.text_decoder.text_projection.detach()
    c = load_model("tiny-coca-proj", pretrained=False, seed=1).model.text_decoder.text_projection.detach()
    assert torch.isfinite(a).all() and torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.std()) - a.shape[0] ** -0.5) < 0.5 * a.shape[0] ** -0.5
