"""Load ``params.yaml``, apply ``--set key=value`` overrides, and validate against the defaults.

Why one module: every stage reads the same file that DVC tracks, so the keys a stage uses are
the keys DVC hashes. Unknown keys and wrong types are configuration errors with a one-line fix,
not tracebacks three stages later.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

DEFAULT_PARAMS_FILE = "params.yaml"
#: The repository's params.yaml: the reference for every key's name and type.
REFERENCE_PARAMS = Path(__file__).resolve().parent.parent / DEFAULT_PARAMS_FILE
#: Mappings whose keys are the user's own names (profiles); their values are not checked.
OPEN_MAPPINGS = {"train.profiles"}
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def load_params(path: str | Path = DEFAULT_PARAMS_FILE, overrides: list[str] | None = None) -> dict:
    """Read params from ``path`` and apply ``section.key=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such params file; run from the repository root or pass --params PATH")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the syntax") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    check_against_reference(params, str(path))
    for item in overrides or []:
        apply_override(params, item, source=str(path))
    return params


def reference_params() -> dict | None:
    """The repository's params.yaml (None when the package runs without its repository)."""
    try:
        ref = yaml.safe_load(REFERENCE_PARAMS.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return ref if isinstance(ref, dict) else None


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
                                  f"{value!r}; copy the section from the repository's params.yaml")
            _check_mapping(value, expected, f"{dotted}.", source)
        elif not _same_kind(expected, value):
            raise ConfigError(f"{source}: {dotted} must be {_kind_name(expected)} (like the default {expected!r}), "
                              f"got {type(value).__name__} {value!r}; fix the value")


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
            f"{source}: --set {key}: expected {type(old).__name__}, got {type(value).__name__} ({raw!r})"
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
            raise ConfigError(f"{source}: {name}.{key} must be a number, got {value!r}")
        if not isinstance(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{source}: {name}.{key} must be {names}, got {type(value).__name__} {value!r}")
    return sec


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
