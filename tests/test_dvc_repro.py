"""A real `dvc repro` of the whole pipeline in a fresh git+DVC repo (the README's first command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _sh(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    work = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "shards/train", "models/")):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    (work / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["demo"].update(n_unique_images=80, n_exact_copies=5, n_reencoded=4, n_resized=4, n_cropped=4, n_multi_caption=8)
    params["shard"]["max_samples_per_shard"] = 30
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    _sh(["git", "init", "-q"], work, env)
    _sh(["dvc", "repro"], work, env)
    for out in ("data/metadata/metadata.parquet", "shards/manifest.parquet", "shards/train/sizes.json",
                "report/metrics.json", "metrics/eval.json", "models/smoke/checkpoints/epoch_1.pt"):
        assert (work / out).exists(), out
    metrics = json.loads((work / "report/metrics.json").read_text())
    truth = json.loads((work / "data/demo/truth.json").read_text())
    assert metrics["dedup"]["clusters"] == truth["n_clusters"]
    assert metrics["ingest"]["records"] == truth["n_records"]
    evaluation = json.loads((work / "metrics/eval.json").read_text())
    assert 0 <= evaluation["holdout/i2t_R@1"] <= evaluation["holdout/i2t_R@10"] <= 1
    again = _sh(["dvc", "repro"], work, env)
    assert "Data and pipelines are up to date" in again.stdout + again.stderr
    shown = _sh(["dvc", "metrics", "show"], work, env).stdout
    assert "holdout/i2t_R@1" in shown and "dedup.clusters" in shown
