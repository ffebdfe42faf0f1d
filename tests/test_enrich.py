"""Knowledge-enhanced captions: templates, truncation, the enrich stage, shard variants, LLM hook.

The LLM hook is tested against a real ``http.server`` in a thread (a real HTTP server speaking
the OpenAI chat-completions shape, not an LLM); no LLM is ever called.
"""

from __future__ import annotations

import copy
import glob
import http.server
import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds

from pipeline.errors import ConfigError
from pipeline.shards.reader import pick_caption, pick_text, variant_members
from pipeline.tables import read_table
from pipeline.text.enrich import ConceptCaptioner, OntologyCaptioner, join_list, singular_phrase
from pipeline.text.llm import LLMConfig, LLMRewriter, render_prompt
from pipeline.text.ontology import Ontology
from pipeline.text.truncate import CaptionTruncator
from pipeline.text.vocab import load_body_sites, load_concepts, load_symptoms

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onto_captions() -> OntologyCaptioner:
    return OntologyCaptioner(Ontology.load(REPO / "ontology/conditions.yaml"))


@pytest.fixture(scope="module")
def concept_captions() -> ConceptCaptioner:
    return ConceptCaptioner(load_concepts(REPO / "ontology/concepts.yaml"), load_body_sites(REPO / "ontology/body_sites.yaml"),
                            load_symptoms(REPO / "ontology/symptoms.yaml"))


# --- templates on hand-made annotation rows ------------------------------------------------


def test_ontology_caption_kind_of_nested_and_categories(onto_captions: OntologyCaptioner) -> None:
    c = onto_captions
    assert c(["allergic contact dermatitis"]) == ("Allergic contact dermatitis, a form of contact dermatitis within "
                                                  "eczema, a non-infectious inflammatory condition.")
    assert c(["atopic dermatitis"]) == "Atopic dermatitis, a form of eczema, a non-infectious inflammatory condition."
    assert c(["herpes labialis"]) == ("Herpes labialis, a form of herpes simplex within the viral infections, "
                                      "an infectious inflammatory condition.")
    assert c(["impetigo"]) == "Impetigo, a bacterial infection, an infectious inflammatory condition."
    # adjective groups qualify the category once ("malignant" is part of "malignant non-melanocytic")
    assert c(["basal cell carcinoma"]) == "Basal cell carcinoma, a malignant non-melanocytic proliferation."
    assert c(["actinic keratosis"]) == "Actinic keratosis, a premalignant proliferation."
    assert c(["nodular melanoma"]) == "Nodular melanoma, a form of melanoma, a malignant melanocytic proliferation."
    # plural groups name what a member is
    assert c(["neurofibromatosis"]) == "Neurofibromatosis, a neurocutaneous syndrome, a hereditary condition."
    assert c(["insect bite"]) == "Insect bite, a bite or sting, an exogenous condition."
    assert c(["keloid"]) == "Keloid, a form of scar, a reaction pattern or descriptive term."
    assert c(["eczema"]) == "Eczema, a non-infectious inflammatory condition."
    # a synonym or abbreviation resolves like the annotator's labels do
    assert c(["BCC"]) == c(["basal cell carcinoma"])


def test_ontology_caption_multi_label_and_no_label(onto_captions: OntologyCaptioner) -> None:
    two = onto_captions(["psoriasis", "atopic dermatitis", "psoriasis"])
    assert two == ("Psoriasis, a non-infectious inflammatory condition; atopic dermatitis, a form of eczema, "
                   "a non-infectious inflammatory condition.")
    assert onto_captions([]) is None
    assert onto_captions(["no definitive diagnosis", "not a condition"]) is None
    assert onto_captions(["not a condition", "vitiligo"]) == "Vitiligo, a form of hypopigmentation, a pigmentary disorder."


def test_ontology_phrasing_follows_the_names_of_another_ontology(tmp_path: Path) -> None:
    """No per-term table: a different tree gets its phrasing from its own node names."""
    (tmp_path / "o.yaml").write_text("""root: disease
nodes:
  - name: tumours
    children:
      - name: benign
        children:
          - name: lipoma
          - name: angiolipoma
            kind_of: lipoma
  - name: genetic
    children:
      - name: keratinisation disorders
        children:
          - name: darier disease
""", encoding="utf-8")
    c = OntologyCaptioner(Ontology.load(tmp_path / "o.yaml"))
    assert c(["lipoma"]) == "Lipoma, a benign tumour."
    assert c(["angiolipoma"]) == "Angiolipoma, a form of lipoma, a benign tumour."
    assert c(["darier disease"]) == "Darier disease, a keratinisation disorder, a genetic condition."
    assert singular_phrase("dermatoses of pregnancy") == "dermatosis of pregnancy"
    assert join_list(["a", "b", "c"]) == "a, b and c" and join_list(["a"]) == "a"


def test_ontology_caption_from_derm1m_released_ontology(shared: Path) -> None:
    """Derm1M's ontology.json (comma-joined node names, "melanocytic" under benign and malignant)."""
    c = OntologyCaptioner(Ontology.load(shared / "reference/derm1m/ontology.json"))
    assert c(["squamous cell carcinoma"]) == "Squamous cell carcinoma, a malignant non-melanocytic proliferation."
    assert c(["epidermoid cyst"]) == "Epidermoid cyst, a cyst, a proliferation."
    assert c(["tinea cruris"]) == "Tinea cruris, a fungal infection, an infectious inflammatory condition."


def test_concept_caption_adjectives_before_nouns(concept_captions: ConceptCaptioner) -> None:
    c = concept_captions
    assert c(["plaque", "scaly", "red"], ["elbow"]) == "The image shows red, scaly plaques on the elbow."
    assert (c(["plaque", "red", "scale", "annular", "crust"], ["elbow", "knee", "oral"])
            == "The image shows annular, red plaques with scales and crusts on the elbow, knee and oral mucosa.")
    # vocabulary forms: erythema -> erythematous (adjective), bulla -> bullae (plural), xerosis a noun
    assert c(["bulla", "erythema"], ["hand"]) == "The image shows erythematous bullae on the hand."
    # no morphology noun: the adjectives' own nouns, not "brown skin" (which reads as a skin tone)
    assert c(["xerosis", "red"], []) == "The image shows redness and xerosis."
    assert (c(["brown(hyperpigmentation)", "crust"], ["chest"])
            == "The image shows hyperpigmentation and crusts on the chest.")
    assert c(["annular", "red"], ["back"]) == "The image shows annular, red lesions on the back."
    assert c(["solitary", "nodule", "pearly"], ["nose"]) == "The image shows a solitary, pearly nodule on the nose."
    # dermoscopic structures and artefacts are sentences of their own; only released symptoms
    assert (c(["pigment network", "irregular streaks", "ruler"], ["back"], ["itch", "bleeding"])
            == "The image shows the back. Dermoscopic structures: pigment network and irregular streaks. "
               "Also visible: ruler. Symptoms: bleeding.")


def test_concept_caption_null_without_concepts_or_site(concept_captions: ConceptCaptioner) -> None:
    assert concept_captions([], []) is None
    assert concept_captions([], [], ["tender"]) is None
    assert concept_captions(["not a concept"], []) is None
    assert concept_captions([], ["back"]) == "The image shows the back."


# --- the stage on the shared corpus ----------------------------------------------------------


def _enriched(params: dict) -> pd.DataFrame:
    return read_table("enriched_captions", Path(params["enrich"]["out"]) / "enriched_captions.parquet")


def test_stage_one_row_per_pair_and_deterministic(corpus: dict, tmp_path: Path) -> None:
    from pipeline.stages import enrich

    params = corpus["params"]
    table = _enriched(params)
    pairs = read_table("pairs", Path(params["ingest"]["out"]) / "pairs.parquet")
    assert sorted(table["pair_id"]) == sorted(pairs["pair_id"]) and table["pair_id"].is_unique
    # every English demo caption names a condition and a finding or site; the English-only matchers
    # find nothing in the planted Spanish/French/German forum posts, which get no concept caption
    english = table[table["pair_id"].isin(pairs.loc[pairs["language"] == "en", "pair_id"])]
    assert len(english) >= 0.9 * len(table)
    assert english["ontology_caption"].notna().all() and english["concept_caption"].notna().all()
    assert table["llm_caption"].isna().all() and table["llm_status"].isna().all()
    assert table["concept_caption"].dropna().str.startswith("The image shows ").all()
    # a rerun elsewhere gives the same bytes
    again = copy.deepcopy(params)
    again["enrich"]["out"] = str(tmp_path / "enrich")
    enrich.run(again)
    first = Path(params["enrich"]["out"]) / "enriched_captions.parquet"
    assert (tmp_path / "enrich/enriched_captions.parquet").read_bytes() == first.read_bytes()
    # the metadata table carries the same captions
    meta = read_table("metadata", Path(params["metadata"]["out"]) / "metadata.parquet")
    joined = meta.merge(table, on="pair_id", suffixes=("", "_e"))
    assert len(joined) == len(meta) and (joined["ontology_caption"] == joined["ontology_caption_e"]).all()


def test_stage_cuts_captions_to_the_context(corpus: dict, tmp_path: Path) -> None:
    from pipeline.stages import enrich

    params = copy.deepcopy(corpus["params"])
    params["enrich"]["out"] = str(tmp_path / "enrich")
    params["truncate"]["context_length"] = 14
    enrich.run(params)
    table = _enriched(params)
    counter = CaptionTruncator(params["truncate"]["tokenizer"], 14)
    assert table["variants_cut"].map(len).sum() > 0
    for col in ("ontology_caption", "concept_caption"):
        assert table[col].dropna().map(counter.count).max() <= 14
    full = _enriched(corpus["params"]).set_index("pair_id")
    cut = table[table["variants_cut"].map(lambda v: "ontology" in list(v))]
    assert all(full.loc[r.pair_id, "ontology_caption"].startswith(r.ontology_caption.rstrip(",;."))
               for r in cut.itertuples())


def test_shard_members_present_and_decodable(corpus: dict) -> None:
    params = corpus["params"]
    table = _enriched(params).set_index("pair_id")
    urls = sorted(glob.glob(str(Path(params["shard"]["out"]) / "train" / "*.tar")))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert samples and all(isinstance(s["txt"], str) for s in samples)
    for s in samples:
        for member, column in (("ontology.txt", "ontology_caption"), ("concept.txt", "concept_caption")):
            expected = table.loc[s["__key__"], column]
            assert s[member] == ("" if pd.isna(expected) else expected)   # empty member: no variant
        assert "llm.txt" not in s
    # open_clip's own pipeline: rename + to_tuple reads txt and ignores the variants
    image, text = next(iter(wds.WebDataset(urls, shardshuffle=False).decode("pilrgb")
                            .rename(image="jpg;png;jpeg;webp", text="txt").to_tuple("image", "text")))
    assert image.mode == "RGB" and text == samples[0]["txt"]
    manifest = read_table("shard_index", Path(params["shard"]["out"]) / "manifest.parquet")
    with_knowledge = table[table["ontology_caption"].notna() & table["concept_caption"].notna()].index
    listed = dict(zip(manifest["pair_id"], manifest["variant_members"], strict=True))
    assert all(sorted(listed[p]) == ["concept.txt", "ontology.txt"] for p in with_knowledge if p in listed)
    assert all(set(v) <= {"concept.txt", "ontology.txt"} for v in listed.values())
    # seeded augmentation over caption + variants
    picks = {pick_text(samples[0], epoch)["txt"] for epoch in range(24)}
    assert picks == {samples[0][m] for m in ("txt", "ontology.txt", "concept.txt")}
    assert pick_text(samples[0], 5) == pick_text(samples[0], 5)
    assert pick_text(samples[0], 5, variants=[])["txt"] == samples[0]["txt"] == pick_caption(samples[0], 5)["txt"]
    assert variant_members(samples[0], ["concept"]) == ["concept.txt"]


def test_cluster_mode_keeps_variants_aligned(corpus: dict, tmp_path: Path) -> None:
    from pipeline.stages import shard

    params = copy.deepcopy(corpus["params"])
    params["shard"].update(out=str(tmp_path / "shards"), captions="cluster")
    shard.run(params)
    table = _enriched(params).set_index("pair_id")
    manifest = read_table("shard_index", tmp_path / "shards/manifest.parquet")
    multi = manifest[manifest["txt_member"] != "txt"]
    assert len(multi) > 0
    for r in multi.itertuples():
        n = r.txt_member.split(".")[1]
        present = [f"{v}.txt.{n}" for v in ("concept", "ontology") if pd.notna(table.loc[r.pair_id, f"{v}_caption"])]
        assert sorted(r.variant_members) == present
    tars = sorted(glob.glob(str(tmp_path / "shards/*/*.tar")))
    raw = {s["__key__"]: s for s in wds.WebDataset(tars, shardshuffle=False)}
    for r in manifest.itertuples():
        sample = raw[r.key]
        suffix = r.txt_member[3:]  # "" or ".1"
        for variant in ("ontology", "concept"):
            expected = table.loc[r.pair_id, f"{variant}_caption"]
            assert sample[f"{variant}.txt{suffix}"].decode() == ("" if pd.isna(expected) else expected)
    # variants off: no members, no index entries; a bad name is a one-line error
    params["shard"].update(out=str(tmp_path / "plain"), text_variants=[])
    shard.run(params)
    plain = read_table("shard_index", tmp_path / "plain/manifest.parquet")
    assert plain["variant_members"].map(len).sum() == 0
    params["shard"]["text_variants"] = ["ontology", "wiki"]
    with pytest.raises(ConfigError, match="shard.text_variants"):
        shard.run(params)


def test_missing_variants_are_empty_members_and_hf_loads(tmp_path: Path) -> None:
    """A pair without an ontology caption still gets an (empty) ontology.txt, so every sample has
    the same members, which Hugging Face's webdataset loader requires; readers skip it."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from pipeline.shards.writer import Sample, ShardOptions, encode_jpeg, write_split

    samples = []
    for i in range(6):
        path = tmp_path / f"i{i}.jpg"
        Image.new("RGB", (40, 30), (i * 30, 10, 10)).save(path)
        samples.append(Sample(key=f"k{i}", image_id=f"k{i}", image_path=str(path), image_sha256=str(i),
                              captions=((f"p{i}", f"caption {i}"),), meta={"pair_id": f"p{i}"},
                              variants=(("ontology", (f"onto {i}" if i % 2 else None,)), ("concept", (f"conc {i}",)))))
    result = write_split("train", samples, tmp_path / "out", ShardOptions(10),
                         lambda chunk: [encode_jpeg(s.image_path, 64, 90) for s in chunk])
    assert [list(r["variant_members"]) for r in result.index_rows[:2]] == [["concept.txt"],
                                                                          ["ontology.txt", "concept.txt"]]
    raw = list(wds.WebDataset(str(tmp_path / "out/train-000000.tar"), shardshuffle=False))
    assert raw[0]["ontology.txt"] == b"" and variant_members(raw[0]) == ["concept.txt"]
    assert {pick_text(raw[0], e)["txt"] for e in range(16)} == {b"caption 0", b"conc 0"}
    ds = datasets.load_dataset("webdataset", data_files={"train": [str(tmp_path / "out/train-000000.tar")]},
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert ds[0]["txt"] == "caption 0" and ds[0]["ontology.txt"] == "" and ds[1]["ontology.txt"] == "onto 1"


# --- the LLM hook against a local HTTP server -------------------------------------------------


class _Server:
    """A local OpenAI-shaped endpoint: /ok answers, /fail is HTTP 500, /junk is not JSON, /slow sleeps."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self.path.startswith("/fail"):
                    self.send_error(500, "boom")
                    return
                if self.path.startswith("/slow"):
                    time.sleep(1.0)
                prompt = body["messages"][0]["content"]
                reply = b"not json" if self.path.startswith("/junk") else json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": f"  Rewritten: {prompt[-40:]}  "}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _llm(server: _Server, path: str, cache: Path, **kw: object) -> LLMConfig:
    return LLMConfig.from_params({"enabled": True, "endpoint": server.url + path, "model": "m",
                                  "prompt": "Caption: {caption} Knowledge: {ontology_caption} | {concept_caption}",
                                  "cache": str(cache), **kw})


def test_llm_success_cache_hit_and_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERM1M_TEST_KEY", "secret")
    with _Server() as server:
        rw = LLMRewriter(_llm(server, "/ok", tmp_path / "cache", api_key_env="DERM1M_TEST_KEY"))
        text, status = rw("red plaques", "Psoriasis, a condition.", None)
        assert status == "ok" and text.startswith("Rewritten: ") and text == text.strip()
        assert server.requests[0]["path"] == "/ok/v1/chat/completions"
        assert server.requests[0]["auth"] == "Bearer secret" and server.requests[0]["body"]["temperature"] == 0
        assert "Knowledge: Psoriasis, a condition. | (none)" in server.requests[0]["body"]["messages"][0]["content"]
        again = LLMRewriter(rw.config)
        assert again("red plaques", "Psoriasis, a condition.", None) == (text, "ok")
        assert len(server.requests) == 1 and again.cache_hits == 1 and again.requests == 0
        failing = LLMRewriter(_llm(server, "/fail", tmp_path / "cache"))
        assert failing("red plaques", "x", None) == (None, "http_error")
        assert failing.failures == {"http_error": 1}
        assert not list((tmp_path / "cache").rglob("*.json"))[1:]  # failures are not cached
        assert LLMRewriter(_llm(server, "/junk", tmp_path / "c2"))("a", "b", None) == (None, "bad_response")
        assert LLMRewriter(_llm(server, "/slow", tmp_path / "c3", timeout_s=0.2))("a", "b", None) == (None, "timeout")
    assert LLMRewriter(_llm(server, "/ok", tmp_path / "c4"))("a", "b", None) == (None, "connection_error")


def test_llm_config_errors_and_prompt() -> None:
    assert render_prompt("{caption} {x} {}", {"caption": "c"}) == "c {x} {}"
    with pytest.raises(ConfigError, match="endpoint"):
        LLMConfig.from_params({"enabled": True, "endpoint": "ftp://x", "model": "m", "prompt": "{caption}"})
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        LLMConfig.from_params({"enabled": True, "endpoint": "http://x", "model": "m", "prompt": "{caption}",
                               "api_key_env": "NOT_SET_ANYWHERE"})
    with pytest.raises(ConfigError, match="enrich.llm.tempreature"):
        LLMConfig.from_params({"enabled": False, "tempreature": 1})
    assert not LLMConfig.from_params({"enabled": False, "endpoint": "nonsense"}).enabled


def pairs_of(params: dict) -> pd.DataFrame:
    return read_table("pairs", Path(params["ingest"]["out"]) / "pairs.parquet").set_index("pair_id")


def test_stage_with_llm_hook_then_cache_and_disabled(corpus: dict, tmp_path: Path) -> None:
    from pipeline.stages import enrich

    params = copy.deepcopy(corpus["params"])
    params["enrich"]["out"] = str(tmp_path / "enrich")
    with _Server() as server:
        params["enrich"]["llm"].update(enabled=True, endpoint=server.url, model="m", cache=str(tmp_path / "cache"))
        first = enrich.run(params)
        n = len(server.requests)
        table = _enriched(params)
        # pairs with no enriched caption at all (the planted non-English posts) are not sent
        sent = table[table["llm_status"] != "no_knowledge"]
        assert (table.loc[table["llm_status"] == "no_knowledge", ["ontology_caption", "concept_caption"]].isna().all().all())
        # one request per distinct input (the demo repeats some captions verbatim), answered for every copy
        distinct = len({tuple(r) for r in pairs_of(params).loc[sent["pair_id"], ["caption"]].join(
            sent.set_index("pair_id")[["ontology_caption", "concept_caption"]]).itertuples(index=False)})
        assert n == first.extra["llm_requests"] == distinct > 0.8 * len(table)
        assert first.extra["llm_failed"] == first.extra["llm_cached"] == 0
        assert sent["llm_caption"].str.startswith("Rewritten: ").all() and (sent["llm_status"] == "ok").all()
        before = (tmp_path / "enrich/enriched_captions.parquet").read_bytes()
        second = enrich.run(params)
        assert len(server.requests) == n and second.extra["llm_cached"] == n
        assert (tmp_path / "enrich/enriched_captions.parquet").read_bytes() == before
        # an endpoint that fails: nulls and a count, no traceback
        params["enrich"]["llm"].update(endpoint=server.url + "/fail", cache=str(tmp_path / "cache2"))
        failed = enrich.run(params)
        assert failed.extra["llm_failed"] == n and _enriched(params)["llm_caption"].isna().all()
        assert (_enriched(params)["llm_status"].isin(["http_error", "no_knowledge"])).all()
        # disabled: nothing network-related, even with an endpoint set
        params["enrich"]["llm"].update(enabled=False, endpoint=server.url)
        seen = len(server.requests)
        enrich.run(params)
        assert len(server.requests) == seen and _enriched(params)["llm_status"].isna().all()
