"""Shared fixtures: a small demo corpus run through the real stages in a temp directory.

The session fixture runs every stage function (no DVC) once on a reduced demo corpus, so most
tests read real tables and real tars without paying for the build again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def small_params(root: Path) -> dict:
    """params.yaml with every output under ``root`` and a smaller demo corpus (same planted cases)."""
    from pipeline.params import relocate_outputs

    p = relocate_outputs(repo_params(), root)
    p["demo"].update(n_unique_images=120, n_exact_copies=8, n_reencoded=6, n_resized=6, n_cropped=6,
                     n_multi_caption=12)
    p["shard"]["max_samples_per_shard"] = 40
    return p


def build_corpus(params: dict) -> dict:
    """Run the data stages (demo corpus through metadata) in order, in-process."""
    from pipeline.stages.order import stage_functions

    return {name: fn(params) for name, fn in stage_functions(until="metadata")}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("corpus")
    params = small_params(root)
    results = build_corpus(params)
    import json

    truth = json.loads((root / "data/demo/truth.json").read_text(encoding="utf-8"))
    return {"root": root, "params": params, "results": results, "truth": truth}


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared reference data is not present")
    return SHARED


@pytest.fixture(autouse=True)
def _quiet_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
