"""The sandbox's word-level tokenizer (context length 16).

Why not open_clip's CLIP BPE tokenizer: its 49,408-token vocabulary would make
the token embedding (6.3M of a 7.8M-parameter sandbox model) and, above all,
CoCa's captioning head (a 49,408-way softmax per caption token) dominate the
CPU cost of pretraining. The sandbox world speaks a closed vocabulary of a few
hundred words, so a word-level vocabulary is exact for it.

Rules (the same at pretraining and at zero-shot time):

* text is lower-cased and split into words ``[a-z]+`` and single digits
  ``[0-9]``; punctuation and other characters are dropped;
* ids: ``0`` pad, ``1`` unknown, ``2`` start-of-text, then the known words
  (sorted), then ``n_buckets`` hashed out-of-vocabulary buckets (CRC-32 of the
  word, so that unknown class names stay distinguishable), and the
  end-of-text token last: it has the largest id, as open_clip's ``argmax``
  text pooling expects;
* every text becomes ``[sot] + words[: context_length - 2] + [eot]`` padded
  with ``0`` to ``context_length``.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Mapping, Sequence

__all__ = ["SandboxTokenizer", "CONTEXT_LENGTH", "split_words"]

CONTEXT_LENGTH = 16
_WORD_RE = re.compile(r"[a-z]+|[0-9]")


def split_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into the tokenizer's words."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str; got {type(text).__name__}")
    return _WORD_RE.findall(text.lower())


class SandboxTokenizer:
    """Callable ``list[str] -> LongTensor (B, context_length)``, like open_clip's tokenizers.

    Parameters
    ----------
    words:
        The known vocabulary (duplicates are removed, order is sorted).
    context_length:
        Tokens per text including start and end tokens (>= 3).
    n_buckets:
        Number of hashed ids for out-of-vocabulary words (0: map them to unknown).
    """

    pad_token_id = 0
    unk_token_id = 1
    sot_token_id = 2

    def __init__(self, words: Sequence[str], context_length: int = CONTEXT_LENGTH, n_buckets: int = 32) -> None:
        if not isinstance(context_length, int) or context_length < 3:
            raise ValueError(f"context_length must be an int >= 3; got {context_length!r}")
        if not isinstance(n_buckets, int) or n_buckets < 0:
            raise ValueError(f"n_buckets must be a non-negative int; got {n_buckets!r}")
        clean = sorted(set(words))
        bad = [w for w in clean if not isinstance(w, str) or split_words(w) != [w]]
        if bad:
            raise ValueError(f"words must be single lower-case words or digits; got {bad[:5]}")
        self.words = clean
        self.context_length = context_length
        self.n_buckets = n_buckets
        self._index = {w: i + 3 for i, w in enumerate(clean)}
        self._bucket0 = 3 + len(clean)
        self.eot_token_id = self._bucket0 + n_buckets
        self.vocab_size = self.eot_token_id + 1

    def word_id(self, word: str) -> int:
        """Id of one word (a bucket id or ``unk`` when out of vocabulary)."""
        i = self._index.get(word)
        if i is not None:
            return i
        if self.n_buckets == 0:
            return self.unk_token_id
        return self._bucket0 + zlib.crc32(word.encode("utf-8")) % self.n_buckets

    def encode(self, text: str) -> list[int]:
        """Word ids of ``text`` (no start/end tokens, no truncation)."""
        return [self.word_id(w) for w in split_words(text)]

    def n_tokens(self, text: str) -> int:
        """Tokens ``text`` needs including start and end tokens (before truncation)."""
        return len(split_words(text)) + 2

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> Any:
        import torch

        if isinstance(texts, str):
            texts = [texts]
        ctx = self.context_length if context_length is None else int(context_length)
        if ctx < 3:
            raise ValueError(f"context_length must be >= 3; got {ctx}")
        out = torch.zeros((len(texts), ctx), dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id] + self.encode(text)[: ctx - 2] + [self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (stored in checkpoints)."""
        return {"words": list(self.words), "context_length": self.context_length, "n_buckets": self.n_buckets}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SandboxTokenizer":
        """Rebuild a tokenizer from :meth:`state`."""
        return cls(list(state["words"]), int(state["context_length"]), int(state["n_buckets"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SandboxTokenizer) and self.state() == other.state()

    def __repr__(self) -> str:
        return f"SandboxTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"
