"""The ``derm1m`` command: one subcommand per DVC stage, plus tools (query, standalone annotate).

Each stage subcommand is thin: load params.yaml (``--set`` overrides), call the stage's
``run(params)``, exit. User errors (bad params, missing inputs) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from pipeline.errors import PipelineError, one_line
from pipeline.params import DEFAULT_PARAMS_FILE, load_params

# subcommand -> (module with run(params), help)
STAGES: dict[str, tuple[str, str]] = {
    "demo-corpus": ("pipeline.stages.demo_corpus", "generate the synthetic demo corpus"),
    "ingest": ("pipeline.stages.ingest", "read every source into pairs/images/rejects tables"),
    "dedup": ("pipeline.stages.dedup", "cluster exact and near-duplicate images"),
    "enrich": ("pipeline.stages.enrich", "knowledge-enhanced captions (ontology, concepts, optional LLM)"),
    "truncate": ("pipeline.stages.truncate", "fit captions to the text encoder's context"),
    "split": ("pipeline.stages.split", "assign train/validation/holdout per cluster"),
    "shard": ("pipeline.stages.shard", "write WebDataset shards per split"),
    "metadata": ("pipeline.stages.metadata", "join every table into the final metadata"),
    "report": ("pipeline.stages.report", "write the HTML report, plots, metrics.json and the dataset card"),
    "train": ("pipeline.stages.train", "train DermLIP with open_clip on the shards"),
    "evaluate": ("pipeline.stages.evaluate", "compare models: zero-shot, probe, concepts and retrieval"),
}


def _add_params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="params file (default: params.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, e.g. --set dedup.radius=6 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derm1m", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in STAGES.items():
        stage = sub.add_parser(name, help=help_text)
        _add_params_args(stage)
        if name in ("train", "evaluate"):
            stage.add_argument("--profile", help="training profile (smoke, dermlip-vitb16, dermlip-panderm); "
                               "same as --set train.profile=NAME")
        if name == "evaluate":
            stage.add_argument("--model", dest="models", action="append", metavar="[LABEL=]SPEC",
                               help="a model to evaluate (repeatable; replaces evaluate.models): a training "
                               "profile, MODEL/PRETRAINED (ViT-B-16/openai, derm1m-tiny/ckpt.pt) or hf-hub:org/repo")

    ann = sub.add_parser("annotate", help="annotate captions: the stage, or any CSV with --input")
    _add_params_args(ann)
    ann.add_argument("--input", help="CSV with a 'caption' column (standalone mode)")
    ann.add_argument("--output", help="output CSV (standalone mode)")
    ann.add_argument("--ontology", help="ontology: our OWL/YAML or a Derm1M-style ontology.json")

    onto = sub.add_parser("ontology", help="build, import, export, show or check the ontology")
    onto_sub = onto.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_params_args(onto_sub.add_parser("build", help="build the OWL file from ontology/conditions.yaml"))
    imp = onto_sub.add_parser("import", help="convert a Derm1M-style ontology.json to OWL")
    imp.add_argument("json_path")
    imp.add_argument("--output", required=True, help="OWL file to write")
    imp.add_argument("--reference", default=None,
                     help="ontology that decides which parent a child of a grouping listed under two parents "
                          "belongs to (default: ours, ontology/conditions.yaml; 'none' for the first parent)")
    exp = onto_sub.add_parser("export", help="export an ontology as Derm1M-style JSON")
    exp.add_argument("--format", default="derm1m-json", choices=["derm1m-json"])
    exp.add_argument("--ontology", default=None, help="ontology file (default: the built OWL)")
    exp.add_argument("--output", default="-", help="output file (default: stdout)")
    show = onto_sub.add_parser("show", help="show a node's path, level and synonyms")
    show.add_argument("name")
    show.add_argument("--ontology", default=None)
    chk = onto_sub.add_parser("check", help="check the ontology for cycles, orphans, clashing synonyms")
    chk.add_argument("--ontology", default=None)

    fd = sub.add_parser("find-duplicates", help="list duplicate images under folders (--against: benchmark matches)")
    fd.add_argument("dirs", nargs="+", metavar="DIR", help="folders to scan recursively for images")
    fd.add_argument("--radius", type=int, default=10, help="candidates: max Hamming distance between whole-image "
                    "64-bit pHashes (default 12); every candidate is then verified")
    fd.add_argument("--window-radius", type=int, default=6, help="candidates: max distance between a whole image "
                    "and a centred window of the other, i.e. crops (default 6)")
    fd.add_argument("--mirror", action="store_true", help="also match left-right mirror images (as dedup.mirror)")
    fd.add_argument("--dermoscopic", action="store_true", help="judge every pair by the dermoscopic policy "
                    "(no occlusion check: different lesions under one dermatoscope differ only in a few cells)")
    fd.add_argument("--output", required=True, metavar="OUT.csv", help="CSV to write")
    fd.add_argument("--against", metavar="BENCH_DIR", help="only images that are verified copies of an image of BENCH_DIR "
                    "(a folder, or a CSV with an image_path column)")
    fd.add_argument("--hash-method", default="fast", choices=["fast", "imagehash"], help="pHash path (default fast)")
    fd.add_argument("--workers", type=int, default=0, help="hashing processes (default: one per core)")

    up = sub.add_parser("unpack", help="safely extract a zip/tar (e.g. Derm1M's release) into a new folder")
    up.add_argument("archive", metavar="ARCHIVE", help="the .zip, .tar, .tar.gz, .tar.bz2 or .tar.xz file")
    up.add_argument("dest", metavar="DEST", help="folder to create (must not exist); refused entries go to "
                    "DEST.rejects.parquet beside it")
    up.add_argument("--max-bytes", type=int, default=None, help="total unpacked bytes allowed (default 200 GiB)")
    up.add_argument("--max-ratio", type=float, default=None,
                    help="largest compression ratio of a zip entry over 1 MiB (default 100; zip-bomb guard)")

    q = sub.add_parser("query", help="run read-only SQL (DuckDB) over every table")
    q.add_argument("sql", nargs="?", help="SQL to run; omit with --tables")
    q.add_argument("--tables", action="store_true", help="list the tables and their columns")
    q.add_argument("--format", default="table", choices=["table", "csv", "json", "parquet"],
                   help="output format (parquet needs --output)")
    q.add_argument("--output", metavar="FILE", help="write the result to FILE instead of stdout")
    q.add_argument("--shell", action="store_true", help="interactive DuckDB shell on the same views "
                   "(the duckdb CLI if installed, else a small Python shell)")
    q.add_argument("--root", default=".", help="repository root holding params.yaml, data/ and shards/")
    q.add_argument("--allow-writes", action="store_true",
                   help="lift the read-only confinement: COPY ... TO, ATTACH, INSTALL/LOAD, several statements, "
                        "and files outside the corpus tables (use deliberately)")
    return parser


def _record(params: dict, result: object) -> None:
    """Keep the stage's summary for the report's stage times; a failure to write it is a
    warning, never a failed stage (its outputs are complete)."""
    from pipeline.stages import StageResult, write_summary

    if isinstance(result, StageResult):
        try:
            write_summary(params, result)
        except OSError as exc:
            print(one_line(f"derm1m: warning: stage summary not written: {exc}"), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in STAGES:
            profile = [f"train.profile={args.profile}"] if getattr(args, "profile", None) else []
            params = load_params(args.params, args.overrides + profile)
            if getattr(args, "models", None):
                params["evaluate"]["models"] = list(args.models)
            result = importlib.import_module(STAGES[args.command][0]).run(params)
            _record(params, result)
        elif args.command == "annotate":
            from pipeline.stages import annotate

            if args.input or args.output:
                if not (args.input and args.output):
                    raise PipelineError("derm1m annotate: --input and --output go together")
                annotate.annotate_csv(Path(args.input), Path(args.output), args.ontology,
                                      load_params(args.params, args.overrides) if Path(args.params).exists() else None)
            else:
                params = load_params(args.params, args.overrides)
                _record(params, annotate.run(params))
        elif args.command == "ontology":
            from pipeline.stages import ontology

            return ontology.main(args)
        elif args.command == "find-duplicates":
            from pipeline.images import find

            return find.main(args)
        elif args.command == "unpack":
            from pipeline import archives

            given = {"max_total_bytes": args.max_bytes, "max_ratio": args.max_ratio}
            limits = archives.ArchiveLimits(**{k: v for k, v in given.items() if v is not None})
            result = archives.unpack(args.archive, args.dest, limits)
            print(result.summary() + f"; rejects in {archives.rejects_path(args.dest)}", file=sys.stderr)
        elif args.command == "query":
            from pipeline import query

            return query.main(args)
    except PipelineError as exc:
        print(one_line(f"derm1m {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"derm1m {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
