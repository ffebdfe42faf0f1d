"""Stage ``enrich``: knowledge-enhanced captions per pair from the annotate stage's outputs.

Reads ``annotations.parquet`` (labels, concepts, body sites, symptoms) and the pairs' captions,
writes ``enriched_captions.parquet`` with one row per pair: an ontology caption, a concept
caption and, when ``enrich.llm.enabled``, an LLM rewrite (``pipeline.text.llm``). A pair
without knowledge gets nulls, not a reject. Every caption is cut with the truncate stage's
tokenizer and context, so a shard's variant members fit the text tower as ``txt`` does.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.executor import progress
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.tables import read_table, write_table
from pipeline.text.enrich import ConceptCaptioner, OntologyCaptioner
from pipeline.text.llm import LLMConfig, LLMRewriter
from pipeline.text.ontology import Ontology
from pipeline.text.truncate import CaptionTruncator
from pipeline.text.vocab import load_body_sites, load_concepts, load_symptoms

VARIANTS = ("ontology", "concept", "llm")


def run(params: dict) -> StageResult:
    cfg = section(params, "enrich", {"out": str, "llm": dict})
    vocab = section(params, "annotate", {"out": str, "ontology": str, "concepts": str, "body_sites": str,
                                         "symptoms": str})
    trunc = section(params, "truncate", {"tokenizer": str, "context_length": int})
    ingest_out = Path(section(params, "ingest", {"out": str})["out"])
    llm_cfg = LLMConfig.from_params(cfg["llm"])
    with Timer(StageResult("enrich")) as result:
        for p in (vocab["ontology"], vocab["concepts"], vocab["body_sites"], vocab["symptoms"]):
            if not Path(p).exists():
                raise PipelineError(f"enrich: {p} not found; run `dvc repro` (or `derm1m ontology build`)")
        annotations = read_table("annotations", Path(vocab["out"]) / "annotations.parquet")
        pairs = read_table("pairs", ingest_out / "pairs.parquet")[["pair_id", "caption"]]
        frame = pairs.merge(annotations, on="pair_id", how="inner").sort_values("pair_id", ignore_index=True)
        if len(frame) != len(pairs):
            raise PipelineError(f"enrich: {len(pairs) - len(frame)} pair(s) have no annotation row; "
                                f"re-run `derm1m annotate` (dvc repro)")
        ontology_captions = OntologyCaptioner(Ontology.load(vocab["ontology"]))
        concept_captions = ConceptCaptioner(load_concepts(vocab["concepts"]), load_body_sites(vocab["body_sites"]),
                                            load_symptoms(vocab["symptoms"]))
        truncator = CaptionTruncator(trunc["tokenizer"], trunc["context_length"])
        rewriter = LLMRewriter(llm_cfg) if llm_cfg.enabled else None
        drafts = []
        for r in progress(frame.itertuples(index=False), len(frame), "enrich", "pair"):
            drafts.append((r.pair_id, r.caption, {
                "ontology": ontology_captions(list(r.disease_labels)),
                "concept": concept_captions(list(r.skin_concepts), list(r.body_locations), list(r.symptom_list)),
                "llm": None}))
        statuses: list[str | None] = [None] * len(drafts)
        if rewriter is not None:   # pairs with no knowledge at all are not sent
            sent = [i for i, (_, _, t) in enumerate(drafts) if t["ontology"] is not None or t["concept"] is not None]
            answers = rewriter.rewrite_all([(drafts[i][1], drafts[i][2]["ontology"], drafts[i][2]["concept"])
                                            for i in sent])
            statuses = ["no_knowledge"] * len(drafts)
            for i, (text, status) in zip(sent, answers, strict=True):
                drafts[i][2]["llm"], statuses[i] = text, status
        rows = []
        for (pair_id, _, texts), status in zip(drafts, statuses, strict=True):
            cut = []
            for name in VARIANTS:
                if texts[name] is not None:
                    t = truncator(texts[name])
                    texts[name] = t.text or None
                    if t.cut != "none":
                        cut.append(name)
            rows.append({"pair_id": pair_id, "ontology_caption": texts["ontology"],
                         "concept_caption": texts["concept"], "llm_caption": texts["llm"], "llm_status": status,
                         "variants_cut": cut})
        write_table(rows, "enriched_captions", Path(cfg["out"]) / "enriched_captions.parquet")
        result.rows_in = result.rows_out = len(rows)
        result.extra = {"ontology": sum(r["ontology_caption"] is not None for r in rows),
                        "concept": sum(r["concept_caption"] is not None for r in rows),
                        "cut": sum(bool(r["variants_cut"]) for r in rows)}
        if rewriter is not None:
            result.extra.update(llm=sum(r["llm_caption"] is not None for r in rows), llm_requests=rewriter.requests,
                                llm_cached=rewriter.cache_hits, llm_failed=sum(rewriter.failures.values()))
    return result
