"""Shard and metadata stages on pass-through JPEGs: samples/s and peak memory (PSS, process tree).

    python bench/shard_speed.py [--pairs 25000] [--images 10000] [--workers 2] [--captions pair]
                                [--stages shard,metadata] [--pipeline DIR]

Writes the stage tables (pairs, images, clusters, annotations, captions, enriched captions,
splits) for ``--pairs`` pairs over ``--images`` HAM10000 images from ``../shared`` (200x150
JPEGs: every one passes through ``skip_reencode`` undecoded), ~2.5 captions per image with a
Zipf tail like Derm1M's, captions from the shared Derm1M rows; then runs each stage in a fresh
process and prints its wall time, samples/s and the peak PSS of the stage process and its
workers. ``--pipeline`` runs another checkout's stages on the same tables (e.g. the main
branch, for a before/after figure); the tables follow this checkout's schemas/.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, require_shared_corpus, table  # noqa: E402
from pipeline.params import load_params, relocate_outputs  # noqa: E402
from pipeline.tables import load_schema, write_table  # noqa: E402

SHARED = REPO.parent / "shared"
HAM = SHARED / "corpus/ham10000/images"

_STAGE = """
import os, resource, sys, threading, time, json
sys.path.insert(0, {repo!r})
import importlib

def pss_kb(pid):
    try:
        with open(f"/proc/{{pid}}/smaps_rollup") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0

def tree(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{{d}}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return [pid] + [p for k in kids for p in tree(k)]

peak = [0]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], sum(pss_kb(p) for p in tree(os.getpid())))
        time.sleep(0.25)
threading.Thread(target=sample, daemon=True).start()
params = json.load(open({params!r}))
stage = importlib.import_module("pipeline.stages.{stage}")
t0 = time.perf_counter()
result = stage.run(params)
wall = time.perf_counter() - t0
done.set()
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"RESULT {{wall}} {{peak[0]}} {{result.rows_out}} {{me.ru_utime + me.ru_stime}} {{kids.ru_utime + kids.ru_stime}}")
"""


def _filled(schema_name: str, n: int, values: dict) -> list[dict]:
    """``n`` rows of a declared table: ``values`` (column -> list) and a plain value elsewhere."""
    plain = {"string": "", "int64": 0, "int32": 0, "int16": 0, "int8": 0, "float64": 0.0, "float32": 0.0,
             "bool": False, "list<string>": [], "list<int64>": []}
    cols = load_schema(schema_name).columns
    fill = {c.name: values.get(c.name) for c in cols}
    return [{c.name: fill[c.name][i] if fill[c.name] is not None else (None if c.nullable else plain[c.type])
             for c in cols} for i in range(n)]


def write_tables(root: Path, params: dict, n_pairs: int, n_images: int, seed: int = 0) -> None:
    """The stage tables of a corpus of ``n_pairs`` pairs over ``n_images`` images (one cluster each)."""
    files = sorted(HAM.glob("*.jpg"))[:n_images]
    if len(files) < n_images:
        sys.exit(f"only {len(files)} images in {HAM}; pass --images {len(files)} or fewer")
    rng = np.random.default_rng(seed)
    # Captions per image: at least one, a Zipf tail, scaled to the asked total.
    extra = np.minimum(rng.zipf(2.0, n_images) - 1, 50)
    extra = np.floor(extra * max(0, n_pairs - n_images) / max(1, extra.sum())).astype(int)
    extra[: n_pairs - n_images - extra.sum()] += 1
    per_image = 1 + extra
    with open(SHARED / "reference/derm1m/dev_rows.csv", newline="", encoding="utf-8") as fh:
        texts = [r["caption"] for r in csv.DictReader(fh)]
    image_ids = [f"img{i:07d}" for i in range(n_images)]
    owner = np.repeat(np.arange(n_images), per_image)[:n_pairs]
    pair_ids = [f"pair{i:08d}" for i in range(n_pairs)]
    captions = [f"{texts[i % len(texts)]} (case {i})" for i in range(n_pairs)]
    pimg = [image_ids[k] for k in owner]
    out = {s: Path(params[s]["out"]) for s in ("ingest", "dedup", "annotate", "truncate", "split", "enrich")}
    write_table(_filled("pairs", n_pairs, {
        "pair_id": pair_ids, "image_id": pimg, "source": ["bench"] * n_pairs, "source_type": ["edu"] * n_pairs,
        "source_record_id": pair_ids, "caption": captions, "language": ["en"] * n_pairs,
        "licence": ["CC BY-NC 4.0"] * n_pairs}), "pairs", out["ingest"] / "pairs.parquet")
    write_table(_filled("images", n_images, {
        "image_id": image_ids, "source": ["bench"] * n_images, "path": [str(f) for f in files],
        "sha256": [f"{i:064x}" for i in range(n_images)], "bytes": [f.stat().st_size for f in files],
        "format": ["JPEG"] * n_images, "mode": ["RGB"] * n_images, "width": [200] * n_images,
        "height": [150] * n_images, "exif_orientation": [1] * n_images}), "images", out["ingest"] / "images.parquet")
    write_table(_filled("clusters", n_images, {
        "image_id": image_ids, "cluster_id": image_ids, "canonical_image_id": image_ids,
        "is_canonical": [True] * n_images, "match_kind": ["canonical"] * n_images,
        "cluster_size": [1] * n_images, "hash_method": ["fast"] * n_images}), "clusters", out["dedup"] / "clusters.parquet")
    labels = ["eczema", "psoriasis", "melanoma", "acne", "tinea corporis"]
    write_table(_filled("annotations", n_pairs, {
        "pair_id": pair_ids, "disease_label": [labels[i % 5] for i in range(n_pairs)],
        "hierarchical_disease_label": [f"skin disease, {labels[i % 5]}" for i in range(n_pairs)],
        "disease_labels": [[labels[i % 5]] for i in range(n_pairs)], "label_source": ["caption"] * n_pairs,
        "skin_concept": ["erythema"] * n_pairs, "skin_concepts": [["erythema"]] * n_pairs,
        "body_location": ["arm"] * n_pairs, "body_locations": [["arm"]] * n_pairs,
        "symptoms": ["No symptom information"] * n_pairs, "age": ["No age information"] * n_pairs,
        "gender": ["No gender information"] * n_pairs}), "annotations", out["annotate"] / "annotations.parquet")
    write_table(_filled("captions", n_pairs, {
        "pair_id": pair_ids, "truncated_caption": [c[:300] for c in captions], "n_tokens": [60] * n_pairs,
        "n_tokens_kept": [60] * n_pairs, "cut": ["none"] * n_pairs}), "captions", out["truncate"] / "captions.parquet")
    write_table(_filled("enriched_captions", n_pairs, {
        "pair_id": pair_ids, "ontology_caption": [f"an image of {labels[i % 5]}, a skin disease" for i in range(n_pairs)],
        "concept_caption": ["erythema on the arm"] * n_pairs, "llm_status": ["off"] * n_pairs}),
        "enriched_captions", out["enrich"] / "enriched_captions.parquet")
    split = rng.choice(["train", "validation", "holdout"], size=n_images, p=[0.8, 0.1, 0.1])
    write_table(_filled("splits", n_images, {"cluster_id": image_ids, "split_group": image_ids, "split": list(split)}),
                "splits", out["split"] / "splits.parquet")


def run_stage(stage: str, params_file: Path, pipeline_dir: Path) -> tuple[float, float, int, float, float]:
    """(seconds, peak PSS MB of the stage's process tree, rows out, CPU seconds of the stage
    process and of its workers) of one stage in a fresh process."""
    script = _STAGE.format(repo=str(pipeline_dir), params=str(params_file), stage=stage)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"}, cwd=params_file.parent)
    if done.returncode != 0:
        sys.exit(f"{stage} failed:\n{done.stderr[-3000:]}")
    wall, pss, rows, cpu, cpu_workers = done.stdout.split("RESULT")[1].split()
    return float(wall), float(pss) / 1024, int(rows), float(cpu), float(cpu_workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=25_000)
    ap.add_argument("--images", type=int, default=10_000, help="HAM10000 images (at most 10,015)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--captions", choices=("pair", "cluster"), default="pair")
    ap.add_argument("--stages", default="shard,metadata", help="comma-separated, in order (default shard,metadata)")
    ap.add_argument("--pipeline", type=Path, default=REPO, help="checkout whose stages run (default: this one)")
    args = ap.parse_args()
    require_shared_corpus(SHARED)
    if args.pairs < args.images:
        sys.exit("--pairs must be at least --images (every image has a caption)")
    import json

    with tempfile.TemporaryDirectory(prefix="shard-speed-") as tmp:
        root = Path(tmp)
        params = relocate_outputs(load_params(REPO / "params.yaml"), root)
        params["shard"].update(out=str(root / "shards"), captions=args.captions)
        params["ingest"]["workers"] = args.workers
        write_tables(root, params, args.pairs, args.images)
        params_file = root / "params.json"
        params_file.write_text(json.dumps(params), encoding="utf-8")
        rows = []
        for stage in args.stages.split(","):
            wall, pss, out, cpu, cpu_workers = run_stage(stage, params_file, args.pipeline.resolve())
            extra = ""
            if stage == "shard":
                tars = sorted((root / "shards").glob("*/*.tar"))
                extra = f"; {len(tars)} tars, {sum(t.stat().st_size for t in tars) / 1e6:,.0f} MB"
            rows.append((stage, f"{wall:6.1f} s, {out / wall:8,.0f} samples/s, peak {pss:6,.0f} MB PSS "
                                f"(stage process + workers), CPU {cpu:.1f} s + workers {cpu_workers:.1f} s{extra}"))
    print(f"machine: {machine()}")
    table(f"{args.pairs:,} pairs / {args.images:,} pass-through JPEGs, captions: {args.captions}, "
          f"workers {args.workers}, pipeline {args.pipeline}", rows)


if __name__ == "__main__":
    main()
