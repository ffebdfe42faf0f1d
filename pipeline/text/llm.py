"""Optional LLM rewriter: an OpenAI-compatible ``/v1/chat/completions`` endpoint, stdlib only.

Derm1M's step 5 had an LLM merge a caption with its ontology and concept knowledge. Users
with such an endpoint (vLLM, llama.cpp server, a hosted API) can switch this on with
``enrich.llm.enabled``; it is off by default and the pipeline never needs it.

Why a disk cache: an LLM is neither free nor deterministic, so every answer is stored under
``sha256(endpoint, model, prompt, inputs)``; a rerun reads the same text back without a
request and the table stays byte-identical. Failures (HTTP error, timeout, refused connection,
a reply that is not the expected JSON) leave the caption null, are counted by kind and logged,
and are not cached, so the next run tries again. Nothing here runs when the hook is disabled.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.tables import atomic_path

log = logging.getLogger(__name__)

PLACEHOLDERS = ("caption", "ontology_caption", "concept_caption")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class LLMConfig:
    """``params.yaml: enrich.llm``."""

    enabled: bool = False
    endpoint: str = ""
    model: str = ""
    prompt: str = ""
    api_key_env: str = ""
    timeout_s: float = 30.0
    cache: str = "data/.llm_cache"
    concurrency: int = 8           # requests in flight at once (an endpoint serves many; one at a time is ~days per 1M)

    @classmethod
    def from_params(cls, cfg: dict) -> LLMConfig:
        known = {f: cfg[f] for f in cls.__dataclass_fields__ if f in cfg}
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ConfigError(f"params.yaml: unknown key(s) enrich.llm.{unknown[0]}; valid: "
                              f"{', '.join(cls.__dataclass_fields__)}")
        conf = cls(**known)
        if conf.enabled:
            conf.check()
        return conf

    def check(self) -> None:
        """One-line errors for a hook that is switched on but cannot work."""
        if not re.match(r"^https?://[^/\s]+", self.endpoint or ""):
            raise ConfigError(f"params.yaml: enrich.llm.endpoint {self.endpoint!r} must be an http(s) URL "
                              f"(e.g. http://localhost:8000{CHAT_PATH}) when enrich.llm.enabled is true")
        if not self.model:
            raise ConfigError("params.yaml: enrich.llm.model is empty; name the model the endpoint serves")
        if not _PLACEHOLDER.search(self.prompt or ""):
            raise ConfigError("params.yaml: enrich.llm.prompt must contain {caption}, {ontology_caption} or "
                              "{concept_caption}")
        if self.api_key_env and self.api_key_env not in os.environ:
            raise ConfigError(f"params.yaml: enrich.llm.api_key_env names ${self.api_key_env}, which is not set; "
                              f"export it or set api_key_env to \"\"")
        if not (isinstance(self.concurrency, int) and not isinstance(self.concurrency, bool) and self.concurrency >= 1):
            raise ConfigError(f"params.yaml: enrich.llm.concurrency must be an integer >= 1, got {self.concurrency!r}")
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ConfigError(f"params.yaml: enrich.llm.timeout_s must be > 0, got {self.timeout_s!r}")

    @property
    def url(self) -> str:
        """The endpoint as given, or with ``/v1/chat/completions`` appended to a bare base URL."""
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/chat/completions") else base + (CHAT_PATH if not base.endswith("/v1")
                                                                       else "/chat/completions")


def render_prompt(template: str, values: dict[str, str | None]) -> str:
    """Fill ``{caption}``, ``{ontology_caption}``, ``{concept_caption}``; other braces stay as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m[1]) or "(none)", template)


@dataclass
class LLMRewriter:
    """Rewrites captions through the endpoint, with the on-disk cache in front of it."""

    config: LLMConfig
    requests: int = 0
    cache_hits: int = 0
    failures: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rewrite_all(self, inputs: list[tuple[str, str | None, str | None]]) -> list[tuple[str | None, str]]:
        """:meth:`__call__` over ``inputs`` with ``config.concurrency`` requests in flight, in input
        order (the answers are cached per input, so the table does not depend on timing). Identical
        inputs share one answer, so a first run already gives every copy the answer a rerun reads
        back from the cache."""
        distinct = list(dict.fromkeys(inputs))   # a repeated caption is one request, answered once for all
        if self.config.concurrency <= 1 or len(distinct) <= 1:
            answers = [self(*x) for x in distinct]
        else:
            with ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="llm") as pool:
                answers = list(pool.map(lambda x: self(*x), distinct))
        by_input = dict(zip(distinct, answers, strict=True))
        return [by_input[x] for x in inputs]

    def _count(self, what: str, status: str = "") -> int:
        with self._lock:
            if what == "failure":
                self.failures[status] += 1
                return self.failures[status]
            setattr(self, what, getattr(self, what) + 1)
            return 0

    def cache_key(self, prompt: str) -> str:
        blob = json.dumps([self.config.url, self.config.model, self.config.prompt, prompt], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_file(self, key: str) -> Path:
        return Path(self.config.cache) / key[:2] / f"{key}.json"

    def __call__(self, caption: str, ontology_caption: str | None, concept_caption: str | None) -> tuple[str | None, str]:
        """(rewritten caption or None, status): ok, or the failure kind (http_error, timeout,
        connection_error, bad_response, empty)."""
        prompt = render_prompt(self.config.prompt, {"caption": caption, "ontology_caption": ontology_caption,
                                                    "concept_caption": concept_caption})
        key = self.cache_key(prompt)
        cached = self._read_cache(key)
        if cached is not None:
            self._count("cache_hits")
            return cached, "ok"
        text, status = self._request(prompt)
        if text is None:
            n = self._count("failure", status)
            if n in (1, 10, 100, 1000):
                log.warning("enrich: LLM request failed (%s, %d so far): the llm_caption stays null", status, n)
            return None, status
        self._write_cache(key, text)
        return text, "ok"

    def _read_cache(self, key: str) -> str | None:
        path = self._cache_file(key)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc.get("text") if isinstance(doc, dict) and isinstance(doc.get("text"), str) else None

    def _write_cache(self, key: str, text: str) -> None:
        path = self._cache_file(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Path(tmp).write_text(json.dumps({"text": text}, ensure_ascii=False), encoding="utf-8")
        except OSError as exc:
            log.warning("enrich: cannot write the LLM cache %s (%s); answers will be requested again", path, exc)

    def _request(self, prompt: str) -> tuple[str | None, str]:
        body = json.dumps({"model": self.config.model, "temperature": 0,
                           "messages": [{"role": "user", "content": prompt}]}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.config.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.config.api_key_env, '')}"
        req = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        self._count("requests")
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:  # noqa: S310 (http(s) checked)
                raw = resp.read()
        except urllib.error.HTTPError:
            return None, "http_error"
        except TimeoutError:
            return None, "timeout"
        except urllib.error.URLError as exc:
            return None, "timeout" if isinstance(exc.reason, TimeoutError) else "connection_error"
        except (OSError, http.client.HTTPException):
            return None, "connection_error"
        try:
            text = json.loads(raw.decode("utf-8"))["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            return None, "bad_response"
        if not isinstance(text, str):
            return None, "bad_response"
        text = " ".join(text.split())
        return (text, "ok") if text else (None, "empty")
