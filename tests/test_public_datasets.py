"""All of HAM10000 and Derm7pt (../shared) through the real ingest stage with the public_dataset adapter.

Every metadata row ends as a pair or a reject with a reason; HAM10000's lesion ids are kept as
group keys, one per distinct lesion_id of the metadata. The same measurement, with timings,
is ``python bench/ingest_public.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest_public import ingest_public  # noqa: E402


@pytest.mark.shared
@pytest.mark.slow
def test_public_dataset_ingests_all_of_ham10000_with_lesion_groups(shared: Path, tmp_path: Path, capsys) -> None:
    r = ingest_public(shared, "ham10000", tmp_path / "ham", workers=2)
    assert r["metadata_rows"] == r["records"] == r["pairs"] == r["images"] == 10015
    assert r["rejects"] == {}
    assert r["group_keys"] == r["metadata_group_ids"] == 7470
    assert r["labels"] == 7
    with capsys.disabled():
        print(f"\nham10000 via public_dataset: {r}")


@pytest.mark.shared
@pytest.mark.slow
def test_public_dataset_ingests_all_of_derm7pt(shared: Path, tmp_path: Path, capsys) -> None:
    r = ingest_public(shared, "derm7pt", tmp_path / "d7", workers=2)
    assert r["metadata_rows"] == r["records"] == 1011
    assert (r["pairs"], r["images"]) == (1010, 1010)
    assert r["rejects"] == {"image_path_case_mismatch": 1} and r["reject_records"] == ["FCl/Fcl068.jpg"]
    assert r["group_keys"] == r["metadata_group_ids"] == 0  # this copy of meta.csv has no case_num column
    with capsys.disabled():
        print(f"\nderm7pt via public_dataset: {r}")
