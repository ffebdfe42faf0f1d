"""Stage ``truncate``: a ``truncated_caption`` per pair that fits the text encoder's context."""

from __future__ import annotations

from pathlib import Path

from pipeline.executor import progress
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.tables import read_table, write_table
from pipeline.text.truncate import CaptionTruncator


def run(params: dict) -> StageResult:
    cfg = section(params, "truncate", {"out": str, "tokenizer": str, "context_length": int})
    ingest_out = Path(section(params, "ingest", {"out": str})["out"])
    with Timer(StageResult("truncate")) as result:
        pairs = read_table("pairs", ingest_out / "pairs.parquet")
        truncator = CaptionTruncator(cfg["tokenizer"], cfg["context_length"])
        rows = []
        for pid, caption in progress(zip(pairs["pair_id"], pairs["caption"], strict=True), len(pairs), "truncate", "cap"):
            t = truncator(caption)
            rows.append({"pair_id": pid, "truncated_caption": t.text, "n_tokens": t.n_tokens,
                         "n_tokens_kept": t.n_tokens_kept, "cut": t.cut})
        write_table(rows, "captions", Path(cfg["out"]) / "captions.parquet")
        result.rows_in = result.rows_out = len(rows)
        result.extra = {"truncated": sum(r["cut"] != "none" for r in rows)}
    return result
