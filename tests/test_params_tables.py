"""Parameters (params.yaml, --set overrides, section checks), the parquet table contract with
its atomic writes, and the split assignment.

Tables are real parquet files in ``tmp_path`` written against the repository's ``schemas/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import ConfigError, PipelineError
from pipeline.params import apply_override, load_params, section
from pipeline.stages.split import SPLITS, assign_splits, check_ratios, split_groups
from pipeline.tables import (
    OUTPUT_MARKER,
    atomic_dir,
    atomic_path,
    read_table,
    to_arrow,
    write_json,
    write_table,
)

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


# -- params -----------------------------------------------------------------------------------

def test_load_repo_params_with_overrides() -> None:
    """The repo's params.yaml loads; overrides replace top-level, nested and deeply nested keys."""
    p = load_params(PARAMS, ["dedup.radius=6", "split.ratios.train=0.7", "train.profiles.smoke.epochs=3",
                             "truncate.tokenizer=ViT-B-32"])
    assert p["dedup"]["radius"] == 6
    assert p["split"]["ratios"]["train"] == 0.7
    assert p["train"]["profiles"]["smoke"]["epochs"] == 3
    assert p["truncate"]["tokenizer"] == "ViT-B-32"
    assert load_params(PARAMS)["dedup"]["radius"] == 10   # the file itself is untouched


def test_override_unknown_key_names_it() -> None:
    """A typo in --set is a ConfigError that quotes the key, at any depth."""
    p = load_params(PARAMS)
    for key in ("dedup.radiuss", "nosuch.radius", "train.profiles.smoke.epoch", "dedup.radius.deeper"):
        with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
            apply_override(p, f"{key}=1")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override(p, "dedup.radius")


def test_override_types() -> None:
    """Wrong types are refused (str/float/bool for int); an int is accepted for a float."""
    p = load_params(PARAMS)
    for raw, got in (("abc", "str"), ("6.5", "float"), ("true", "bool")):
        with pytest.raises(ConfigError, match=f"dedup.radius: expected int, got {got}"):
            apply_override(p, f"dedup.radius={raw}")
    with pytest.raises(ConfigError, match="expected float, got bool"):
        apply_override(p, "train.profiles.smoke.lr=yes")
    with pytest.raises(ConfigError, match="expected list, got str"):
        apply_override(p, "evaluate.templates=oops")
    apply_override(p, "train.profiles.smoke.lr=0.002")
    assert p["train"]["profiles"]["smoke"]["lr"] == 0.002
    apply_override(p, "train.profiles.smoke.lr=1")
    assert p["train"]["profiles"]["smoke"]["lr"] == 1
    apply_override(p, "train.profiles.smoke.local_loss=true")
    assert p["train"]["profiles"]["smoke"]["local_loss"] is True
    apply_override(p, "evaluate.templates=['a photo of {}.']")
    assert p["evaluate"]["templates"] == ["a photo of {}."]


def test_override_float_in_e_notation() -> None:
    """`--set train.profiles.smoke.lr=1e-4` is the natural way to set a learning rate."""
    p = load_params(PARAMS)
    apply_override(p, "train.profiles.smoke.lr=1e-4")
    assert p["train"]["profiles"]["smoke"]["lr"] == pytest.approx(1e-4)


def test_load_params_file_errors(tmp_path: Path) -> None:
    """Missing file, invalid YAML and a non-mapping top level are ConfigErrors."""
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dedup: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params(bad)
    bad.write_text("", encoding="utf-8")
    assert load_params(bad) == {}


def test_section_checks() -> None:
    """section() names the missing section/key and the wrong type, and returns a copy."""
    params = {"dedup": {"out": "data/dedup", "radius": 8, "flag": True}, "notdict": [1]}
    sec = section(params, "dedup", {"out": str, "radius": int})
    sec["radius"] = 99
    assert params["dedup"]["radius"] == 8
    with pytest.raises(ConfigError, match="missing section 'split'"):
        section(params, "split", {})
    with pytest.raises(ConfigError, match="missing section 'notdict'"):
        section(params, "notdict", {})
    with pytest.raises(ConfigError, match=r"missing key dedup\.workers"):
        section(params, "dedup", {"workers": int})
    with pytest.raises(ConfigError, match=r"dedup\.out must be int, got str 'data/dedup'"):
        section(params, "dedup", {"out": int})
    with pytest.raises(ConfigError, match=r"dedup\.flag must be a number, got True"):
        section(params, "dedup", {"flag": int})
    with pytest.raises(ConfigError, match=r"dedup\.radius must be str or float, got int 8"):
        section(params, "dedup", {"radius": (str, float)})


# -- tables -----------------------------------------------------------------------------------

def _splits_frame() -> pd.DataFrame:
    return pd.DataFrame({"cluster_id": ["c2", "c1", "c3"], "split_group": ["c1", "c1", "c3"],
                         "split": ["train", "train", "holdout"]})


def test_write_table_rejects_column_mismatch(tmp_path: Path) -> None:
    """Extra or missing columns are a PipelineError naming them; nothing is written."""
    df = _splits_frame()
    with pytest.raises(PipelineError, match=r"missing \[\], unexpected \['extra'\]"):
        write_table(df.assign(extra=1), "splits", tmp_path / "s.parquet")
    with pytest.raises(PipelineError, match=r"missing \['split'\], unexpected \[\]"):
        write_table(df.drop(columns="split"), "splits", tmp_path / "s.parquet")
    assert list(tmp_path.iterdir()) == []


def test_write_table_rejects_nulls_and_bad_types(tmp_path: Path) -> None:
    """Nulls (None or NaN) in a non-nullable column, or a wrong type, are refused."""
    df = _splits_frame()
    with pytest.raises(PipelineError, match="column split has 1 nulls but is declared non-nullable"):
        write_table(df.assign(split=[None, "train", "holdout"]), "splits", tmp_path / "s.parquet")
    with pytest.raises(PipelineError, match="column split_group has 1 nulls"):
        write_table(df.assign(split_group=[float("nan"), "c1", "c3"]), "splits", tmp_path / "s.parquet")
    with pytest.raises(PipelineError, match="column split is not string"):
        write_table(df.assign(split=[1, 2, 3]), "splits", tmp_path / "s.parquet")
    assert list(tmp_path.iterdir()) == []


def test_nullable_columns_accept_missing() -> None:
    """Nullable columns (pairs.group_key, source_label) take None/NaN as null, and ints get the schema type."""
    row = {"pair_id": "p1", "image_id": "i1", "source": "s", "source_type": "edu", "source_record_id": "r",
           "caption_index": 0, "caption": "c", "language": "en", "context": "", "licence": "x", "source_label": None,
           "group_key": float("nan")}
    table = to_arrow([row], "pairs")
    assert table.column("group_key").null_count == 1
    assert table.column("source_label").null_count == 1
    assert table.schema.field("caption_index").type == pa.int32()


def test_write_table_deterministic_and_sorted(tmp_path: Path) -> None:
    """Equal rows give byte-identical files whatever their input order; rows come back sorted by key."""
    df = _splits_frame()
    write_table(df, "splits", tmp_path / "a.parquet")
    write_table(df, "splits", tmp_path / "b.parquet")
    write_table(df.iloc[::-1].reset_index(drop=True), "splits", tmp_path / "c.parquet")
    write_table(df.to_dict("records")[::-1], "splits", tmp_path / "d.parquet")
    blobs = {p.name: p.read_bytes() for p in tmp_path.glob("*.parquet")}
    assert len(set(blobs.values())) == 1, sorted(blobs)
    back = read_table("splits", tmp_path / "a.parquet")
    assert back["cluster_id"].tolist() == ["c1", "c2", "c3"]
    assert back["split"].tolist() == ["train", "train", "holdout"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet", "c.parquet", "d.parquet"]


def test_write_empty_table(tmp_path: Path) -> None:
    """An empty row list still writes a table with the declared columns."""
    write_table([], "splits", tmp_path / "e.parquet")
    back = read_table("splits", tmp_path / "e.parquet")
    assert back.columns.tolist() == ["cluster_id", "split_group", "split"]
    assert len(back) == 0


def test_read_table_detects_stale_columns(tmp_path: Path) -> None:
    """A file from an older schema (other columns or order) fails loudly; a missing one names the fix."""
    pq.write_table(pa.table({"cluster_id": ["a"], "split": ["train"]}), tmp_path / "stale.parquet")
    with pytest.raises(PipelineError, match="do not match schemas/splits.yaml"):
        read_table("splits", tmp_path / "stale.parquet")
    pq.write_table(pa.table({"split": ["train"], "split_group": ["a"], "cluster_id": ["a"]}), tmp_path / "order.parquet")
    with pytest.raises(PipelineError, match="do not match"):
        read_table("splits", tmp_path / "order.parquet")
    with pytest.raises(PipelineError, match="missing input table splits"):
        read_table("splits", tmp_path / "absent.parquet")


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    """A failing block leaves neither the target nor a temp file; an older target stays as it was."""
    target = tmp_path / "out" / "t.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial", encoding="utf-8")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    write_json({"b": 1, "a": [2]}, target)
    assert target.read_text(encoding="utf-8") == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial", encoding="utf-8")
        raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8").startswith('{\n  "a"')
    assert [p.name for p in target.parent.iterdir()] == ["t.json"]


def test_atomic_dir_keeps_old_on_error(tmp_path: Path) -> None:
    """A failing block keeps the previous directory intact; success swaps in the new one cleanly."""
    out = tmp_path / "shards"
    out.mkdir()
    (out / "old.tar").write_bytes(b"old")
    (out / OUTPUT_MARKER).write_text("a previous output\n")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "new.tar").write_bytes(b"new")
        raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == sorted(["old.tar", OUTPUT_MARKER])
    assert (out / "old.tar").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]
    with atomic_dir(out) as tmp:
        (tmp / "new.tar").write_bytes(b"new")
    assert sorted(p.name for p in out.iterdir()) == sorted(["new.tar", OUTPUT_MARKER])
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]


# -- split ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ratios", "message"), [
    ({"train": 0.8, "validation": 0.2}, "must name exactly"),
    ({"train": 0.8, "validation": 0.1, "holdout": 0.1, "test": 0.0}, "must name exactly"),
    ({"train": 0.8, "validation": 0.1, "holdout": 0.2}, "sum to 1"),
    ({"train": 1.1, "validation": -0.1, "holdout": 0.0}, "non-negative"),
])
def test_check_ratios_errors(ratios: dict, message: str) -> None:
    """Bad split ratios are ConfigErrors with the reason."""
    with pytest.raises(ConfigError, match=message):
        check_ratios(ratios)


def test_check_ratios_order() -> None:
    """Ratios come back in the fixed split order, whatever the mapping order."""
    assert check_ratios({"holdout": 0.1, "train": 0.8, "validation": 0.1}) == [
        ("train", 0.8), ("validation", 0.1), ("holdout", 0.1)]
    assert SPLITS == ("train", "validation", "holdout")


def test_assign_splits_deterministic_and_proportional() -> None:
    """Same keys and salt give the same splits; shares are within 2 points of the ratios on 10,000 keys."""
    keys = pd.Series([f"clu{i:06d}" for i in range(10_000)])
    ratios = check_ratios({"train": 0.8, "validation": 0.1, "holdout": 0.1})
    first = assign_splits(keys, ratios, "derm1m-split-v1")
    assert first == assign_splits(keys, ratios, "derm1m-split-v1")
    assert first[:100] == assign_splits(keys[:100], ratios, "derm1m-split-v1")   # stable under added rows
    shares = pd.Series(first).value_counts(normalize=True)
    for name, ratio in ratios:
        assert abs(shares[name] - ratio) < 0.02, (name, shares[name])
    other = assign_splits(keys, ratios, "another-salt")
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 2000   # the salt reshuffles


def test_assign_splits_degenerate_ratios() -> None:
    """A ratio of 1 sends everything to that split; a ratio of 0 sends nothing there."""
    keys = pd.Series([f"k{i}" for i in range(200)])
    assert set(assign_splits(keys, check_ratios({"train": 1.0, "validation": 0.0, "holdout": 0.0}), "s")) == {"train"}
    assert set(assign_splits(keys, check_ratios({"train": 0.0, "validation": 0.0, "holdout": 1.0}), "s")) == {"holdout"}
    assert "validation" not in assign_splits(keys, check_ratios({"train": 0.5, "validation": 0.0, "holdout": 0.5}), "s")


def test_split_groups_join_clusters_by_group_key() -> None:
    """Clusters whose pairs share (source, group_key) form one group (named by its smallest id)."""
    clusters = pd.DataFrame({"image_id": ["i1", "i2", "i3", "i4", "i5", "i6", "i7"],
                             "cluster_id": ["c3", "c1", "c2", "c4", "c5", "c6", "c6"]})
    pairs = pd.DataFrame({
        "image_id": ["i1", "i2", "i3", "i4", "i5", "i5", "i6", "i7"],
        "source": ["s", "s", "s", "t", "s", "s", "s", "s"],
        "group_key": ["L1", "L1", None, "L1", "L2", "L2", "L3", "L1"],
    })
    groups = split_groups(clusters, pairs).set_index("cluster_id")["split_group"].to_dict()
    # c3 and c1 share lesion L1 in source s; c6 joins them via i7 (chain c3-c1-c6).
    # c4 has L1 too but in source t: a different lesion. c2 has no key; c5 alone.
    assert groups == {"c1": "c1", "c2": "c2", "c3": "c1", "c4": "c4", "c5": "c5", "c6": "c1"}


def test_split_groups_without_keys() -> None:
    """With no group keys every cluster is its own group."""
    clusters = pd.DataFrame({"image_id": ["i1", "i2"], "cluster_id": ["c2", "c1"]})
    pairs = pd.DataFrame({"image_id": ["i1", "i2"], "source": ["s", "s"], "group_key": [None, None]})
    frame = split_groups(clusters, pairs)
    assert frame.to_dict("list") == {"cluster_id": ["c1", "c2"], "split_group": ["c1", "c2"]}


def _many_splits(n: int) -> pd.DataFrame:
    frame = _splits_frame()
    rows = [dict(zip(frame.columns, frame.iloc[i % len(frame)], strict=True)) for i in range(n)]
    for i, row in enumerate(rows):
        row["cluster_id"] = f"c{i:04d}"
    return pd.DataFrame(rows)


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_table_writer_streams_the_same_bytes_as_write_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             chunk: int) -> None:
    """Streaming in any chunk size gives write_table's bytes: fixed-size row groups, same options."""
    import pipeline.tables as tables

    monkeypatch.setattr(tables, "ROW_GROUP_SIZE", 4)
    df = _many_splits(23)
    write_table(df, "splits", tmp_path / "whole.parquet")
    with tables.TableWriter("splits", tmp_path / "streamed.parquet") as writer:
        for start in range(0, len(df), chunk):
            writer.write(df.iloc[start:start + chunk])
    assert writer.rows == 23
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert pq.ParquetFile(tmp_path / "streamed.parquet").metadata.num_row_groups == 6


def test_table_writer_refuses_unsorted_chunks_and_leaves_nothing(tmp_path: Path) -> None:
    from pipeline.tables import TableWriter

    df = _many_splits(6)
    with pytest.raises(PipelineError, match="out of key order"), TableWriter("splits", tmp_path / "t.parquet") as w:
        w.write(df.iloc[3:])
        w.write(df.iloc[:3])
    assert list(tmp_path.iterdir()) == []


def test_imap_ordered_keeps_input_order() -> None:
    from pipeline.executor import imap_ordered

    items = iter(range(40))   # a generator: consumed lazily
    assert list(imap_ordered(abs, (-x for x in items), workers=2, desc="t")) == list(range(40))
    assert list(imap_ordered(abs, [-3, -1], workers=1)) == [3, 1]
