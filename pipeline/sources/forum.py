"""Adapter ``forum``: medical forum threads whose posts carry several images.

Expected layout: JSON files under the source root (option ``threads``, a glob, default
``*.json``), each one thread object or a list of them::

    {"thread_id": "t1", "title": "Itchy rash on my arm", "url": "...",
     "posts": [{"post_id": "p1", "body": "...", "images": ["img/p1a.jpg", "img/p1b.jpg"],
                "replies": [{"post_id": "p2", "body": "Looks like nummular eczema.", "images": []}]}]}

Image paths are relative to the source root. Every image of a post is one record and all of
them share the post's text: its body plus, when ``include_replies`` (default true), the bodies
of its replies without images of their own ("Reply: ..."); a reply with images is a post
itself. The thread title is the context and the thread id the group key (a thread's images
stay in one split).

Language: each post's text goes through :func:`pipeline.text.filters.detect_language` (the one
implementation ingest uses too: a cheap English rule, else seeded ``langdetect``, which ships its
profiles and works offline; under 20 letters is ``und``) and the record carries it as
``SourceRecord.language``, which ingest writes to ``pairs.language``. The text is kept as
written (translation is out of scope); :meth:`ForumAdapter.languages` reports the language and
the non-English flag per record.

Rejects: an unreadable JSON file is ``source_file_unreadable``; a thread or post that is not
an object, a thread without ``posts`` list, or an image entry that is not a path, is
``record_malformed``; JSON files outside the root (a ``threads`` glob with ``..``) are not read; a post with images but no
text is ``caption_missing``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.rejects import Reject
from pipeline.sources.base import SourceAdapter, SourceRecord
from pipeline.sources.common import read_json, rel, text
from pipeline.text.filters import detect_language


class ForumAdapter(SourceAdapter):
    kind = "forum"
    options_spec = {"threads": (str, "*.json"), "include_replies": (bool, True), "licence": (str, ""),
                    "source_type": (str, "forum")}

    def languages(self) -> dict[str, tuple[str, bool]]:
        """record id -> (language, non-English flag), for every record the adapter yields."""
        return {r.record_id: (r.language or "und", (r.language or "und") not in ("en", "und"))
                for r in self.records() if isinstance(r, SourceRecord)}

    def records(self) -> Iterator[SourceRecord | Reject]:
        root = self.root.resolve()
        for path in sorted(self.root.glob(self.options["threads"])):
            try:
                inside = root in path.resolve().parents
            except (RuntimeError, OSError):   # a symbolic link loop
                yield self.reject(rel(self, path), "path_invalid", f"{rel(self, path)}: a symbolic link loop", rel(self, path))
                continue
            if path.is_dir() or not inside:
                continue
            doc = read_json(self, path)   # a FIFO or device is file_not_regular, never opened for reading
            if isinstance(doc, Reject):
                yield doc
                continue
            threads = doc if isinstance(doc, list) else [doc]
            for i, thread in enumerate(threads):
                yield from self._thread(rel(self, path), i, thread)

    def _thread(self, fname: str, i: int, thread: object) -> Iterator[SourceRecord | Reject]:
        if not isinstance(thread, dict) or not isinstance(thread.get("posts"), list):
            yield self.reject(f"{fname}#{i}", "record_malformed", "a thread must be an object with a posts list", fname)
            return
        tid = text(thread.get("thread_id")) or f"{fname}#{i}"
        title = text(thread.get("title"))
        licence = text(thread.get("licence")) or self.options["licence"]
        stack = [(p, f"{tid}/{j}") for j, p in enumerate(thread["posts"])]
        while stack:
            post, fallback = stack.pop(0)
            if not isinstance(post, dict):
                yield self.reject(fallback, "record_malformed", "a post must be a JSON object", fname)
                continue
            pid = f"{tid}/{text(post.get('post_id')) or fallback.rsplit('/', 1)[-1]}"
            replies = post.get("replies") or []
            if not isinstance(replies, list):
                yield self.reject(pid, "record_malformed", "replies must be a list", fname)
                replies = []
            images = post.get("images") or []
            if not isinstance(images, list):
                yield self.reject(pid, "record_malformed", "images must be a list of paths", fname)
                images = []
            body_ok = isinstance(post.get("body"), (str, int, float, type(None))) and not isinstance(post.get("body"), bool)
            body = text(post.get("body")) if body_ok else ""
            reply_texts = []
            for k, reply in enumerate(replies):
                if isinstance(reply, dict) and reply.get("images"):
                    stack.append((reply, f"{pid}.{k}"))
                elif isinstance(reply, dict) and isinstance(reply.get("body"), (dict, list, bool)):
                    continue   # a reply body that is not text adds nothing to the caption (the reply is no record)
                elif isinstance(reply, dict):
                    if text(reply.get("body")):
                        reply_texts.append(text(reply.get("body")))
                else:
                    yield self.reject(f"{pid}.{k}", "record_malformed", "a reply must be a JSON object", fname)
            if not images:
                continue
            if not body_ok:   # an object or list as the body would become a caption like "{'text': ...}"
                for k, image in enumerate(images):
                    yield self.reject(f"{pid}/{text(image) if isinstance(image, str) else f'image-{k}'}",
                                      "record_malformed", f"the post's body is a JSON {type(post['body']).__name__}, "
                                      "not text", fname)
                continue
            parts = [body] + ([f"Reply: {r}" for r in reply_texts] if self.options["include_replies"] else [])
            caption = " ".join(p for p in parts if p)
            if not caption:
                for image in images:
                    yield self.reject(f"{pid}/{text(image)}", "caption_missing", "post has images but no text", text(image))
                continue
            lang = detect_language(caption)
            for k, image in enumerate(images):
                if not isinstance(image, str) or not image.strip():
                    yield self.reject(f"{pid}/image-{k}", "record_malformed", f"image {k} is not a path: {image!r}", fname)
                    continue
                yield SourceRecord(
                    source=self.name, source_type=self.options["source_type"], record_id=f"{pid}/{text(image)}",
                    image_relpath=text(image), caption=caption, licence=licence, context=title,
                    source_label=None, group_key=tid, language=lang,
                )
