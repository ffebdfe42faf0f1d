"""``derm1m ontology``: build the OWL from our YAML (a DVC stage), import/export/show/check."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.params import load_params, section
from pipeline.stages import StageResult, Timer
from pipeline.tables import atomic_path
from pipeline.text.ontology import PROJECT_YAML, Ontology, project_ontology

DEFAULT_OWL = "ontology/build/dermatology.owl"


def build(params: dict) -> StageResult:
    cfg = section(params, "ontology", {"source": str, "owl": str})
    with Timer(StageResult("ontology")) as result:
        onto = Ontology.load(cfg["source"])
        problems = onto.check()
        if problems:
            raise PipelineError(f"{cfg['source']}: {len(problems)} problem(s), first: {problems[0]}; run `derm1m ontology check`")
        with atomic_path(cfg["owl"]) as tmp:
            onto.to_owl(tmp)
        result.rows_in = result.rows_out = len(onto.nodes) - 1
    return result


def _load(path: str | None) -> Ontology:
    """The given file, else the built OWL, else (not built yet) its YAML source."""
    if path is None and not Path(DEFAULT_OWL).exists() and PROJECT_YAML.exists():
        return Ontology.load(PROJECT_YAML)
    return Ontology.load(path or DEFAULT_OWL)


def main(args: argparse.Namespace) -> int:
    if args.action == "build":
        build(load_params(args.params, args.overrides))
    elif args.action == "import":
        source = Path(args.json_path)
        if not source.exists():
            raise PipelineError(f"{source}: no such file")
        reference = None if args.reference == "none" else Ontology.load(args.reference) if args.reference else project_ontology()
        onto = Ontology.from_derm1m_json(source, reference=reference)
        with atomic_path(args.output) as tmp:
            onto.to_owl(tmp)
        split = sorted({n.name for n in onto.nodes.values() if n.id != n.name})
        print(f"wrote {args.output}: {len(onto.nodes) - 1} nodes"
              + (f"; split shared groupings {split} by {'the reference' if reference else 'first parent'}" if split else ""),
              file=sys.stderr)
    elif args.action == "export":
        text = json.dumps(_load(args.ontology).to_derm1m_json(), indent=2, ensure_ascii=False) + "\n"
        if args.output == "-":
            sys.stdout.write(text)
        else:
            with atomic_path(args.output) as tmp:
                tmp.write_text(text, encoding="utf-8")
    elif args.action == "show":
        onto = _load(args.ontology)
        ids = onto.resolve(args.name)
        if not ids:
            raise PipelineError(f"no ontology node or synonym {args.name!r}; try `derm1m ontology export` to browse")
        for node_id in ids:
            node = onto.nodes[node_id]
            print(f"{node.name}" + (f"  (id: {node_id})" if node_id != node.name else ""))
            print(f"  level: {onto.level(node_id)}\n  path: {' > '.join(onto.path_names(node_id))}")
            print(f"  synonyms: {', '.join(node.synonyms) or '-'}\n  abbreviations: {', '.join(node.abbreviations) or '-'}")
            if node.aliases:
                print(f"  aliases (lookup only): {', '.join(node.aliases)}")
            if node.kind_of:
                print(f"  kind of: {node.kind_of}")
            print(f"  icd10: {node.icd10 or '-'}\n  children: {', '.join(onto.name(c) for c in onto.children[node_id]) or '-'}")
    elif args.action == "check":
        onto = _load(args.ontology)
        problems = onto.check()
        for p in problems:
            print(p)
        print(f"{len(onto.nodes) - 1} nodes, {len(problems)} problem(s)", file=sys.stderr)
        return 1 if problems else 0
    return 0
