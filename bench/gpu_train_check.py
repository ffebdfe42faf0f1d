"""GPU throughput check of ``dermlip-vitb16`` on shards built from HAM10000: samples/s, GPU
utilisation, and the data-wait time per step (is the loader the bottleneck?).

    python bench/gpu_train_check.py [--ham DIR] [--steps 60] [--batch-size 4096] [--workers 14]

Meant for one short run on a single H200 (about 3-5 minutes: shard build ~5 s, model build,
``--steps`` optimiser steps, one checkpoint write). It writes shards of the HAM10000 images
(``skip_reencode``: the 200x150 JPEGs go in as they are) into a scratch folder, runs
``pipeline.training.train.run_training`` with the ``dermlip-vitb16`` profile from params.yaml
(the seed recipe: amp, the seed's --aug-cfg and --dataset-resampled, local loss, gradient
checkpointing; ViT-B-16 built from its config unless ``--pretrained``, no downloads) bounded
to ``--steps`` steps in one epoch, logging every step, while ``nvidia-smi`` samples utilisation
every 200 ms. It prints, and writes to ``$OUT/gpu_train_check.json`` when ``OUT`` is set:

- training samples/s (median over steps after the first ``--skip`` warm-up steps, and overall),
- ``Data (t)``: seconds per step the trainer waited for the loader, and its share of the step,
- GPU utilisation (mean and median while training) and peak memory.

The loader is "not the bottleneck" when the data wait stays a small share (< 10%) of the step.

On the device machine: it has torch, timm, pandas, pyarrow and pillow but not open_clip_torch,
webdataset==0.2.86, braceexpand or ftfy; carry them as wheels (see the device README), and carry
the HAM10000 folder (``--ham``), since ``../shared`` does not travel. Without a GPU it refuses
to run (exit 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import yaml  # noqa: E402

_STEP = re.compile(r"Data \(t\): (?P<data>[\d.]+) Batch \(t\): (?P<batch>[\d.]+), (?P<rate>[\d.]+)/s")


def _loader_speed():
    """bench/loader_speed.py as a module: its HAM10000 item list and shard builder."""
    spec = importlib.util.spec_from_file_location("loader_speed", REPO / "bench" / "loader_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class GpuSampler(threading.Thread):
    """Poll ``nvidia-smi`` for utilisation and memory until stopped (one row per poll)."""

    def __init__(self, period_ms: int = 200) -> None:
        super().__init__(daemon=True)
        self.rows: list[tuple[float, float, float]] = []
        self.period_ms = period_ms
        self._proc: subprocess.Popen | None = None

    def run(self) -> None:
        if shutil.which("nvidia-smi") is None:
            return
        self._proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
             f"-lms={self.period_ms}"], stdout=subprocess.PIPE, text=True)
        for line in self._proc.stdout:
            try:
                util, mem = (float(x) for x in line.strip().split(",")[:2])
            except ValueError:
                continue
            self.rows.append((time.perf_counter(), util, mem))

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ham", type=Path, default=REPO.parent / "shared" / "corpus" / "ham10000",
                    help="HAM10000 folder (HAM10000_metadata.csv + images/)")
    ap.add_argument("--steps", type=int, default=60, help="optimiser steps to run (default 60)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the profile's (4096)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: cores - 2)")
    ap.add_argument("--per-shard", type=int, default=200, help="samples per tar (>= workers tars needed)")
    ap.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the medians")
    ap.add_argument("--keep", type=Path, default=None, help="keep shards and logs here (default: scratch)")
    ap.add_argument("--images", type=int, default=0, help="HAM10000 images to shard (0: all)")
    ap.add_argument("--profile", default="dermlip-vitb16", help="training profile from params.yaml")
    ap.add_argument("--pretrained", default="none",
                    help="starting weights: 'none' (default; random init, same step cost, nothing to carry), "
                         "'profile' (the profile's, e.g. openai: must be in the machine's open_clip cache) or a file")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu only to try the script itself with --profile smoke (no GPU figures)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_train_check: no CUDA device; this check runs on a GPU machine only", file=sys.stderr)
        return 2
    if not (args.ham / "HAM10000_metadata.csv").is_file():
        print(f"gpu_train_check: {args.ham}: no HAM10000_metadata.csv; pass --ham DIR", file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")
    from pipeline.training.train import run_training

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    profile = dict(params["train"]["profiles"][args.profile])
    workers = args.workers or max(1, (os.cpu_count() or 2) - 2)
    batch = args.batch_size or profile["batch_size"]
    # open_clip rounds an epoch to whole batches per worker: ask for steps rounded to workers.
    steps = math.ceil(args.steps / workers) * workers
    # Not deterministic: a throughput check wants all threads and out.log's per-step timings.
    if args.pretrained != "profile":  # throughput does not depend on the starting weights
        profile["pretrained"] = None if args.pretrained == "none" else args.pretrained
    profile.update(epochs=1, batch_size=batch, workers=workers, device=args.device, gpus=1, deterministic=False,
                   train_num_samples=steps * batch, log_every_n_steps=1, warmup=min(profile["warmup"], steps))
    loader_speed = _loader_speed()
    loader_speed.HAM = args.ham
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpu_train_check."))
    t0 = time.perf_counter()
    items = loader_speed.ham_items(args.images)
    urls = loader_speed.build_shards(items, work / "shards" / "train", args.per_shard)
    shard_s = time.perf_counter() - t0
    print(f"shards: {len(items)} images -> {len(urls)} tars in {shard_s:.1f} s; "
          f"training {steps} steps x {batch} with {workers} workers", flush=True)
    sampler = GpuSampler()
    sampler.start()
    t_train = time.perf_counter()
    run_training(work / "shards" / "train", profile, work / "logs", "gpu-check")
    t_end = time.perf_counter()
    sampler.stop()
    log_text = (work / "logs" / "gpu-check" / "out.log").read_text(encoding="utf-8", errors="replace")
    rows = [m.groupdict() for m in _STEP.finditer(log_text)]
    data = [float(r["data"]) for r in rows][args.skip:]
    step = [float(r["batch"]) for r in rows][args.skip:]
    rate = [float(r["rate"]) for r in rows][args.skip:]
    # utilisation while steps ran: from the first logged step's end to the end of training
    during = [(u, m) for t, u, m in sampler.rows if t_train <= t <= t_end]
    summary = {
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else "none (cpu)",
        "profile": args.profile,
        "aug_cfg": profile.get("aug_cfg"), "dataset_resampled": bool(profile.get("dataset_resampled")),
        "pretrained": profile.get("pretrained"), "precision": profile["precision"],
        "images": len(items), "tars": len(urls), "workers": workers, "batch_size": batch,
        "steps_logged": len(rows), "steps_measured": len(step),
        "samples_per_s_median": statistics.median(rate) if rate else None,
        "samples_per_s_overall": steps * batch / (t_end - t_train),
        "step_s_median": statistics.median(step) if step else None,
        "data_wait_s_median": statistics.median(data) if data else None,
        "data_wait_s_mean": statistics.fmean(data) if data else None,
        "data_wait_share": (sum(data) / sum(step)) if step and sum(step) else None,
        "gpu_util_mean": statistics.fmean(u for u, _ in during) if during else None,
        "gpu_util_median": statistics.median(u for u, _ in during) if during else None,
        "gpu_mem_peak_mib": max((m for _, m in during), default=None),
        "train_wall_s": t_end - t_train, "shard_build_s": shard_s,
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}",
    }
    for key, value in summary.items():
        print(f"{key:>22}: {round(value, 4) if isinstance(value, float) else value}")
    verdict = summary["data_wait_share"]
    if verdict is not None:
        print("loader is " + ("NOT " if verdict < 0.10 else "") + "the bottleneck "
              f"(data wait {100 * verdict:.1f}% of step time)")
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"])
        (out / "gpu_train_check.json").write_text(json.dumps(summary, indent=2) + "\n")
        shutil.copy(work / "logs" / "gpu-check" / "out.log", out / "out.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
