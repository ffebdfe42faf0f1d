"""How closely our caption annotation agrees with Derm1M's released labels, and how fast it runs.

    python bench/annotation_agreement.py                 # every section
    python bench/annotation_agreement.py --only conditions dermnet
    python bench/annotation_agreement.py --only throughput --captions 1000000 --workers 2
    python bench/annotation_agreement.py --only stage --captions 1000000   # full annotate stage

Sections (each prints a table; figures go in issue notes, not in unit tests):
  conditions   disease_label agreement on ../shared/reference/derm1m/dev_rows.csv with Derm1M's
               own ontology.json as the target vocabulary (our synonyms lent through the
               crosswalk): all rows, rows whose caption names the condition, each ontology
               level, precision/recall of "no definitive diagnosis"; --misses lists the misses.
  dermnet      share of the DermNet folder names in ../shared/corpus/dermnet that map to a node
               of our ontology, listing the misses.
  throughput   captions/s for the condition mapping alone on synthetic captions recombined
               from the dev rows' sentences, one process and a pool of --workers processes.
  metadata     skin_concept / body_location / symptoms micro and macro F1 and age / gender
               accuracy against the dev rows (Derm1M's release columns, compared as released).
  skincap      sanity table on 100 dermatologist-written SkinCAP captions (no gold labels):
               share with a concept, concepts per caption, the commonest concepts.
  scope        negation / hedging / history scope: our hand-written cue window against
               medspaCy's ConText (default rules) on the same mentions: disease_label and
               concept/site/symptom agreement on the dev rows, and captions/s of the matcher.
               Needs medspacy importable (e.g. PYTHONPATH=<dir> after
               `pip install --target <dir> --no-deps medspacy ...`: its pins would downgrade
               spaCy in the project venv); skipped with a note otherwise.
  stage        the real `annotate` stage (ontology + concepts + metadata) on a pairs table of
               --captions synthetic rows, with 1 worker and with --workers, each in a fresh
               process: wall time, captions/s and peak memory of the whole process tree as PSS
               (proportional set size: pages shared between the forked workers count once, which
               RSS would count per process; importing spaCy loads torch, ~0.5 GB of shared pages).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, table  # noqa: E402
from pipeline.text.agreement import score, score_metadata  # noqa: E402
from pipeline.text.annotator import Annotator  # noqa: E402
from pipeline.text.ontology import Ontology, project_ontology  # noqa: E402
from pipeline.text.vocab import load_concepts  # noqa: E402

SHARED = REPO.parent / "shared"
DEV_ROWS = SHARED / "reference/derm1m/dev_rows.csv"
DERM1M_ONTOLOGY = SHARED / "reference/derm1m/ontology.json"
DERMNET = SHARED / "corpus/dermnet"
SECTIONS = ("conditions", "dermnet", "throughput", "metadata", "skincap", "scope", "stage")
SKINCAP = SHARED / "reference/skincap/skin_cap_meta_100.csv"


def derm1m_annotator() -> Annotator:
    """Target: Derm1M's ontology.json; reference: ours (synonyms, abbreviations, findings)."""
    return Annotator(Ontology.load(DERM1M_ONTOLOGY), load_concepts(REPO / "ontology/concepts.yaml"), [], [],
                     reference=project_ontology(), conditions_only=True)


def dev_rows() -> list[dict[str, str]]:
    with DEV_ROWS.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def section_conditions(show_misses: bool) -> None:
    annotator = derm1m_annotator()
    report = score(annotator, [(r["caption"], r["disease_label"]) for r in dev_rows()])
    table("disease_label vs Derm1M dev rows (target: Derm1M ontology.json)", report.lines())
    if show_misses:
        print("\n  misses (gold -> ours :: caption):")
        for gold, ours, caption in report.misses:
            print(f"    [{gold}] -> [{ours}] :: {caption[:160]}")


def section_dermnet() -> None:
    annotator = Annotator(project_ontology(), [], [], [], conditions_only=True)
    folders = sorted(p.name for p in DERMNET.iterdir() if p.is_dir())
    misses = [f for f in folders if not annotator.map_label(f)]
    rows = [("folders mapped", f"{len(folders) - len(misses)}/{len(folders)} = {(len(folders) - len(misses)) / len(folders):.1%}")]
    rows += [("  miss", m) for m in misses]
    table("DermNet folder names -> our ontology", rows)


def synthetic_captions(n: int, seed: int = 7) -> list[str]:
    """n captions of 1-3 sentences drawn from the dev rows (fixed seed, same list every run)."""
    import random

    sentences = [s.strip() for r in dev_rows() for s in re.split(r"(?<=[.!?])\s+", r["caption"]) if s.strip()]
    rng = random.Random(seed)
    return [" ".join(rng.choice(sentences) for _ in range(rng.randint(1, 3))) for _ in range(n)]


_WORKER: Annotator | None = None


def _init_worker() -> None:
    global _WORKER
    _WORKER = derm1m_annotator()


def _map_chunk(chunk: list[str]) -> int:
    assert _WORKER is not None
    return sum(bool(_WORKER.diagnose(c).labels) for c in chunk)


def section_throughput(n: int, workers: int) -> None:
    captions = synthetic_captions(n)
    t0 = time.perf_counter()
    annotator = derm1m_annotator()
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    labelled = sum(bool(annotator.diagnose(c).labels) for c in captions)
    single = time.perf_counter() - t0
    chunks = [captions[i:i + 5000] for i in range(0, len(captions), 5000)]
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
        pooled = sum(pool.imap(_map_chunk, chunks))
    parallel = time.perf_counter() - t0
    assert pooled == labelled, "pool and single process disagree"
    table(f"condition mapping throughput ({n:,} synthetic captions from dev-row sentences)", [
        ("matcher build (crosswalk + phrase patterns)", f"{build:.1f} s"),
        ("one process", f"{n / single:,.0f} captions/s ({single:.1f} s)"),
        (f"pool of {workers} processes (incl. worker start)", f"{n / parallel:,.0f} captions/s ({parallel:.1f} s)"),
        ("captions with a diagnosis", f"{labelled / n:.1%}"),
    ])


def full_annotator() -> Annotator:
    return Annotator.from_paths(REPO / "ontology/conditions.yaml", REPO / "ontology/concepts.yaml",
                                REPO / "ontology/body_sites.yaml", REPO / "ontology/symptoms.yaml")


def section_metadata() -> None:
    rep = score_metadata(full_annotator(), dev_rows())
    table(f"concepts and metadata vs Derm1M dev rows ({rep.rows} rows)", rep.lines())


def section_skincap() -> None:
    from collections import Counter

    with SKINCAP.open(encoding="utf-8", newline="") as fh:
        captions = [r[next(k for k in r if k.startswith("caption"))] for r in csv.DictReader(fh)]
    annotator = full_annotator()
    found = [annotator(c).concepts for c in captions]
    counts = Counter(x for f in found for x in f)
    table(f"SkinCAP sanity ({len(captions)} dermatologist captions, no gold labels)", [
        ("captions with >= 1 concept", f"{sum(bool(f) for f in found)}/{len(found)}"),
        ("concepts per caption (mean)", f"{sum(map(len, found)) / len(found):.2f}"),
        ("commonest", ", ".join(f"{k} {v}" for k, v in counts.most_common(12))),
    ])


class ConTextMatcher:
    """Our phrase matches, with each mention's status re-decided by medspaCy's ConText.

    ConText sees the same tokens and the same target spans (as a span group, so nested
    concept matches stay); its NEGATED_EXISTENCE becomes ``negated``, POSSIBLE_EXISTENCE
    ``differential``, HISTORICAL/HYPOTHETICAL ``context``, anything else ``affirmed``.
    """

    def __init__(self, inner: object) -> None:
        import spacy
        from medspacy.context import ConText

        self.inner = inner
        self.nlp = spacy.blank("en")
        self.sentencizer = self.nlp.add_pipe("sentencizer")
        self.context = ConText(self.nlp, input_span_type="group", span_group_name="targets")

    def __call__(self, text: str) -> tuple:
        from spacy.tokens import Span

        from pipeline.text.matching import Mention

        doc, mentions = self.inner(text)
        doc = self.sentencizer(doc)
        doc.spans["targets"] = [Span(doc, m.start, m.end, label=m.kind) for m in mentions]
        doc = self.context(doc)
        out = []
        for m, span in zip(mentions, doc.spans["targets"], strict=True):
            status = ("negated" if span._.is_negated else "differential" if span._.is_uncertain
                      else "context" if span._.is_historical or span._.is_hypothetical else "affirmed")
            out.append(Mention(m.kind, m.label, m.start, m.end, status))
        return doc, out


def section_scope(n: int) -> None:
    try:
        import medspacy  # noqa: F401
    except ImportError:
        print("\nscope: medspacy is not importable; see the module docstring")
        return
    rows = dev_rows()
    captions = synthetic_captions(n)
    out = []
    for name in ("hand-written cue window", "medspaCy ConText"):
        dx, full = derm1m_annotator(), full_annotator()
        if name != "hand-written cue window":
            dx.matcher, full.matcher = ConTextMatcher(dx.matcher), ConTextMatcher(full.matcher)
        rep = score(dx, [(r["caption"], r["disease_label"]) for r in rows])
        meta = score_metadata(full, rows)
        t0 = time.perf_counter()
        for c in captions:
            full(c)
        speed = n / (time.perf_counter() - t0)
        f1 = {col: meta.sets[col].micro()[2] for col in meta.sets}
        out.append((name, f"disease exact {rep.share(rep.agree, rep.rows):.3f}, named "
                          f"{rep.share(rep.named_agree, rep.named_rows):.3f}, level-1 "
                          f"{rep.share(rep.level_agree[1], rep.level_total[1]):.3f}; concept F1 {f1['skin_concept']:.3f}, "
                          f"site F1 {f1['body_location']:.3f}, symptom F1 {f1['symptoms']:.3f}; "
                          f"full annotator {speed:,.0f} captions/s (1 process)"))
    table(f"negation / hedging scope on the dev rows ({n:,} synthetic captions for speed)", out)


def _write_pairs(path: Path, n: int) -> None:
    from pipeline.tables import TableWriter

    captions = synthetic_captions(n)
    with TableWriter("pairs", path) as writer:
        for start in range(0, n, 100_000):
            writer.write([{"pair_id": f"p{i:09d}", "image_id": f"i{i:09d}", "source": "bench", "source_type": "edu",
                           "source_record_id": str(i), "caption_index": 0, "caption": captions[i], "language": "en", "context": "",
                           "licence": "n/a", "source_label": None, "group_key": None}
                          for i in range(start, min(n, start + 100_000))])


_STAGE_SCRIPT = """
import os, sys, threading, time, yaml
sys.path.insert(0, {repo!r})
from pipeline.stages import annotate

def pss_kb(pid):
    try:
        with open(f"/proc/{{pid}}/smaps_rollup") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0

def tree_pss():
    me = os.getpid()
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{{d}}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == me:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return pss_kb(me) + sum(pss_kb(k) for k in kids)

peak = [0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], tree_pss())
        time.sleep(0.5)
threading.Thread(target=sample, daemon=True).start()
params = yaml.safe_load(open({params!r}))
t0 = time.perf_counter()
annotate.run(params)
wall = time.perf_counter() - t0
done.set()
print(f"RESULT {{wall}} {{peak[0]}}")
"""


def section_stage(n: int, workers: int, single: bool = True) -> None:
    import subprocess
    import tempfile

    import yaml

    from pipeline.params import load_params, relocate_outputs

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = relocate_outputs(load_params(REPO / "params.yaml"), root)
        params["annotate"]["ontology"] = str(REPO / "ontology/conditions.yaml")
        _write_pairs(root / "data/ingest/pairs.parquet", n)
        for w in dict.fromkeys([1, workers] if single else [workers]):
            params["ingest"]["workers"] = w
            (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
            script = _STAGE_SCRIPT.format(repo=str(REPO), params=str(root / "params.yaml"))
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                 env={**os.environ, "TQDM_DISABLE": "1"})
            wall, pss = (float(x) for x in out.stdout.split("RESULT")[1].split())
            rows.append((f"{w} worker(s)", f"{n / wall:,.0f} captions/s ({wall:.1f} s); "
                                           f"peak memory {pss / 1024:,.0f} MB (PSS, main + workers)"))
    table(f"full annotate stage, {n:,} pairs streamed in batches (ontology + concepts + metadata)", rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--captions", type=int, default=1_000_000, help="synthetic captions for throughput")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--misses", action="store_true", help="list the dev rows we disagree on")
    ap.add_argument("--no-single", action="store_true", help="stage: skip the one-worker run")
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"{SHARED} not found: this benchmark needs the shared reference data beside the checkout")
    print(f"machine: {machine()}")
    if "conditions" in args.only:
        section_conditions(args.misses)
    if "dermnet" in args.only:
        section_dermnet()
    if "throughput" in args.only:
        section_throughput(args.captions, args.workers)
    if "metadata" in args.only:
        section_metadata()
    if "skincap" in args.only:
        section_skincap()
    if "scope" in args.only:
        section_scope(min(args.captions, 20_000))
    if "stage" in args.only:
        section_stage(args.captions, args.workers, single=not args.no_single)


if __name__ == "__main__":
    main()
