"""Stage ``evaluate``: any models, side by side, on the holdout split and Derm1M's benchmark suite.

``evaluate.models`` (or ``derm1m evaluate --model SPEC ...``; see :mod:`pipeline.training.models`)
lists the models; empty means the profile just trained. Writes ``metrics/eval.json`` (one object
of flat ``benchmark/metric`` keys per model label, for ``dvc metrics show``) and
``metrics/eval_comparison.md`` (one row per model, the headline metrics). The report's "Model"
section reads the same JSON.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import ConfigError
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.stages.train import resolve_profile
from pipeline.tables import atomic_path, write_json
from pipeline.training.compare import comparison_columns, comparison_markdown
from pipeline.training.evaluate import BENCHMARK_KINDS, evaluate_model
from pipeline.training.models import load_weights, parse_model_specs
from pipeline.training.suite import DEFAULT_CONCEPT_TEMPLATES


def probe_config(cfg: dict) -> tuple[str | None, dict]:
    """The linear probe's fit split (None: no probe) and its settings, type-checked.

    ``label_fractions`` (a list, e.g. Derm1M's 1%, 10%, 100%) runs one probe per ratio;
    ``label_fraction`` (one number) is the single-ratio form.
    """
    probe = cfg.get("linear_probe") or {}
    if not isinstance(probe, dict):
        raise ConfigError("params.yaml: evaluate.linear_probe must be a mapping (or null for no probe)")
    split = probe.get("train_split")
    if split not in (None, "train", "validation"):
        raise ConfigError(f"params.yaml: evaluate.linear_probe.train_split {split!r} must be train or validation")
    fractions = probe.get("label_fractions")
    listed = fractions if isinstance(fractions, list) else [probe.get("label_fraction", 1.0)]
    for fraction in listed:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
            key = "label_fractions" if fractions is not None else "label_fraction"
            raise ConfigError(f"params.yaml: evaluate.linear_probe.{key} must be in (0, 1], got {fraction!r}")
    out = {"C": float(probe.get("C", 1.0)), "seed": int(probe.get("seed", 0))}
    if isinstance(fractions, list) and fractions:
        return split, {"label_fractions": [float(f) for f in fractions], **out}
    return split, {"label_fraction": float(listed[0]), **out}


def _benchmarks(cfg: dict) -> list[dict]:
    benchmarks = cfg.get("benchmarks") or []
    if not isinstance(benchmarks, list) or not all(isinstance(b, dict) for b in benchmarks):
        raise ConfigError("params.yaml: evaluate.benchmarks must be a list of {name, csv, kind, ...} mappings")
    for b in benchmarks:
        if b.get("kind", "zeroshot") not in BENCHMARK_KINDS:
            raise ConfigError(f"params.yaml: evaluate.benchmarks {b.get('name')!r}: kind {b.get('kind')!r} "
                              f"is not one of {list(BENCHMARK_KINDS)}")
    return benchmarks


def run(params: dict) -> StageResult:
    cfg = section(params, "evaluate", {"out": str, "batch_size": int, "templates": list})
    name, profile = resolve_profile(params)
    profiles = section(params, "train", {"profiles": dict})["profiles"]
    models_dir = Path(section(params, "train", {"out": str})["out"])
    shards = Path(section(params, "shard", {"out": str})["out"])
    device = profile.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    probe_split, probe = probe_config(cfg)
    benchmarks = _benchmarks(cfg)
    specs = cfg.get("models") or [name]
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ConfigError("params.yaml: evaluate.models must be a list of model specs (strings)")
    concept_templates = cfg.get("concept_templates") or list(DEFAULT_CONCEPT_TEMPLATES)
    models = parse_model_specs(specs, profiles, models_dir)
    with Timer(StageResult("evaluate")) as result:
        results: dict[str, dict] = {}
        for spec in models:
            model, preprocess, tokenizer = load_weights(spec.weights, device)
            metrics = evaluate_model(model, preprocess, tokenizer, shards / "holdout", cfg["templates"], device,
                                     cfg["batch_size"], benchmarks,
                                     probe_dir=shards / probe_split if probe_split else None, probe=probe,
                                     concept_templates=concept_templates)
            metrics = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}
            metrics["model"] = spec.weights.model
            metrics["pretrained"] = spec.profile and f"profile {spec.profile}" or spec.weights.pretrained or "none"
            results[spec.label] = metrics
            del model
        out = Path(cfg["out"])
        write_json(results, out / "eval.json")
        table = comparison_markdown(results, comparison_columns(benchmarks, results))
        with atomic_path(out / "eval_comparison.md") as tmp:
            tmp.write_text(table, encoding="utf-8")
        first = next(iter(results.values()))
        result.rows_in = result.rows_out = int(first.get("holdout/n_samples", 0) or 0)
        result.extra = {"models": list(results), **{k.split("/")[1]: first[k] for k in (
            "holdout/i2t_R@1", "holdout/zeroshot_top1") if k in first}}
    return result
