"""Load ``params.yaml``, apply ``--set key=value`` overrides, and validate against the defaults.

Why one module: every stage reads the same file that DVC tracks, so the keys a stage uses are
the keys DVC hashes. Unknown keys and wrong types are configuration errors with a one-line fix,
not tracebacks three stages later.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError, show

DEFAULT_PARAMS_FILE = "params.yaml"
#: The repository's params.yaml: the reference for every key's name and type.
REFERENCE_PARAMS = Path(__file__).resolve().parent.parent / DEFAULT_PARAMS_FILE
#: Mappings whose keys are the user's own names (profiles); their values are not checked.
OPEN_MAPPINGS = {"train.profiles"}
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def load_params(path: str | Path = DEFAULT_PARAMS_FILE, overrides: list[str] | None = None) -> dict:
    """Read params from ``path`` and apply ``section.key=value`` overrides (values parsed as YAML).

    Every problem with the file is a :class:`ConfigError` (one line, exit 2): a file that is not
    UTF-8 or not YAML, YAML nested too deeply to parse, a key or value of the wrong kind
    (:func:`check_against_reference`), a number that is NaN or infinite, and output folders
    that overlap a source or each other (:func:`check_output_paths`). Values in messages are
    cut short (:func:`pipeline.errors.show`).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such params file; run from the repository root or pass --params PATH")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file; pass --params PATH naming a params.yaml file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc}); check its permissions") from None
    try:
        textual = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "fix: re-save the file as UTF-8") from None
    try:
        params = yaml.safe_load(textual) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}{where}); fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to read; fix the structure") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    if _expands_beyond(params, MAX_PARAM_VALUES):
        raise ConfigError(f"{path}: its YAML aliases expand to more than {MAX_PARAM_VALUES:,} values (an alias "
                          "bomb?); fix: write the values out instead of nesting aliases")
    try:
        check_against_reference(params, str(path))
        for item in overrides or []:
            apply_override(params, item, source=str(path))
        check_output_paths(params, str(path))
    except RecursionError:
        raise ConfigError(f"{path}: a value is nested too deeply (a YAML alias loop?); fix the structure") from None
    return params


#: The most values (scalars, list items, mapping entries) a params file may expand to.
MAX_PARAM_VALUES = 100_000


def _expands_beyond(doc: Any, budget: int) -> bool:
    """True when ``doc``, with every YAML alias expanded, holds more than ``budget`` values.

    Why: PyYAML builds an alias as a shared reference, so a "billion laughs" file loads in
    microseconds, but anything that walks, copies or prints the params (a stage, a message)
    expands it to gigabytes. The walk stops as soon as the budget is spent."""
    stack = [doc]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > budget:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def reference_params() -> dict | None:
    """The repository's params.yaml (None when the package runs without its repository).

    Parsed once per version of the file (its mtime and size), a copy handed out each time:
    every ``load_params`` checks against it, and tools load params many times."""
    try:
        st = REFERENCE_PARAMS.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    if _REFERENCE_CACHE.get("key") != key:
        try:
            ref = yaml.safe_load(REFERENCE_PARAMS.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            return None
        _REFERENCE_CACHE.update(key=key, value=ref if isinstance(ref, dict) else None)
    value = _REFERENCE_CACHE["value"]
    return copy.deepcopy(value) if value is not None else None


_REFERENCE_CACHE: dict[str, Any] = {}


def check_against_reference(params: dict, source: str, reference: dict | None = None) -> None:
    """Every key must exist in the repository's params.yaml with a value of the same kind.

    Why: a misspelt key (``dedup.radious``) would otherwise be ignored and the default used
    without a word, and a wrong type (``dedup.radius: eight``) would fail deep inside a stage.
    Lists and the values under :data:`OPEN_MAPPINGS` are the user's own and not checked here
    (their stages check them); a reference value of ``null`` accepts any value.
    """
    reference = reference_params() if reference is None else reference
    if reference is None:
        return
    _check_mapping(params, reference, "", source)


def _check_mapping(given: dict, ref: dict, prefix: str, source: str) -> None:
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"{source}: key {show(key)} under {prefix.rstrip('.') or 'the top level'} must be a "
                              "name (text); fix the key")
        if key not in ref:
            close = difflib.get_close_matches(str(key), [str(k) for k in ref], n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys here: {sorted(map(str, ref))}."
            raise ConfigError(f"{source}: unknown key {dotted!r}; {hint} Fix the name or remove the key")
        expected = ref[key]
        if expected is None or value is None or dotted in OPEN_MAPPINGS:
            continue
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {dotted} must be a mapping of keys, got {type(value).__name__} "
                                  f"{show(value)}; copy the section from the repository's params.yaml")
            _check_mapping(value, expected, f"{dotted}.", source)
        elif not _same_kind(expected, value):
            raise ConfigError(f"{source}: {dotted} must be {_kind_name(expected)} (like the default {show(expected)}), "
                              f"got {type(value).__name__} {show(value)}; fix the value")
        _check_finite(value, dotted, source)


def _check_finite(value: Any, dotted: str, source: str, depth: int = 0) -> None:
    """NaN and infinity pass every ``<``/``>`` check silently (a NaN window matches nothing):
    refuse them wherever a number is given, in lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {dotted} must be a finite number, got {value!r}; fix the value")
    if isinstance(value, list) and depth < 4:
        for item in value:
            _check_finite(item, dotted, source, depth + 1)
    if isinstance(value, dict) and depth < 4:
        for key, item in value.items():
            _check_finite(item, f"{dotted}.{key}", source, depth + 1)


def _kind_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, int):
        return "an integer"
    return {"str": "a string", "list": "a list"}.get(type(value).__name__, type(value).__name__)


def apply_override(params: dict, item: str, source: str = "params") -> None:
    """Apply one ``a.b.c=value`` override in place; the key must already exist (typo guard)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set dedup.radius=6")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node: Any = params
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{source}: unknown key {key!r} in --set; see params.yaml for valid keys")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise ConfigError(f"{source}: unknown key {key!r} in --set; see params.yaml for valid keys")
    value = yaml.safe_load(raw)
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string
    old = node[parts[-1]]
    if old is not None and value is not None and not _same_kind(old, value):
        raise ConfigError(
            f"{source}: --set {key}: expected {type(old).__name__}, got {type(value).__name__} ({show(raw)}); fix the value"
        )
    node[parts[-1]] = value


def _same_kind(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return not (isinstance(old, int) and isinstance(new, float))
    return isinstance(new, type(old))


def section(params: dict, name: str, required: dict[str, type | tuple[type, ...]], source: str = "params.yaml") -> dict:
    """Return ``params[name]`` after checking that each required key exists with the right type."""
    if name not in params or not isinstance(params[name], dict):
        raise ConfigError(f"{source}: missing section {name!r}; copy it from the repository's params.yaml")
    sec = copy.deepcopy(params[name])
    for key, kind in required.items():
        if key not in sec:
            raise ConfigError(f"{source}: missing key {name}.{key}; add it (see README 'Parameters')")
        value = sec[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise ConfigError(f"{source}: {name}.{key} must be a number, got {show(value)}; fix the value")
        if not isinstance(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{source}: {name}.{key} must be {names}, got {type(value).__name__} {show(value)}; "
                              "fix the value")
    return sec


#: Sections whose ``out`` is a stage's output folder; plus the output files/folders below.
_EXTRA_OUTPUTS = (("ontology", "owl"), ("enrich", "llm", "cache"), ("resume", "dir"))


def _get(params: dict, keys: tuple[str, ...]) -> Any:
    node: Any = params
    for k in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(k)
    return node


def output_paths(params: dict) -> dict[str, str]:
    """Key (``ingest.out``) -> path of every output the stages write (files and folders)."""
    outs = {f"{name}.out": sec["out"] for name, sec in params.items()
            if isinstance(sec, dict) and isinstance(sec.get("out"), str) and sec["out"]}
    for keys in _EXTRA_OUTPUTS:
        value = _get(params, keys)
        if isinstance(value, str) and value and value != "auto":
            outs[".".join(keys)] = value
    return outs


def input_paths(params: dict) -> dict[str, str]:
    """Key (``ingest.sources[2].path``) -> path of every input the user points the stages at."""
    ins: dict[str, str] = {}
    for listing, field_name in (("ingest", "sources"), ("decontaminate", "benchmarks")):
        entries = _get(params, (listing, field_name))
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and isinstance(entry.get("path"), str) and entry["path"]:
                ins[f"{listing}.{field_name}[{i}].path"] = entry["path"]
    for keys in (("ontology", "source"), ("annotate", "concepts"), ("annotate", "body_sites"), ("annotate", "symptoms")):
        value = _get(params, keys)
        if isinstance(value, str) and value:
            ins[".".join(keys)] = value
    return ins


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output_paths(params: dict, source: str = "params.yaml", root: str | Path = ".") -> None:
    """No output may be, contain or sit inside an input or another stage's output.

    Why: a stage replaces its output folder as a whole (atomic swap), so ``ingest.out: data``
    or an ``out`` equal to a source's root would throw away inputs, and two stages sharing a
    folder would delete each other's tables. The demo corpus stage is the one exception: its
    output is, by design, the root of the demo sources. Paths are compared resolved (``..``
    and symlinks followed) relative to ``root``.
    """
    base = Path(root)
    outs = {k: Path(os.path.realpath(base / v)) for k, v in output_paths(params).items()}
    ins = {k: Path(os.path.realpath(base / v)) for k, v in input_paths(params).items()}
    keys = sorted(outs)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if _overlap(outs[a], outs[b]):
                raise ConfigError(f"{source}: {a} ({show(str(params_value(params, a)))}) and {b} "
                                  f"({show(str(params_value(params, b)))}) overlap; each stage's output must be a "
                                  "folder of its own: fix one of them")
        if a == "demo.out":
            continue
        for k, path in ins.items():
            if _overlap(outs[a], path):
                raise ConfigError(f"{source}: {a} ({show(str(params_value(params, a)))}) overlaps the input {k} "
                                  f"({show(str(params_value(params, k)))}); writing there would replace the input; "
                                  f"fix: point {a} at a folder of its own")


def params_value(params: dict, dotted: str) -> Any:
    """The value at ``a.b[2].c`` (as the keys above name them)."""
    node: Any = params
    for part in dotted.replace("]", "").split("."):
        name, _, index = part.partition("[")
        node = node.get(name) if isinstance(node, dict) else None
        if index:
            node = node[int(index)] if isinstance(node, list) else None
    return node


def relocate_outputs(params: dict, root: str | Path) -> dict:
    """A copy of ``params`` whose stage outputs (and the demo corpus's sources) live under ``root``.

    Used by tests and benchmarks to run the real stages in a scratch directory without touching
    the repository's own outputs. Vocabulary and ontology sources still point at the repository.
    """
    repo = Path(__file__).resolve().parent.parent
    root = Path(root)
    p = copy.deepcopy(params)
    p["demo"]["out"] = str(root / "data/demo")
    p["ingest"]["out"] = str(root / "data/ingest")
    # The sources that read the demo corpus move with it; other sources are dropped.
    demo_out = Path(params["demo"]["out"])
    p["ingest"]["sources"] = [
        {**src, "path": str(Path(p["demo"]["out"]) / Path(src["path"]).relative_to(demo_out))}
        for src in p["ingest"]["sources"] if Path(src["path"]) == demo_out or demo_out in Path(src["path"]).parents
    ]
    for stage in ("dedup", "annotate", "truncate", "split", "metadata"):
        p[stage]["out"] = str(root / f"data/{stage}")
    p["ontology"]["source"] = str(repo / p["ontology"]["source"])
    p["ontology"]["owl"] = str(root / "ontology/dermatology.owl")
    p["annotate"]["ontology"] = p["ontology"]["owl"]
    for key in ("concepts", "body_sites", "symptoms"):
        p["annotate"][key] = str(repo / p["annotate"][key])
    if "enrich" in p:
        p["enrich"]["out"] = str(root / "data/enrich")
        p["enrich"]["llm"]["cache"] = str(root / "data/.llm_cache")
    p["shard"]["out"] = str(root / "shards")
    p["report"]["out"] = str(root / "report")
    p["train"]["out"] = str(root / "models")
    p["evaluate"]["out"] = str(root / "metrics")
    return p
