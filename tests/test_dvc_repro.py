"""A real `dvc repro` of the whole pipeline in a fresh git+DVC repo (the README's first command)."""

from __future__ import annotations

import json
import shutil

import pytest
from repo_copy import copy_repo, repro_env, sh, write_params


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    work = tmp_path / "repo"
    params = copy_repo(work)
    params["demo"].update(n_unique_images=80, n_exact_copies=5, n_reencoded=4, n_resized=4, n_cropped=4, n_multi_caption=8)
    params["shard"]["max_samples_per_shard"] = 30
    write_params(work, params)
    env = repro_env()
    sh(["git", "init", "-q"], work, env)
    sh(["dvc", "repro"], work, env)
    for out in ("data/metadata/metadata.parquet", "shards/manifest.parquet", "shards/train/sizes.json",
                "report/metrics.json", "metrics/eval.json", "models/smoke/checkpoints/epoch_1.pt"):
        assert (work / out).exists(), out
    metrics = json.loads((work / "report/metrics.json").read_text())
    truth = json.loads((work / "data/demo/truth.json").read_text())
    assert metrics["dedup"]["clusters"] == truth["n_clusters"]
    assert metrics["ingest"]["records"] == truth["n_records"]
    evaluation = json.loads((work / "metrics/eval.json").read_text())["smoke"]  # one object per model
    assert 0 <= evaluation["holdout/i2t_R@1"] <= evaluation["holdout/i2t_R@10"] <= 1
    assert (work / "metrics/eval_comparison.md").read_text().splitlines()[2].startswith("| smoke |")
    again = sh(["dvc", "repro"], work, env)
    assert "Data and pipelines are up to date" in again.stdout + again.stderr
    shown = sh(["dvc", "metrics", "show"], work, env).stdout
    assert "holdout/i2t_R@1" in shown and "dedup.clusters" in shown
