"""The ingest caption filters on real captions: what they reject, and how fast they run.

    python bench/caption_filters.py                      # every section
    python bench/caption_filters.py --show               # also every changed caption (before -> after)
    python bench/caption_filters.py --demo /tmp/x        # reuse a demo corpus written by `derm1m demo-corpus --set demo.out=/tmp/x`

Sections (each prints a table; figures go in issue notes, not in unit tests):
  real         the chain of params.yaml ``ingest.filters`` over the 100 SkinCAP captions and the
               320 Derm1M dev rows in ../shared (skipped when absent): rejected share by reason,
               languages, and every rejected caption, for a person to judge (they are all real
               dermatology-corpus captions, so every reject is a false reject unless the text
               itself says nothing about skin).
  demo         the demo corpus through the real ingest stage twice, with the filters and with
               cleanup only: a record that is a pair without the filters and a reject with them
               is a false reject (the demo's planted rejects are images and empty captions).
  throughput   captions/s on one core (CPU seconds of this process) for the whole chain over
               those captions repeated to --n (default 100,000), and the share that needed
               langdetect (the cheap English rule decides the rest).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, table  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.text import filters  # noqa: E402
from pipeline.text.filters import CaptionFilterChain  # noqa: E402

SHARED = REPO.parent / "shared"
SKINCAP = SHARED / "reference/skincap/skin_cap_meta_100.csv"
DEV_ROWS = SHARED / "reference/derm1m/dev_rows.csv"


def real_captions() -> dict[str, list[str]]:
    """SkinCAP and Derm1M dev-row captions from ../shared, or {} when it is absent."""
    sets: dict[str, list[str]] = {}
    if SKINCAP.exists():
        with SKINCAP.open(encoding="utf-8", newline="") as fh:
            sets["SkinCAP"] = [r[next(k for k in r if k.startswith("caption"))] for r in csv.DictReader(fh)]
    if DEV_ROWS.exists():
        with DEV_ROWS.open(encoding="utf-8", newline="") as fh:
            sets["Derm1M dev rows"] = [r["caption"] for r in csv.DictReader(fh)]
    return sets


def report_set(name: str, captions: list[str], chain: CaptionFilterChain, show: bool) -> None:
    results = [chain(c) for c in captions]
    rejected = [(c, r) for c, r in zip(captions, results, strict=True) if r.rejection]
    changed = [(c, r.caption) for c, r in zip(captions, results, strict=True)
               if not r.rejection and r.caption != " ".join(c.split())]
    reasons = Counter(r.rejection.reason for _, r in rejected)
    table(f"{name}: {len(captions)} real captions", [
        ("rejected", f"{len(rejected)} ({len(rejected) / len(captions):.1%})"),
        ("by reason", ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "-"),
        ("changed by a cleaner", str(len(changed))),
        ("languages", ", ".join(f"{k} {v}" for k, v in Counter(r.language for r in results).most_common())),
    ])
    for caption, result in rejected:
        print(f"  REJECT {result.rejection.reason}: {caption[:160]!r}")
    if show:
        for before, after in changed:
            print(f"  CHANGED {before[:160]!r}\n       -> {after[:160]!r}")


def demo_section(params: dict, demo_dir: Path | None, show: bool) -> list[str]:
    """Ingest the demo corpus with and without the filters; return its captions (for throughput)."""
    from pipeline.demo.generator import generate_demo_corpus
    from pipeline.stages import ingest
    from pipeline.tables import read_table

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo_out = str(params["demo"]["out"])
        if demo_dir is None:
            demo_dir = root / "demo"
            generate_demo_corpus(params, out=demo_dir)
        sources = [{**s, "path": str(s["path"]).replace(demo_out, str(demo_dir), 1)} for s in params["ingest"]["sources"]]
        tables = {}
        for label, filt in (("filters", params["ingest"].get("filters", {})), ("cleanup", None)):
            cfg = {**params["ingest"], "out": str(root / label), "sources": sources, "workers": 1}
            cfg.pop("filters", None)
            if filt is not None:
                cfg["filters"] = filt
            ingest.run({**params, "ingest": cfg})
            tables[label] = (read_table("pairs", root / label / "pairs.parquet"),
                             read_table("rejects", root / label / "rejects.parquet"))
    pairs_f, rejects_f = tables["filters"]
    pairs_c, _ = tables["cleanup"]
    caption_of = dict(zip(pairs_c["source_record_id"], pairs_c["caption"], strict=True))
    false = rejects_f[rejects_f["record_id"].isin(caption_of)]
    table(f"demo corpus ({demo_dir}) through the ingest stage", [
        ("pairs without / with filters", f"{len(pairs_c)} / {len(pairs_f)}"),
        ("rejects with filters", ", ".join(f"{k} {v}" for k, v in sorted(Counter(rejects_f['reason']).items()))),
        ("false rejects (a pair without the filters)", str(len(false))),
        ("captions changed by a cleaner", str(int((pairs_f.set_index("pair_id")["caption"]
                                                   != pairs_c.set_index("pair_id")["caption"]).sum()))),
    ])
    for rid, reason in zip(false["record_id"], false["reason"], strict=True):
        print(f"  FALSE REJECT {reason}: {caption_of[rid][:160]!r}")
    if show:
        merged = pairs_c.merge(pairs_f, on="pair_id", suffixes=("_c", "_f"))
        for before, after in zip(merged["caption_c"], merged["caption_f"], strict=True):
            if before != after:
                print(f"  CHANGED {before[:120]!r}\n       -> {after[:120]!r}")
    return list(pairs_c["caption"])


def throughput(captions: list[str], chain: CaptionFilterChain, n: int) -> None:
    corpus = (captions * (n // max(1, len(captions)) + 1))[:n]
    fallbacks: Counter[str] = Counter()
    original = filters._langdetect

    def counting(text: str) -> str:
        fallbacks["langdetect"] += 1
        return original(text)

    chain(corpus[0])                      # vocabulary and langdetect profiles loaded outside the clock
    filters._langdetect = counting
    try:
        start = time.process_time()
        kept = sum(chain(c).rejection is None for c in corpus)
        cpu = time.process_time() - start
    finally:
        filters._langdetect = original
    chars = sum(map(len, corpus)) / len(corpus)
    table(f"throughput, one core ({len(captions)} distinct captions repeated to {len(corpus)})", [
        ("captions/s (CPU)", f"{len(corpus) / cpu:,.0f}"),
        ("mean caption length", f"{chars:.0f} characters"),
        ("needed langdetect", f"{fallbacks['langdetect']} ({fallbacks['langdetect'] / len(corpus):.1%})"),
        ("kept", f"{kept} ({kept / len(corpus):.1%})"),
        ("1M captions would take", f"{1_000_000 * cpu / len(corpus):.0f} CPU s"),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--demo", type=Path, default=None, help="an existing demo corpus folder (default: generate one)")
    ap.add_argument("--n", type=int, default=100_000, help="captions for the throughput run")
    ap.add_argument("--show", action="store_true", help="print every caption a cleaner changed")
    ap.add_argument("--only", nargs="*", choices=("real", "demo", "throughput"))
    args = ap.parse_args()
    print(machine())
    params = load_params(args.params)
    chain = CaptionFilterChain.from_params(params["ingest"].get("filters", {}))
    print("chain:", " -> ".join(f.name for f in chain.filters))
    only = set(args.only or ("real", "demo", "throughput"))
    captions: list[str] = []
    sets = real_captions()
    if "real" in only or "throughput" in only:
        if not sets:
            print(f"\n(no {SHARED / 'reference'}: the real-caption section is skipped)")
        for name, caps in sets.items():
            if "real" in only:
                report_set(name, caps, chain, args.show)
            captions += caps
    if "demo" in only or ("throughput" in only and args.demo is not None):
        captions += demo_section(params, args.demo, args.show)
    if "throughput" in only and captions:
        throughput(captions, chain, args.n)


if __name__ == "__main__":
    main()
