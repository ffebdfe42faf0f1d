"""Stage ``demo_corpus``: write the synthetic demo corpus in the five source layouts (see :mod:`pipeline.demo.generator`)."""

from __future__ import annotations

from pipeline.demo.generator import generate_demo_corpus
from pipeline.params import section
from pipeline.stages import StageResult, Timer


def run(params: dict) -> StageResult:
    section(params, "demo", {"out": str, "seed": int, "n_unique_images": int})
    with Timer(StageResult("demo_corpus")) as result:
        truth = generate_demo_corpus(params)
        result.rows_out = truth["n_records"]
        result.extra = {"image files": truth["n_image_files"], "planted rejects": sum(truth["rejects"].values()),
                        **{f"{s['folder']}/ records": s["records"] for s in truth["sources"].values()}}
    return result
