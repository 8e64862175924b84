"""``load_model`` and the :class:`DualEncoder` wrapper around open_clip models.

One wrapper hides the differences between the paper's dual encoders
(Section 4.1): CLIP and EVA-02-CLIP (softmax contrastive), SigLIP (sigmoid
loss, with a learned ``logit_bias``) and CoCa (whose *contrastive* image and
text embeddings are used, not the captioning decoder).

Weights are looked up locally first (a ``weights=`` file, the registered
checkpoint, or the Hugging Face cache). When they are absent and the hub
cannot be reached (``HF_HUB_OFFLINE=1`` or no route to the endpoint, checked
with one short socket connect), :class:`WeightsNotFoundError` is raised at
once, naming the file looked for and how to provide it, instead of entering
huggingface_hub's retry loop.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlparse

from .registry import ModelSpec, get_model_spec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DualEncoder",
    "load_model",
    "zero_shot_head",
    "WeightsNotFoundError",
    "MissingTokenizerWarning",
    "hub_reachable",
    "format_templates",
]

_HF_WEIGHTS = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS = "open_clip_model.safetensors"


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither local nor downloadable from here."""


class MissingTokenizerWarning(UserWarning):
    """The model's real tokenizer is unavailable; a stand-in makes the token ids."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@functools.lru_cache(maxsize=4)
def _probe(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be used: not offline and the endpoint answers.

    ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set to a true value mean no.
    Otherwise one TCP connect to ``$HF_ENDPOINT`` (default huggingface.co:443)
    with a ``timeout``-second limit decides; the answer is cached per process.
    """
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    return _probe(host, port, timeout)


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _resolve_open_clip_weights(arch: str, tag: str, display: str) -> Path:
    """Local path of the weights of open_clip ``(arch, tag)``; download only if the hub is reachable."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        if os.path.isfile(tag):
            return Path(tag)
        raise ValueError(
            f"pretrained {tag!r} is neither an open_clip tag of {arch} "
            f"({open_clip.list_pretrained_tags_by_model(arch)}) nor an existing file"
        )
    if cfg.get("file"):
        return Path(cfg["file"])
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    repo, filename, candidates = "", "", []
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        filename = filename or _HF_WEIGHTS
        if filename == _HF_WEIGHTS:
            candidates.append(_HF_SAFE_WEIGHTS)
        elif filename.endswith((".bin", ".pth")):
            candidates.append(filename[:-4] + ".safetensors")
        candidates.append(filename)
        for fn in candidates:
            hit = try_to_load_from_cache(repo, fn)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
            looked.append(f"{repo}/{fn} in the Hugging Face cache {_hf_cache_dir()}")
    url = cfg.get("url", "")
    if url and not hub:
        local = Path.home() / ".cache" / "clip" / os.path.basename(url)
        if local.is_file():
            return local
        looked.append(str(local))
    if hub and hub_reachable():
        from huggingface_hub import hf_hub_download

        last: Exception | None = None
        for fn in candidates:
            try:
                return Path(hf_hub_download(repo_id=repo, filename=fn))
            except Exception as exc:  # try the next candidate
                last = exc
        raise WeightsNotFoundError(f"could not download {repo}/{candidates} for model {display}: {last}")
    if url and not hub and hub_reachable():
        return Path(open_clip.pretrained.download_pretrained_from_url(url))
    raise WeightsNotFoundError(
        f"pretrained weights for model {display!r} (open_clip {arch} / {tag}) are not on this machine: "
        f"looked for {'; '.join(looked)}; the hub is not reachable "
        f"({'HF_HUB_OFFLINE is set' if _truthy(os.environ.get('HF_HUB_OFFLINE')) else 'no connection'}). "
        f"Provide them by (1) running once where huggingface.co is reachable, e.g. "
        f"`python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag}')\"`, and copying "
        f"the Hugging Face cache (HF_HOME / HF_HUB_CACHE) here; (2) passing a local weights file with "
        f"weights=PATH (CLI: --weights PATH); or (3) running where the hub is reachable."
    )


def _file_fingerprint(path: Path) -> str:
    """Cheap identity of a weights file: size + SHA-256 of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (2 << 20):
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read())
    return f"{path.name}:{size}:{h.hexdigest()[:16]}"


class _FoldedTokenizer:
    """Stand-in tokenizer: open_clip's CLIP BPE ids folded into a smaller vocabulary."""

    def __init__(self, context_length: int, vocab_size: int) -> None:
        import open_clip

        self.inner = open_clip.SimpleTokenizer(context_length=context_length)
        self.context_length = context_length
        self.vocab_size = vocab_size

    def __call__(self, texts: list[str]) -> "torch.Tensor":
        return self.inner(texts) % self.vocab_size


def _hf_tokenizer_local_dir(repo: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for fn in ("tokenizer.json", "tokenizer_config.json", "spiece.model"):
        hit = try_to_load_from_cache(repo, fn)
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit).parent
    return None


def _make_tokenizer(text_cfg: dict, spec_tokenizer: Any, display: str) -> tuple[Callable, bool, str]:
    """Tokenizer for a text config: (callable, is_real, warning)."""
    import open_clip

    if callable(spec_tokenizer):
        return spec_tokenizer, True, ""
    if isinstance(spec_tokenizer, str):
        cfg = open_clip.get_model_config(spec_tokenizer)
        if cfg is None:
            raise ValueError(f"tokenizer {spec_tokenizer!r} is not an open_clip model name")
        text_cfg = cfg["text_cfg"]
    ctx = int(text_cfg.get("context_length", 77))
    vocab = int(text_cfg.get("vocab_size", 49408))
    hf_name = text_cfg.get("hf_tokenizer_name")
    if hf_name:
        from open_clip.tokenizer import HFTokenizer

        local = _hf_tokenizer_local_dir(hf_name)
        reason = "it is not in the Hugging Face cache and the hub is not reachable"
        if local is not None or hub_reachable():
            try:
                kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
                tok = HFTokenizer(str(local) if local else hf_name, context_length=ctx,
                                  tokenizer_mode=text_cfg.get("tokenizer_mode"), **kwargs)
                return tok, True, ""
            except Exception as exc:  # fall back below, saying why
                reason = f"loading it failed: {exc}"
        msg = (
            f"REAL TOKENIZER MISSING for model {display!r}: its tokenizer {hf_name!r} (Hugging Face hub) "
            f"is unavailable ({reason}). Falling back to open_clip's SimpleTokenizer (CLIP BPE) with ids folded "
            f"into the model's {vocab}-token vocabulary: usable for randomly initialised models and tests, "
            f"but text embeddings of pretrained weights will be WRONG. Fix: run once where huggingface.co is "
            f"reachable to fill the Hugging Face cache with {hf_name}."
        )
        warnings.warn(msg, MissingTokenizerWarning, stacklevel=3)
        return _FoldedTokenizer(ctx, vocab), False, msg
    if vocab < 49408:
        return _FoldedTokenizer(ctx, vocab), True, ""
    return open_clip.SimpleTokenizer(context_length=ctx), True, ""


def _model_class(cfg: dict):
    import open_clip

    custom_text = bool(cfg.pop("custom_text", False)) or "hf_model_name" in cfg.get("text_cfg", {})
    if custom_text:
        return open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
    return open_clip.CLIP


def _precision_dtype(precision: str):
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in table:
        raise ValueError(f"precision must be one of {sorted(table)}; got {precision!r}")
    return table[precision]


class DualEncoder:
    """A vision-language dual encoder with one interface for all model families.

    Attributes
    ----------
    name : registry name (or the name given to :func:`load_model`).
    model : the underlying open_clip ``nn.Module`` (what fine-tuning edits).
    preprocess : eval image transform, PIL image -> float tensor (3, H, W).
    train_preprocess : open_clip's training transform (random resized crop).
    weights_id : identity of the weights (tag, file fingerprint, or random-init seed).
    tokenizer_is_real : False when a stand-in tokenizer is used (see ``tokenizer_warning``).
    """

    def __init__(
        self,
        name: str,
        model: Any,
        preprocess: Callable,
        tokenizer: Callable,
        *,
        weights_id: str,
        train_preprocess: Callable | None = None,
        tokenizer_is_real: bool = True,
        tokenizer_warning: str = "",
        spec: ModelSpec | None = None,
        info: dict | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.preprocess = preprocess
        self.train_preprocess = train_preprocess
        self._tokenizer = tokenizer
        self.weights_id = weights_id
        self.tokenizer_is_real = tokenizer_is_real
        self.tokenizer_warning = tokenizer_warning
        self.spec = spec
        self.info = dict(info or {})
        self._embed_dim: int | None = None

    # ----------------------------------------------------------------- basics
    def __repr__(self) -> str:
        return f"DualEncoder(name={self.name!r}, weights={self.weights_id!r}, class={type(self.model).__name__})"

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> "torch.dtype":
        return next(self.model.parameters()).dtype

    @property
    def context_length(self) -> int:
        return int(getattr(self._tokenizer, "context_length", None) or getattr(self.model, "context_length", 77))

    @property
    def image_size(self) -> tuple[int, int]:
        size = getattr(self.model.visual, "preprocess_cfg", {}).get("size") or self.model.visual.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def preprocess_cfg(self) -> dict:
        """open_clip preprocessing config (size, mean, std, interpolation, resize_mode)."""
        return dict(getattr(self.model.visual, "preprocess_cfg", {}))

    @property
    def embed_dim(self) -> int:
        """Dimension ``d`` of the joint embedding space."""
        if self._embed_dim is None:
            import torch

            with torch.no_grad():
                self._embed_dim = int(self.encode_text(self.tokenize(["a"])).shape[-1])
        return self._embed_dim

    def to(self, device: Any) -> "DualEncoder":
        self.model.to(device)
        return self

    def eval(self) -> "DualEncoder":
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> "DualEncoder":
        self.model.train(mode)
        return self

    def parameters(self):
        return self.model.parameters()

    # --------------------------------------------------------------- encoding
    def tokenize(self, texts: str | Sequence[str]) -> "torch.Tensor":
        """Token ids, LongTensor (B, context_length) on the CPU."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("texts is empty")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        return torch.as_tensor(self._tokenizer(texts), dtype=torch.long)

    def encode_image(self, images: "torch.Tensor", normalize: bool = True) -> "torch.Tensor":
        """Image embeddings (B, d); CoCa's contrastive (attention-pooled) latent.

        Unit rows when ``normalize``; gradients flow if enabled by the caller.
        """
        import torch.nn.functional as F

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a (B, 3, H, W) tensor; got shape {tuple(images.shape)}")
        images = images.to(device=self.device, dtype=self.dtype, non_blocking=True)
        feats = self.model.encode_image(images, normalize=False)
        return F.normalize(feats, dim=-1) if normalize else feats

    def encode_text(self, tokens: "torch.Tensor", normalize: bool = True) -> "torch.Tensor":
        """Text embeddings (B, d) of token ids from :meth:`tokenize`; unit rows when ``normalize``."""
        import torch.nn.functional as F

        if tokens.ndim != 2:
            raise ValueError(f"tokens must be a (B, L) tensor of token ids; got shape {tuple(tokens.shape)}")
        feats = self.model.encode_text(tokens.to(self.device, non_blocking=True), normalize=False)
        return F.normalize(feats, dim=-1) if normalize else feats

    @property
    def logit_scale(self) -> "torch.Tensor":
        """Temperature, already exponentiated (scalar tensor)."""
        return self.model.logit_scale.exp().reshape(())

    @property
    def logit_bias(self) -> "torch.Tensor | None":
        """SigLIP's learned bias of the sigmoid logits; ``None`` for other models."""
        bias = getattr(self.model, "logit_bias", None)
        return None if bias is None else bias.reshape(())

    def logits(self, image_features: "torch.Tensor", text_features: "torch.Tensor") -> "torch.Tensor":
        """``logit_scale * image_features @ text_features.T (+ logit_bias)``, shape (B, C)."""
        out = self.logit_scale * image_features @ text_features.T.to(image_features.dtype)
        bias = self.logit_bias
        return out if bias is None else out + bias


# --------------------------------------------------------------------- loading
def _parse_name(name: str) -> tuple[str, ModelSpec]:
    """Map a model name to a spec: registry name, ARCH/TAG, bare ARCH, or local dir."""
    import open_clip

    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string; got {name!r}")
    spec = get_model_spec(name)
    if spec is not None:
        return "registry", spec
    archs = set(open_clip.list_models())
    if name in archs:
        return "arch", ModelSpec(name=name, architecture=name)
    if "/" in name:
        arch, _, tag = name.partition("/")
        if arch in archs:
            return "arch", ModelSpec(name=name, architecture=arch, pretrained=tag)
    path = Path(name[len("local-dir:"):] if name.startswith("local-dir:") else name).expanduser()
    if path.is_dir() and (path / "open_clip_config.json").is_file():
        return "local-dir", ModelSpec(name=name, extra={"local_dir": str(path)})
    from .registry import list_models

    raise ValueError(
        f"unknown model {name!r}: not a registered name ({list_models()}), not an open_clip architecture "
        f"or ARCH/TAG pair (see open_clip.list_models() / open_clip.list_pretrained()), and not a directory "
        f"with open_clip_config.json"
    )


def _checkpoint_for(spec: ModelSpec, display: str) -> Path | None:
    path = spec.checkpoint_path()
    if path is None:
        return None
    if not path.is_file():
        hint = f" {spec.missing_hint.strip()}" if spec.missing_hint else ""
        raise WeightsNotFoundError(
            f"checkpoint of model {display!r} not found: looked for {path}.{hint} "
            f"Or pass a weights file with weights=PATH (CLI: --weights PATH), or pretrained=False for random init."
        )
    return path


def _init_coca_decoder_projection(model: Any) -> None:
    """Initialise CoCa's decoder ``text_projection``, which open_clip 3.3 leaves uninitialised.

    (``torch.empty`` memory: random-init CoCa models would otherwise differ from run to run in
    their captioning logits.) A pretrained checkpoint loaded afterwards overwrites it.
    """
    import torch

    proj = getattr(getattr(model, "text_decoder", None), "text_projection", None)
    if isinstance(proj, torch.nn.Parameter):
        with torch.no_grad():
            torch.nn.init.normal_(proj, std=proj.shape[0] ** -0.5)


def load_model(
    name: str,
    device: Any = "cpu",
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    *,
    precision: str = "fp32",
    seed: int = 0,
) -> DualEncoder:
    """Build a registered (or open_clip) dual encoder and wrap it.

    Parameters
    ----------
    name:
        Registry name (``clip``, ``siglip``, ``coca``, ``eva02``, sandbox or
        user-registered models), an open_clip ``"ARCH/TAG"`` pair, a bare
        open_clip architecture, or a directory with ``open_clip_config.json``.
    device:
        Torch device for the model.
    pretrained:
        Load the model's weights (``True``) or build the random-init
        architecture (``False``; initialised under ``torch.manual_seed(seed)``).
    weights:
        A local weights file that replaces the registered source (open_clip
        ``.pt``/``.bin``/``.safetensors``, or big_vision ``.npz`` for SigLIP).
    precision:
        ``"fp32"``, ``"fp16"`` or ``"bf16"``.
    seed:
        Seed of the random initialisation (all weights not loaded from a file).

    Raises
    ------
    WeightsNotFoundError
        (a ``FileNotFoundError``) when weights are requested but are neither
        local nor downloadable, within seconds, naming the file looked for.
    ValueError
        On an unknown name or bad argument.
    """
    import torch
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int; got {seed!r}")
    _precision_dtype(precision)
    kind, spec = _parse_name(name)
    weights_path: Path | None = None
    if weights is not None:
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise WeightsNotFoundError(f"weights file for model {name!r} not found: {weights_path}")
    dev = torch.device(device)

    weights_id = f"random-init:seed={seed}"
    ckpt: Path | None = weights_path
    tag_cfg: dict = {}
    if spec.architecture is not None:
        arch = spec.architecture
        if spec.pretrained and open_clip.get_pretrained_cfg(arch, spec.pretrained):
            tag_cfg = open_clip.get_pretrained_cfg(arch, spec.pretrained)
        if pretrained and ckpt is None:
            if not spec.pretrained and spec.checkpoint is None:
                raise ValueError(
                    f"model {name!r} has no pretrained weights registered; use pretrained=False (random init), "
                    f"weights=PATH, or an open_clip ARCH/TAG name (tags: {open_clip.list_pretrained_tags_by_model(arch)})"
                )
            ckpt = _checkpoint_for(spec, name) or _resolve_open_clip_weights(arch, spec.pretrained, name)
        quick_gelu = spec.quick_gelu if spec.quick_gelu is not None else bool(tag_cfg.get("quick_gelu", False))
        pp = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        pp.update(spec.preprocess_cfg or {})
        if pretrained and ckpt is not None and weights_path is None and spec.pretrained and tag_cfg:
            weights_id = f"open_clip:{arch}/{spec.pretrained}"
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            model = open_clip.create_model(
                arch, pretrained=str(ckpt) if (pretrained and ckpt) else None, precision=precision, device=dev,
                force_quick_gelu=quick_gelu, force_preprocess_cfg=pp or None,
            )
            if not (pretrained and ckpt):
                _init_coca_decoder_projection(model)
        text_cfg = open_clip.get_model_config(arch)["text_cfg"]
        cfg_id = f"{arch}:quick_gelu={quick_gelu}"
    elif kind == "local-dir":
        local = spec.extra["local_dir"]
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            model = open_clip.create_model(f"local-dir:{local}", load_weights=pretrained and ckpt is None,
                                           precision=precision, device=dev)
        if pretrained and ckpt is None:
            found = open_clip.factory._find_checkpoint_in_dir(Path(local))
            if found is None:
                raise WeightsNotFoundError(f"no weights file (*.safetensors, *.bin, *.pth) in {local}")
            ckpt = Path(found)
        elif pretrained:
            open_clip.load_checkpoint(model, str(ckpt))
        text_cfg = open_clip.get_model_config(f"local-dir:{local}")["text_cfg"]
        cfg_id = f"local-dir:{local}"
    else:
        from ..provenance import config_hash

        if pretrained and ckpt is None:
            ckpt = _checkpoint_for(spec, name)
            if ckpt is None:
                raise ValueError(
                    f"model {name!r} has no checkpoint registered; use pretrained=False (random init) or weights=PATH"
                )
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            if spec.factory is not None:
                model = spec.factory()
                cfg_id = f"factory:{getattr(spec.factory, '__qualname__', repr(spec.factory))}"
                text_cfg = {"context_length": int(getattr(model, "context_length", 77)),
                            "vocab_size": int(getattr(model, "vocab_size", 49408))}
            else:
                import copy

                cfg = copy.deepcopy(dict(spec.model_cfg))
                cls = _model_class(cfg)
                model = cls(**cfg)
                vcfg = cfg["vision_cfg"]
                if vcfg.get("timm_model_name") and "image_size" in vcfg and hasattr(model.visual, "set_input_size"):
                    model.visual.set_input_size(vcfg["image_size"])  # timm towers are built at their default size
                text_cfg = dict(cfg["text_cfg"])
                cfg_id = f"cfg:{config_hash(spec.model_cfg)}"
            _init_coca_decoder_projection(model)
        if pretrained:
            open_clip.load_checkpoint(model, str(ckpt))
        model.to(device=dev, dtype=_precision_dtype(precision))
        size = getattr(model.visual, "image_size", 224)
        pp = merge_preprocess_dict(PreprocessCfg(), {"size": size, **(spec.preprocess_cfg or {})})
        open_clip.model.set_model_preprocess_cfg(model, pp)
    if pretrained and ckpt is not None and not weights_id.startswith("open_clip:"):
        weights_id = f"file:{_file_fingerprint(Path(ckpt))}"
    model.eval()
    cfg = PreprocessCfg(**open_clip.model.get_model_preprocess_cfg(model))
    preprocess = image_transform_v2(cfg, is_train=False)
    train_preprocess = image_transform_v2(cfg, is_train=True)
    tokenizer, real, warning = _make_tokenizer(dict(text_cfg), spec.tokenizer, name)
    return DualEncoder(
        name, model, preprocess, tokenizer, weights_id=weights_id, train_preprocess=train_preprocess,
        tokenizer_is_real=real, tokenizer_warning=warning, spec=spec,
        info={"kind": kind, "architecture": cfg_id, "pretrained": bool(pretrained), "checkpoint": str(ckpt) if ckpt else None,
              "precision": precision, "seed": seed},
    )


# ------------------------------------------------------------------ zero-shot
def format_templates(classnames: Sequence[str], templates: Sequence[Any]) -> list[list[str]]:
    """Prompts per class: ``templates`` hold ``"{}"`` (or ``"{c}"``) or are callables ``c -> str``."""
    if isinstance(classnames, str) or len(classnames) == 0:
        raise ValueError("classnames must be a non-empty sequence of strings")
    if isinstance(templates, str) or len(templates) == 0:
        raise ValueError("templates must be a non-empty sequence of strings with '{}' or callables")
    for i, c in enumerate(classnames):
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"classnames[{i}] must be a non-empty string; got {c!r}")
    out = []
    for c in classnames:
        prompts = []
        for j, t in enumerate(templates):
            if callable(t):
                p = t(c)
            elif isinstance(t, str) and ("{}" in t or "{c}" in t):
                p = t.replace("{c}", "{}").format(c)
            else:
                raise ValueError(f"templates[{j}] must contain '{{}}' or be callable; got {t!r}")
            if not isinstance(p, str):
                raise ValueError(f"templates[{j}] returned {type(p).__name__}, not a string")
            prompts.append(p)
        out.append(prompts)
    return out


def zero_shot_head(
    model: DualEncoder, classnames: Sequence[str], templates: Sequence[Any], batch_size: int = 256
) -> "torch.Tensor":
    """Zero-shot classifier: one unit text embedding per class (CLIP convention).

    ``w_c = normalize(mean_t normalize(f_text(template_t(c))))`` for each class
    ``c``; the rows are the class text embeddings ``T`` of the paper's
    Eq. (1)-(3). Prompts are encoded in batches of ``batch_size`` without
    gradients.

    Returns
    -------
    Tensor (C, d), float32, unit rows, on the model's device.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    prompts = format_templates(classnames, templates)
    flat = [p for ps in prompts for p in ps]
    n_t = len(templates)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(flat), batch_size):
            tokens = model.tokenize(flat[start:start + batch_size])
            chunks.append(model.encode_text(tokens, normalize=True).float())
        emb = torch.cat(chunks).reshape(len(classnames), n_t, -1)
        return F.normalize(emb.mean(dim=1), dim=-1)
