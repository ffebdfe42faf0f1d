"""Phrase matching on ``spacy.blank("en")`` with negation and differential scope.

Why rule-based: the vocabularies are ours (ontology, concepts, sites, symptoms) and must run
offline at millions of captions. One tokenisation per caption feeds every PhraseMatcher.
A mention's *status* comes from cue words in its sentence (NegEx-style): ``negated`` ("no",
"without", "ruled out"), ``differential`` ("differential", "vs", "suspected", "could be"),
``context`` (a condition named as background or comparison, not as this image's finding:
"history of", "misdiagnosed as", "resembling", "X-like", "can also be present on"),
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
                ("no", "signs", "of"), ("no", "sign", "of"),
                ("excluding",), ("exclude",), ("excluded",), ("ruled", "out"), ("ruling", "out"), ("rules", "out"),
                ("spare",), ("spares",), ("spared",), ("sparing",)}
POST_NEGATION = {("ruled", "out"), ("was", "excluded"), ("were", "excluded"), ("excluded",), ("is", "unlikely"),
                 ("was", "unlikely"), ("was", "negative"), ("is", "absent"), ("are", "absent"), ("is", "not"),
                 ("was", "not"), ("are", "not")}
PRE_DIFFERENTIAL = {("differential",), ("differentials",), ("ddx",), ("versus",), ("vs",), ("vs.",), ("rule", "out"),
                    ("r", "/", "o"), ("suspected",), ("suspicious", "for"), ("suspicion", "of"), ("possible",),
                    ("possibly",), ("probable",), ("could", "be"), ("might", "be"), ("may", "be"), ("or",),
                    ("query",), ("?",), ("potentially",), ("potential",), ("likely",), ("perhaps",), ("presumed",),
                    ("presumably",), ("not", "excluding"), ("cannot", "exclude"), ("cannot", "be", "excluded"),
                    ("considered",), ("consider",), ("considering",)}
POST_DIFFERENTIAL = {("versus",), ("vs",), ("vs.",), ("or",), ("?",), ("was", "considered"), ("were", "considered"),
                     ("is", "suspected"), ("was", "suspected"), ("is", "possible"), ("is", "likely"), ("not", "excluded")}
HEDGED_EXCLUSION = {("not", "excluding"), ("cannot", "exclude")}
# Background and comparison: the condition is named, but not as what this image shows.
PRE_CONTEXT = {("history", "of"), ("misdiagnosed", "as"), ("misdiagnosed", "with"), ("mistaken", "for"),
               ("previously", "diagnosed"), ("initially", "diagnosed"), ("resembling",), ("resembles",),
               ("resemble",), ("mimicking",), ("mimics",), ("mimic",), ("simulating",), ("unlike",),
               ("can", "also"), ("may", "also"), ("can", "present"), ("can", "appear")}
POST_CONTEXT = {("-", "like"), ("like", "lesions"), ("like", "rash")}
# Words that end a cue's scope inside a sentence.
# (A colon is not a break: "Differential diagnosis: psoriasis" keeps its cue.)
SCOPE_BREAK = {"but", "however", "although", "though", "except", "which", "that", ";", "."}
WINDOW = 6
# Tokens that join the members of a list; a cue before the first member covers them all.
LIST_JOINERS = {",", "and", "or", "nor", "/", "as", "well"}


@dataclass(frozen=True)
class Mention:
    kind: str        # vocabulary name: condition, concept, site, symptom
    label: str       # canonical label
    start: int       # token offsets in the doc
    end: int
    status: str      # affirmed | negated | differential | context


@cache
def blank_nlp() -> spacy.language.Language:
    """The rule-based English tokenizer alone: no model download, and no sentencizer, because
    cue scopes stop at sentence punctuation themselves (a full sentence split costs more than
    the matching)."""
    return spacy.blank("en")


SENTENCE_END = {".", "!", "?"}
_ALL_CUES = (PRE_NEGATION, POST_NEGATION, PRE_DIFFERENTIAL, POST_DIFFERENTIAL, PRE_CONTEXT, POST_CONTEXT)
_CUE_LENGTHS = range(1, 1 + max(len(c) for cues in _ALL_CUES for c in cues))
_CUE_STARTS = {c[0] for cues in _ALL_CUES for c in cues}   # a cheap filter before the tuple lookups


_CUE_SET = set().union(*_ALL_CUES, HEDGED_EXCLUSION, {("not", "excluded")})


def _cues(words: list[str]) -> set[tuple[str, ...]]:
    """Every cue (of any kind) that occurs in ``words``: one pass, then set lookups per kind."""
    return {t for i, w in enumerate(words) if w in _CUE_STARTS for n in _CUE_LENGTHS
            if (t := tuple(words[i:i + n])) in _CUE_SET}


def mention_status(doc: Doc, start: int, end: int) -> str:
    """Negated / differential / context / affirmed from cue words shortly before and after the
    mention (tokens are read only inside the window: building a whole lowercased token list
    per caption costs more than the matching).

    The window stops at a scope break ("but", "which", ";") or the end of the sentence; a "?"
    right before the mention is the query notation "?psoriasis" and counts as a cue.
    """
    before: list[str] = []
    for i in range(start - 1, max(-1, start - 1 - WINDOW), -1):
        word = doc[i].lower_
        if word in SCOPE_BREAK or (word in SENTENCE_END and not (word == "?" and i == start - 1)):
            break
        before.append(word)
    before.reverse()
    after: list[str] = []
    for i in range(end, min(len(doc), end + 3)):
        word = doc[i].lower_
        if word in SCOPE_BREAK or word in SENTENCE_END:
            if word == "?":
                after.append(word)
            break
        after.append(word)
    if before[-2:] == ["non", "-"] or before[-1:] == ["non"]:
        return "negated"   # "non-scaly", "non itchy": the prefix negates only the word it is glued to
    if after[:2] == ["-", "like"]:
        return "context"   # "psoriasis-like plaques": a comparison glued to the name
    pre, post = _cues(before), _cues(after)
    if not pre and not post:
        return "affirmed"
    hedged_exclusion = not pre.isdisjoint(HEDGED_EXCLUSION) or ("not", "excluded") in post
    if (not pre.isdisjoint(PRE_NEGATION) or not post.isdisjoint(POST_NEGATION)) and not hedged_exclusion:
        return "negated"   # ("not excluding melanoma" keeps melanoma open: a differential)
    if not pre.isdisjoint(PRE_DIFFERENTIAL) or not post.isdisjoint(POST_DIFFERENTIAL):
        return "differential"
    if not pre.isdisjoint(PRE_CONTEXT) or not post.isdisjoint(POST_CONTEXT):
        return "context"
    return "affirmed"


def _list_scope(doc: Doc, found: list[Mention]) -> list[Mention]:
    """A cue scopes over a whole list of mentions joined by commas, "and", "or": forwards for a
    cue before the list ("possible diagnoses include lichen planus and neurodermatitis", "no
    scale, crust or erosion"), backwards for one after it ("tinea and candidiasis were
    considered"). Only affirmed members take the status of their neighbour."""
    out = list(found)
    if all(m.status == "affirmed" for m in out):
        return out

    def joined(a: Mention, b: Mention) -> bool:
        return a.end <= b.start and all(t.lower_ in LIST_JOINERS for t in doc[a.end:b.start])

    for order in (range(1, len(out)), range(len(out) - 2, -1, -1)):
        for i in order:
            j = i - 1 if order.step == 1 else i + 1
            near, m = out[j], out[i]
            if m.status == "affirmed" and near.status != "affirmed" and joined(*sorted((near, m), key=lambda x: x.start)):
                out[i] = Mention(m.kind, m.label, m.start, m.end, near.status)
    return out


class VocabularyMatcher:
    """PhraseMatchers for several vocabularies over one shared tokenisation."""

    def __init__(self, overlap_groups: dict[str, str] | None = None, nested: set[str] | None = None) -> None:
        self.nlp = blank_nlp()
        self.lower = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        self.exact = PhraseMatcher(self.nlp.vocab, attr="ORTH")
        self.labels: dict[str, tuple[str, str]] = {}   # match key -> (kind, label)
        # Kinds whose overlapping matches compete (longest wins), e.g. {"sign": "condition"}:
        # "allergic reaction to an irritant" (a sign) beats the condition "allergic reaction".
        self.groups = overlap_groups or {}
        # Kinds whose nested matches are kept when they carry a different label.
        self.nested = nested or set()

    def add(self, kind: str, label: str, phrases: list[str], case_sensitive: bool = False) -> None:
        key = f"{kind}\x1f{label}"
        self.labels[key] = (kind, label)
        docs = [self.nlp.make_doc(p) for p in dict.fromkeys(phrases) if p.strip()]
        (self.exact if case_sensitive else self.lower).add(key, docs)

    def __call__(self, text: str) -> tuple[Doc, list[Mention]]:
        doc = self.nlp.make_doc(text)
        spans: dict[str, list[Span]] = {}
        for matcher in (self.lower, self.exact):
            for key_id, start, end in matcher(doc):
                key = self.nlp.vocab.strings[key_id]
                kind = self.labels[key][0]
                spans.setdefault(self.groups.get(kind, kind), []).append(Span(doc, start, end, label=key))
        mentions = []
        for group, found in spans.items():
            kept = filter_spans(found)
            if group in self.nested:
                # Compound phrases carry each concept they contain: "white patches" is
                # white(hypopigmentation) and patch. Keep a nested match with another label.
                outer = {(s.start, s.end): s.label_ for s in kept}
                kept += [s for s in found if (s.start, s.end) not in outer and s.label_ not in
                         {lab for (a, b), lab in outer.items() if a <= s.start and s.end <= b}]
            found_mentions = [Mention(*self.labels[s.label_], s.start, s.end, mention_status(doc, s.start, s.end))
                              for s in sorted(kept, key=lambda s: s.start)]
            mentions.extend(_list_scope(doc, found_mentions))
        mentions.sort(key=lambda m: (m.start, m.kind))
        return doc, mentions
