"""Adapter ``video``: keyframes of educational videos paired with the transcript around them.

Expected layout: one folder per video under the source root (the folder name is the video id)::

    <video_id>/
        video.json                 optional: {"title": ..., "description": ..., "licence": ...}
        transcript.vtt | transcript.srt | transcript.json
        frame_000123.4.jpg ...     keyframes; the number is the timestamp in seconds
        frames.csv                 optional instead of timestamped names: file,timestamp

A frame's timestamp comes from ``frames.csv`` when present (``timestamp`` in seconds, or
``HH:MM:SS(.mmm)``), else from its name ``frame_<seconds>.<ext>`` (``frame_000123.4.jpg`` =
123.4 s; other files in the folder are ignored). The transcript is WebVTT or SRT (parsed with
``webvtt-py``) or JSON segments (``[{"start": s, "end": s, "text": ...}]`` or
``{"segments": [...]}``). Each frame's caption is the text of every cue that overlaps
``[t - window_s, t + window_s]`` (option ``window_s``, default 5 s), in order. The title and
description in ``video.json`` become the record's context.

Rejects: an unreadable transcript or video.json is ``source_file_unreadable`` (the video's
frames are not read); a frame name or frames.csv row whose timestamp is not a time is
``timestamp_invalid``; a frame with no transcript text in its window is ``caption_missing``.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Iterator
from pathlib import Path

import webvtt

from pipeline.errors import ConfigError
from pipeline.rejects import Reject
from pipeline.safeio import FileProblem
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.common import csv_rows, file_reject, read_json, read_text, text

FRAME_NAME = re.compile(r"^frame_(?P<ts>[^/]*)\.(?:jpe?g|png|webp)$", re.IGNORECASE)
TRANSCRIPTS = ("transcript.vtt", "transcript.srt", "transcript.json")
_HMS = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:[.,]\d+)?)$")


def parse_timestamp(value: str) -> float | None:
    """Seconds from ``123.4`` or ``HH:MM:SS(.mmm)``/``MM:SS``; None when it is not a time."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        m = _HMS.match(value)
        if not m:
            return None
        seconds = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3).replace(",", "."))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def read_transcript(path: Path, content: str | None = None) -> list[tuple[float, float, str]]:
    """(start, end, text) cues of a VTT, SRT or JSON-segments transcript; raises ValueError if unparsable.

    ``content`` is the file's text when the caller read it already (the adapter does, through
    :func:`pipeline.safeio.read_regular`, so a FIFO or a huge file is never opened here)."""
    if content is None:
        content = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json":
        try:
            doc = json.loads(content)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        segments = doc.get("segments") if isinstance(doc, dict) else doc
        if not isinstance(segments, list):
            raise ValueError("expected a list of segments or {\"segments\": [...]}")
        cues = []
        for i, seg in enumerate(segments):
            try:
                start, end = float(seg["start"]), float(seg.get("end", seg["start"]))
                cues.append((start, end, text(seg.get("text"))))
            except (TypeError, KeyError, ValueError, AttributeError) as exc:
                raise ValueError(f"segment {i}: needs numeric start/end and text ({exc})") from None
        return cues
    try:
        lines = content.splitlines()
        captions = webvtt.from_buffer(lines, format="srt" if path.suffix == ".srt" else "vtt")
        # start_in_seconds drops the milliseconds (webvtt-py 0.6): a cue at 12.9 s would read as 12 s
        return [(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, " ".join(c.text.split()))
                for c in captions]
    except Exception as exc:  # webvtt raises its own MalformedFileError, or parse errors on odd input
        raise ValueError(str(exc) or type(exc).__name__) from None


def window_text(cues: list[tuple[float, float, str]], t: float, window: float) -> str:
    """Text of the cues overlapping [t - window, t + window], in time order, repeats dropped."""
    parts: list[str] = []
    for start, end, words in sorted(cues, key=lambda c: (c[0], c[1])):
        if end >= t - window and start <= t + window and words and (not parts or parts[-1] != words):
            parts.append(words)
    return " ".join(parts)


class VideoAdapter(SourceAdapter):
    kind = "video"
    options_spec = {"window_s": (numbers.Real, 5.0), "licence": (str, ""), "source_type": (str, "edu")}

    def __init__(self, name, root, options=None) -> None:
        super().__init__(name, root, options)
        if self.options["window_s"] < 0:
            raise ConfigError(f"params.yaml: ingest source {name!r} (video): window_s must be >= 0")

    def records(self) -> Iterator[SourceRecord | Reject]:
        if not self.root.is_dir():
            yield self.reject(self.root.name, "source_file_unreadable", f"{self.root} is not a folder of videos")
            return
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield from self._video(folder)

    def _video(self, folder: Path) -> Iterator[SourceRecord | Reject]:
        vid = folder.name
        meta: dict = {}
        if (folder / "video.json").exists() or (folder / "video.json").is_symlink():
            doc = read_json(self, folder / "video.json")
            if isinstance(doc, Reject):
                yield doc
                return
            if not isinstance(doc, dict):
                yield self.reject(f"{vid}/video.json", "source_file_unreadable", "video.json is not a JSON object",
                                  f"{vid}/video.json")
                return
            meta = doc
        transcript = next((folder / t for t in TRANSCRIPTS if (folder / t).exists() or (folder / t).is_symlink()), None)
        if transcript is None:
            yield self.reject(vid, "source_file_unreadable", f"{vid}: no {' / '.join(TRANSCRIPTS)}", vid)
            return
        try:
            cues = read_transcript(transcript, read_text(self, transcript))
        except FileProblem as exc:
            yield file_reject(self, f"{vid}/{transcript.name}", exc, f"{vid}/{transcript.name}")
            return
        except (OSError, ValueError) as exc:
            yield self.reject(f"{vid}/{transcript.name}", "source_file_unreadable",
                              f"{vid}/{transcript.name} cannot be parsed: {exc}", f"{vid}/{transcript.name}")
            return
        context = " — ".join(v for v in (text(meta.get("title")), text(meta.get("description"))) if v)
        licence = text(meta.get("licence")) or self.options["licence"]
        for frame, ts in self._frames(folder):
            rid = f"{vid}/{frame}"
            if isinstance(ts, Reject):
                yield ts
                continue
            caption = window_text(cues, ts, float(self.options["window_s"]))
            if not caption:
                yield self.reject(rid, "caption_missing", f"no transcript text within {self.options['window_s']} s "
                                                          f"of {ts:g} s", rid)
                continue
            yield SourceRecord(source=self.name, source_type=self.options["source_type"], record_id=rid,
                               image_relpath=rid, caption=caption, licence=licence, context=context,
                               source_label=None, group_key=vid)

    def _frames(self, folder: Path) -> Iterator[tuple[str, float | Reject]]:
        vid = folder.name
        if (folder / "frames.csv").exists():
            for item in csv_rows(self, folder / "frames.csv", ["file", "timestamp"]):
                if isinstance(item, Reject):
                    yield item.record_id, item
                    continue
                line, row = item
                ts = parse_timestamp(row["timestamp"])
                if not row["file"] or ts is None:
                    yield row["file"], self.reject(f"{vid}/{row['file'] or f'line-{line}'}", "timestamp_invalid",
                                                   f"frames.csv line {line}: timestamp {row['timestamp']!r}")
                    continue
                yield row["file"], ts
            return
        for path in sorted(folder.iterdir()):
            m = FRAME_NAME.match(path.name)
            if not m:
                continue
            ts = parse_timestamp(m.group("ts"))
            if ts is None:
                yield path.name, self.reject(f"{vid}/{path.name}", "timestamp_invalid",
                                             f"frame name {path.name!r}: {m.group('ts')!r} is not a time in seconds",
                                             f"{vid}/{path.name}")
                continue
            yield path.name, ts
