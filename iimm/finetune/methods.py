"""The paper's fine-tuning techniques: which parameters of a dual encoder train.

``prepare(model, method, **options)`` edits a loaded :class:`iimm.models.DualEncoder`
in place so that exactly the parameters of ``method`` require gradients and
everything else is frozen (Section 4.1 of the paper, "Models and fine-tuning
methods"):

``full``
    every parameter of both towers (the image tower ``visual.*`` and the text
    tower: ``text.*``, or for open_clip's ``CLIP`` class ``transformer.*``,
    ``token_embedding``, ``positional_embedding``, ``ln_final``,
    ``text_projection``). ``logit_scale``/``logit_bias`` and CoCa's captioning
    decoder are not part of the towers and stay frozen.
``bitfit``
    bias terms only (Ben Zaken et al., 2022): every tower parameter whose name
    ends in ``bias`` (attention in/out projection, MLP and LayerNorm biases).
``attention``
    attention-weight tuning: only the in-projection weights of the transformer
    blocks of both towers (``attn.in_proj_weight`` of open_clip blocks, timm's
    ``attn.qkv.weight`` or ``attn.{q,k,v}_proj.weight``): 3 d^2 per block.
``lora``
    LoRA (Hu et al., 2022) through ``peft`` on the attention projections of
    every transformer block of both towers: the in-projection (d -> 3d) and
    the out-projection (d -> d); with ``mlp=True`` also the MLP linears. peft
    supports ``nn.MultiheadAttention`` only by merging the LoRA delta into the
    frozen weights before every forward and subtracting it after, which leaves
    float round-off in the frozen weights at every step. So each open_clip
    ``nn.MultiheadAttention`` of a tower block is first swapped for
    :class:`LinearProjAttention`, the same attention whose in-projection is an
    ``nn.Linear`` (``attn.in_proj``), and peft wraps the plain ``nn.Linear``
    layers ``attn.in_proj`` and ``attn.out_proj`` (timm towers: ``attn.qkv`` or
    ``attn.{q,k,v}_proj``, and ``attn.proj``). LoRA adds r (d_in + d_out)
    parameters per target. :func:`lora_merged` merges for evaluation.
``adapter``
    CLIP-Adapter (Gao et al., 2021): a bottleneck MLP with reduction factor
    ``reduction`` on each tower's output, mixed with residual ratio 0.2; both
    towers frozen (see :mod:`iimm.finetune.adapter`).
``probe``
    a linear classifier on frozen image features (no text head: evaluated in
    domain only).

``train_blocks`` (bitfit, attention, lora) restricts training to transformer
blocks: an int ``k`` keeps the first ``k`` blocks of each tower, a sequence
keeps those block indices.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "METHODS",
    "prepare",
    "method_of",
    "tower_of",
    "block_index",
    "count_parameters",
    "trainable_parameter_names",
    "text_tower_trains",
    "lora_targets",
    "lora_merged",
    "merge_lora",
    "LinearProjAttention",
]

METHODS: tuple[str, ...] = ("full", "bitfit", "attention", "lora", "adapter", "probe")

# options accepted by each method (with defaults); anything else is an error
_OPTIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "bitfit": {"train_blocks": None},
    "attention": {"train_blocks": None},
    "lora": {"rank": 8, "alpha": None, "dropout": 0.0, "mlp": False, "train_blocks": None, "seed": 0},
    "adapter": {"reduction": 4, "ratio": 0.2, "towers": ("image", "text"), "seed": 0},
    "probe": {"num_classes": None, "seed": 0},
}

# top-level attributes of open_clip's CLIP class that form its text tower
_CLIP_TEXT_ATTRS = frozenset({"transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection"})
# transformer blocks inside a tower (open_clip Transformer, timm ViT/EVA trunk, HF encoders)
_BLOCK_RE = re.compile(r"^(?:visual\.|text\.)?(?:transformer\.resblocks|trunk\.blocks|transformer\.encoder\.layer)\.(\d+)\.")
# attention in-projection weights
_IN_PROJ_RE = re.compile(r"\.attn\.(?:in_proj_weight|qkv\.weight|[qkv]_proj\.weight)$")

STATE_ATTR = "iimm_finetune"


# ------------------------------------------------------------------ naming
def tower_of(name: str) -> str | None:
    """``"image"``, ``"text"`` or ``None`` for a parameter/module name of an open_clip model."""
    head = name.split(".", 1)[0]
    if head == "visual":
        return "image"
    if head == "text" or head in _CLIP_TEXT_ATTRS:
        return "text"
    return None


def block_index(name: str) -> int | None:
    """Index of the transformer block holding ``name`` within its tower, or ``None``."""
    m = _BLOCK_RE.match(name)
    return int(m.group(1)) if m else None


def _block_filter(train_blocks: Any) -> Callable[[int], bool]:
    """Predicate on block indices from the ``train_blocks`` option."""
    if train_blocks is None:
        return lambda i: True
    if isinstance(train_blocks, bool):
        raise ValueError(f"train_blocks must be an int >= 1 or a sequence of block indices; got {train_blocks!r}")
    if isinstance(train_blocks, int):
        if train_blocks < 1:
            raise ValueError(f"train_blocks must be >= 1 (the first k blocks of each tower); got {train_blocks}")
        return lambda i: i < train_blocks
    try:
        keep = {int(b) for b in train_blocks}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"train_blocks must be an int or a sequence of ints; got {train_blocks!r}") from exc
    if not keep or min(keep) < 0:
        raise ValueError(f"train_blocks must be non-empty block indices >= 0; got {train_blocks!r}")
    return lambda i: i in keep


def _module(model: Any) -> "nn.Module":
    module = getattr(model, "model", None)
    if module is None or not hasattr(module, "named_parameters"):
        raise ValueError(f"model must be an iimm DualEncoder (with .model, an open_clip nn.Module); got {type(model).__name__}")
    return module


def method_of(model: Any) -> str:
    """The fine-tuning method ``model`` was prepared with, or ``"zeroshot"``."""
    state = getattr(_module(model), STATE_ATTR, None)
    return state["method"] if state else "zeroshot"


def finetune_state(model: Any) -> dict | None:
    """The record :func:`prepare` attached to the model (method, options, targets), or ``None``."""
    return getattr(_module(model), STATE_ATTR, None)


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter entries of the model (adapters and LoRA included)."""
    trainable = total = 0
    for p in _module(model).parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def trainable_parameter_names(model: Any) -> list[str]:
    """Names of the parameters that require gradients, in module order."""
    return [n for n, p in _module(model).named_parameters() if p.requires_grad]


def text_tower_trains(model: Any) -> bool:
    """Whether any parameter feeding the class text embeddings trains (text tower or text adapter)."""
    for n, p in _module(model).named_parameters():
        if p.requires_grad and (tower_of(n) == "text" or n.startswith("text_adapter.")):
            return True
    return False


# --------------------------------------------------------------- attention
class LinearProjAttention(nn.Module):
    """``nn.MultiheadAttention`` with the in-projection as an ``nn.Linear`` (``in_proj``).

    Computes exactly the attention of the module it replaces
    (``softmax(q k^T / sqrt(d_h) + mask) v`` per head, then ``out_proj``),
    called as open_clip's blocks call ``nn.MultiheadAttention``. Built by
    :meth:`from_mha` with copies of the original weights; it exists so
    that peft's standard LoRA ``Linear`` layer can wrap the in-projection.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, batch_first: bool = True, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.batch_first = batch_first
        self.dropout = dropout
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_mha(cls, mha: "nn.MultiheadAttention") -> "LinearProjAttention":
        if not mha._qkv_same_embed_dim:
            raise ValueError("LoRA: attention with separate key/value dimensions (kdim/vdim) is not supported")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("LoRA: attention with bias_k/bias_v or add_zero_attn is not supported")
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, bias=bias, batch_first=mha.batch_first, dropout=mha.dropout)
        new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        with torch.no_grad():
            new.in_proj.weight.copy_(mha.in_proj_weight)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if bias:
                new.in_proj.bias.copy_(mha.in_proj_bias)
                new.out_proj.bias.copy_(mha.out_proj.bias)
        new.train(mha.training)
        return new

    def forward(
        self,
        query: "torch.Tensor",
        key: "torch.Tensor | None" = None,
        value: "torch.Tensor | None" = None,
        key_padding_mask: "torch.Tensor | None" = None,
        need_weights: bool = False,
        attn_mask: "torch.Tensor | None" = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple["torch.Tensor", None]:
        if need_weights:
            raise ValueError("LinearProjAttention does not return attention weights (need_weights=True)")
        key = query if key is None else key
        value = key if value is None else value
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        d, h = self.embed_dim, self.num_heads
        if key is query and value is query:
            q, k, v = self.in_proj(query).chunk(3, dim=-1)
        else:  # cross attention: each input through its third of the projection
            q = self.in_proj(query)[..., :d]
            k = self.in_proj(key)[..., d:2 * d]
            v = self.in_proj(value)[..., 2 * d:]
        n, lq, ls = q.shape[0], q.shape[1], k.shape[1]
        q = q.reshape(n, lq, h, d // h).transpose(1, 2)
        k = k.reshape(n, ls, h, d // h).transpose(1, 2)
        v = v.reshape(n, ls, h, d // h).transpose(1, 2)
        mask = None
        if attn_mask is not None:
            mask = attn_mask
            if mask.dtype == torch.bool:  # MHA convention: True = not allowed
                mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(mask, float("-inf"))
            mask = mask.to(q.dtype)
            if mask.ndim == 3:
                mask = mask.reshape(n, h, lq, ls)
        if key_padding_mask is not None:
            kpm = key_padding_mask
            if kpm.dtype == torch.bool:
                kpm = torch.zeros(kpm.shape, dtype=q.dtype, device=q.device).masked_fill(kpm, float("-inf"))
            kpm = kpm.to(q.dtype).reshape(n, 1, 1, ls)
            mask = kpm if mask is None else mask + kpm
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=bool(is_causal and mask is None),
        )
        out = self.out_proj(out.transpose(1, 2).reshape(n, lq, d))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None




# -------------------------------------------------------------------- LoRA
def _set_submodule(root: "nn.Module", name: str, new: "nn.Module") -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _tower_blocks(module: "nn.Module", keep) -> Iterator[tuple[str, "nn.Module"]]:
    """(name, module) of the transformer blocks of both towers kept by ``keep``."""
    for name, sub in module.named_modules():
        if tower_of(name) is None:
            continue
        m = _BLOCK_RE.match(name + ".")
        if m and m.end() == len(name) + 1 and keep(int(m.group(1))):
            yield name, sub


def lora_targets(module: "nn.Module", *, mlp: bool = False, train_blocks: Any = None, swap: bool = True) -> list[str]:
    """Names of the ``nn.Linear`` layers LoRA wraps in ``module`` (an open_clip model).

    With ``swap`` each tower block's ``nn.MultiheadAttention`` is replaced by an
    equivalent :class:`LinearProjAttention` first (in place), so the targets
    are ``<block>.attn.in_proj`` and ``<block>.attn.out_proj``; timm blocks
    give ``attn.qkv`` (or ``attn.q_proj/k_proj/v_proj``) and ``attn.proj``.
    ``mlp`` adds every ``nn.Linear`` child of ``<block>.mlp``.
    """
    attn_cls = LinearProjAttention
    keep = _block_filter(train_blocks)
    targets: list[str] = []
    blocks = list(_tower_blocks(module, keep))
    if not blocks:
        raise ValueError("LoRA: no transformer blocks found in the towers of this model")
    for bname, block in blocks:
        attn = getattr(block, "attn", None)
        if isinstance(attn, nn.MultiheadAttention):
            if not swap:
                raise ValueError(f"LoRA: {bname}.attn is an nn.MultiheadAttention; call with swap=True")
            block.attn = attn_cls.from_mha(attn)
            attn = block.attn
        if isinstance(attn, attn_cls):
            targets += [f"{bname}.attn.in_proj", f"{bname}.attn.out_proj"]
        elif attn is not None and isinstance(getattr(attn, "qkv", None), nn.Linear):
            targets.append(f"{bname}.attn.qkv")
            if isinstance(getattr(attn, "proj", None), nn.Linear):
                targets.append(f"{bname}.attn.proj")
        elif attn is not None and all(isinstance(getattr(attn, p, None), nn.Linear) for p in ("q_proj", "k_proj", "v_proj")):
            targets += [f"{bname}.attn.{p}" for p in ("q_proj", "k_proj", "v_proj")]
            if isinstance(getattr(attn, "proj", None), nn.Linear):
                targets.append(f"{bname}.attn.proj")
        else:
            raise ValueError(
                f"LoRA: the attention module {bname}.attn ({type(attn).__name__}) has no nn.Linear projections "
                "that peft can wrap"
            )
        if mlp:
            mlp_mod = getattr(block, "mlp", None)
            linears = [c for c, m in (mlp_mod.named_children() if mlp_mod is not None else []) if isinstance(m, nn.Linear)]
            if not linears:
                raise ValueError(f"LoRA: mlp=True but {bname}.mlp has no nn.Linear layers")
            targets += [f"{bname}.mlp.{c}" for c in linears]
    return targets


def _lora_layers(module: "nn.Module") -> list["nn.Module"]:
    from peft.tuners.lora import LoraLayer

    return [m for m in module.modules() if isinstance(m, LoraLayer)]


class lora_merged:
    """Context manager: LoRA deltas merged into the base weights, exactly restored on exit.

    Inside, each LoRA layer computes ``W + (alpha / r) B A`` as one matrix
    (peft's ``merge``); on exit the adapters are unmerged and the frozen base
    weights are restored bit for bit from a copy (unmerging alone leaves float
    round-off). A model without LoRA passes through unchanged.
    """

    def __init__(self, model: Any) -> None:
        self.module = _module(model)
        self._saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> Any:
        layers = _lora_layers(self.module)
        with torch.no_grad():
            for layer in layers:
                base = layer.get_base_layer()
                self._saved.append((layer, base.weight.detach().clone()))
                layer.merge()
        return self.module

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for layer, weight in self._saved:
                if layer.merged:
                    layer.unmerge()
                layer.get_base_layer().weight.copy_(weight)
        self._saved.clear()


def merge_lora(model: Any) -> Any:
    """Merge LoRA into the base weights for good and remove the peft layers (``merge_and_unload``).

    The model keeps the merged weights as plain ``nn.Linear`` layers; nothing
    trains any more (call :func:`prepare` on a fresh model to train again).
    """
    from peft.tuners.lora import LoraLayer

    module = _module(model)
    with torch.no_grad():
        for name, sub in list(module.named_modules()):
            if isinstance(sub, LoraLayer):
                sub.merge()
                _set_submodule(module, name, sub.get_base_layer())
    for p in module.parameters():
        p.requires_grad_(False)
    state = getattr(module, STATE_ATTR, None)
    if state is not None:
        state["merged"] = True
    return model


# ------------------------------------------------------------------ prepare
def _check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(method, str) or method not in _OPTIONS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")
    allowed = _OPTIONS[method]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method {method!r} takes options {sorted(allowed) or 'none'}; got unknown option(s) {unknown}")
    out = {**allowed, **options}
    for key in ("rank", "reduction"):
        if key in out:
            v = out[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{key} must be a positive int; got {v!r}")
    if method == "lora":
        if out["alpha"] is None:
            out["alpha"] = out["rank"]
        if not isinstance(out["alpha"], (int, float)) or isinstance(out["alpha"], bool) or out["alpha"] <= 0:
            raise ValueError(f"alpha must be a positive number; got {out['alpha']!r}")
        if not 0.0 <= float(out["dropout"]) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {out['dropout']!r}")
    if method == "adapter":
        if not 0.0 <= float(out["ratio"]) <= 1.0:
            raise ValueError(f"ratio must lie in [0, 1]; got {out['ratio']!r}")
        towers = tuple(out["towers"]) if not isinstance(out["towers"], str) else (out["towers"],)
        if not towers or set(towers) - {"image", "text"}:
            raise ValueError(f"towers must be a non-empty subset of ('image', 'text'); got {out['towers']!r}")
        out["towers"] = towers
    if method == "probe" and out["num_classes"] is not None:
        v = out["num_classes"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"num_classes must be an int >= 2; got {v!r}")
    if "train_blocks" in out:
        _block_filter(out["train_blocks"])  # validates
        if out["train_blocks"] is not None and not isinstance(out["train_blocks"], int):
            out["train_blocks"] = sorted({int(b) for b in out["train_blocks"]})
    return out


def _select(module: "nn.Module", method: str, opts: dict[str, Any]) -> list[str]:
    """Names of the existing parameters that train for full / bitfit / attention."""
    keep = _block_filter(opts.get("train_blocks"))
    names = []
    for n, _ in module.named_parameters():
        if tower_of(n) is None:
            continue
        if method == "full":
            names.append(n)
        elif method == "bitfit":
            if n.rsplit(".", 1)[-1].endswith("bias"):
                b = block_index(n)
                if opts.get("train_blocks") is None or (b is not None and keep(b)):
                    names.append(n)
        elif method == "attention":
            b = block_index(n)
            if b is not None and keep(b) and _IN_PROJ_RE.search(n):
                names.append(n)
    return names


def prepare(model: Any, method: str, **options: Any) -> Any:
    """Make ``model`` ready to fine-tune with ``method``; freeze everything else.

    Parameters
    ----------
    model:
        A freshly loaded :class:`iimm.models.DualEncoder`; edited in place.
    method:
        One of :data:`METHODS` (see the module docstring).
    **options:
        ``train_blocks`` (bitfit, attention, lora): first ``k`` blocks (int) or
        block indices (sequence) of each tower. ``rank``, ``alpha`` (default
        ``rank``, so the LoRA scaling ``alpha / rank`` is 1), ``dropout``,
        ``mlp`` (lora). ``reduction`` (default 4), ``ratio`` (0.2), ``towers``
        (adapter). ``num_classes`` (probe; otherwise :func:`~iimm.finetune.train`
        builds the head from the task). ``seed`` (lora, adapter, probe) seeds
        the initialisation of the new weights.

    Returns
    -------
    The same wrapper, with ``model.model.iimm_finetune`` recording the method,
    the options and the trained parameter names.

    Raises
    ------
    ValueError
        Unknown method or option, bad option value, a model prepared before,
        or an architecture the method cannot edit.
    """
    module = _module(model)
    opts = _check_options(method, options)
    if getattr(module, STATE_ATTR, None):
        raise ValueError(
            f"model was already prepared with method {getattr(module, STATE_ATTR)['method']!r}; load a fresh model"
        )
    module.requires_grad_(False)
    seed = opts.get("seed", 0)
    if method in ("full", "bitfit", "attention"):
        names = _select(module, method, opts)
        if not names:
            raise ValueError(f"method {method!r} found no parameters to train in {type(module).__name__}")
        params = dict(module.named_parameters())
        for n in names:
            params[n].requires_grad_(True)
        targets = names
    elif method == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        targets = lora_targets(module, mlp=opts["mlp"], train_blocks=opts["train_blocks"])
        config = LoraConfig(
            r=opts["rank"],
            lora_alpha=opts["alpha"],
            lora_dropout=float(opts["dropout"]),
            target_modules="^(?:" + "|".join(re.escape(t) for t in targets) + ")$",
            bias="none",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inject_adapter_in_model(config, module)
        for n, p in module.named_parameters():
            p.requires_grad_(".lora_A." in n or ".lora_B." in n)
    elif method == "adapter":
        from .adapter import attach_adapters

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            attach_adapters(model, reduction=opts["reduction"], ratio=float(opts["ratio"]), towers=opts["towers"])
        targets = [n for n, p in module.named_parameters() if p.requires_grad]
    else:  # probe
        targets = []
        if opts["num_classes"] is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                attach_probe(model, opts["num_classes"])
            targets = [n for n, p in module.named_parameters() if p.requires_grad]
    setattr(module, STATE_ATTR, {"method": method, "options": opts, "targets": list(targets)})
    return model


def attach_probe(model: Any, num_classes: int) -> "nn.Module":
    """Add (or replace) the linear probe ``model.model.probe_head``: ``nn.Linear(d, num_classes)``.

    Only the probe trains; its input is the unit-normalised image embedding.
    """
    module = _module(model)
    d = int(model.embed_dim)
    head = nn.Linear(d, int(num_classes)).to(device=model.device, dtype=model.dtype)
    module.probe_head = head
    head.requires_grad_(True)
    return head
