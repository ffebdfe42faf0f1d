"""Stage ``annotate``: ontology labels, concepts and metadata for every pair's caption.

Also the standalone ``derm1m annotate --input IN.csv --output OUT.csv``: any CSV with a
``caption`` column gets the seven Derm1M release columns appended. Captions are processed in
batches by a process pool (each worker builds its matchers once), in input order.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipeline.csvsafe import neutralise_frame
from pipeline.errors import PipelineError
from pipeline.executor import imap_ordered, map_ordered
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.tables import TableWriter, atomic_path, read_table_schema
from pipeline.text.annotator import Annotator

RELEASE_COLUMNS = ["disease_label", "hierarchical_disease_label", "skin_concept", "body_location",
                   "symptoms", "age", "gender"]
DEFAULT_VOCAB = {"concepts": "ontology/concepts.yaml", "body_sites": "ontology/body_sites.yaml",
                 "symptoms": "ontology/symptoms.yaml"}
REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def _annotator(ontology: str, concepts: str, sites: str, symptoms: str) -> Annotator:
    return Annotator.from_paths(ontology, concepts, sites, symptoms)


def _annotate_batch(batch: list[tuple[str, str, str]], paths: tuple[str, str, str, str]) -> list[dict]:
    annotator = _annotator(*paths)
    return [annotator(caption, context, label).table_row() for caption, context, label in batch]


def annotate_texts(captions: list[str], contexts: list[str], paths: tuple[str, str, str, str],
                   workers: int, batch_size: int, source_labels: list[str | None] | None = None) -> list[dict]:
    """Annotate in input order. A pair's structured ``source_label`` (HAM10000 dx, DermNet
    folder), when it maps to a node, is its diagnosis; the caption supplies the rest."""
    labels = [x if isinstance(x, str) else "" for x in source_labels] if source_labels is not None else [""] * len(captions)
    items = list(zip(captions, contexts, labels, strict=True))
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    fn = functools.partial(_annotate_batch, paths=paths)
    return [row for rows in map_ordered(fn, batches, workers, "annotate", "batch") for row in rows]


def _vocab_paths(params: dict | None, ontology: str | None) -> tuple[str, str, str, str]:
    cfg = params.get("annotate", {}) if params else {}

    def pick(key: str, default: str) -> str:
        value = cfg.get(key, default)
        path = Path(value)
        return str(path if path.exists() else REPO_ROOT / default)

    onto = ontology or pick("ontology", "ontology/build/dermatology.owl")
    if not Path(onto).exists():
        fallback = REPO_ROOT / "ontology" / "conditions.yaml"
        if ontology is None and fallback.exists():
            onto = str(fallback)
        else:
            raise PipelineError(f"ontology {onto} not found; pass --ontology PATH or run `derm1m ontology build`")
    return (onto, pick("concepts", DEFAULT_VOCAB["concepts"]), pick("body_sites", DEFAULT_VOCAB["body_sites"]),
            pick("symptoms", DEFAULT_VOCAB["symptoms"]))


PAIR_COLUMNS = ["pair_id", "caption", "context", "source_label"]


def _pair_batches(path: Path, batch_size: int) -> Iterator[tuple[list[str], list[tuple[str, str, str]]]]:
    """(pair ids, (caption, context, source_label) items) per batch, read lazily from parquet."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=PAIR_COLUMNS):
        cols = batch.to_pydict()
        labels = [x if isinstance(x, str) else "" for x in cols["source_label"]]
        contexts = [x if isinstance(x, str) else "" for x in cols["context"]]
        yield cols["pair_id"], list(zip(cols["caption"], contexts, labels, strict=True))


def _annotate_ids_batch(batch: tuple[list[str], list[tuple[str, str, str]]], paths: tuple[str, str, str, str]) -> list[dict]:
    ids, items = batch
    return [{"pair_id": pid, **row} for pid, row in zip(ids, _annotate_batch(items, paths), strict=True)]


def run(params: dict) -> StageResult:
    """Stream the pairs through the annotator in batches, in pair order, into annotations.parquet.

    Memory stays bounded (a few batches in flight, one row group buffered) however many pairs
    there are; the output is the same for any batch size or worker count.
    """
    cfg = section(params, "annotate", {"out": str, "ontology": str, "concepts": str, "body_sites": str,
                                       "symptoms": str, "batch_size": int})
    workers = section(params, "ingest", {"workers": int})["workers"]
    ingest_out = Path(section(params, "ingest", {"out": str})["out"])
    with Timer(StageResult("annotate")) as result:
        pairs_path = ingest_out / "pairs.parquet"
        read_table_schema("pairs", pairs_path)
        paths = (cfg["ontology"], cfg["concepts"], cfg["body_sites"], cfg["symptoms"])
        for p in paths:
            if not Path(p).exists():
                raise PipelineError(f"annotate: {p} not found; run `dvc repro` (or `derm1m ontology build`)")
        n_pairs = pq.ParquetFile(pairs_path).metadata.num_rows
        batch_size = max(1, cfg["batch_size"])
        fn = functools.partial(_annotate_ids_batch, paths=paths)
        with_dx = from_source = from_context = hedged = 0
        # Row groups of 64k rows: the writer never holds more than that many annotated rows.
        with TableWriter("annotations", Path(cfg["out"]) / "annotations.parquet", row_group_size=65_536) as writer:
            for rows in imap_ordered(fn, _pair_batches(pairs_path, batch_size), workers, "annotate", "batch",
                                     total=-(-n_pairs // batch_size)):
                writer.write(rows)
                with_dx += sum(r["label_source"] != "none" for r in rows)
                from_source += sum(r["label_source"] == "source_label" for r in rows)
                from_context += sum(r["label_source"] == "context" for r in rows)
                hedged += sum(r["label_source"] == "hedged" for r in rows)
        result.rows_in = n_pairs
        result.rows_out = writer.rows
        result.extra = {"with diagnosis": with_dx, "from source labels": from_source,
                        "from context (title)": from_context, "hedged": hedged}
    return result


def annotate_csv(input_path: Path, output_path: Path, ontology: str | None, params: dict | None) -> StageResult:
    """Append the seven release columns to any CSV with a ``caption`` column (other columns kept)."""
    with Timer(StageResult("annotate")) as result:
        if not input_path.exists():
            raise PipelineError(f"{input_path}: no such file")
        try:
            frame = pd.read_csv(input_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise PipelineError(f"{input_path}: cannot parse as CSV ({exc.__class__.__name__}: {exc})") from None
        if "caption" not in frame.columns:
            raise PipelineError(f"{input_path}: needs a 'caption' column; found {list(frame.columns)}")
        context = frame["context"] if "context" in frame.columns else pd.Series([""] * len(frame))
        label = frame["source_label"] if "source_label" in frame.columns else pd.Series([""] * len(frame))
        workers = (params or {}).get("ingest", {}).get("workers", 1)
        rows = annotate_texts(frame["caption"].tolist(), context.tolist(), _vocab_paths(params, ontology), workers, 1000,
                              label.tolist())
        out = frame.drop(columns=[c for c in RELEASE_COLUMNS if c in frame.columns])
        for col in RELEASE_COLUMNS:
            out[col] = [r[col] for r in rows]
        with atomic_path(output_path) as tmp:
            neutralise_frame(out).to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        result.rows_in = result.rows_out = len(out)
    return result
