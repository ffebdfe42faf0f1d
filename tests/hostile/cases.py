"""The hostile-input case registry: what each case plants, where it enters, what must come out.

A case is planted by code into its own folder under a temporary directory. Kinds:

``source``  a source of a real adapter (textbook, folder, demo, derm1m_release, public_dataset)
            listed in ``ingest.sources`` under the case's name; the data stages run on all of
            them together. ``expect`` maps outcome -> rows: a reject reason code, or
            ``accepted`` (the rows become pairs and reach the shards as upright 8-bit RGB
            JPEGs; ``check`` looks at the pixels).
``benchmark`` a ``decontaminate.benchmarks`` entry (dedup reads it).
``config``  a params.yaml for ``derm1m ingest`` in a subprocess: exit 2, one stderr line
            naming the file, the key and the fix, no traceback, nothing written.
``archive`` a zip or tar for :func:`pipeline.archives.safe_extract`: refused entries are
            reject rows and nothing lands outside the destination.

Caption-level cases that depend on branch ``filters`` (``pipeline.text.filters``) carry
``needs_filters`` and are skipped until it is merged.
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import images as im

# A caption every filter keeps: English, long enough, dermatology vocabulary.
CAPTION = ("Clinical photograph of a well demarcated erythematous psoriasis plaque with silvery scale "
           "on the extensor surface of the elbow of a 45-year-old man.")


def write_csv(path: Path, header: list[str], rows: list[list[str]], **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=kw.pop("encoding", "utf-8")) as fh:
        w = csv.writer(fh, **kw)
        w.writerow(header)
        w.writerows(rows)


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass(frozen=True)
class Case:
    """One hostile input: its name (also its source name), what it plants, where it enters, what must happen."""

    name: str
    kind: str                  # source | benchmark | config | archive
    plants: str                # what the case puts on disk
    entry: str                 # the stage or entry point that meets it
    expect: dict[str, int]     # outcome -> rows (reason code, "accepted", "config_error", "extracted")
    build: Callable[[Path, Path], dict] = field(repr=False)  # (case dir, outside dir) -> source / params / archive info
    check: Callable[[list[Image.Image], list[str]], None] | None = field(default=None, repr=False)
    needs_filters: bool = False
    detail: str = ""           # a substring the reject detail (or the error line) must contain

    @property
    def outcome(self) -> str:
        return ", ".join(f"{k}" + (f" x{v}" if v != 1 else "") for k, v in sorted(self.expect.items()))


# -- checks on the shard samples of accepted cases -------------------------------------------
def _close(pixel, colour, tol: int = 24) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, colour, strict=True))


def upright_two_tone(size: tuple[int, int] | None = None, bottom=im.BOTTOM, top=im.TOP) -> Callable:
    """Shard JPEGs are RGB, 8-bit, ``top`` above ``bottom`` (orientation kept), optionally of ``size``."""
    def check(jpgs: list[Image.Image], texts: list[str]) -> None:
        for img in jpgs:
            assert img.format == "JPEG" and img.mode == "RGB", (img.format, img.mode)
            if size:
                assert img.size == size, img.size
            arr = np.asarray(img)
            w, h = img.size
            hi, low = arr[h // 4, w // 2], arr[3 * h // 4, w // 2]
            assert _close(hi, top), f"top pixel {hi.tolist()} is not {top}"
            assert _close(low, bottom), f"bottom pixel {low.tolist()} is not {bottom}"
    return check


def captions_clean(jpgs: list[Image.Image], texts: list[str]) -> None:
    for t in texts:
        assert "<" not in t and "&amp;" not in t and not any(ord(c) < 32 for c in t), t


def caption_kept(fragment: str) -> Callable:
    def check(jpgs: list[Image.Image], texts: list[str]) -> None:
        assert any(fragment in t for t in texts), texts
        upright_two_tone()(jpgs, texts)
    return check


# -- builders --------------------------------------------------------------------------------
def textbook(files: dict[str, bytes], rows: list[tuple[str, str]] | None = None) -> Callable[[Path, Path], dict]:
    """A textbook source: ``files`` under figures/, one CSV row per file (or ``rows``)."""
    def build(root: Path, outside: Path) -> dict:
        for rel, data in files.items():
            put(root / "figures" / rel, data)
        listed = rows if rows is not None else [(f"figures/{rel}", CAPTION) for rel in files]
        write_csv(root / "captions.csv", ["image_path", "caption", "book"], [[p, c, "Atlas"] for p, c in listed])
        return {"adapter": "textbook"}
    return build


def textbook_raw(csv_bytes: bytes, files: dict[str, bytes] | None = None) -> Callable[[Path, Path], dict]:
    """A textbook source whose captions.csv is written byte for byte (delimiters, BOM, encodings)."""
    def build(root: Path, outside: Path) -> dict:
        for rel, data in (files or {"a.jpg": im.jpeg()}).items():
            put(root / "figures" / rel, data)
        put(root / "captions.csv", csv_bytes)
        return {"adapter": "textbook"}
    return build


def _symlink_out(root: Path, outside: Path) -> dict:
    put(outside / "secret.jpg", im.jpeg())
    (root / "figures").mkdir(parents=True)
    os.symlink(outside / "secret.jpg", root / "figures" / "link.jpg")
    write_csv(root / "captions.csv", ["image_path", "caption"], [["figures/link.jpg", CAPTION]])
    return {"adapter": "textbook"}


def _dotdot(root: Path, outside: Path) -> dict:
    put(outside / "secret.jpg", im.jpeg())
    rel = os.path.relpath(outside / "secret.jpg", root)
    write_csv(root / "captions.csv", ["image_path", "caption"], [[rel, CAPTION]])
    return {"adapter": "textbook"}


def _absolute(root: Path, outside: Path) -> dict:
    put(outside / "secret.jpg", im.jpeg())
    write_csv(root / "captions.csv", ["image_path", "caption"], [[str(outside / "secret.jpg"), CAPTION]])
    return {"adapter": "textbook"}


def _folder_symlink_dir(root: Path, outside: Path) -> dict:
    """A folder source: one real class folder, one symlinked image file pointing out."""
    put(root / "psoriasis" / "ok.jpg", im.jpeg())
    put(outside / "elsewhere" / "secret.jpg", im.jpeg())
    os.symlink(outside / "elsewhere" / "secret.jpg", root / "psoriasis" / "link.jpg")
    # A template long enough for branch filters' min_words and dermatology checks.
    return {"adapter": "folder", "label_template": "A clinical photograph of {label}: " + CAPTION}


def _folder_csv_escape(root: Path, outside: Path) -> dict:
    put(root / "img" / "ok.jpg", im.jpeg())
    put(outside / "secret.jpg", im.jpeg())
    csv_path = outside / f"{root.name}-captions.csv"
    write_csv(csv_path, ["image_path", "caption"], [["img/ok.jpg", CAPTION], ["../secret.jpg", CAPTION]])
    return {"adapter": "folder", "captions_csv": str(csv_path)}


def _release(rows: list[list[str]], files: dict[str, bytes], header: list[str] | None = None) -> Callable:
    def build(root: Path, outside: Path) -> dict:
        put(outside / "secret.jpg", im.jpeg())
        for rel, data in files.items():
            put(root / rel, data)
        write_csv(root / "Derm1M_v2_pretrain.csv", header or ["filename", "caption", "source_type"], rows)
        return {"adapter": "derm1m_release", "csv_files": ["Derm1M_v2_pretrain.csv"]}
    return build


def _release_symlinked_dir(root: Path, outside: Path) -> dict:
    put(outside / "dir" / "x.jpg", im.jpeg())
    root.mkdir(parents=True, exist_ok=True)
    os.symlink(outside / "dir", root / "linked")
    write_csv(root / "Derm1M_v2_pretrain.csv", ["filename", "caption"], [["linked/x.jpg", CAPTION]])
    return {"adapter": "derm1m_release", "csv_files": ["Derm1M_v2_pretrain.csv"]}


def _demo_duplicate_ids(root: Path, outside: Path) -> dict:
    put(root / "a.jpg", im.jpeg())
    put(root / "b.jpg", im.jpeg(64, 48))
    cols = ["record_id", "image_path", "caption", "source", "source_type", "licence", "context"]
    write_csv(root / "records.csv", cols, [["r1", "a.jpg", CAPTION, "atlas", "edu", "", ""],
                                           ["r1", "b.jpg", CAPTION, "atlas", "edu", "", ""]])
    return {"adapter": "demo"}


def _pad_ufes(age: str) -> Callable:
    def build(root: Path, outside: Path) -> dict:
        put(root / "images" / "PAT_1_1_1.png", im.solid_png(64, 64))
        write_csv(root / "metadata.csv", ["patient_id", "lesion_id", "age", "gender", "fitspatrick", "region",
                                          "diagnostic", "img_id", "biopsed"],
                  [["PAT_1", "1", age, "MALE", "2", "ARM", "BCC", "PAT_1_1_1.png", "True"]])
        return {"adapter": "public_dataset", "layout": "pad_ufes_20"}
    return build


def _public_missing_csv(root: Path, outside: Path) -> dict:
    put(root / "images" / "x.jpg", im.jpeg())
    return {"adapter": "public_dataset", "layout": "ddi"}


def _directory_named_jpg(root: Path, outside: Path) -> dict:
    (root / "figures" / "dir.jpg").mkdir(parents=True)
    write_csv(root / "captions.csv", ["image_path", "caption"], [["figures/dir.jpg", CAPTION]])
    return {"adapter": "textbook"}


def _benchmark_missing(root: Path, outside: Path) -> dict:
    put(root / "present.jpg", im.jpeg(48, 48))
    write_csv(root / "bench.csv", ["image_path"], [[str(root / "present.jpg")], [str(root / "gone-1.jpg")],
                                                  [str(root / "gone-2.jpg")]])
    return {"path": str(root / "bench.csv"), "column": "image_path"}


# -- config cases: (params edit) -> the line must name these ---------------------------------
def _config(edit: Callable[[dict], None]) -> Callable[[Path, Path], dict]:
    def build(root: Path, outside: Path) -> dict:
        return {"edit": edit}
    return build


def _set(path: str, value) -> Callable[[dict], None]:
    def edit(params: dict) -> None:
        node = params
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return edit


def _source_option(params: dict) -> None:
    params["ingest"]["sources"][0]["layuot"] = "ddi"


# -- archive cases -------------------------------------------------------------------------
def _zip(entries: list[tuple[str, bytes]], symlink: str | None = None) -> Callable[[Path, Path], dict]:
    def build(root: Path, outside: Path) -> dict:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "release.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("images/ok.jpg", im.jpeg())
            for name, data in entries:
                zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
            if symlink:
                info = zipfile.ZipInfo("images/link.jpg")
                info.external_attr = (0o120777 << 16)
                zf.writestr(info, symlink)
        return {"archive": path}
    return build


def _tar(add: Callable[[tarfile.TarFile, Path], None]) -> Callable[[Path, Path], dict]:
    def build(root: Path, outside: Path) -> dict:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "release.tar.gz"
        with tarfile.open(path, "w:gz") as tf:
            data = im.jpeg()
            info = tarfile.TarInfo("images/ok.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            add(tf, outside)
        return {"archive": path}
    return build


def _tar_file(tf: tarfile.TarFile, name: str, data: bytes = b"pwned") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _tar_symlink_then_write(tf: tarfile.TarFile, outside: Path) -> None:
    link = tarfile.TarInfo("images/escape")
    link.type, link.linkname = tarfile.SYMTYPE, str(outside)
    tf.addfile(link)
    _tar_file(tf, "images/escape/pwned.txt")


def _tar_relative_link(tf: tarfile.TarFile, outside: Path) -> None:
    link = tarfile.TarInfo("images/up")
    link.type, link.linkname = tarfile.SYMTYPE, "../../.."
    tf.addfile(link)


def _tar_hardlink(tf: tarfile.TarFile, outside: Path) -> None:
    link = tarfile.TarInfo("images/hard")
    link.type, link.linkname = tarfile.LNKTYPE, str(outside / "victim.txt")
    tf.addfile(link)


def _tar_device(tf: tarfile.TarFile, outside: Path) -> None:
    dev = tarfile.TarInfo("images/null")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    tf.addfile(dev)


def _tar_dotdot(tf: tarfile.TarFile, outside: Path) -> None:
    _tar_file(tf, "../../pwned.txt")


ZIP_BOMB = b"\x00" * (8 * 1024 * 1024)  # 8 MiB of zeros: deflates ~1000:1

J = im.jpeg
SEMICOLON_CSV = b"image_path;caption\nfigures/a.jpg;" + CAPTION.encode() + b"\n"
BOM_CSV = b"\xef\xbb\xbfimage_path,caption\nfigures/a.jpg," + CAPTION.encode() + b"\n"
LATIN1_CSV = b"image_path,caption\nfigures/a.jpg,Ecz\xe9ma of the hand with erythematous vesicles and scale on the palm.\n"
EXTRA_FIELD_CSV = (b"image_path,caption\nfigures/a.jpg,Psoriasis plaque on the elbow, with scale and erythema on "
                   b"the extensor surface of the arm\n")
EXTRA_COLUMN_CSV = (b"image_path,caption,photographer,notes\nfigures/a.jpg,\"" + CAPTION.encode()
                    + b"\",Dr X,scanned page\n")
QUOTED_CSV = (b'image_path,caption\nfigures/a.jpg,"Psoriasis plaque, ""silvery"" scale\non the elbow '
              b'of a 45-year-old man; erythematous skin with well demarcated borders."\n')
MISSING_COLUMN_CSV = b"image_path,text\nfigures/a.jpg," + CAPTION.encode() + b"\n"

CASES: list[Case] = [
    # --- files that are not (good) images ---
    Case("zero_byte", "source", "a 0-byte .jpg", "ingest (decode-validate)", {"image_empty": 1},
         textbook({"empty.jpg": b""})),
    Case("truncated_jpeg", "source", "the first half of a JPEG", "ingest (decode-validate)", {"image_truncated": 1},
         textbook({"half.jpg": im.truncated(im.jpeg(256, 256))})),
    Case("truncated_png", "source", "the first half of a PNG", "ingest (decode-validate)", {"image_truncated": 1},
         textbook({"half.png": im.truncated(im.noisy_png())})),
    Case("html_named_jpg", "source", "an HTML error page saved as .jpg", "ingest (decode-validate)",
         {"image_not_an_image": 1}, textbook({"page.jpg": b"<!DOCTYPE html><html><body>403 Forbidden</body></html>"})),
    Case("text_named_jpg", "source", "a plain-text file named .jpg", "ingest (decode-validate)",
         {"image_not_an_image": 1}, textbook({"notes.jpg": b"just some text, not pixels\n" * 20})),
    Case("directory_named_jpg", "source", "a folder named dir.jpg", "ingest (decode-validate)",
         {"image_unreadable": 1}, _directory_named_jpg),
    Case("missing_image", "source", "a CSV row naming a file that does not exist", "ingest (decode-validate)",
         {"image_missing": 1}, textbook({}, [("figures/nowhere.jpg", CAPTION)])),
    Case("decompression_bomb", "source", "a PNG header claiming 40000x40000 pixels over 50 bytes",
         "ingest (decode-validate)", {"image_too_large": 1}, textbook({"bomb.png": im.bomb_png(40000, 40000)}),
         detail="exceeds limit"),
    Case("bomb_just_over_limit", "source", "a PNG header claiming 10000x10000 (over the limit, under 2x)",
         "ingest (decode-validate)", {"image_too_large": 1}, textbook({"big.png": im.bomb_png(10000, 10000)})),
    Case("one_by_one", "source", "a 1x1 PNG", "ingest (decode-validate)", {"image_too_small": 1},
         textbook({"dot.png": im.solid_png(1, 1)})),
    Case("strip_10000x10", "source", "a 10000x10 PNG", "ingest (decode-validate)", {"image_too_small": 1},
         textbook({"strip.png": im.solid_png(10000, 10)})),
    Case("banner_4000x40", "source", "a 4000x40 PNG (aspect 100:1)", "ingest (decode-validate)",
         {"image_aspect_extreme": 1}, textbook({"banner.png": im.solid_png(4000, 40)}), detail="max_aspect_ratio"),
    # --- unusual but valid images: accepted and normalised to upright 8-bit RGB JPEG in the shards ---
    Case("cmyk_jpeg", "source", "a CMYK JPEG", "ingest -> shard", {"accepted": 1},
         textbook({"cmyk.jpg": im.cmyk_jpeg()}), upright_two_tone((64, 64))),
    Case("png_16bit_gray", "source", "a 16-bit greyscale PNG (values above 255)", "ingest -> shard", {"accepted": 1},
         textbook({"g16.png": im.png16_gray()}), upright_two_tone((64, 64), top=(200,) * 3, bottom=(40,) * 3)),
    Case("png_16bit_rgb", "source", "a 16-bit RGB PNG", "ingest -> shard", {"accepted": 1},
         textbook({"rgb16.png": im.png16_rgb()}), upright_two_tone((64, 64))),
    Case("tiff_16bit_gray", "source", "a 16-bit greyscale TIFF", "ingest -> shard", {"accepted": 1},
         textbook({"g16.tif": im.tiff16_gray()}), upright_two_tone((64, 64), top=(200,) * 3, bottom=(40,) * 3)),
    Case("palette_transparency", "source", "a palette PNG with a transparent index", "ingest -> shard",
         {"accepted": 1}, textbook({"pal.png": im.palette_with_transparency()}),
         upright_two_tone((64, 64), bottom=(255, 255, 255))),
    Case("rgba_png", "source", "an RGBA PNG, bottom half transparent", "ingest -> shard", {"accepted": 1},
         textbook({"rgba.png": im.rgba_png()}), upright_two_tone((64, 64), bottom=(255, 255, 255))),
    Case("animated_gif", "source", "a two-frame animated GIF", "ingest -> shard (first frame)", {"accepted": 1},
         textbook({"anim.gif": im.animated("GIF")}), upright_two_tone((64, 64))),
    Case("animated_webp", "source", "a two-frame animated WebP", "ingest -> shard (first frame)", {"accepted": 1},
         textbook({"anim.webp": im.animated("WEBP")}), upright_two_tone((64, 64))),
    Case("exif_rotated", "source", "a sideways JPEG with EXIF orientation 6", "ingest -> shard (upright)",
         {"accepted": 1}, textbook({"rot.jpg": im.exif_rotated_jpeg()}), upright_two_tone((32, 64))),
    # --- paths out of the data root ---
    Case("dotdot_path", "source", "image_path ../<outside>/secret.jpg (the file exists)", "ingest (confine)",
         {"path_outside_root": 1}, _dotdot),
    Case("absolute_path", "source", "image_path /<outside>/secret.jpg (the file exists)", "ingest (confine)",
         {"path_outside_root": 1}, _absolute),
    Case("symlink_out", "source", "figures/link.jpg -> a file outside the root", "ingest (confine)",
         {"path_outside_root": 1}, _symlink_out),
    Case("folder_symlink_out", "source", "folder source: a symlinked file out of the root beside a real one",
         "folder adapter + ingest (confine)", {"accepted": 1, "path_outside_root": 1}, _folder_symlink_dir),
    Case("folder_csv_escape", "source", "folder captions CSV naming ../secret.jpg", "folder adapter",
         {"accepted": 1, "path_outside_root": 1}, _folder_csv_escape),
    Case("release_dotdot", "source", "Derm1M release CSV: filename ../secret.jpg and an absolute path",
         "derm1m_release adapter + ingest (confine)", {"path_outside_root": 2},
         _release([["../secret.jpg", CAPTION, "edu"], ["/etc/hostname", CAPTION, "edu"]], {})),
    Case("release_symlinked_dir", "source", "Derm1M release: filename under a symlinked folder pointing out",
         "derm1m_release adapter + ingest (confine)", {"path_outside_root": 1}, _release_symlinked_dir),
    # --- duplicates ---
    Case("duplicate_filenames", "source", "one image listed twice with two captions", "textbook adapter",
         {"accepted": 2}, textbook({"a.jpg": J()}, [("figures/a.jpg", CAPTION), ("figures/a.jpg", CAPTION + " Second view.")]),
         upright_two_tone((64, 64))),
    Case("duplicate_record_ids", "source", "demo records.csv: one record_id on two rows", "ingest (pair ids)",
         {"accepted": 1, "record_malformed": 1}, _demo_duplicate_ids, detail="duplicate record id"),
    # --- CSV layout ---
    Case("csv_missing_column", "source", "captions.csv without a caption column", "textbook adapter",
         {"column_missing": 1}, textbook_raw(MISSING_COLUMN_CSV), detail="lacks column"),
    Case("release_missing_column", "source", "Derm1M release CSV without caption", "derm1m_release adapter",
         {"column_missing": 1}, _release([["a.jpg", "edu"]], {"a.jpg": J()}, ["filename", "source_type"])),
    Case("csv_extra_column", "source", "two extra columns in the header", "textbook adapter", {"accepted": 1},
         textbook_raw(EXTRA_COLUMN_CSV), upright_two_tone((64, 64))),
    Case("csv_extra_field", "source", "a row with an unquoted comma (more fields than the header)",
         "textbook adapter", {"record_malformed": 1}, textbook_raw(EXTRA_FIELD_CSV), detail="fields"),
    Case("csv_wrong_delimiter", "source", "a semicolon-delimited captions.csv", "textbook adapter",
         {"column_missing": 1}, textbook_raw(SEMICOLON_CSV), detail="';'-delimited"),
    Case("csv_quotes_newlines", "source", "a quoted caption with a comma, doubled quotes and a newline",
         "textbook adapter", {"accepted": 1}, textbook_raw(QUOTED_CSV), caption_kept('"silvery" scale on the elbow')),
    Case("csv_bom", "source", "a UTF-8 BOM before the header", "textbook adapter", {"accepted": 1},
         textbook_raw(BOM_CSV), upright_two_tone((64, 64))),
    Case("csv_non_utf8", "source", "a Latin-1 byte (0xe9) in a caption", "textbook adapter",
         {"encoding_invalid": 1}, textbook_raw(LATIN1_CSV), detail="e9"),
    # --- captions ---
    Case("caption_empty", "source", "a caption of spaces and control characters", "ingest (clean caption)",
         {"caption_empty": 1}, textbook({"a.jpg": J()}, [("figures/a.jpg", " \x01\x02 \x7f ")])),
    Case("caption_1mb", "source", "a 1 MB caption", "ingest (filters)", {"caption_too_long": 1},
         textbook({"a.jpg": J()}, [("figures/a.jpg", (CAPTION + " ") * (1_048_576 // (len(CAPTION) + 1) + 1))]),
         needs_filters=True),
    Case("caption_html_control", "source", "HTML tags, entities and control characters in a caption",
         "ingest (filters)", {"accepted": 1},
         textbook({"a.jpg": J()}, [("figures/a.jpg", "<p>Psoriasis&nbsp;plaque <b>with</b> silvery scale\x07 on "
                                    "the elbow of a 45-year-old man &amp; erythematous skin.</p>")]),
         captions_clean, needs_filters=True),
    Case("caption_null_markers", "source", "captions 'NaN' and 'None'", "ingest (filters)", {"caption_missing": 2},
         textbook({"a.jpg": J(), "b.jpg": J(64, 48)}, [("figures/a.jpg", "NaN"), ("figures/b.jpg", "None")]),
         needs_filters=True),
    # --- structured metadata ---
    Case("age_300", "source", "PAD-UFES-20 metadata with age 300", "public_dataset adapter",
         {"metadata_invalid": 1}, _pad_ufes("300"), detail="'300'"),
    Case("age_negative", "source", "PAD-UFES-20 metadata with age \"-5\"", "public_dataset adapter",
         {"metadata_invalid": 1}, _pad_ufes("-5"), detail="'-5'"),
    Case("public_csv_missing", "source", "a DDI layout without its metadata CSV", "public_dataset adapter",
         {"source_file_unreadable": 1}, _public_missing_csv),
    Case("benchmark_missing_files", "benchmark", "a decontamination benchmark CSV naming 2 missing files",
         "dedup (decontaminate.benchmarks)", {"image_missing": 2}, _benchmark_missing),
    # --- configuration (derm1m ingest in a subprocess) ---
    Case("params_unknown_key", "config", "params.yaml with dedup.radious", "derm1m ingest (params)",
         {"config_error": 1}, _config(_set("dedup.radious", 8)), detail="dedup.radious"),
    Case("params_wrong_type", "config", "params.yaml with ingest.min_side: big", "derm1m ingest (params)",
         {"config_error": 1}, _config(_set("ingest.min_side", "big")), detail="ingest.min_side"),
    Case("params_wrong_nested_type", "config", "params.yaml with split.ratios: [0.8, 0.1, 0.1]",
         "derm1m ingest (params)", {"config_error": 1}, _config(_set("split.ratios", [0.8, 0.1, 0.1])),
         detail="split.ratios"),
    Case("params_unknown_source_option", "config", "an ingest source with option 'layuot'",
         "derm1m ingest (adapter options)", {"config_error": 1}, _config(_source_option), detail="layuot"),
    # --- archives (derm1m unpack / safe_extract) ---
    Case("zip_slip", "archive", "a zip entry ../../evil.txt", "derm1m unpack", {"extracted": 1,
         "archive_entry_unsafe": 1}, _zip([("../../evil.txt", b"pwned")])),
    Case("zip_absolute", "archive", "a zip entry /tmp/evil.txt", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _zip([("/tmp/derm1m-hostile-evil.txt", b"pwned")])),
    Case("zip_backslash_slip", "archive", "a zip entry ..\\..\\evil.txt", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _zip([("..\\..\\evil.txt", b"pwned")])),
    Case("zip_duplicate_names", "archive", "two zip entries named images/ok.jpg", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _zip([("images/ok.jpg", b"replaced")]), detail="twice"),
    Case("zip_file_folder_clash", "archive", "a zip entry images/ok.jpg/x.txt under the file images/ok.jpg",
         "derm1m unpack", {"extracted": 1, "archive_entry_unsafe": 1}, _zip([("images/ok.jpg/x.txt", b"x")]),
         detail="clashes"),
    Case("zip_symlink", "archive", "a zip entry that is a symlink to /etc/passwd", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _zip([], symlink="/etc/passwd")),
    Case("zip_bomb", "archive", "8 MiB of zeros deflated to ~8 KB", "derm1m unpack",
         {"extracted": 1, "archive_too_large": 1}, _zip([("images/bomb.bin", ZIP_BOMB)]), detail="zip bomb"),
    Case("tar_dotdot", "archive", "a tar member ../../pwned.txt", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _tar(_tar_dotdot)),
    Case("tar_symlink_out", "archive", "a tar symlink to the outside dir, then a file written through it",
         "derm1m unpack", {"extracted": 2, "archive_entry_unsafe": 1}, _tar(_tar_symlink_then_write)),
    Case("tar_relative_link_out", "archive", "a tar symlink to ../../..", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _tar(_tar_relative_link)),
    Case("tar_hardlink_out", "archive", "a tar hard link to a file outside", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _tar(_tar_hardlink)),
    Case("tar_device", "archive", "a tar character device (/dev/null)", "derm1m unpack",
         {"extracted": 1, "archive_entry_unsafe": 1}, _tar(_tar_device)),
]


from .round2 import ROUND2  # noqa: E402  (round 2 builds on the helpers above)

CASES += ROUND2


def by_kind(kind: str) -> list[Case]:
    return [c for c in CASES if c.kind == kind]
