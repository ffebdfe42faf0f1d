"""Stage ``ingest``: every configured source through its adapter into pairs, images and rejects.

Per record: confine the image path to the source root, clean and check the caption through the
filter chain (``ingest.filters``, :mod:`pipeline.text.filters`: cheap, so it runs before any
image is opened), and check each image once (decode-validate in parallel, one check per
distinct file). Accounting invariant: records read = pairs written + rejects written.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pipeline import ids
from pipeline.errors import ConfigError, show
from pipeline.executor import make_executor
from pipeline.images.decode import DEFAULT_MAX_ASPECT_RATIO, ImageInfo, ImageProblem, validate_image
from pipeline.params import section
from pipeline.rejects import Reject
from pipeline.safeio import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_METADATA_BYTES
from pipeline.sources import ADAPTERS, SourceAdapter, SourceRecord
from pipeline.stages import StageResult, Timer
from pipeline.tables import atomic_dir, write_table
from pipeline.text.filters import CaptionFilterChain, FilterResult


def build_adapters(params: dict) -> list[SourceAdapter]:
    """One adapter per ``ingest.sources`` entry, checked (unique names, known adapter kinds).

    Every problem with an entry is a one-line :class:`ConfigError` naming the entry: a
    ``name``/``adapter``/``path`` that is not text (a list, a mapping, a number, null), an
    unknown adapter, a duplicate name, and whatever the adapter's own option checks raise; a
    type error from an option of an unexpected shape becomes one too, never a traceback.
    """
    cfg = section(params, "ingest", {"sources": list})
    adapters = []
    names = set()
    for i, src in enumerate(cfg["sources"]):
        where = f"params.yaml: ingest.sources[{i}]"
        if not isinstance(src, dict) or not {"name", "adapter", "path"} <= set(src):
            raise ConfigError(f"{where} needs name, adapter and path (got {show(src)}); fix the entry")
        for key in ("name", "adapter", "path"):
            if not isinstance(src[key], str) or not src[key].strip():
                raise ConfigError(f"{where}.{key} must be a non-empty text, got {type(src[key]).__name__} "
                                  f"{show(src[key])}; fix the value")
        if "\x00" in src["path"]:
            raise ConfigError(f"{where}.path holds a NUL character ({show(src['path'])}); fix the value")
        if src["adapter"] not in ADAPTERS:
            raise ConfigError(f"{where}.adapter {show(src['adapter'])} unknown; valid: one of {sorted(ADAPTERS)}")
        if src["name"] in names:
            raise ConfigError(f"params.yaml: ingest source name {show(src['name'])} used twice; fix: give each a "
                              "name of its own")
        names.add(src["name"])
        options = {k: v for k, v in src.items() if k not in ("name", "adapter", "path")}
        try:
            adapter = ADAPTERS[src["adapter"]](src["name"], src["path"], options)
            adapter.max_file_bytes = int(params["ingest"].get("max_metadata_bytes", DEFAULT_MAX_METADATA_BYTES))
            adapters.append(adapter)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            raise ConfigError(f"{where} ({show(src['name'])}): invalid option value ({exc.__class__.__name__}: "
                              f"{show(str(exc))}); fix the entry") from None
    return adapters


def confine(root: Path, relpath: str) -> Path | None:
    """The file's path under ``root``, or None if the path (or a symlink) escapes the root.

    Raises :class:`BadPath` for a path that cannot name a file at all (a NUL byte, a symbolic
    link loop, a name too long): that is ``path_invalid``, not an escape."""
    if not relpath:
        return None
    if "\x00" in relpath:
        raise BadPath(f"{relpath!r} holds a NUL byte")
    if Path(relpath).is_absolute():
        return None
    root_real = root.resolve()
    try:
        target = (root / relpath).resolve()
    except RuntimeError as exc:   # Python 3.11: "Symlink loop from ..."
        raise BadPath(f"{relpath!r}: {exc}") from None
    except OSError as exc:
        raise BadPath(f"{relpath!r}: {exc.strerror or exc}") from None
    if target != root_real and root_real not in target.parents:
        return None
    return root / relpath


class BadPath(ValueError):
    """A record's path that cannot name a file (``path_invalid``)."""


def undecodable_field(rec: SourceRecord) -> str | None:
    """The first text field of ``rec`` holding a lone surrogate, or None.

    Why: a file name in another encoding (read with ``surrogateescape``) or a JSON ``"\\ud800"``
    becomes a str that cannot be written as UTF-8, so the tables would fail at the end of the
    run; the record is rejected (``encoding_invalid``) instead, and the run goes on."""
    for name in ("record_id", "image_relpath", "caption", "context", "licence", "source_label", "group_key",
                 "source_type", "language"):
        value = getattr(rec, name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name
    return None


def run(params: dict) -> StageResult:
    cfg = section(params, "ingest", {"out": str, "sources": list, "max_image_pixels": int, "workers": int, "min_side": int})
    out = Path(cfg["out"])
    with Timer(StageResult("ingest")) as result:
        adapters = build_adapters(params)
        chain = CaptionFilterChain.from_params(cfg.get("filters"))   # README "Caption cleaning and filters"
        rejects: list[Reject] = []
        accepted: list[tuple[SourceRecord, Path, int, str, FilterResult]] = []
        seen_pairs: set[str] = set()
        for rank, adapter in enumerate(adapters):
            for rec in adapter.records():
                result.rows_in += 1
                if isinstance(rec, Reject):
                    rejects.append(rec)
                    continue
                bad_field = undecodable_field(rec)
                if bad_field:
                    rejects.append(adapter.reject(rec.record_id, "encoding_invalid",
                                                  f"{bad_field} holds text that is not valid Unicode (a file name in "
                                                  "another encoding, or a lone surrogate escape); rename the file or "
                                                  "fix the text", rec.image_relpath))
                    continue
                try:
                    path = confine(adapter.root, rec.image_relpath)
                except BadPath as exc:
                    rejects.append(adapter.reject(rec.record_id, "path_invalid", str(exc), rec.image_relpath))
                    continue
                pid = ids.pair_id(rec.source, rec.record_id, rec.caption_index)
                if path is None:
                    rejects.append(adapter.reject(rec.record_id, "path_outside_root",
                                                  f"{rec.image_relpath!r} escapes {adapter.root}", rec.image_relpath))
                elif pid in seen_pairs:
                    rejects.append(adapter.reject(rec.record_id, "record_malformed",
                                                  "duplicate record id and caption index in the source", str(path)))
                else:
                    seen_pairs.add(pid)
                    verdict = chain(rec.caption, rec.language)
                    if verdict.rejection is not None:
                        rejects.append(adapter.reject(rec.record_id, verdict.rejection.reason, verdict.rejection.detail,
                                                      str(path)))
                    else:
                        accepted.append((rec, path, rank, pid, verdict))

        # Validate each distinct file once, in parallel, in a deterministic order.
        unique_paths = sorted({str(a[1]) for a in accepted})
        check = functools.partial(validate_image, max_pixels=cfg["max_image_pixels"], min_side=cfg["min_side"],
                                  max_aspect_ratio=float(cfg.get("max_aspect_ratio", DEFAULT_MAX_ASPECT_RATIO)),
                                  max_bytes=int(cfg.get("max_image_bytes", DEFAULT_MAX_IMAGE_BYTES)))
        with make_executor(params, cfg["workers"]) as ex:
            checked = ex.map(check, unique_paths, "validate images", "img", inputs=[str(a.root) for a in adapters])
        infos = dict(zip(unique_paths, checked, strict=True))

        pairs, images = [], {}
        for rec, path, rank, pid, verdict in accepted:
            info = infos[str(path)]
            if isinstance(info, ImageProblem):
                rejects.append(Reject("ingest", rec.source, rec.record_id, info.reason, info.detail, str(path)))
                continue
            assert isinstance(info, ImageInfo)
            image_id = ids.image_id(rec.source, Path(rec.image_relpath).as_posix())
            images.setdefault(image_id, {
                "image_id": image_id, "source": rec.source, "path": path.as_posix(), "sha256": info.sha256,
                "bytes": info.bytes, "format": info.format, "mode": info.mode, "width": info.width,
                "height": info.height, "exif_orientation": info.exif_orientation, "source_rank": rank,
            })
            pairs.append({
                "pair_id": pid, "image_id": image_id,
                "source": rec.source, "source_type": rec.source_type, "source_record_id": rec.record_id,
                "caption_index": rec.caption_index, "caption": verdict.caption, "language": verdict.language,
                "context": chain.clean(rec.context), "licence": rec.licence, "source_label": rec.source_label, "group_key": rec.group_key,
            })
        with atomic_dir(out) as tmp:   # the three tables appear together or not at all
            write_table(pairs, "pairs", tmp / "pairs.parquet")
            write_table(list(images.values()), "images", tmp / "images.parquet")
            write_table([r.row() for r in rejects], "rejects", tmp / "rejects.parquet")
        result.rows_out, result.rejected = len(pairs), len(rejects)
        result.extra = {"images": len(images)}
    return result
