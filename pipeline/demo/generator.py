"""Generate the demo corpus: each of Derm1M's five source kinds in its own raw layout, plus truth.json.

The corpus is read by the real adapters (``params.yaml: ingest.sources``), so the demo is also
the smallest working example of every layout::

    videos/<video_id>/    frame_<seconds>.jpg keyframes, transcript.vtt, video.json   (video)
    pmc/                  figures.jsonl (single and compound figures) + images/        (article_figures)
    forum/                thread-<id>.json threads with multi-image posts and replies  (forum)
    textbook/             captions.csv (book, chapter) + images/                      (textbook)
    public/               metadata.csv in PAD-UFES-20's layout + images/             (public_dataset)

What it plants (counts from ``params.yaml: demo``), so the tests can check every later stage:
unique images; byte-identical copies under other names, most of them in another source (the same
photo in a forum post and a textbook); re-encoded, resized and slightly cropped copies;
EXIF-rotated phone photos (forum); images with two or three captions (a textbook image in two
rows, an article figure reproduced by a second article, a photo posted in two threads); long
video narrations; patients with several lesions (the public source's group key); two or three
non-English forum posts; and bad inputs spread over the layouts (truncated JPEG, zero-byte
file, HTML named .jpg, a record pointing to a missing file, captions that clean to nothing,
images with no caption at all). ``truth.json`` says, by the adapters' record ids, what each
stage must find. Fully deterministic from the seed: the same params give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.demo import captions as cap
from pipeline.demo.captions import CONDITIONS, CaptionFacts, draw_facts, draw_public_facts
from pipeline.demo.images import draw_skin_image
from pipeline.errors import ConfigError
from pipeline.tables import atomic_dir, write_json

LICENCE = "CC0-1.0 (synthetic demo data)"
# Derm1M's source shares: YouTube 45.6%, PubMed 19.4%, forums 15.1%, public 10.1%, textbooks 9.8%.
KIND_WEIGHTS = {"video": 0.456, "pmc": 0.194, "forum": 0.151, "public": 0.101, "textbook": 0.098}
# kind -> the ingest source that reads it (params.yaml: ingest.sources lists the same five).
SOURCES: dict[str, dict] = {
    "video": {"name": "youtube", "adapter": "video", "folder": "videos", "options": {"window_s": 5}},
    "pmc": {"name": "pubmed", "adapter": "article_figures", "folder": "pmc", "options": {"figures": "figures.jsonl"}},
    "forum": {"name": "forum", "adapter": "forum", "folder": "forum", "options": {}},
    "textbook": {"name": "textbook", "adapter": "textbook", "folder": "textbook", "options": {}},
    "public": {"name": "public", "adapter": "public_dataset", "folder": "public",
               "options": {"layout": "pad_ufes_20", "licence": LICENCE}},
}
COPY_KINDS = ("video", "pmc", "forum")     # where copies of textbook figures turn up (the rest land in the textbook)
MULTI_KINDS = ("pmc", "forum", "textbook")             # layouts where one image file can carry several captions
# Each planted bad input, cycled over the layouts where it occurs in the wild.
BAD_KINDS = {
    "truncated": ("forum", "pmc"),          # a partial upload / download
    "zero_byte": ("textbook", "video"),     # a failed scan / frame extraction
    "not_an_image": ("pmc", "forum"),       # a publisher's login page / a hotlink's 404 page saved as .jpg
    "missing_file": ("textbook", "public"),  # a row naming a file that is not there
    "empty_caption": ("textbook", "forum", "pmc"),  # control characters only (bad PDF/HTML extraction)
    "missing_caption": ("video", "forum"),  # a silent keyframe / a post with photos and no text
}
BAD_REASONS = {"truncated": "image_truncated", "zero_byte": "image_empty", "not_an_image": "image_not_an_image",
               "missing_file": "image_missing", "empty_caption": "caption_empty", "missing_caption": "caption_missing"}
CONTROL_ONLY = ["\x02\x03", "\x7f", "\x01\x1a\x7f"]  # non-empty to the adapters, empty after caption cleaning
HTML_PAGES = {
    "pmc": b"<!DOCTYPE html><html><head><title>Access denied</title></head>"
           b"<body><p>Please sign in to view this figure.</p></body></html>\n",
    "forum": b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n",
}
# Keyframe narration lies within +-4 s of the frame, other speech >= 8 s away: any video
# window_s in [4, 8) gives each frame exactly its own narration (params.yaml uses 5).
NARRATION_HALF_SPAN = 4.0
BOOKS = [("Atlas of Clinical Dermatology", "ACD"), ("Dermatology Lecture Notes", "DLN")]


PAD_COLUMNS = ["patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
               "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
               "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch", "grew",
               "hurt", "changed", "bleed", "elevation", "img_id", "biopsed"]


def demo_sources(out: str | Path) -> list[dict]:
    """The ``ingest.sources`` entries that read a demo corpus written to ``out``."""
    return [{"name": s["name"], "adapter": s["adapter"], "path": (Path(out) / s["folder"]).as_posix(), **s["options"]}
            for s in SOURCES.values()]


def _encode(img: Image.Image, fmt: str, quality: int = 92, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        kwargs = {"quality": quality, "optimize": False}
        if exif is not None:
            kwargs["exif"] = exif
        img.save(buf, "JPEG", **kwargs)
    else:
        img.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _phash(img: Image.Image) -> imagehash.ImageHash:
    return imagehash.phash(img.convert("RGB"))


@dataclass(eq=False)
class Payload:
    """One image file to place in a layout; ``path`` (relative to the demo root) is set when placed."""

    data: bytes
    ext: str
    condition: str
    path: str = ""


@dataclass(eq=False)
class Base:
    """A unique drawn image: its upright picture, the file written for it, and its source kind."""

    index: int
    image: Image.Image
    payload: Payload
    kind: str = ""
    exif_rotated: bool = False
    skin_type: int = 0      # Fitzpatrick type of the drawn skin tone (the public metadata states it)


def generate_demo_corpus(params: dict, out: Path | None = None) -> dict:
    """Write the demo corpus to ``out`` (default ``params['demo']['out']``) and return its truth."""
    p = params["demo"]
    out = Path(out or p["out"])
    rng = np.random.default_rng(int(p["seed"]))
    if p["n_unique_images"] < 20:
        raise ConfigError("params.yaml: demo.n_unique_images must be at least 20 (the planted copies need bases)")
    with atomic_dir(out) as tmp:
        truth = _Builder(p, tmp, rng).build()
        write_json(truth, tmp / "truth.json")
    return json.loads((out / "truth.json").read_text(encoding="utf-8"))


class _Builder:
    """Draws the images, lays them out per source kind, and keeps the truth as it goes."""

    def __init__(self, p: dict, root: Path, rng: np.random.Generator) -> None:
        self.p, self.root, self.rng = p, root, rng
        self.facts: dict[str, dict] = {}          # record id -> what its caption states (records that become pairs)
        self.rejected: dict[str, str] = {}        # record id -> reject reason
        self.multi: dict[int, list[str]] = {}     # id(payload) -> record ids of a multi-caption image
        self.bad_queue: dict[str, list[str]] = {k: [] for k in SOURCES}  # kind -> planted bad inputs to place
        self.kind_of: dict[str, str] = {}         # record id -> source kind (pairs and rejects)
        self.groups: dict[str, list[str]] = {}    # public patient id -> its record ids
        self._bases: list[Base] = []

    # -- small helpers ------------------------------------------------------------------------
    def write(self, kind: str, rel: str, data: bytes) -> str:
        path = self.root / SOURCES[kind]["folder"] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{SOURCES[kind]['folder']}/{rel}"

    def place(self, kind: str, rel: str, payload: Payload) -> None:
        if not payload.path:
            payload.path = self.write(kind, rel, payload.data)

    def pair(self, record_id: str, kind: str, facts: CaptionFacts, language: str = "en") -> None:
        assert record_id not in self.facts and record_id not in self.rejected, record_id
        self.facts[record_id] = {"kind": kind, "source": SOURCES[kind]["name"], "language": language, **asdict(facts)}
        self.kind_of[record_id] = kind

    def reject(self, record_id: str, reason: str) -> None:
        assert record_id not in self.facts and record_id not in self.rejected, record_id
        self.rejected[record_id] = reason

    def pick(self, options) -> object:
        return options[int(self.rng.integers(0, len(options)))]

    def uid(self, prefix: str, digits: int, used: set[str]) -> str:
        while True:
            value = f"{prefix}{int(self.rng.integers(10 ** (digits - 1), 10 ** digits))}"
            if value not in used:
                used.add(value)
                return value

    # -- the corpus ---------------------------------------------------------------------------
    def build(self) -> dict:
        p = self.p
        bases = self._draw_bases()
        plain = [b for b in bases if not b.exif_rotated]
        kinds = [("exact", p["n_exact_copies"]), ("reencoded", p["n_reencoded"]),
                 ("resized", p["n_resized"]), ("cropped", p["n_cropped"])]
        order = [plain[int(i)] for i in self.rng.permutation(len(plain))]
        multi = [b for b in order if b.kind in MULTI_KINDS][: p["n_multi_caption"]]
        rest = [b for b in order if b not in multi]
        needed = sum(n for _, n in kinds)
        if len(multi) < p["n_multi_caption"] or needed > len(rest):
            raise ConfigError(f"params.yaml: demo asks for {needed} copies and {p['n_multi_caption']} multi-caption "
                              f"images but has only {len(plain)} plain bases; raise demo.n_unique_images")
        copies: list[dict] = []
        pos = 0
        for kind, n in kinds:
            for base in rest[pos: pos + n]:
                copies.append(self._make_copy(base, kind))
            pos += n
        for name, n in p["bad"].items():
            if name not in BAD_KINDS:
                raise ConfigError(f"params.yaml: demo.bad.{name} unknown; one of {sorted(BAD_KINDS)}")
            for i in range(int(n)):
                self.bad_queue[BAD_KINDS[name][i % len(BAD_KINDS[name])]].append(name)

        by_kind: dict[str, list[Payload]] = {k: [b.payload for b in bases if b.kind == k] for k in SOURCES}
        for c in copies:
            by_kind[c["kind_to"]].append(c["payload"])
        self._bases = bases
        multi_payloads = [b.payload for b in multi]
        for kind in by_kind:  # shuffle so copies and bases mix in every layout
            by_kind[kind] = [by_kind[kind][int(i)] for i in self.rng.permutation(len(by_kind[kind]))]
        self._videos(by_kind["video"])
        self._pmc(by_kind["pmc"], [m for m in multi_payloads if m in by_kind["pmc"]])
        self._forum(by_kind["forum"], [m for m in multi_payloads if m in by_kind["forum"]],
                    [b.payload for b in bases if b.exif_rotated])
        self._textbook(by_kind["textbook"], [m for m in multi_payloads if m in by_kind["textbook"]])
        self._public(by_kind["public"])

        rejects: dict[str, int] = {}
        for reason in self.rejected.values():
            rejects[reason] = rejects.get(reason, 0) + 1
        n_pairs = len(self.facts)
        return {
            "seed": int(p["seed"]),
            "sources": {k: {"name": s["name"], "adapter": s["adapter"], "folder": s["folder"],
                            "records": sum(v == k for v in self.kind_of.values())}
                        for k, s in SOURCES.items()},
            "n_records": n_pairs + len(self.rejected),
            "n_pairs": n_pairs,
            "n_unique_images": len(bases),
            "n_image_files": len(bases) + len(copies),
            "n_clusters": len(bases),
            "n_clusters_with_copies": len({id(c["base"]) for c in copies}),
            "copies": [{"path": c["payload"].path, "original": c["base"].payload.path, "kind": c["kind"],
                        "detail": c["detail"], "phash_distance": c["distance"],
                        "cross_source": c["kind_to"] != c["base"].kind} for c in copies],
            "multi_caption_images": [{"path": m.path, "n_captions": len(self.multi[id(m)]),
                                      "records": self.multi[id(m)]} for m in multi_payloads],
            "exif_rotated": [{"path": b.payload.path, "width": b.image.width, "height": b.image.height}
                             for b in bases if b.exif_rotated],
            "public_patients": dict(sorted(self.groups.items())),
            "rejects": dict(sorted(rejects.items())),
            "rejected_records": dict(sorted(self.rejected.items())),
            "records": dict(sorted(self.facts.items())),
        }

    # -- images -------------------------------------------------------------------------------
    def _draw_bases(self) -> list[Base]:
        p, rng = self.p, self.rng
        bases: list[Base] = []
        hashes: list[imagehash.ImageHash] = []
        attempts = 0
        with tqdm(total=p["n_unique_images"], desc="demo images", unit="img", mininterval=1.0) as bar:
            while len(bases) < p["n_unique_images"]:
                attempts += 1
                if attempts > 50 * p["n_unique_images"]:
                    raise ConfigError("params.yaml: demo.min_phash_distance too large; could not draw distinct images")
                w = int(rng.integers(p["min_side"], p["max_side"] + 1))
                h = int(rng.integers(p["min_side"], p["max_side"] + 1))
                img, desc = draw_skin_image(rng, w, h)
                ph = _phash(img)
                if any(ph - other < int(p["min_phash_distance"]) for other in hashes):
                    continue
                fmt = "png" if rng.random() < p["png_share"] else "jpg"
                condition = CONDITIONS[int(rng.integers(0, len(CONDITIONS)))][0]
                bases.append(Base(len(bases), img, Payload(b"", fmt, condition), skin_type=int(desc["skin_tone"])))
                hashes.append(ph)
                bar.update(1)
        # EXIF-rotated phone photos (forum posts): pixels stored sideways with Orientation=6.
        jpg = [b for b in bases if b.payload.ext == "jpg"]
        for b in jpg[: self.p["n_exif_rotated"]]:
            b.exif_rotated, b.kind = True, "forum"
            exif = Image.Exif()
            exif[0x0112] = 6
            b.payload.data = _encode(b.image.transpose(Image.Transpose.ROTATE_90), "jpg", exif=exif.tobytes())
        # Every kind gets a few bases, the rest follow Derm1M's source shares.
        weights = np.array(list(KIND_WEIGHTS.values()))
        others = [b for b in bases if not b.exif_rotated]
        for i, b in enumerate(others):
            b.kind = list(SOURCES)[i % len(SOURCES)] if i < 3 * len(SOURCES) else str(
                rng.choice(list(KIND_WEIGHTS), p=weights / weights.sum()))
            b.payload.data = _encode(b.image, b.payload.ext)
            if b.kind == "public":  # the public dataset's diagnoses are its own six
                b.payload.condition = cap.PAD_CONDITIONS[self.pick(sorted(cap.PAD_CONDITIONS))]
        return bases

    def _make_copy(self, base: Base, kind: str) -> dict:
        """A planted copy of ``base`` (with its pHash distance), bound for another layout."""
        img, p, rng = base.image, self.p, self.rng
        original = base.payload.data
        base_hash = _phash(Image.open(io.BytesIO(original)))
        ext = base.payload.ext
        if kind == "exact":
            data, detail = original, "byte-identical"
        else:
            for strength in (1.0, 0.5, 0.25):  # milder until the copy stays a near duplicate
                if kind == "reencoded":
                    q = int(55 + (1 - strength) * 30)
                    detail, data, ext = f"JPEG quality {q}", _encode(img, "jpg", quality=q), "jpg"
                elif kind == "resized":
                    f = float(rng.choice([0.5, 0.75, 1.25])) if strength == 1.0 else 0.75
                    variant = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))),
                                         Image.Resampling.LANCZOS)
                    detail, data = f"resized x{f}", _encode(variant, ext)
                else:
                    frac = 0.05 * strength
                    dx, dy = round(img.width * frac), round(img.height * frac)
                    variant = img.crop((dx, dy, img.width - dx, img.height - dy))
                    detail, data = f"cropped {frac:.1%} per side", _encode(variant, ext)
                if _phash(Image.open(io.BytesIO(data))) - base_hash <= p["max_variant_distance"]:
                    break
        # Copies go to another source: a textbook figure turns up in a video, an article or a forum
        # post, and every other photo turns up in the textbook (which has no group key, so a copy
        # never welds two videos, threads or patients into one split group).
        target = self.pick(COPY_KINDS) if base.kind == "textbook" else "textbook"
        dist = int(_phash(Image.open(io.BytesIO(data))) - base_hash)
        return {"payload": Payload(data, ext, base.payload.condition), "base": base, "kind": kind, "detail": detail,
                "distance": dist, "kind_to": target}

    # -- video: one folder per video, keyframes + WebVTT transcript + video.json ----------------
    def _videos(self, frames: list[Payload]) -> None:
        rng = self.rng
        units: list[tuple[str | None, Payload | None]] = [(None, f) for f in frames]
        for bad in self.bad_queue["video"]:
            at = int(rng.integers(0, len(units) + 1))
            units.insert(at, (bad, None))
        used: set[str] = set()
        while units:
            size = int(rng.integers(6, 13))
            group, units = units[:size], units[size:]
            group.sort(key=lambda u: u[0] == "missing_caption")  # the silent end card comes last
            vid = self.uid("v", 10, used)
            cues = [(0.0, 4.0, cap.VIDEO_INTRO)]
            t = round(15 + float(rng.uniform(0, 10)), 1)
            conditions = []
            for bad, payload in group:
                ext = payload.ext if payload is not None else "jpg"
                name = f"frame_{t:08.1f}.{ext}"
                rid = f"{vid}/{name}"
                if bad == "missing_caption":  # nothing is said while the end card is on screen
                    self.write("video", rid, _encode(Image.new("RGB", (320, 240), (20, 24, 30)), "jpg"))
                    self._note_reject(rid, BAD_REASONS[bad], "video")
                else:
                    condition = payload.condition if payload is not None else None
                    facts = draw_facts(rng, "video", condition=condition)
                    conditions.append(facts.condition)
                    sentences = cap.video_sentences(facts, rng)
                    span = 2 * NARRATION_HALF_SPAN / len(sentences)
                    for k, sentence in enumerate(sentences):
                        start = t - NARRATION_HALF_SPAN + k * span
                        cues.append((round(start, 3), round(start + span, 3), sentence))
                    cues.append((round(t + 8, 3), round(t + 12, 3), self.pick(cap.FILLER_SENTENCES)))
                    if bad == "zero_byte":
                        self.write("video", rid, b"")
                        self._note_reject(rid, BAD_REASONS[bad], "video")
                    else:
                        self.place("video", rid, payload)
                        self.pair(rid, "video", facts)
                t = round(t + float(rng.uniform(25, 60)), 1)
            title = f"Dermatology lecture: {len(conditions)} cases from clinic"
            if conditions:
                title += f", from {conditions[0]} to {conditions[-1]}"
            meta = {"title": title, "description": "Grand rounds for dermatology residents, with clinical photographs.",
                    "licence": LICENCE, "channel": "Demo Dermatology Channel"}
            self.write("video", f"{vid}/video.json", (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
            self.write("video", f"{vid}/transcript.vtt", _vtt(cues).encode("utf-8"))

    # -- pmc: figures.jsonl + images/<article>/ ----------------------------------------------
    def _pmc(self, images: list[Payload], multi: list[Payload]) -> None:
        rng = self.rng
        rows: list[dict] = []
        used: set[str] = set()
        singles = [im for im in images if im in multi]   # reproduced figures stay single figures
        pool = [im for im in images if im not in multi]
        articles: list[list[list[Payload | str]]] = []   # article -> figures -> panels (payload or bad name)
        bad = list(self.bad_queue["pmc"])
        figures: list[list[Payload | str]] = [[s] for s in singles]
        while pool:
            n = int(rng.integers(2, 4)) if rng.random() < 0.25 and len(pool) >= 2 else 1
            figures.append(pool[:n])
            pool = pool[n:]
        for b in bad:
            if b == "empty_caption":
                continue  # placed below as a row citing an existing figure
            figures.insert(int(rng.integers(0, len(figures) + 1)), [b])
        figures = [figures[int(i)] for i in rng.permutation(len(figures))]
        while figures:
            n = int(rng.integers(1, 4))
            articles.append(figures[:n])
            figures = figures[n:]
        placed_singles: list[tuple[str, Payload]] = []
        for article in articles:
            aid = self.uid("PMC", 7, used)
            first = next((p.condition for fig in article for p in fig if isinstance(p, Payload)), "skin disease")
            title = f"{first[0].upper() + first[1:]} and its differential diagnosis: a case-based review"
            for f, fig in enumerate(article, start=1):
                if len(fig) == 1:
                    item = fig[0]
                    rel = f"images/{aid}/fig{f}.{item.ext if isinstance(item, Payload) else 'jpg'}"
                    rid = f"{aid}/fig{f}"
                    facts = draw_facts(rng, "pmc", condition=item.condition if isinstance(item, Payload) else None)
                    rows.append({"article_id": aid, "figure_id": f"fig{f}", "image_path": rel,
                                 "caption": cap.figure_caption(facts, f), "article_title": title, "licence": LICENCE})
                    if isinstance(item, Payload):
                        self.place("pmc", rel, item)
                        self.pair(rid, "pmc", facts)
                        if item in multi:
                            self.multi[id(item)] = [rid]
                        placed_singles.append((rid, item))
                    else:
                        self._bad_file("pmc", rel, item, rid)
                    continue
                panel_facts = [draw_facts(rng, "pmc", condition=pl.condition) for pl in fig]
                compound = (f"Figure {f}. Clinical photographs from our case series. "
                            + " ".join(f"({chr(65 + k)}) {cap.panel_subcaption(fa)}" for k, fa in enumerate(panel_facts)))
                for k, (pl, fa) in enumerate(zip(fig, panel_facts, strict=True)):
                    letter = chr(65 + k)
                    rel = f"images/{aid}/fig{f}{letter.lower()}.{pl.ext}"
                    rows.append({"article_id": aid, "figure_id": f"fig{f}", "panel": letter, "image_path": rel,
                                 "caption": compound, "article_title": title, "licence": LICENCE})
                    self.place("pmc", rel, pl)
                    self.pair(f"{aid}/fig{f}/{letter}", "pmc", fa)
        # A figure reproduced by a review article (one or two more captions for the same image),
        # and figure rows whose caption is only control characters.
        for pl in multi:
            for _ in range(int(rng.integers(1, 3))):
                aid = self.uid("PMC", 7, used)
                facts = draw_facts(rng, "pmc", condition=pl.condition)
                rows.append({"article_id": aid, "figure_id": "fig1", "image_path": pl.path.split("/", 1)[1],
                             "caption": cap.figure_caption(facts, 1) + " Reproduced from an earlier case report.",
                             "article_title": f"Review: the spectrum of {pl.condition}", "licence": LICENCE})
                self.pair(f"{aid}/fig1", "pmc", facts)
                self.multi[id(pl)].append(f"{aid}/fig1")
        for i, b in enumerate(x for x in bad if x == "empty_caption"):
            rid_src, pl = placed_singles[i % len(placed_singles)]
            aid = self.uid("PMC", 7, used)
            rows.append({"article_id": aid, "figure_id": "fig1", "image_path": pl.path.split("/", 1)[1],
                         "caption": CONTROL_ONLY[i % len(CONTROL_ONLY)], "article_title": "Erratum", "licence": LICENCE})
            self._note_reject(f"{aid}/fig1", BAD_REASONS[b], "pmc")
        rows = [rows[int(i)] for i in rng.permutation(len(rows))]
        self.write("pmc", "figures.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))

    # -- forum: thread-<id>.json + uploads/ ---------------------------------------------------
    def _forum(self, images: list[Payload], multi: list[Payload], exif: list[Payload]) -> None:
        rng = self.rng
        used: set[str] = set()
        counter = iter(range(10 ** 6))

        def upload(payload: Payload | None, data: bytes | None = None, ext: str = "jpg") -> str:
            rel = f"uploads/{next(counter):05d}.{payload.ext if payload else ext}"
            if payload is not None:
                self.place("forum", rel, payload)
                return payload.path.split("/", 1)[1]
            self.write("forum", rel, data or b"")
            return rel

        posts: list[dict] = []  # {"images": [...], "body", "reply", "facts" | "language" | "bad", "payloads"}
        pool = list(images)
        # Two or three posts in Spanish, French, German (flagged by the adapter, kept as written).
        n_lang = min(len(cap.NON_ENGLISH_POSTS), max(1, len(images) // 15))
        for post in cap.NON_ENGLISH_POSTS:
            photo = next((x for x in pool if x not in multi and x not in exif), None)
            if photo is None or n_lang == 0:
                break
            n_lang -= 1
            pool.remove(photo)
            photo.condition = post["condition"]
            posts.append({"images": [upload(photo)], "body": post["body"], "reply": post["reply"], "language": post,
                          "payloads": [photo]})
        while pool:  # multi-image posts: all photos of one condition, sharing the post's text
            n = 1 if pool[0] in multi or pool[0] in exif else min(int(rng.integers(1, 4)), len(pool))
            group = [pool[0]] + [x for x in pool[1:n] if x not in multi]
            pool = [x for x in pool if x not in group]
            facts = draw_facts(rng, "forum", condition=group[0].condition)
            for x in group[1:]:
                x.condition = facts.condition
            body, reply = cap.forum_post(facts, len(group))
            posts.append({"images": [upload(x) for x in group], "body": body, "reply": reply, "facts": facts,
                          "payloads": group})
        for pl in multi:  # the same photo posted again in another thread
            for _ in range(int(rng.integers(1, 3))):
                facts = draw_facts(rng, "forum", condition=pl.condition)
                body, reply = cap.forum_post(facts, 1)
                posts.append({"images": [pl.path.split("/", 1)[1]], "body": body, "reply": reply, "facts": facts,
                              "payloads": [pl], "repost": True})
        existing = [x for post in posts if "language" not in post and not post.get("repost") for x in post["images"]]
        for i, bad in enumerate(self.bad_queue["forum"]):
            body, reply = cap.forum_post(draw_facts(rng, "forum"), 1)
            if bad == "truncated":
                full = _encode(self._bases[i % len(self._bases)].image, "jpg")
                post = {"images": [upload(None, full[: len(full) * 55 // 100])], "body": body, "reply": reply}
            elif bad == "not_an_image":
                post = {"images": [upload(None, HTML_PAGES["forum"])], "body": body, "reply": reply}
            elif bad == "empty_caption":
                post = {"images": [existing[i % len(existing)]], "body": CONTROL_ONLY[i % len(CONTROL_ONLY)]}
            elif bad == "missing_caption":
                post = {"images": [existing[(i + 1) % len(existing)]], "body": ""}
            else:
                raise AssertionError(bad)
            posts.append({**post, "bad": bad})
        posts = [posts[int(i)] for i in rng.permutation(len(posts))]
        threads = [[p] for p in posts if p.get("repost")]  # a repost is a thread of its own
        rest = [p for p in posts if not p.get("repost")]
        while rest:
            n = min(int(rng.integers(1, 4)), len(rest))
            threads.append(rest[:n])
            rest = rest[n:]
        for t in rng.permutation(len(threads)):
            thread = threads[int(t)]
            tid = self.uid("t", 6, used)
            lang = next((p["language"] for p in thread if "language" in p), None)
            doc = {"thread_id": tid, "title": lang["title"] if lang else self.pick(cap.FORUM_TITLES),
                   "url": f"https://forum.example.org/threads/{tid}", "licence": LICENCE, "posts": []}
            for k, post in enumerate(thread, start=1):
                pid = f"p{k}"
                entry = {"post_id": pid, "author": f"user{int(self.rng.integers(100, 999))}",
                         "body": post["body"], "images": post["images"], "replies": []}
                if "reply" in post:
                    entry["replies"].append({"post_id": f"p{k}r1", "author": "dr_skin", "body": post["reply"], "images": []})
                doc["posts"].append(entry)
                for image in post["images"]:
                    rid = f"{tid}/{pid}/{image}"
                    if "bad" in post:
                        self._note_reject(rid, BAD_REASONS[post["bad"]], "forum")
                    elif "language" in post:
                        lang_post = post["language"]
                        facts = CaptionFacts(lang_post["condition"], lang_post["condition"], (), "", None, None, None)
                        self.pair(rid, "forum", facts, language=lang_post["language"])
                    else:
                        self.pair(rid, "forum", post["facts"])
                        pl = post["payloads"][0]
                        if pl in multi:
                            self.multi.setdefault(id(pl), []).append(rid)
            self.write("forum", f"thread-{tid}.json", (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    # -- textbook: captions.csv + images/ ------------------------------------------------------
    def _textbook(self, images: list[Payload], multi: list[Payload]) -> None:
        rng = self.rng
        rows: list[dict] = []
        chapters = sorted({c for c, _ in CONDITIONS})

        def chapter_of(condition: str) -> str:
            return f"Chapter {chapters.index(condition) + 1}: {condition[0].upper() + condition[1:]}"

        for n, pl in enumerate(images, start=1):
            book, abbrev = BOOKS[0]
            rel = f"images/{abbrev}/fig-{n:04d}.{pl.ext}"
            self.place("textbook", rel, pl)
            facts = draw_facts(rng, "textbook", condition=pl.condition)
            rows.append({"image_path": rel, "caption": cap.textbook_caption(facts), "book": book,
                         "chapter": chapter_of(pl.condition), "figure_id": f"{n}", "licence": LICENCE, "_facts": facts})
            if pl in multi:  # the same figure reused in the lecture notes (and sometimes a second chapter)
                for _ in range(int(rng.integers(1, 3))):
                    f2 = draw_facts(rng, "textbook", condition=pl.condition)
                    rows.append({"image_path": rel, "caption": cap.textbook_caption(f2), "book": BOOKS[1][0],
                                 "chapter": chapter_of(pl.condition), "figure_id": "", "licence": LICENCE, "_facts": f2,
                                 "_multi": pl})
        good = [r["image_path"] for r in rows]
        for i, bad in enumerate(self.bad_queue["textbook"]):
            facts = draw_facts(rng, "textbook")
            row = {"image_path": "", "caption": cap.textbook_caption(facts), "book": BOOKS[0][0],
                   "chapter": chapter_of(facts.condition), "figure_id": "", "licence": LICENCE, "_bad": bad}
            if bad == "zero_byte":
                row["image_path"] = f"images/{BOOKS[0][1]}/scan-failed-{i}.jpg"
                self.write("textbook", row["image_path"], b"")
            elif bad == "missing_file":
                row["image_path"] = f"images/{BOOKS[0][1]}/fig-missing-{i}.jpg"
            elif bad == "empty_caption":
                row["image_path"], row["caption"] = good[i % len(good)], CONTROL_ONLY[i % len(CONTROL_ONLY)]
            else:
                raise AssertionError(bad)
            rows.append(row)
        rows = [rows[int(i)] for i in rng.permutation(len(rows))]
        seen: dict[str, int] = {}
        for row in rows:  # the adapter numbers an image's rows in file order: "<image>#<index>"
            index = seen.get(row["image_path"], 0)
            seen[row["image_path"]] = index + 1
            rid = f"{row['image_path']}#{index}"
            if "_bad" in row:
                self._note_reject(rid, BAD_REASONS[row["_bad"]], "textbook")
                continue
            self.pair(rid, "textbook", row["_facts"])
            pl = next((x for x in multi if x.path == f"textbook/{row['image_path']}"), None)
            if pl is not None:
                self.multi.setdefault(id(pl), []).append(rid)
        fields = ["image_path", "caption", "book", "chapter", "figure_id", "licence"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        self.write("textbook", "captions.csv", buf.getvalue().encode("utf-8"))

    # -- public: PAD-UFES-20 metadata.csv + images/ --------------------------------------------
    def _public(self, images: list[Payload]) -> None:
        """PAD-UFES-20's layout: patients with one to three lesions, a lesion sometimes photographed twice."""
        rng = self.rng
        skin = {id(b.payload): b.skin_type for b in self._bases}
        code_of = {v: k for k, v in cap.PAD_CONDITIONS.items()}
        rows: list[dict] = []
        used: set[str] = set()
        pool: list[Payload | str] = list(images)
        for bad in self.bad_queue["public"]:
            pool.insert(int(rng.integers(0, len(pool) + 1)), bad)
        img_no = iter(range(100, 10 ** 6))
        while pool:
            n = min(int(rng.integers(1, 4)), len(pool))
            patient_items, pool = pool[:n], pool[n:]
            patient = self.uid("PAT_", 3, used)
            age, sex = int(rng.integers(20, 90)), ("MALE", "FEMALE")[int(rng.integers(0, 2))]
            lesion = int(rng.integers(1, 900))
            for k, item in enumerate(patient_items):
                if k == 0 or rng.random() < 0.7:  # else: the same lesion photographed again
                    lesion += int(rng.integers(1, 50))
                payload = item if isinstance(item, Payload) else None
                code = code_of.get(payload.condition, "NEV") if payload else self.pick(sorted(cap.PAD_CONDITIONS))
                facts = draw_public_facts(rng, code)
                facts = CaptionFacts(facts.condition, facts.condition_text, (), facts.site, age,
                                     {"MALE": "male", "FEMALE": "female"}[sex], None)
                img_id = f"{patient}_{lesion}_{next(img_no)}.{payload.ext if payload else 'png'}"
                biopsed = code in ("BCC", "MEL", "SCC") or rng.random() < 0.3
                rows.append({
                    "patient_id": patient, "lesion_id": str(lesion), "smoke": self.pick(["False", "True", ""]),
                    "drink": self.pick(["False", "True", ""]), "background_father": self.pick(["POMERANIA", "ITALY", "GERMANY", ""]),
                    "background_mother": self.pick(["POMERANIA", "ITALY", "BRAZIL", ""]), "age": str(age),
                    "pesticide": self.pick(["False", "True", ""]), "gender": sex,
                    "skin_cancer_history": self.pick(["False", "True"]), "cancer_history": self.pick(["False", "True"]),
                    "has_piped_water": "True", "has_sewage_system": self.pick(["True", "False"]),
                    "fitspatrick": f"{float(skin.get(id(payload), 3) if payload else 3):.1f}",
                    "region": facts.site.upper(), "diameter_1": f"{float(rng.integers(3, 25)):.1f}",
                    "diameter_2": f"{float(rng.integers(3, 25)):.1f}", "diagnostic": code,
                    "itch": self.pick(["False", "True"]), "grew": self.pick(["False", "True", "UNK"]),
                    "hurt": self.pick(["False", "True"]), "changed": self.pick(["False", "True", "UNK"]),
                    "bleed": self.pick(["False", "True"]), "elevation": self.pick(["False", "True"]),
                    "img_id": img_id, "biopsed": "True" if biopsed else "False",
                })
                if payload is None:  # the row names a photo that is not in images/
                    self._note_reject(img_id, BAD_REASONS[item], "public")
                    continue
                self.place("public", f"images/{img_id}", payload)
                self.pair(img_id, "public", facts)
                self.groups.setdefault(patient, []).append(img_id)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=PAD_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        self.write("public", "metadata.csv", buf.getvalue().encode("utf-8"))

    # -- bad inputs ----------------------------------------------------------------------------
    def _bad_file(self, kind: str, rel: str, bad: str, rid: str) -> None:
        if bad == "truncated":
            full = _encode(self._bases[len(self.rejected) % len(self._bases)].image, "jpg")
            self.write(kind, rel, full[: len(full) * 55 // 100])
        elif bad == "not_an_image":
            self.write(kind, rel, HTML_PAGES[kind])
        elif bad == "zero_byte":
            self.write(kind, rel, b"")
        elif bad != "missing_file":
            raise AssertionError(bad)
        self._note_reject(rid, BAD_REASONS[bad], kind)

    def _note_reject(self, rid: str, reason: str, kind: str) -> None:
        self.reject(rid, reason)
        self.kind_of[rid] = kind


def _vtt(cues: list[tuple[float, float, str]]) -> str:
    """A WebVTT transcript of (start, end, text) cues."""
    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        h, rest = divmod(ms, 3_600_000)
        m, rest = divmod(rest, 60_000)
        s, ms = divmod(rest, 1000)
        return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"

    blocks = [f"{stamp(a)} --> {stamp(b)}\n{text}" for a, b, text in sorted(cues)]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + "\n"
