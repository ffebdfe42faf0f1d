"""The report stage on the real test corpus: files, numbers against truth.json, determinism, the
dataset card, and the page rendered in headless Chromium (every image loads, no console error)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.query import connect
from pipeline.report.data import collect
from pipeline.stages import report
from pipeline.text.ontology import Ontology

REPO = Path(__file__).resolve().parents[1]


def _run_report(params: dict, out: Path) -> Path:
    p = json.loads(json.dumps(params))
    p["report"]["out"] = str(out)
    report.run(p)
    return out


@pytest.fixture(scope="module")
def built(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run_report(corpus["params"], tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def numbers(corpus: dict) -> dict:
    p = corpus["params"]
    con = connect(p)
    try:
        return collect(con, Ontology.load(p["annotate"]["ontology"]), p["annotate"]["concepts"])
    finally:
        con.close()


def test_report_writes_every_file(built: Path) -> None:
    for name in (*report.FIGURES, "index.html", "DATASET_CARD.md", "metrics.json", *report.PLOT_FILES):
        assert (built / name).stat().st_size > 0, name
    for name in report.FIGURES:
        assert (built / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((built / "metrics.json").read_text())["decontaminate"]["images_removed"] == 0


def test_page_is_self_contained_with_every_section_filled(built: Path) -> None:
    page = (built / "index.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(report.FIGURES)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not fetch anything"
    assert "<script" not in page
    for section in ("overview", "sources", "conditions", "ontology", "concepts", "captions", "dedup", "rejects",
                    "splits", "demographics"):
        body = page.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
        assert "<img" in body or "<table" in body or 'class="cards"' in body, section


def test_numbers_match_the_planted_truth(numbers: dict, corpus: dict) -> None:
    truth = corpus["truth"]
    ov = numbers["overview"]
    assert ov["records"] == truth["n_records"] and ov["pairs"] == truth["n_pairs"]
    assert ov["images"] == truth["n_image_files"] and ov["clusters"] == truth["n_clusters"]
    funnel = dict(numbers["dedup"]["funnel"])
    assert funnel["source records"] == truth["n_records"] and funnel["clusters (exact + near)"] == truth["n_clusters"]
    assert {(r["reason"], r["rows"]) for r in numbers["rejects"]} == set(truth["rejects"].items())
    assert all(0 < len(r["examples"]) <= 3 for r in numbers["rejects"])
    assert all(c["violations"] == 0 for c in numbers["splits"]["checks"]), numbers["splits"]["checks"]
    assert sum(r[1] for r in numbers["splits"]["sizes"]) == truth["n_pairs"]
    cap = numbers["captions"]
    assert 0 < cap["truncated"] < cap["total"] == truth["n_pairs"]
    assert sum(n for _, n in cap["full"]) == sum(n for _, n in cap["kept"]) == cap["total"]


def test_ontology_counts_agree_with_sql_and_keep_empty_branches(numbers: dict, corpus: dict) -> None:
    nodes = {n.id: n for n in numbers["ontology"]["nodes"]}
    for n in nodes.values():
        assert n.total >= n.direct
        if n.parent:
            assert nodes[n.parent].total >= n.total
    assert any(n.total == 0 for n in nodes.values()), "empty branches must be listed, not dropped"
    con = connect(corpus["params"])
    try:
        onto = Ontology.load(corpus["params"]["annotate"]["ontology"])
        node = max((n for n in nodes.values() if n.level == 1), key=lambda n: n.total)
        below = [onto.name(i) for i in nodes if node.id in onto.path(i)]
        expected = con.execute("select count(distinct pair_id) from (select pair_id, unnest(disease_labels) l from metadata) "
                               "where l in (select unnest(?))", [below]).fetchone()[0]
    finally:
        con.close()
    assert node.total == expected > 0


def test_dataset_card_has_hf_sections_and_schema_types(built: Path, numbers: dict) -> None:
    card = (built / "DATASET_CARD.md").read_text(encoding="utf-8")
    assert card.startswith("---\npretty_name: ")
    for heading in ("## Dataset Description", "### Dataset Summary", "## Dataset Structure", "### Data Fields",
                    "### Data Splits", "## Dataset Creation", "### Source Data", "### Curation Steps",
                    "## Considerations for Using the Data", "### Other Known Limitations", "### Licensing Information"):
        assert heading in card, heading
    assert "| `skin_type` | int8 | yes |" in card and "| `disease_labels` | list<string> | no |" in card
    assert f"{numbers['overview']['pairs']:,} dermatology image-caption pairs" in card


def test_report_is_byte_identical_on_rebuild(corpus: dict, built: Path, tmp_path: Path) -> None:
    again = _run_report(corpus["params"], tmp_path / "again")
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (built / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_dvc_stage_declares_every_output_and_plot() -> None:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]}
    assert {f"report/{f}" for f in report.FIGURES} | {"report/index.html", "report/DATASET_CARD.md"} <= outs
    plots = {next(iter(p)) for p in stage["plots"]}
    assert plots == {f"report/{f}" for f in report.PLOT_FILES}


def test_bad_report_params_are_one_line_errors(corpus: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p = json.loads(json.dumps(corpus["params"]))
    p["report"].update(out=str(tmp_path / "r"), top_n=0)
    with pytest.raises(PipelineError, match="top_n"):
        report.run(p)
    del p["report"]["title"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    assert main(["report", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "report.title" in err
    assert not (tmp_path / "r").exists()


# -- headless Chromium ------------------------------------------------------------------------
def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium: used if present, installed with apt-get on CI or as root, else a skip."""
    found = _find_chromium()
    if found:
        return found
    apt = shutil.which("apt-get")
    if not apt or not (os.environ.get("CI") == "true" or os.geteuid() == 0):
        pytest.skip("headless Chromium not installed and apt-get cannot install it here (needs root or CI=true): "
                    "apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", "chromium"]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        subprocess.run([apt, "update"], capture_output=True, text=True, env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = _find_chromium()
    if not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"could not install chromium with apt-get: {tail[0]}")
    return found


class DevTools:
    """A minimal Chrome DevTools Protocol client over aiohttp's websocket (commands + collected events)."""

    def __init__(self, ws: object) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    async def send(self, method: str, **params: object) -> dict:
        self.next_id += 1
        msg_id = self.next_id
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            if "method" in msg:
                self.events.append(msg)

    async def wait_event(self, method: str) -> dict:
        for e in self.events:
            if e["method"] == method:
                return e
        while True:
            msg = await self.ws.receive_json()
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg


async def _render(chromium: str, page: Path, profile: Path, width: int, scale: float) -> dict:
    import aiohttp

    args = [chromium, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            target = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = DevTools(ws)
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await cdp.send(f"{domain}.enable")
                await cdp.send("Page.navigate", url=page.resolve().as_uri())
                await cdp.wait_event("Page.loadEventFired")
                images = (await cdp.send("Runtime.evaluate", awaitPromise=True, returnByValue=True, expression=(
                    "Promise.all(Array.from(document.images).map(i => i.decode().then("
                    "() => [i.alt, i.naturalWidth], () => [i.alt, 0])))")))["result"]["value"]
                sections = (await cdp.send("Runtime.evaluate", returnByValue=True, expression=(
                    "Array.from(document.querySelectorAll('section')).map(s => "
                    "[s.id, s.querySelectorAll('img, table, .cards').length, s.getBoundingClientRect().height])")))["result"]["value"]
                size = (await cdp.send("Page.getLayoutMetrics"))["cssContentSize"]
                shot = await cdp.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                      clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": scale})
                errors = [e["params"] for e in cdp.events if
                          (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                          or e["method"] == "Runtime.exceptionThrown"
                          or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
                          or e["method"] == "Network.loadingFailed"]
                urls = [e["params"]["request"]["url"] for e in cdp.events if e["method"] == "Network.requestWillBeSent"]
                await cdp.send("Browser.close")
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"images": images, "sections": sections, "errors": errors, "urls": urls,
            "screenshot": base64.b64decode(shot["data"]), "size": size}


def render_page(chromium: str, page: Path, profile: Path, width: int = 1200, scale: float = 1.0) -> dict:
    """Open ``page`` in headless Chromium; images, sections, console errors, requests and a full-page PNG."""
    return asyncio.run(asyncio.wait_for(_render(chromium, page, profile, width, scale), timeout=120))


def test_report_renders_in_headless_chromium(chromium: str, built: Path, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    result = render_page(chromium, built / "index.html", tmp_path / "profile")
    assert result["errors"] == []
    assert len(result["images"]) == len(report.FIGURES)
    assert all(width > 0 for _, width in result["images"]), result["images"]
    assert all(n > 0 and height > 100 for _, n, height in result["sections"]), result["sections"]
    assert all(u.startswith(("file:", "data:")) for u in result["urls"]), result["urls"]
    shot = result["screenshot"]
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "report.png").write_bytes(shot)
    from PIL import Image

    with Image.open(tmp_path / "report.png") as im:
        assert im.size[1] >= 2000 and sum(1 for n in im.convert("L").histogram() if n) > 20

