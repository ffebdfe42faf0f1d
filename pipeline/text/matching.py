"""Phrase matching on ``spacy.blank("en")`` with negation and differential scope.

Why rule-based: the vocabularies are ours (ontology, concepts, sites, symptoms) and must run
offline at millions of captions. One tokenisation per caption feeds every PhraseMatcher.
A mention's *status* comes from cue words in its sentence (NegEx-style): ``negated`` ("no",
"without", "ruled out"), ``differential`` ("differential", "vs", "suspected", "could be"),
else ``affirmed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import spacy
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

PRE_NEGATION = {("no",), ("not",), ("without",), ("denies",), ("denied",), ("negative", "for"), ("absence", "of"),
                ("absent",), ("free", "of"), ("never",), ("nor",), ("neither",), ("no", "evidence", "of"),
                ("no", "signs", "of"), ("no", "sign", "of")}
POST_NEGATION = {("ruled", "out"), ("was", "excluded"), ("were", "excluded"), ("excluded",), ("is", "unlikely"),
                 ("was", "unlikely"), ("was", "negative"), ("is", "absent"), ("are", "absent"), ("is", "not"),
                 ("was", "not"), ("are", "not")}
PRE_DIFFERENTIAL = {("differential",), ("differentials",), ("ddx",), ("versus",), ("vs",), ("vs.",), ("rule", "out"),
                    ("r", "/", "o"), ("suspected",), ("suspicious", "for"), ("suspicion", "of"), ("possible",),
                    ("possibly",), ("probable",), ("could", "be"), ("might", "be"), ("may", "be"), ("or",),
                    ("query",), ("?",)}
POST_DIFFERENTIAL = {("versus",), ("vs",), ("vs.",), ("or",), ("?",), ("was", "considered"), ("is", "suspected")}
# Words that end a cue's scope inside a sentence.
# (A colon is not a break: "Differential diagnosis: psoriasis" keeps its cue.)
SCOPE_BREAK = {"but", "however", "although", "though", "except", "which", "that", ";", "."}
WINDOW = 6


@dataclass(frozen=True)
class Mention:
    kind: str        # vocabulary name: condition, concept, site, symptom
    label: str       # canonical label
    start: int       # token offsets in the doc
    end: int
    status: str      # affirmed | negated | differential


@cache
def blank_nlp() -> spacy.language.Language:
    """Tokenizer plus rule-based sentence splitter; no model download needed."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def _has_cue(words: list[str], cues: set[tuple[str, ...]]) -> bool:
    for i in range(len(words)):
        for cue in cues:
            if tuple(words[i:i + len(cue)]) == cue:
                return True
    return False


def mention_status(doc: Doc, start: int, end: int) -> str:
    """Negated / differential / affirmed from cue words before and after the mention in its sentence."""
    sent = doc[start].sent
    before = []
    for tok in reversed(doc[max(sent.start, start - WINDOW):start]):
        if tok.lower_ in SCOPE_BREAK:
            break
        before.append(tok.lower_)
    before.reverse()
    after = []
    for tok in doc[end:min(sent.end, end + 3)]:
        if tok.lower_ in SCOPE_BREAK - {"."}:
            break
        after.append(tok.lower_)
    if _has_cue(before, PRE_NEGATION) or _has_cue(after, POST_NEGATION):
        return "negated"
    if _has_cue(before, PRE_DIFFERENTIAL) or _has_cue(after, POST_DIFFERENTIAL):
        return "differential"
    return "affirmed"


class VocabularyMatcher:
    """PhraseMatchers for several vocabularies over one shared tokenisation."""

    def __init__(self) -> None:
        self.nlp = blank_nlp()
        self.lower = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        self.exact = PhraseMatcher(self.nlp.vocab, attr="ORTH")
        self.labels: dict[str, tuple[str, str]] = {}   # match key -> (kind, label)

    def add(self, kind: str, label: str, phrases: list[str], case_sensitive: bool = False) -> None:
        key = f"{kind}\x1f{label}"
        self.labels[key] = (kind, label)
        docs = [self.nlp.make_doc(p) for p in dict.fromkeys(phrases) if p.strip()]
        (self.exact if case_sensitive else self.lower).add(key, docs)

    def __call__(self, text: str) -> tuple[Doc, list[Mention]]:
        doc = self.nlp(text)
        spans: dict[str, list[Span]] = {}
        for matcher in (self.lower, self.exact):
            for key_id, start, end in matcher(doc):
                key = self.nlp.vocab.strings[key_id]
                kind = self.labels[key][0]
                spans.setdefault(kind, []).append(Span(doc, start, end, label=key))
        mentions = []
        for kind, found in spans.items():
            for span in sorted(filter_spans(found), key=lambda s: s.start):
                label = self.labels[span.label_][1]
                mentions.append(Mention(kind, label, span.start, span.end, mention_status(doc, span.start, span.end)))
        mentions.sort(key=lambda m: (m.start, m.kind))
        return doc, mentions
