"""Hostile input, round 2 (issue 16): files that are not regular files or are huge, records that
used to abort a whole run, CSV quote desynchronisation, configuration of the wrong shape, output
folders that would replace inputs, formula and bidi captions, and smaller precision fixes.

Each case is one entry of :data:`ROUND2`, appended to :data:`hostile.cases.CASES`, so it runs
through the same harness (``tests/test_hostile.py``) and appears in the printed case table.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from . import images as im
from .cases import (
    CAPTION,
    Case,
    _config,
    _set,
    caption_kept,
    put,
    textbook,
    textbook_raw,
    upright_two_tone,
    write_csv,
)

J = im.jpeg
DEEP_JSON = "[" * 200_000 + "]" * 200_000      # json.loads: RecursionError, not ValueError
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
FORMULA_CAPTIONS = ["=1+2 " + CAPTION, "@SUM(A1) " + CAPTION, "+1 " + CAPTION, "-2 " + CAPTION]


# -- files that are not regular files, or are huge ------------------------------------------
def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def _fifo_named_jpg(root: Path, outside: Path) -> dict:
    _fifo(root / "figures" / "pipe.jpg")
    put(root / "figures" / "ok.jpg", J())
    write_csv(root / "captions.csv", ["image_path", "caption"], [["figures/pipe.jpg", CAPTION], ["figures/ok.jpg", CAPTION]])
    return {"adapter": "textbook"}


def _sparse_jpg(root: Path, outside: Path) -> dict:
    (root / "figures").mkdir(parents=True)
    with open(root / "figures" / "huge.jpg", "wb") as fh:
        fh.write(J())
        fh.truncate(8 * 1024**3)          # 8 GiB, sparse: no disk used, but reading it would be
    write_csv(root / "captions.csv", ["image_path", "caption"], [["figures/huge.jpg", CAPTION]])
    return {"adapter": "textbook"}


def _video(vid: str, root: Path, transcript: str | None = "vtt") -> Path:
    folder = root / vid
    put(folder / "frame_000002.0.jpg", J())
    if transcript == "vtt":
        (folder / "transcript.vtt").write_text(f"WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n{CAPTION}\n", encoding="utf-8")
    return folder


def _fifo_transcript(root: Path, outside: Path) -> dict:
    _fifo(_video("v1", root, transcript=None) / "transcript.vtt")
    _video("v2", root)
    return {"adapter": "video"}


def _fifo_video_json(root: Path, outside: Path) -> dict:
    _fifo(_video("v1", root) / "video.json")
    return {"adapter": "video"}


def _deep_transcript(root: Path, outside: Path) -> dict:
    (_video("v1", root, transcript=None) / "transcript.json").write_text(DEEP_JSON, encoding="utf-8")
    return {"adapter": "video"}


def _thread(tid: str, posts: list[dict]) -> str:
    return json.dumps({"thread_id": tid, "title": "Rash", "posts": posts})


def _good_thread(root: Path, name: str = "good.json") -> None:
    put(root / "img" / f"{name}.jpg", J())
    (root / name).write_text(_thread(name, [{"post_id": "p1", "body": CAPTION, "images": [f"img/{name}.jpg"]}]),
                             encoding="utf-8")


def _fifo_thread(root: Path, outside: Path) -> dict:
    _fifo(root / "pipe.json")
    _good_thread(root)
    return {"adapter": "forum"}


def _fifo_captions_csv(root: Path, outside: Path) -> dict:
    put(root / "figures" / "a.jpg", J())
    _fifo(root / "captions.csv")
    return {"adapter": "textbook"}


def _device_csv(root: Path, outside: Path) -> dict:
    """A character device (like /dev/null) as the captions CSV; a FIFO where mknod is not allowed."""
    put(root / "figures" / "a.jpg", J())
    try:
        os.mknod(root / "captions.csv", 0o600 | 0o020000, os.makedev(1, 3))
    except (PermissionError, OSError):
        os.mkfifo(root / "captions.csv")
    return {"adapter": "textbook"}


# -- one bad record must not abort the run --------------------------------------------------
def _symlink_loop_jpg(root: Path, outside: Path) -> dict:
    (root / "figures").mkdir(parents=True)
    os.symlink("loop.jpg", root / "figures" / "loop.jpg")
    put(root / "figures" / "ok.jpg", J())
    write_csv(root / "captions.csv", ["image_path", "caption"], [["figures/loop.jpg", CAPTION], ["figures/ok.jpg", CAPTION]])
    return {"adapter": "textbook"}


def _non_utf8_filename(root: Path, outside: Path) -> dict:
    put(root / "psoriasis" / "ok.jpg", J())
    put(root / "psoriasis" / os.fsdecode(b"ecz\xe9ma.jpg"), J())     # a Latin-1 file name
    return {"adapter": "folder", "label_template": "A clinical photograph of {label}: " + CAPTION}


def _figure_line(fid: str, image: str, caption: str = CAPTION) -> str:
    return json.dumps({"article_id": "A1", "figure_id": fid, "image_path": image, "caption": caption,
                       "article_title": "Psoriasis"})


def _surrogate_caption(root: Path, outside: Path) -> dict:
    put(root / "img" / "a.jpg", J())
    put(root / "img" / "b.jpg", J())
    lines = [_figure_line("F1", "img/a.jpg", CAPTION + " \ud800"), _figure_line("F2", "img/b.jpg")]
    (root / "figures.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")   # json.dumps wrote \\ud800
    return {"adapter": "article_figures"}


def _surrogate_id(root: Path, outside: Path) -> dict:
    put(root / "img" / "a.jpg", J())
    put(root / "img" / "b.jpg", J())
    (root / "t.json").write_text(_thread("t1", [{"post_id": "\udcff", "body": CAPTION, "images": ["img/a.jpg"]},
                                                {"post_id": "p2", "body": CAPTION, "images": ["img/b.jpg"]}]),
                                 encoding="utf-8")
    return {"adapter": "forum"}


def _deep_thread(root: Path, outside: Path) -> dict:
    (root / "deep.json").write_text(DEEP_JSON, encoding="utf-8")
    _good_thread(root)
    return {"adapter": "forum"}


def _deep_jsonl_line(root: Path, outside: Path) -> dict:
    put(root / "img" / "b.jpg", J())
    (root / "figures.jsonl").write_text('{"article_id": ' + DEEP_JSON + "}\n" + _figure_line("F2", "img/b.jpg") + "\n",
                                        encoding="utf-8")
    return {"adapter": "article_figures"}


def _symlink_loop_thread(root: Path, outside: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    os.symlink("loop.json", root / "loop.json")
    _good_thread(root)
    return {"adapter": "forum"}


def _forum_body_object(root: Path, outside: Path) -> dict:
    put(root / "img" / "a.jpg", J())
    (root / "t.json").write_text(_thread("t1", [{"post_id": "p1", "body": {"text": CAPTION}, "images": ["img/a.jpg"]}]),
                                 encoding="utf-8")
    _good_thread(root)
    return {"adapter": "forum"}


# -- CSV quote desynchronisation and field limits --------------------------------------------
def _rows_csv(header: str, lines: list[str]) -> bytes:
    return (header + "\n" + "\n".join(lines) + "\n").encode("utf-8")


UNBALANCED_CSV = _rows_csv("image_path,caption,book", [
    'figures/a.jpg,"Psoriasis plaque with silvery scale on the elbow,Atlas',     # the quote never closes
    f"figures/b.jpg,{CAPTION},Atlas", f"figures/c.jpg,{CAPTION},Atlas"])
UNBALANCED_WIDE_CSV = _rows_csv("image_path,caption,book,chapter,licence", [
    'figures/a.jpg,"Psoriasis plaque with silvery scale,Atlas,Papulosquamous,CC BY',
    f"figures/b.jpg,{CAPTION},Atlas,Papulosquamous,CC BY", f"figures/c.jpg,{CAPTION},Atlas,Eczema,CC BY"])
LONG_FIELD_CSV = _rows_csv("image_path,caption,book", [
    f"figures/a.jpg,{(CAPTION + ' ') * 1500},Atlas",          # ~220 KB: over the csv module's 128 KiB default
    f"figures/b.jpg,{CAPTION},Atlas", f"figures/c.jpg,{CAPTION},Atlas"])
MULTILINE_LEGIT_CSV = _rows_csv("image_path,caption,book", [
    f'figures/a.jpg,"{CAPTION}\nSee also figure 2, left panel",Atlas', f"figures/b.jpg,{CAPTION},Atlas"])
THREE = {"a.jpg": J(), "b.jpg": J(), "c.jpg": J()}


# -- images ----------------------------------------------------------------------------------
def exif_text_orientation_jpeg() -> bytes:
    """A good photo whose EXIF orientation tag (0x0112) is ASCII text, as some editors write it."""
    ifd = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHI", 0x0112, 2, 4) + b"top\x00"
    return im.encode(im.two_tone(), "JPEG", quality=95, subsampling=0, exif=b"Exif\x00\x00" + ifd + struct.pack(">I", 0))


def height_zero_jpeg() -> bytes:
    data = bytearray(im.encode(Image.new("RGB", (64, 48), im.TOP), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 7] = b"\x00\x00"                     # SOF0 height = 0
    return bytes(data)


def no_bidi(jpgs: list, texts: list[str]) -> None:
    assert texts and not any(c in t for t in texts for c in BIDI), texts
    upright_two_tone()(jpgs, texts)


def _nul_path(root: Path, outside: Path) -> dict:
    put(root / "figures" / "a.jpg", J())
    put(root / "captions.csv", b"image_path,caption\nfigures/a\x00.jpg," + CAPTION.encode() + b"\nfigures/a.jpg,"
        + CAPTION.encode() + b"\n")
    return {"adapter": "textbook"}


# -- configuration ---------------------------------------------------------------------------
def _source_entry(key: str, value) -> Callable[[dict], None]:
    def edit(params: dict) -> None:
        params["ingest"]["sources"][0][key] = value
    return edit


def _raw(text: Callable[[dict], bytes]) -> Callable[[Path, Path], dict]:
    def build(root: Path, outside: Path) -> dict:
        return {"edit": lambda params: None, "raw": text}
    return build


def _non_utf8_params(params: dict) -> bytes:
    import yaml
    return b"# r\xe9sum\xe9 of the run\n" + yaml.safe_dump(params, sort_keys=False).encode("utf-8")


def _bomb_params(params: dict) -> bytes:
    """Billion laughs: a source's ``licence`` is ten levels of nine aliases (a few hundred bytes of
    YAML, 3 x 9^9 strings if printed in full)."""
    import yaml
    name = params["ingest"]["sources"][0]["name"]
    levels = ['&a0 ["lol", "lol", "lol"]'] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = "[" + ", ".join(levels) + "]"
    text = yaml.safe_dump(params, sort_keys=False)
    assert f"  - name: {name}\n" in text
    return text.replace(f"  - name: {name}\n", f"  - name: {name}\n    licence: {bomb}\n", 1).encode("utf-8")


def _out_at(where: Callable[[Path], Path], key: str = "ingest") -> Callable[[Path, Path], dict]:
    def build(root: Path, outside: Path) -> dict:
        def edit(params: dict) -> None:
            params[key]["out"] = str(where(root))
        return {"edit": edit}
    return build


def _foreign_out(root: Path, outside: Path) -> dict:
    photos = root / "photos"
    put(photos / "holiday.jpg", J())
    put(photos / "notes.txt", b"mine")
    return {"edit": lambda params: params["ingest"].__setitem__("out", str(photos))}


def _file_as_source(root: Path, outside: Path) -> dict:
    put(root / "captions-only.csv", b"image_path,caption\n")
    return {"edit": _source_entry("path", str(root / "captions-only.csv"))}


# -- archives --------------------------------------------------------------------------------
def _zip_nul_name(root: Path, outside: Path) -> dict:
    """A zip entry named ``images/a.jpg<NUL>../../evil.txt`` (zipfile would cut it at the NUL)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "release.zip"
    placeholder = "images/a.jpg#../../evil.txt"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/ok.jpg", im.jpeg())
        zf.writestr(placeholder, b"pwned")
    path.write_bytes(buf.getvalue().replace(placeholder.encode(), placeholder.replace("#", "\x00").encode()))
    return {"archive": path}


def _zip_long_name(root: Path, outside: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "release.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/ok.jpg", im.jpeg())
        zf.writestr("images/" + "a" * 300 + ".jpg", b"x")
        zf.writestr("images/fine.txt", b"y")
    return {"archive": path}


def _tar_long_name(root: Path, outside: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "release.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in (("images/ok.jpg", im.jpeg()), ("images/" + "b" * 400 + ".jpg", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return {"archive": path}


ROUND2: list[Case] = [
    # --- 3: not a regular file, or huge ---
    Case("fifo_named_jpg", "source", "a FIFO named pipe.jpg (and a good row)", "ingest (decode-validate)",
         {"file_not_regular": 1, "accepted": 1}, _fifo_named_jpg, detail="FIFO"),
    Case("sparse_8gb_jpg", "source", "an 8 GiB sparse file named .jpg", "ingest (decode-validate)",
         {"file_too_large": 1}, _sparse_jpg, detail="over the limit"),
    Case("fifo_transcript", "source", "a FIFO as a video's transcript.vtt (and a good video)", "video adapter",
         {"file_not_regular": 1, "accepted": 1}, _fifo_transcript),
    Case("fifo_video_json", "source", "a FIFO as video.json", "video adapter", {"file_not_regular": 1},
         _fifo_video_json),
    Case("fifo_thread", "source", "a FIFO as a forum thread file (and a good thread)", "forum adapter",
         {"file_not_regular": 1, "accepted": 1}, _fifo_thread),
    Case("fifo_captions_csv", "source", "a FIFO as captions.csv", "textbook adapter", {"file_not_regular": 1},
         _fifo_captions_csv),
    Case("device_captions_csv", "source", "a character device (1,3: /dev/null) as captions.csv", "textbook adapter",
         {"file_not_regular": 1}, _device_csv),
    # --- 4: one bad record must not abort the run ---
    Case("symlink_loop_jpg", "source", "figures/loop.jpg -> loop.jpg (and a good row)", "ingest (confine)",
         {"path_invalid": 1, "accepted": 1}, _symlink_loop_jpg, detail="loop"),
    Case("non_utf8_filename", "source", "a folder image named with a Latin-1 byte (0xe9)", "folder adapter + ingest",
         {"encoding_invalid": 1, "accepted": 1}, _non_utf8_filename),
    Case("json_lone_surrogate_caption", "source", "a figures.jsonl caption holding \\ud800 (and a good line)",
         "article_figures adapter + ingest", {"encoding_invalid": 1, "accepted": 1}, _surrogate_caption,
         detail="caption"),
    Case("json_lone_surrogate_id", "source", "a forum post_id \\udcff (and a good post)", "forum adapter + ingest",
         {"encoding_invalid": 1, "accepted": 1}, _surrogate_id, detail="record_id"),
    Case("json_200k_deep_thread", "source", "a forum file nested 200,000 levels deep (and a good thread)",
         "forum adapter", {"source_file_unreadable": 1, "accepted": 1}, _deep_thread, detail="nested too deeply"),
    Case("jsonl_200k_deep_line", "source", "a figures.jsonl line nested 200,000 levels deep (and a good line)",
         "article_figures adapter", {"record_malformed": 1, "accepted": 1}, _deep_jsonl_line, detail="nested"),
    Case("json_200k_deep_transcript", "source", "a transcript.json nested 200,000 levels deep", "video adapter",
         {"source_file_unreadable": 1}, _deep_transcript, detail="nested too deeply"),
    Case("symlink_loop_thread", "source", "a forum loop.json -> loop.json (and a good thread)", "forum adapter",
         {"path_invalid": 1, "accepted": 1}, _symlink_loop_thread),
    # --- 5: rows lost silently in CSVs ---
    Case("csv_unbalanced_quote", "source", "an unclosed quote swallowing the next two rows", "textbook adapter",
         {"record_malformed": 3}, textbook_raw(UNBALANCED_CSV, THREE), detail="not closed"),
    Case("csv_unbalanced_quote_wide", "source", "an unclosed quote in a 5-column CSV (paths without suffix rule)",
         "textbook adapter", {"record_malformed": 3}, textbook_raw(UNBALANCED_WIDE_CSV, THREE), detail="unclosed"),
    Case("csv_field_over_limit", "source", "a 220 KB caption field (over csv's 128 KiB limit), then two good rows",
         "textbook adapter + filters", {"caption_too_long": 1, "accepted": 2}, textbook_raw(LONG_FIELD_CSV, THREE),
         needs_filters=True),
    Case("csv_multiline_caption", "source", "a quoted caption whose second line holds a comma (not a row)",
         "textbook adapter", {"accepted": 2}, textbook_raw(MULTILINE_LEGIT_CSV, {"a.jpg": J(), "b.jpg": J()}),
         caption_kept("See also figure 2")),
    # --- 7: export safety ---
    Case("caption_formula", "source", "captions starting with =, @, + and - (spreadsheet formulas)",
         "ingest -> metadata (release CSV)", {"accepted": 4},
         textbook({f"f{i}.jpg": J() for i in range(4)}, [(f"figures/f{i}.jpg", c) for i, c in enumerate(FORMULA_CAPTIONS)]),
         upright_two_tone()),
    Case("caption_bidi_override", "source", "a caption with U+202E and U+2066 bidi controls", "ingest (filters)",
         {"accepted": 1}, textbook({"a.jpg": J()}, [("figures/a.jpg", "Clinical \u202ephotograph\u202c of a \u2066well"
                                                    "\u2069 demarcated " + CAPTION[27:])]), no_bidi),
    # --- 8: smaller ones ---
    Case("exif_orientation_text", "source", "a JPEG whose EXIF orientation tag is text", "ingest -> shard",
         {"accepted": 1}, textbook({"a.jpg": exif_text_orientation_jpeg()}), upright_two_tone((64, 64))),
    Case("jpeg_height_zero", "source", "a JPEG whose SOF header says height 0", "ingest (decode-validate)",
         {"image_header_invalid": 1}, textbook({"a.jpg": height_zero_jpeg()})),
    Case("nul_in_path", "source", "a CSV image_path holding a NUL byte (and a good row)", "ingest (confine)",
         {"path_invalid": 1, "accepted": 1}, _nul_path, detail="NUL"),
    Case("forum_body_object", "source", "a forum post whose body is a JSON object (and a good thread)",
         "forum adapter", {"record_malformed": 1, "accepted": 1}, _forum_body_object, detail="body"),
    # --- 6: configuration (derm1m ingest in a subprocess) ---
    Case("source_adapter_list", "config", "ingest source adapter: [textbook]", "derm1m ingest (sources)",
         {"config_error": 1}, _config(_source_entry("adapter", ["textbook"])), detail="adapter"),
    Case("source_name_mapping", "config", "ingest source name: {a: 1}", "derm1m ingest (sources)",
         {"config_error": 1}, _config(_source_entry("name", {"a": 1})), detail="name"),
    Case("source_path_number", "config", "ingest source path: 42", "derm1m ingest (sources)", {"config_error": 1},
         _config(_source_entry("path", 42)), detail="path"),
    Case("source_path_null", "config", "ingest source path: null", "derm1m ingest (sources)", {"config_error": 1},
         _config(_source_entry("path", None)), detail="path"),
    Case("source_path_is_file", "config", "a source path naming a CSV file, not a folder", "derm1m ingest (sources)",
         {"config_error": 1}, _file_as_source, detail="is a file"),
    Case("source_option_glob", "config", "textbook captions_csv: '*.csv' (a glob for a file name)",
         "derm1m ingest (adapter options)", {"config_error": 1}, _config(_source_entry("captions_csv", "*.csv")),
         detail="captions_csv"),
    Case("source_option_nan", "config", "video window_s: .nan", "derm1m ingest (adapter options)",
         {"config_error": 1}, _config(lambda p: p["ingest"]["sources"][0].update(adapter="video", window_s=float("nan"))),
         detail="window_s"),
    Case("params_nan", "config", "ingest.max_aspect_ratio: .nan", "derm1m ingest (params)", {"config_error": 1},
         _config(_set("ingest.max_aspect_ratio", float("nan"))), detail="max_aspect_ratio"),
    Case("params_not_utf8", "config", "params.yaml with a Latin-1 byte in a comment", "derm1m ingest (params)",
         {"config_error": 1}, _raw(_non_utf8_params), detail="UTF-8"),
    Case("params_alias_bomb", "config", "a billion-laughs YAML alias bomb as a source option", "derm1m ingest (params)",
         {"config_error": 1}, _raw(_bomb_params), detail="alias"),
    # --- 2: an output path that would delete inputs ---
    Case("out_contains_source", "config", "ingest.out: the folder holding the sources", "derm1m ingest (outputs)",
         {"config_error": 1}, _out_at(lambda root: root), detail="ingest.out"),
    Case("out_is_source_root", "config", "ingest.out: a source's own root", "derm1m ingest (outputs)",
         {"config_error": 1}, _out_at(lambda root: root / "atlas"), detail="ingest.out"),
    Case("out_inside_source", "config", "ingest.out: a folder inside a source's root", "derm1m ingest (outputs)",
         {"config_error": 1}, _out_at(lambda root: root / "atlas" / "tables"), detail="ingest.out"),
    Case("out_shared_by_stages", "config", "dedup.out equal to ingest.out", "derm1m ingest (outputs)",
         {"config_error": 1}, _config(lambda p: p["dedup"].__setitem__("out", p["ingest"]["out"])), detail="overlap"),
    Case("out_foreign_folder", "config", "ingest.out: an existing folder of the user's own files",
         "derm1m ingest (atomic swap)", {"config_error": 1}, _foreign_out, detail="did not write"),
    # --- 8: unpack ---
    Case("zip_nul_name", "archive", "a zip entry images/a.jpg<NUL>../../evil.txt", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _zip_nul_name, detail="NUL"),
    Case("zip_long_name", "archive", "a zip entry with a 300-byte file name (and a good one)", "derm1m unpack",
         {"extracted": 2, "archive_entry_unsafe": 1}, _zip_long_name, detail="too long"),
    Case("tar_long_name", "archive", "a tar member with a 400-byte file name", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _tar_long_name, detail="too long"),
]
