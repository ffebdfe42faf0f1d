"""Determinism: two clean `dvc repro` runs give the same bytes for every DVC out.

The two repositories differ in everything that must not matter: executor kind and worker
counts (process pool of 2 vs in-process), torch's thread count, and the order in which the
files of an extra image-folder source were created (and their modification times). Then every
out's md5 in the two dvc.lock files must be equal, for every stage: tables, shards, report,
figures, the smoke model and metrics/eval.json.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from repo_copy import copy_repo, repro_env, sh, write_params

FOLDER_CLASSES = ("psoriasis", "melanoma", "vitiligo")


def _folder_images(root: Path, reverse: bool) -> None:
    """A small class-folder source; the same bytes in both repos, created in opposite orders."""
    rng = np.random.default_rng(11)
    files = []
    for label in FOLDER_CLASSES:
        for k in range(4):
            pixels = rng.integers(60, 200, size=(160 + 16 * k, 200, 3), dtype=np.uint8)
            files.append((root / label / f"{label}_{k:02d}.jpg", pixels))
    for n, (path, pixels) in enumerate(reversed(files) if reverse else files):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, "JPEG", quality=90)
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))


def _repo(work: Path, variant: int) -> tuple[Path, dict]:
    params = copy_repo(work)
    params["demo"].update(n_unique_images=60, n_exact_copies=4, n_reencoded=3, n_resized=3, n_cropped=3,
                          n_multi_caption=6)
    params["shard"]["max_samples_per_shard"] = 25
    params["ingest"]["sources"].append({"name": "atlas", "adapter": "folder", "path": "extra/atlas"})
    workers = 2 if variant == 0 else 1
    params["executor"].update(kind="local" if variant == 0 else "serial", workers=workers)
    params["ingest"]["workers"] = params["dedup"]["workers"] = workers
    write_params(work, params)
    _folder_images(work / "extra/atlas", reverse=variant == 1)
    threads = "2" if variant == 0 else "1"
    env = repro_env(TQDM_DISABLE="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env.pop("PYTHONHASHSEED", None)
    sh(["git", "init", "-q"], work, env)
    return work, env


def _out_md5s(lock_path: Path) -> dict[tuple[str, str], str]:
    """(stage, out path) -> md5 of every out (and metric/plot file) in a dvc.lock."""
    lock = yaml.safe_load(lock_path.read_text())
    return {(stage, out["path"]): out["md5"] for stage, body in lock["stages"].items()
            for out in body.get("outs", [])}


@pytest.mark.slow
def test_two_clean_dvc_repros_give_identical_outs(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repos = [_repo(tmp_path / f"repo{v}", v) for v in (0, 1)]
    # Both at once: the machine has two cores and each run is mostly one process at a time.
    procs = [subprocess.Popen(["dvc", "repro"], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for work, env in repos]
    logs = [p.communicate(timeout=1200)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    a, b = (_out_md5s(work / "dvc.lock") for work, _ in repos)
    stages = {stage for stage, _ in a}
    assert {"ingest", "dedup", "shard", "report", "train", "evaluate"} <= stages
    assert ("train", "models") in a and ("evaluate", "metrics/eval.json") in a
    assert a.keys() == b.keys()
    differ = sorted(f"{stage}: {path}" for (stage, path), md5 in a.items() if b[(stage, path)] != md5)
    assert not differ, f"outs differ between the two runs: {differ}"
    # The folder source was read (its records are in the pairs table of both).
    pairs = (repos[0][0] / "data/ingest/pairs.parquet")
    import pandas as pd

    assert (pd.read_parquet(pairs)["source"] == "atlas").sum() == len(FOLDER_CLASSES) * 4
