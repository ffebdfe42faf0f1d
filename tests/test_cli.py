"""The derm1m command as users run it: standalone annotate, query, and one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]
RELEASE = ["disease_label", "hierarchical_disease_label", "skin_concept", "body_location", "symptoms", "age", "gender"]


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_standalone_annotate_with_derm1m_ontology(shared, tmp_path):
    out = tmp_path / "a.csv"
    src = shared / "reference/derm1m/dev_rows.csv"
    proc = _run("annotate", "--input", str(src), "--output", str(out), "--ontology",
                str(shared / "reference/derm1m/ontology.json"))
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(src, newline="", encoding="utf-8") as fh:
        original = list(csv.DictReader(fh))
    assert len(rows) == len(original) == 320
    assert all(col in rows[0] for col in RELEASE)
    assert [r["filename"] for r in rows] == [r["filename"] for r in original]
    assert all(r["skin_concept"] for r in rows) and all(r["gender"] for r in rows)
    # Labels come out in Derm1M's own vocabulary: its node names.
    assert sum(r["disease_label"] == o["disease_label"] for r, o in zip(rows, original, strict=True)) > 100


def test_standalone_annotate_needs_a_caption_column(tmp_path):
    bad = tmp_path / "in.csv"
    bad.write_text("text\nhello\n", encoding="utf-8")
    code = main(["annotate", "--input", str(bad), "--output", str(tmp_path / "o.csv"),
                 "--ontology", str(REPO / "ontology/conditions.yaml")])
    assert code == 2
    assert not (tmp_path / "o.csv").exists()


def test_bad_params_give_one_line_errors(tmp_path, capsys):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert main(["split", "--params", str(path), "--set", "split.ratio=0.5"]) == 2
    err = capsys.readouterr().err
    assert "split.ratio" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["dedup", "--params", str(path), "--set", "dedup.radius=eight"]) == 2
    assert "dedup.radius" in capsys.readouterr().err
    assert main(["ingest", "--params", str(tmp_path / "missing.yaml")]) == 2


def test_ontology_show_and_check(capsys):
    assert main(["ontology", "show", "BCC", "--ontology", str(REPO / "ontology/conditions.yaml")]) == 0
    out = capsys.readouterr().out
    assert "basal cell carcinoma" in out and "proliferations" in out
    assert main(["ontology", "check", "--ontology", str(REPO / "ontology/conditions.yaml")]) == 0


def test_query_over_the_corpus_is_read_only(corpus, capsys, monkeypatch):
    root = corpus["root"]
    (root / "params.yaml").write_text(yaml.safe_dump(corpus["params"]))
    assert main(["query", "--root", str(root), "--format", "csv",
                 "select split, count(*) as n from metadata group by 1 order by 1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "split,n" and {line.split(",")[0] for line in lines[1:]} == {"holdout", "train", "validation"}
    assert main(["query", "--root", str(root), "select count(*) from rejects"]) == 0
    capsys.readouterr()
    target = root / "leak.csv"
    assert main(["query", "--root", str(root), f"copy (select * from pairs) to '{target}'"]) == 2
    assert not target.exists()
    assert "read-only" in capsys.readouterr().err
    assert main(["query", "--tables"]) == 0
    assert "metadata:" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["ingest", "dedup", "enrich", "truncate", "split", "shard", "metadata", "report"])
def test_stage_commands_exist(command):
    proc = _run(command, "--help")
    assert proc.returncode == 0 and "--set" in proc.stdout


def test_ontology_import_export_check_on_derm1m_json(shared, tmp_path, capsys):
    """import splits Derm1M's shared groupings, export gives Derm1M-style JSON back, check names
    the file's real clashes (exit 1), show lists both 'non-melanocytic' nodes with their paths."""
    src = shared / "reference/derm1m/ontology.json"
    owl = tmp_path / "derm1m.owl"
    assert main(["ontology", "import", str(src), "--output", str(owl)]) == 0
    assert "split shared groupings ['melanocytic', 'non-melanocytic']" in capsys.readouterr().err
    assert main(["ontology", "show", "non-melanocytic", "--ontology", str(owl)]) == 0
    out = capsys.readouterr().out
    assert "proliferations > malignant > non-melanocytic" in out and "proliferations > benign > non-melanocytic" in out
    assert "basal cell carcinoma" in out.split("proliferations > malignant > non-melanocytic")[1].split("\n\n")[0]
    assert main(["ontology", "check", "--ontology", str(owl)]) == 1
    out = capsys.readouterr().out
    assert "'cutaneous sarcoidosis' is claimed by 2 nodes: ['cutaneous sarcoidosis', 'sarcoidosis, cutaneous sarcoidosis']" in out
    assert "melanocytic" not in out      # the split copies are ambiguous by construction
    exported = tmp_path / "back.json"
    assert main(["ontology", "export", "--ontology", str(owl), "--output", str(exported)]) == 0
    back = json.loads(exported.read_text(encoding="utf-8"))
    assert "basal cell carcinoma" in back["non-melanocytic"] and "dermatofibroma" in back["non-melanocytic"]
    assert main(["ontology", "import", str(tmp_path / "missing.json"), "--output", str(owl)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_ontology_show_resolves_plurals_and_kind_of(capsys):
    assert main(["ontology", "show", "Herpetic whitlows", "--ontology", str(REPO / "ontology/conditions.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("herpetic whitlow\n") and "kind of: herpes simplex" in out
