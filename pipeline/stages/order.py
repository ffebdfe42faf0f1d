"""The data stages in dependency order, as ``dvc.yaml`` runs them (for tests and benchmarks).

Running them in this order in-process gives the same tables as ``dvc repro`` without DVC.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pipeline.stages import StageResult

# (stage name, module, function) from the demo corpus to the final metadata and report.
DATA_STAGES: list[tuple[str, str, str]] = [
    ("demo_corpus", "pipeline.stages.demo_corpus", "run"),
    ("ontology", "pipeline.stages.ontology", "build"),
    ("ingest", "pipeline.stages.ingest", "run"),
    ("dedup", "pipeline.stages.dedup", "run"),
    ("annotate", "pipeline.stages.annotate", "run"),
    ("enrich", "pipeline.stages.enrich", "run"),
    ("truncate", "pipeline.stages.truncate", "run"),
    ("split", "pipeline.stages.split", "run"),
    ("shard", "pipeline.stages.shard", "run"),
    ("metadata", "pipeline.stages.metadata", "run"),
    ("report", "pipeline.stages.report", "run"),
]


def stage_functions(until: str = "report") -> list[tuple[str, Callable[[dict], StageResult]]]:
    """The stage callables up to and including ``until``."""
    out = []
    for name, module, fn in DATA_STAGES:
        out.append((name, getattr(importlib.import_module(module), fn)))
        if name == until:
            break
    return out
