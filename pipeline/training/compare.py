"""The model comparison: headline columns of Derm1M's four benchmark kinds, as Markdown or a plot.

Why its own module: the evaluate stage writes ``metrics/eval_comparison.md`` and the report's
"Model" section shows the same table, from the same ``metrics/eval.json``; neither should need
torch to lay out a table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Headline columns of the comparison, as (column title, metric key): the
# seed's four benchmark kinds. Benchmark-specific columns are added per configured benchmark.
HOLDOUT_COLUMNS = (("holdout i2t R@10", "holdout/i2t_R@10"), ("holdout t2i R@10", "holdout/t2i_R@10"),
                   ("holdout zero-shot top-1", "holdout/zeroshot_top1"))


def comparison_columns(benchmarks: Sequence[dict], results: dict[str, dict]) -> list[tuple[str, str]]:
    """The comparison's columns: holdout headline metrics, then one per benchmark kind's headline
    (zero-shot balanced accuracy, probe balanced accuracy at 10%, concept AUROC, retrieval R@10)."""
    cols = list(HOLDOUT_COLUMNS)
    keys = {k for m in results.values() for k in m}
    probes = [k for k in keys if re.fullmatch(r"holdout/probe_[\d.]+pct_balanced_acc", k)]
    for key in sorted(probes, key=lambda k: float(k.split("_")[1][:-3])):  # 1%, 10%, 100%
        cols.append((f"holdout probe {key.split('_')[1][:-3]}% bal. acc", key))
    if "holdout/probe_balanced_acc" in keys:
        cols.append(("holdout probe bal. acc", "holdout/probe_balanced_acc"))
    for b in benchmarks:
        name, kind = b["name"], b.get("kind", "zeroshot")
        if kind == "zeroshot":
            cols.append((f"{name} zero-shot bal. acc", f"{name}/zeroshot_balanced_acc"))
            probe = "10pct" if f"{name}/probe_10pct_balanced_acc" in keys else None
            key = f"{name}/probe_{probe}_balanced_acc" if probe else f"{name}/probe_balanced_acc"
            if key in keys:
                cols.append((f"{name} probe{' 10%' if probe else ''} bal. acc", key))
        elif kind == "concepts":
            cols.append((f"{name} concept AUROC", f"{name}/concept_auroc_mean"))
        else:
            cols += [(f"{name} i2t R@10", f"{name}/i2t_R@10"), (f"{name} t2i R@10", f"{name}/t2i_R@10")]
    if "zeroshot_mean/top1" in keys:
        cols += [("zero-shot mean top-1", "zeroshot_mean/top1"), ("zero-shot mean bal. acc",
                                                                 "zeroshot_mean/balanced_acc")]
    return [(title, key) for title, key in cols if key in keys]


def comparison_markdown(results: dict[str, dict], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table: one row per model, the headline metrics (3 decimals; '-' when unscored)."""
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))

    lines = ["| model | " + " | ".join(t for t, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for label, metrics in results.items():
        lines.append(f"| {label} | " + " | ".join(cell(metrics.get(k)) for _, k in columns) + " |")
    return "\n".join(lines) + "\n"


