"""``report/index.html`` and ``report/DATASET_CARD.md`` from the collected numbers.

The page is one self-contained file: figures are inline base64 PNGs, styles are inline, there
is no script and nothing is fetched, so it opens from a laptop, a CI artefact or an e-mail.
Nothing time-dependent is written (no "generated at"), so unchanged tables give an identical
page. The card follows the Hugging Face dataset-card sections and takes field types from
``schemas/``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

from pipeline.report.data import OntologyNode
from pipeline.tables import all_schemas, load_schema

CSS = """
body{font-family:"DejaVu Sans",Verdana,sans-serif;margin:0;color:#222;background:#faf8f5}
header{background:#5a3a1e;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px 0;font-size:24px} header p{margin:0;opacity:.85} header code{color:#5a3a1e}
nav{background:#efe7dc;padding:8px 32px;position:sticky;top:0;font-size:14px}
nav a{margin-right:14px;color:#5a3a1e;text-decoration:none}
main{padding:8px 32px 40px 32px;max-width:1100px}
section{background:#fff;border:1px solid #e3dbd0;border-radius:6px;padding:12px 20px;margin:18px 0}
h2{color:#5a3a1e;margin-top:6px} h3{margin-bottom:4px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #e3dbd0;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px;color:#5a3a1e}
img{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #eee;padding:3px 10px 3px 0;text-align:left;vertical-align:top}
td.n,th.n{text-align:right}
.ok{color:#2d7a2d;font-weight:bold} .bad{color:#b22;font-weight:bold}
.tree{font-size:13px;max-height:560px;overflow:auto;border:1px solid #eee;padding:6px}
.tree details{margin-left:16px} .tree .leaf{margin-left:30px}
.empty{color:#aaa} .count{color:#5a3a1e;font-weight:bold}
code{background:#f3efe9;padding:0 3px}
.muted{color:#777;font-size:13px}
"""

SECTIONS = (("overview", "Overview"), ("sources", "Sources"), ("conditions", "Conditions"), ("ontology", "Ontology"),
            ("concepts", "Concepts"), ("captions", "Captions"), ("dedup", "Deduplication"), ("rejects", "Rejects"),
            ("splits", "Splits"), ("scale", "Scale"), ("demographics", "Demographics"), ("model", "Model"))

MB = 1_000_000


def scale_rows(sc: dict) -> list[tuple]:
    """The shard table of the Scale section (bytes in MB)."""
    return [(split, samples, pairs, tars, f"{tar_bytes / MB:,.1f}", f"{jpg / MB:,.1f}", f"{repeated / MB:,.1f}")
            for split, samples, pairs, tars, tar_bytes, jpg, repeated in sc["shards"]]


def scale_note(sc: dict) -> str:
    """The Scale section's facts in one paragraph of plain text (the page and the card share it)."""
    repeated = sum(r[6] for r in sc["shards"])
    tar_bytes = sum(r[4] for r in sc["shards"])
    text = (f"{sc['pairs']:,} pairs on {sc['images']:,} canonical images: {sc['pairs_per_image']:.2f} pairs per image "
            f"(at most {sc['max_pairs_per_image'] or 0:,}). Largest duplicate cluster: {sc['largest_cluster'] or 0:,} "
            f"images ({sc['largest_cluster_share']:.3%} of all images). The shards take {tar_bytes / MB:,.1f} MB")
    if repeated:
        text += (f", of which {repeated / MB:,.1f} MB are JPEGs repeated for a second caption of the same image: "
                 "shard.captions: cluster writes each image once with all its captions (txt, txt.1, ...) and saves them")
    return text + "."


def esc(value: object) -> str:
    """HTML-escape a cell; captions and reject details are untrusted text."""
    return html.escape("" if value is None else str(value))


def table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; columns listed in ``numeric`` are right-aligned and thousands-separated."""
    head = "".join(f'<th class="{"n" if i in numeric else ""}">{esc(h)}</th>' for i, h in enumerate(header))
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            if i in numeric and isinstance(v, (int, float)):
                cells.append(f'<td class="n">{v:,.0f}</td>' if isinstance(v, int) else f'<td class="n">{v:,.3f}</td>')
            else:
                cells.append(f"<td>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def img(png: bytes, alt: str) -> str:
    """An inline PNG (a data URI), so the page needs no file beside it."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def ontology_tree(nodes: list[OntologyNode]) -> str:
    """Nested <details> per node: pairs at or below it, pairs labelled with it exactly; empty in grey."""
    by_id = {n.id: n for n in nodes}

    def render(node: OntologyNode) -> str:
        cls = ' class="empty"' if node.total == 0 else ""
        label = (f'<span{cls}>{esc(node.name)} <span class="count">{node.total:,}</span>'
                 + (f" ({node.direct:,} labelled exactly)" if node.children and node.direct else "") + "</span>")
        if not node.children:
            return f'<div class="leaf">{label}</div>'
        open_attr = " open" if node.level == 1 and node.total else ""
        kids = "".join(render(by_id[c]) for c in node.children)
        return f"<details{open_attr}><summary>{label}</summary>{kids}</details>"

    return '<div class="tree">' + "".join(render(n) for n in nodes if n.parent is None) + "</div>"


def build_html(d: dict, figures: dict[str, bytes], title: str, context: int) -> str:
    """The whole report page."""
    ov, cap, dd, sp = d["overview"], d["captions"], d["dedup"], d["splits"]
    nodes: list[OntologyNode] = d["ontology"]["nodes"]
    used = sum(1 for n in nodes if n.total)
    leaves = [n for n in nodes if not n.children]
    empty_top = [n.name for n in nodes if n.level == 1 and n.total == 0]
    cards = [("source records", ov["records"]), ("pairs in corpus", ov["pairs"]), ("images", ov["images"]),
             ("duplicate clusters", ov["clusters"]), ("conditions", ov["conditions"]), ("rejected rows", ov["rejected"]),
             ("shard samples", ov["shard_samples"])]
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>",
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<style>{CSS}</style></head><body>",
           f"<header><h1>{esc(title)}</h1><p>Corpus report built from the final tables with DuckDB "
           "(the same views as <code>derm1m query</code>). The dataset card is <code>DATASET_CARD.md</code>.</p></header>",
           "<nav>" + "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in SECTIONS) + "</nav><main>"]

    out.append('<section id="overview"><h2>Overview</h2><div class="cards">'
               + "".join(f'<div class="card"><b>{v:,}</b>{esc(k)}</div>' for k, v in cards) + "</div>"
               f'<p class="muted">{ov["pairs_ingested"]:,} pairs and {ov["images_ingested"]:,} images were ingested from '
               f'{ov["sources"]:,} source(s); the corpus keeps {ov["pairs"]:,} pairs on {ov["canonical_images"]:,} '
               "canonical images.</p></section>")

    src = d["sources"]
    out.append('<section id="sources"><h2>Sources and source types</h2>' + img(figures["sources.png"], "pairs per source")
               + table(["source", "type", "licence", "pairs", "images"], src["by_source"], numeric=(3, 4)) + "</section>")

    cond = d["conditions"]
    out.append(f'<section id="conditions"><h2>Top {len(cond["top"])} conditions</h2>'
               + img(figures["top_conditions.png"], "top conditions")
               + "<h3>Where the labels came from</h3>" + table(["label source", "pairs"], cond["label_source"], numeric=(1,))
               + "</section>")

    unmatched = d["ontology"]["unmatched"]
    out.append('<section id="ontology"><h2>Ontology coverage</h2>'
               f"<p>{used:,} of {len(nodes):,} nodes have at least one pair at or below them; "
               f"{sum(1 for n in leaves if n.total == 0):,} of {len(leaves):,} leaves have none"
               + (f"; empty top-level branches: {esc(', '.join(empty_top))}" if empty_top else "") + ". "
               "Counts are distinct pairs at or below each node; grey nodes have no pair.</p>"
               + img(figures["ontology.png"], "ontology sunburst") + ontology_tree(nodes)
               + ("<h3>Labels outside the ontology</h3>" + table(["label", "pairs"], unmatched, numeric=(1,)) if unmatched else "")
               + "</section>")

    groups = d["concepts"]
    summary = [(g, sum(1 for _, n in v if n), len(v), sum(n for _, n in v)) for g, v in groups.items()]
    out.append('<section id="concepts"><h2>Concept frequencies by group</h2>' + img(figures["concepts.png"], "concepts")
               + table(["group", "concepts seen", "concepts defined", "mentions"], summary, numeric=(1, 2, 3)) + "</section>")

    out.append('<section id="captions"><h2>Caption length</h2>' + img(figures["caption_length.png"], "caption length")
               + f"<p>{cap['truncated']:,} of {cap['total']:,} captions ({100 * cap['share_truncated']:.1f}%) exceed the "
               f"{context}-token context and were cut; median length {cap['median_tokens']} tokens.</p>"
               + table(["cut at", "pairs"], cap["cuts"], numeric=(1,)) + "</section>")

    bench = (table(["benchmark", "matches", "images"], dd["benchmark_matches"], numeric=(1, 2))
             if dd["benchmark_matches"] else "<p>No benchmark set configured or no image matched one.</p>")
    out.append('<section id="dedup"><h2>Deduplication funnel</h2>' + img(figures["dedup_funnel.png"], "dedup funnel")
               + table(["step", "count"], dd["funnel"], numeric=(1,))
               + "<h3>Duplicate links</h3><p>Every near link is a pHash candidate that passed verification (check "
               "<code>corr</code>: aligned high-pass thumbnail correlation; <code>cells</code>: the occlusion check).</p>"
               + table(["kind", "check", "links", "min distance", "max distance", "min score"], dd["edges"],
                       numeric=(2, 3, 4, 5))
               + table(["window matched", "near links"], dd["edge_windows"], numeric=(1,))
               + "<h3>Cluster sizes</h3>" + table(["images in cluster", "clusters"], dd["cluster_sizes"], numeric=(0, 1))
               + f"<p>Largest cluster: {dd['largest_cluster'][0][0] or 0:,} images "
               f"({(dd['largest_cluster'][0][1] or 0):.3%} of all images).</p>"
               + "<h3>Cluster diameters</h3><p>Clusters are stars: every member is verified against the canonical image. "
               "Diameter = the farthest member's pHash distance to the canonical; weakest = its lowest verification score.</p>"
               + table(["diameter (bits)", "clusters", "weakest score"], dd["cluster_diameters"], numeric=(0, 1, 2))
               + f"<h3>Decontamination</h3><p>{dd['decontaminated_images']:,} images ({dd['decontaminated_pairs']:,} pairs) "
               "removed from train for matching a benchmark image.</p>" + bench + "</section>")

    rej = d["rejects"]
    parts = ['<section id="rejects"><h2>Rejects by stage and reason</h2>', img(figures["rejects.png"], "rejects")]
    if not rej:
        parts.append("<p>No row was rejected.</p>")
    for r in rej:
        parts.append(f"<h3>{esc(r['stage'])} / {esc(r['reason'])}: {r['rows']:,} rows</h3>"
                     + table(["source", "record id", "detail", "path"], r["examples"]))
    out.append("".join(parts) + "</section>")

    checks = "".join(f"<tr><td>{esc(c['check'])}</td><td>{esc(c['meaning'])}</td><td class=\"n\">{c['violations']:,}</td>"
                     f"<td class=\"{'ok' if c['violations'] == 0 else 'bad'}\">{'pass' if c['violations'] == 0 else 'LEAK'}</td></tr>"
                     for c in sp["checks"])
    out.append('<section id="splits"><h2>Splits and leakage checks</h2>' + img(figures["splits.png"], "split sizes")
               + table(["split", "pairs", "images", "clusters", "split groups"], sp["sizes"], numeric=(1, 2, 3, 4))
               + "<h3>Leakage checks (all must be zero)</h3><table><thead><tr><th>check</th><th>meaning</th>"
               f'<th class="n">violations</th><th>result</th></tr></thead><tbody>{checks}</tbody></table></section>')

    sc = d["scale"]
    out.append('<section id="scale"><h2>Scale</h2>'
               + table(["split", "samples", "pairs", "tars", "tar MB", "JPEG MB", "repeated JPEG MB"], scale_rows(sc),
                       numeric=(1, 2, 3, 4, 5, 6))
               + f"<p>{esc(scale_note(sc))}</p><p class=\"muted\">Wall time and peak memory of the last run of each "
               "stage: <code>stage_times.csv</code> beside this page (written when the stages ran through "
               "<code>derm1m</code> or <code>dvc repro</code>; not a DVC output, since times differ on every run)."
               "</p></section>")

    out.append('<section id="demographics"><h2>Body location, age, sex and skin type</h2>'
               + img(figures["demographics.png"], "demographics") + "</section>")
    out.append(model_section(d.get("model")))
    out.append("</main></body></html>\n")
    return "\n".join(out)


def model_section(model: dict | None) -> str:
    """The "Model" section: the models of ``metrics/eval.json`` side by side (table and plot)."""
    head = '<section id="model"><h2>Model</h2>'
    if not model or not model["rows"] or not model["columns"]:
        planned = model.get("planned", []) if model else []
        return (head + f'<p class="muted">No model has been evaluated yet (no <code>{esc(model and model["source"])}'
                "</code>): run <code>derm1m train</code> and <code>derm1m evaluate</code> (or <code>dvc repro</code>), "
                "then rebuild the report. <code>params.yaml: evaluate</code> will compare:</p>"
                + table(["what", "name", "detail"], planned) + "</section>")
    titles = [t for t, _ in model["columns"]]
    rows = [(label, *values) for label, values in model["rows"]]
    return (head + f'<p class="muted">Each model on the holdout split and the configured benchmarks '
            f'(<code>{esc(model["source"])}</code>; every metric is there, per model). Zero-shot and probe '
            "columns are balanced accuracy unless marked; concept columns are mean AUROC; R@10 is recall at 10."
            "</p>" + img(model["png"], "models side by side")
            + table(["model", *titles], rows, numeric=tuple(range(1, len(titles) + 1))) + "</section>")


# -- dataset card -----------------------------------------------------------------------------
def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "n>10M"


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; pipes in cells are escaped so descriptions cannot break the layout."""
    def cell(v: object) -> str:
        text = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def build_card(d: dict, title: str, context: int) -> str:
    """A Hugging Face style dataset card with the report's numbers and the schemas' field types."""
    ov, cap, dd, sp, src = d["overview"], d["captions"], d["dedup"], d["splits"], d["sources"]
    licences = sorted({r[2] for r in src["by_source"]})
    nodes = d["ontology"]["nodes"]
    demo = d["demographics"]
    not_stated = {k: dict(v).get("not stated", 0) for k, v in demo.items() if k != "age_years"}
    meta = load_schema("metadata")
    lines = [
        "---",
        f"pretty_name: {title}",
        "language: [en]",
        "license: other",
        f"size_categories: [{_size_category(ov['pairs'])}]",
        "task_categories: [zero-shot-image-classification, image-to-text, text-to-image]",
        "tags: [dermatology, medical, clip, image-text]",
        "configs:",
        "  - config_name: default",
        "    data_files:",
        *[f"      - {{split: {r[0]}, path: \"shards/{r[0]}/*.tar\"}}" for r in sp["sizes"]],
        "---",
        "",
        f"# Dataset Card for {title}",
        "",
        "*Generated by `derm1m report` from the final tables; every number below is recomputed on each build.*",
        "",
        "## Dataset Description",
        "",
        "### Dataset Summary",
        "",
        f"{ov['pairs']:,} dermatology image-caption pairs on {ov['canonical_images']:,} distinct (canonical) images in "
        f"{ov['clusters']:,} duplicate clusters, from {ov['sources']:,} source(s), labelled with {ov['conditions']:,} "
        "conditions of a four-level ontology, clinical concepts, body sites and demographics extracted from the captions. "
        "Built in the style of Derm1M for CLIP-style (DermLIP) training.",
        "",
        "### Supported Tasks",
        "",
        "Contrastive image-text pre-training, zero-shot classification over the ontology's conditions, image-text retrieval.",
        "",
        "### Languages",
        "",
        "English captions.",
        "",
        "## Dataset Structure",
        "",
        "### Data Instances",
        "",
        "WebDataset tars under `shards/<split>/`; each sample has `jpg` (the canonical image), `txt` (the truncated caption) "
        "and `json` (the full metadata row). The same rows are in `data/metadata/metadata.parquet`.",
        "",
        "### Data Fields",
        "",
        f"`metadata` ({meta.description})",
        "",
        md_table(["field", "type", "nullable", "description"],
                 [(f"`{c.name}`", c.type, "yes" if c.nullable else "no", c.description) for c in meta.columns]),
        "",
        "Other tables (query them with `derm1m query`; `derm1m query --tables` lists their columns):",
        "",
        md_table(["table", "file", "description"], [(f"`{s.name}`", f"`{s.path}`", s.description) for s in all_schemas()
                                                    if s.name != "metadata"]),
        "",
        "### Data Splits",
        "",
        "Whole duplicate clusters and source groups (lesion or patient ids) go to one split.",
        "",
        md_table(["split", "pairs", "images", "clusters", "split groups"], sp["sizes"]),
        "",
        "Leakage checks (violations must be 0):",
        "",
        md_table(["check", "violations"], [(c["check"], c["violations"]) for c in sp["checks"]]),
        "",
        "## Dataset Creation",
        "",
        "### Curation Rationale",
        "",
        "A reproducible, deduplicated, leak-free image-caption corpus for dermatology vision-language models, where every "
        "input row ends either in the corpus or in a rejects table with a reason.",
        "",
        "### Source Data",
        "",
        md_table(["source", "type", "licence", "pairs", "images"], src["by_source"]),
        "",
        "### Curation Steps",
        "",
        *[f"{i}. {step}: {n:,}" for i, (step, n) in enumerate(dd["funnel"], 1)],
        "",
        f"- Duplicate images by match kind: {', '.join(f'{k} {n:,}' for k, n in dd['by_match_kind'])}.",
        f"- Largest duplicate cluster: {dd['largest_cluster'][0][0] or 0:,} images; every member is a verified copy of "
        "its cluster's canonical image (no chains).",
        f"- Scale: {scale_note(d['scale'])}",
        f"- Rejected rows: {ov['rejected']:,} ("
        + (", ".join(f"{r['stage']}/{r['reason']} {r['rows']:,}" for r in d["rejects"]) or "none") + ").",
        f"- Decontamination: {dd['decontaminated_images']:,} images ({dd['decontaminated_pairs']:,} pairs) removed from "
        "train for matching a benchmark image.",
        f"- Captions longer than the {context}-token context: {cap['truncated']:,} of {cap['total']:,} "
        f"({100 * cap['share_truncated']:.1f}%), cut at a sentence, clause or word boundary.",
        "",
        "### Annotations",
        "",
        "Rule-based, from the captions (and the source's structured label when it has one): ontology labels "
        "(negation and differential aware), concepts, body sites, symptoms, age, sex and Fitzpatrick skin type. "
        "Label evidence: " + ", ".join(f"{k} {n:,}" for k, n in d["conditions"]["label_source"]) + ". "
        f"{sum(1 for n in nodes if n.total):,} of {len(nodes):,} ontology nodes have at least one pair.",
        "",
        "Top conditions: " + ", ".join(f"{k} ({n:,})" for k, n in d["conditions"]["top"]) + ".",
        "",
        "### Personal and Sensitive Information",
        "",
        "Clinical photographs can identify people (faces, tattoos) and captions can carry age and sex. Check the licence "
        "and consent terms of each source before redistribution.",
        "",
        "## Considerations for Using the Data",
        "",
        "### Discussion of Biases",
        "",
        f"Demographics are stated in few captions: age not stated for {not_stated['age_group']:,} pairs, sex for "
        f"{not_stated['sex']:,}, Fitzpatrick skin type for {not_stated['skin_type']:,} of {ov['pairs']:,}. "
        "Skin-type coverage in particular cannot be judged from the captions.",
        "",
        "### Other Known Limitations",
        "",
        "- Labels come from rules over free text, not from clinicians; expect misses and occasional wrong labels.",
        "- Near duplicates are found by a 64-bit perceptual hash within a fixed radius: heavy crops or edits escape it.",
        f"- {sum(1 for n in nodes if not n.children and n.total == 0):,} ontology leaves have no pair at all.",
        "",
        "## Additional Information",
        "",
        "### Licensing Information",
        "",
        "Per source record (`licence` column): " + ", ".join(licences) + ".",
        "",
        "### Citation Information",
        "",
        "Derm1M: Yan et al., *Derm1M: A Million-scale Vision-Language Dataset Aligned with Clinical Ontology Knowledge "
        "for Dermatology*, arXiv:2503.14911.",
        "",
    ]
    return "\n".join(lines)
