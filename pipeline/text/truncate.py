"""Fit a caption into the text encoder's context: cut at a sentence, else a clause, else a word.

Counting uses the training tokenizer itself (open_clip's BPE, shipped with the package), so
"fits" means exactly what the text tower will see: ``len(encode(text)) + 2 <= context_length``
(start and end tokens). A caption is never cut inside a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+(?=\S)|\s+(?=[-\u2013\u2014]\s)")


@dataclass(frozen=True)
class Truncation:
    text: str
    n_tokens: int          # tokens of the full caption, start/end included
    n_tokens_kept: int     # tokens of the kept text, start/end included
    cut: str               # none | sentence | clause | word


@cache
def _tokenizer(name: str):
    import open_clip

    return open_clip.get_tokenizer(name)


class CaptionTruncator:
    """Truncates captions for one tokenizer and context length."""

    def __init__(self, tokenizer_name: str = "ViT-B-16", context_length: int = 77) -> None:
        self.encode = _tokenizer(tokenizer_name).encode
        self.budget = context_length - 2

    def count(self, text: str) -> int:
        return len(self.encode(text)) + 2

    def __call__(self, caption: str) -> Truncation:
        n = self.count(caption)
        if n - 2 <= self.budget:
            return Truncation(caption, n, n, "none")
        for cut, pieces in (("sentence", _SENTENCE_END.split(caption)), ("clause", None)):
            if cut == "clause":
                pieces = _CLAUSE_END.split(_SENTENCE_END.split(caption)[0])
            kept = self._longest_prefix(pieces, " ")
            if kept is not None:
                text = kept if cut == "sentence" else kept.rstrip(",;:- \u2013\u2014")
                return Truncation(text, n, self.count(text), cut)
        kept = self._longest_prefix(caption.split(), " ") or ""
        return Truncation(kept, n, self.count(kept), "word")

    def _longest_prefix(self, pieces: list[str], sep: str) -> str | None:
        """Longest join of leading pieces that fits (binary search: token count grows with prefix)."""
        lo, hi = 0, len(pieces)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self.encode(sep.join(pieces[:mid]))) <= self.budget:
                lo = mid
            else:
                hi = mid - 1
        return sep.join(pieces[:lo]) if lo > 0 else None
