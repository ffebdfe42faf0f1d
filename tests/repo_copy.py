"""A copy of this repository in a temp folder, for tests that run the real `dvc repro` there.

Why a copy: `dvc repro` writes data/, shards/, models/ and dvc.lock beside dvc.yaml, and the
tests must neither touch the checkout nor see its build outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def copy_repo(work: Path) -> dict:
    """Copy the tracked and untracked-but-not-ignored files (no build outputs, no dvc.lock) to
    ``work``; return its params.yaml, to shrink and write back with :func:`write_params`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "shards/train", "models/")):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    (work / "dvc.lock").unlink(missing_ok=True)
    return yaml.safe_load((work / "params.yaml").read_text())


def write_params(work: Path, params: dict) -> None:
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def repro_env(**extra: str) -> dict:
    """The environment for `git`/`dvc` in the copy: this venv's `derm1m` first, no analytics."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t", **extra}


def sh(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure shows the tail of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc
