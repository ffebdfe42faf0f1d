"""Agreement of our condition mapping with labels someone else assigned (Derm1M's release).

Both label strings are parsed into node sets of the target ontology before comparison, so
"Candidiasis, tinea" and "tinea, candidiasis" agree, and a node whose own name contains a
comma ("nail diseases, nail disease") is one label, not two. "no definitive diagnosis" is the
empty set.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.text.annotator import (
    NO_CONCEPTS,
    NO_DIAGNOSIS,
    NO_LOCATION,
    NO_SYMPTOMS,
    Annotator,
    condition_variants,
)
from pipeline.text.ontology import Ontology


def label_set(ontology: Ontology, text: str) -> frozenset[str]:
    text = (text or "").strip()
    if not text or text.lower() == NO_DIAGNOSIS:
        return frozenset()
    return frozenset(ontology.parse_labels(text))


def names_condition(ontology: Ontology, caption: str, node_ids: Iterable[str]) -> bool:
    """Whether the caption names every labelled node in the target's *own* vocabulary (its
    names and their comma parts, plurals included): the rows a text-only mapper can get right
    without knowing where the caption came from."""
    low = caption.lower()
    for node_id in node_ids:
        node = ontology.nodes[node_id]
        terms = [t for t in [node.name, *node.synonyms] if t.strip()]
        pattern = "|".join(re.escape(v) for t in terms for v in condition_variants(t.strip().lower()))
        if not re.search(rf"(?<![\w-])(?:{pattern})(?![\w-])", low):
            return False
    return True


@dataclass
class AgreementReport:
    rows: int = 0
    agree: int = 0
    named_rows: int = 0
    named_agree: int = 0
    finer: int = 0
    level_total: Counter = field(default_factory=Counter)
    level_agree: Counter = field(default_factory=Counter)
    ndd_tp: int = 0
    ndd_fp: int = 0
    ndd_fn: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)   # (gold, ours, caption)

    @staticmethod
    def share(a: int, b: int) -> float:
        return a / b if b else float("nan")

    def lines(self) -> list[tuple[str, str]]:
        out = [("disease_label agreement, all rows", f"{self.agree}/{self.rows} = {self.share(self.agree, self.rows):.1%}"),
               ("  rows whose caption names the condition",
                f"{self.named_agree}/{self.named_rows} = {self.share(self.named_agree, self.named_rows):.1%}"),
               ("  counting a more specific label as agreement",
                f"{self.agree + self.finer}/{self.rows} = {self.share(self.agree + self.finer, self.rows):.1%}")]
        for level in sorted(self.level_total):
            a, t = self.level_agree[level], self.level_total[level]
            out.append((f"  level-{level} agreement", f"{a}/{t} = {self.share(a, t):.1%}"))
        p = self.share(self.ndd_tp, self.ndd_tp + self.ndd_fp)
        r = self.share(self.ndd_tp, self.ndd_tp + self.ndd_fn)
        out.append(("'no definitive diagnosis' precision / recall",
                    f"{p:.1%} ({self.ndd_tp}/{self.ndd_tp + self.ndd_fp}) / {r:.1%} ({self.ndd_tp}/{self.ndd_tp + self.ndd_fn})"))
        return out


def is_finer(ontology: Ontology, ours: frozenset[str], gold: frozenset[str]) -> bool:
    """Every label of ours is a gold label or a descendant of one, and every gold label is
    covered: "tinea capitis" for gold "tinea" (Derm1M's own labels are often the coarser)."""
    return all(any(g in ontology.path(o) for g in gold) for o in ours) and \
        all(any(g in ontology.path(o) for o in ours) for g in gold)


def level_sets(ontology: Ontology, labels: frozenset[str], level: int) -> frozenset[str]:
    return frozenset(p[level - 1] for x in labels if len(p := ontology.path(x)) >= level)


def score(annotator: Annotator, rows: Iterable[tuple[str, str]]) -> AgreementReport:
    """``rows`` are (caption, gold disease_label) in the target ontology's vocabulary.

    Level-k agreement counts rows whose gold labels reach level k: the sets of level-k
    ancestors must be equal.
    """
    onto = annotator.ontology
    rep = AgreementReport()
    for caption, gold_text in rows:
        gold = label_set(onto, gold_text)
        labels = annotator.diagnose(caption).labels
        ours = frozenset(labels)
        rep.rows += 1
        ok = ours == gold
        rep.agree += ok
        if not ok and gold and ours and is_finer(onto, ours, gold):
            rep.finer += 1
        if not ok:
            rep.misses.append((gold_text, ", ".join(onto.name(x) for x in labels) or NO_DIAGNOSIS, caption))
        if gold and names_condition(onto, caption, gold):
            rep.named_rows += 1
            rep.named_agree += ok
        if not gold:
            rep.ndd_tp += not ours
            rep.ndd_fn += bool(ours)
        else:
            rep.ndd_fp += not ours
            for level in range(1, max(onto.level(x) for x in gold) + 1):
                rep.level_total[level] += 1
                rep.level_agree[level] += level_sets(onto, ours, level) == level_sets(onto, gold, level)
    return rep


# -- concepts and metadata ---------------------------------------------------------------------

SET_COLUMNS = {"skin_concept": NO_CONCEPTS, "body_location": NO_LOCATION, "symptoms": NO_SYMPTOMS}
VALUE_COLUMNS = ("age", "gender")


def release_set(text: str, none_marker: str) -> frozenset[str]:
    """A comma-joined release cell as a set; the "No ... information" marker is the empty set."""
    text = (text or "").strip()
    if not text or text == none_marker:
        return frozenset()
    return frozenset(p.strip().lower() for p in text.split(",") if p.strip())


@dataclass
class SetScore:
    """Micro scores pool every (row, label) decision; macro-F1 averages per-label F1 over the
    labels that occur in the gold column (a label we never output scores 0)."""

    tp: Counter = field(default_factory=Counter)
    fp: Counter = field(default_factory=Counter)
    fn: Counter = field(default_factory=Counter)

    def add(self, gold: frozenset[str], ours: frozenset[str]) -> None:
        self.tp.update(gold & ours)
        self.fp.update(ours - gold)
        self.fn.update(gold - ours)

    @staticmethod
    def f1(tp: int, fp: int, fn: int) -> float:
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")

    def micro(self) -> tuple[float, float, float]:
        tp, fp, fn = sum(self.tp.values()), sum(self.fp.values()), sum(self.fn.values())
        return AgreementReport.share(tp, tp + fp), AgreementReport.share(tp, tp + fn), self.f1(tp, fp, fn)

    def macro(self) -> float:
        labels = set(self.tp) | set(self.fn)
        return sum(self.f1(self.tp[x], self.fp[x], self.fn[x]) for x in labels) / len(labels) if labels else float("nan")


@dataclass
class MetadataReport:
    rows: int = 0
    sets: dict[str, SetScore] = field(default_factory=lambda: {c: SetScore() for c in SET_COLUMNS})
    correct: Counter = field(default_factory=Counter)

    def lines(self) -> list[tuple[str, str]]:
        out = []
        for col, s in self.sets.items():
            p, r, f = s.micro()
            out.append((col, f"micro P {p:.3f}  R {r:.3f}  F1 {f:.3f}   macro-F1 {s.macro():.3f}"))
        for col in VALUE_COLUMNS:
            out.append((col, f"accuracy {self.correct[col]}/{self.rows} = {AgreementReport.share(self.correct[col], self.rows):.3f}"))
        return out


def score_metadata(annotator: Annotator, rows: Iterable[dict[str, str]]) -> MetadataReport:
    """Release columns of ours vs the gold row's (Derm1M dev rows: every column as released)."""
    rep = MetadataReport()
    for row in rows:
        ours = annotator(row["caption"]).release_row()
        rep.rows += 1
        for col, marker in SET_COLUMNS.items():
            rep.sets[col].add(release_set(row[col], marker), release_set(ours[col], marker))
        for col in VALUE_COLUMNS:
            rep.correct[col] += ours[col].strip().lower() == row[col].strip().lower()
    return rep
