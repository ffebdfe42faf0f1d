"""The report's figures, drawn with matplotlib into PNG bytes.

Determinism: matplotlib's bundled DejaVu Sans at fixed sizes, a fixed DPI and figure sizes, a
fixed ``svg.hashsalt``, and no ``Software`` PNG text chunk (PNG carries no timestamp unless
asked), so the same tables give byte-identical images on one installation.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from pipeline.report.data import OntologyNode  # noqa: E402

ACCENT = "#b5651d"
SECOND = "#4a7c8c"
EMPTY = "#e4e4e4"
DPI = 100
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "derm1m-report",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}


def _png(draw: Callable[[], plt.Figure]) -> bytes:
    with plt.rc_context(STYLE):
        fig = draw()
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", metadata={"Software": None})
        finally:
            plt.close(fig)
    return buf.getvalue()


def _short(label: object, width: int = 34) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"


def _barh(ax: plt.Axes, items: Sequence[tuple], title: str, color: str = ACCENT, share: bool = False) -> None:
    """Horizontal bars, largest on top, each labelled with its count (and share of the total)."""
    ax.set_title(title, loc="left")
    if not items:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes, color="#777")
        ax.set_axis_off()
        return
    labels = [_short(r[0]) for r in items][::-1]
    values = [float(r[1]) for r in items][::-1]
    total = sum(values) or 1.0
    ax.barh(range(len(values)), values, color=color)
    ax.set_yticks(range(len(values)), labels)
    top = max(values) or 1.0
    ax.set_xlim(0, top * 1.25)
    for i, v in enumerate(values):
        text = f"{v:,.0f}" + (f" ({100 * v / total:.0f}%)" if share else "")
        ax.text(v + top * 0.01, i, text, va="center", fontsize=8)


def sources(by_type: list[tuple], by_source: list[tuple]) -> bytes:
    """Pairs per source type and per source, with shares."""
    per_source: dict[str, int] = {}
    for source, _, _, pairs, _ in by_source:
        per_source[source] = per_source.get(source, 0) + pairs

    def draw() -> plt.Figure:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        _barh(axes[0], by_type, "Pairs per source type", share=True)
        _barh(axes[1], sorted(per_source.items(), key=lambda t: (-t[1], t[0])), "Pairs per source", SECOND, share=True)
        fig.tight_layout()
        return fig
    return _png(draw)


def bars(items: list[tuple], title: str, color: str = ACCENT, share: bool = False, height: float | None = None) -> bytes:
    """One horizontal bar chart (top conditions, rejects, ...)."""
    def draw() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(8, height or max(2.2, 0.28 * len(items) + 1)))
        _barh(ax, items, title, color, share)
        fig.tight_layout()
        return fig
    return _png(draw)


def caption_lengths(full: list[tuple], kept: list[tuple], context: int, share_truncated: float) -> bytes:
    """Token histogram of the full captions against the truncated ones, with the context limit."""
    def draw() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        if full:
            hi = max(t for t, _ in full)
            width = max(1, math.ceil(hi / 60))
            for series, color, label in ((full, "#c9a27e", "full caption"), (kept, SECOND, "after truncation")):
                bins: dict[int, int] = {}
                for t, n in series:
                    bins[t // width * width] = bins.get(t // width * width, 0) + n
                ax.bar(list(bins), list(bins.values()), width=width, align="edge", color=color, alpha=0.75, label=label)
            ax.axvline(context, color="#a33", linestyle="--", linewidth=1)
            ax.text(context, ax.get_ylim()[1] * 0.95, f" context {context}", color="#a33", va="top", fontsize=8)
            ax.legend(frameon=False)
        ax.set_xlabel("tokens (start and end included)")
        ax.set_ylabel("pairs")
        ax.set_title(f"Caption length before and after truncation: {100 * share_truncated:.1f}% truncated", loc="left")
        fig.tight_layout()
        return fig
    return _png(draw)


def dedup_funnel(funnel: list[tuple], by_kind: list[tuple]) -> bytes:
    """Records to corpus pairs, and the images by how they joined their cluster."""
    def draw() -> plt.Figure:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [3, 2]})
        _barh(axes[0], funnel, "Dedup funnel")
        _barh(axes[1], by_kind, "Images by match kind", SECOND, share=True)
        fig.tight_layout()
        return fig
    return _png(draw)


def splits(sizes: list[tuple]) -> bytes:
    """Pairs, images, clusters and split groups per split, side by side."""
    def draw() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(8, 3.2))
        names = [r[0] for r in sizes]
        measures = ("pairs", "images", "clusters", "split groups")
        colors = (ACCENT, SECOND, "#8c6d4a", "#9aa7b0")
        w = 0.2
        for k, (measure, color) in enumerate(zip(measures, colors, strict=True)):
            values = [r[1 + k] for r in sizes]
            xs = [i + (k - 1.5) * w for i in range(len(names))]
            ax.bar(xs, values, width=w, color=color, label=measure)
            for x, v in zip(xs, values, strict=True):
                ax.text(x, v, f"{v:,}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names)
        ax.set_title("Split sizes", loc="left")
        ax.legend(frameon=False, ncols=4, fontsize=8)
        fig.tight_layout()
        return fig
    return _png(draw)


def demographics(demo: dict[str, list[tuple]]) -> bytes:
    """Body location, age group, sex and Fitzpatrick skin type; 'not stated' drawn grey."""
    def draw() -> plt.Figure:
        fig, axes = plt.subplots(2, 2, figsize=(10, 7.2))
        panels = (("body_location", "Body location (top sites)"), ("age_group", "Age group"),
                  ("sex", "Sex"), ("skin_type", "Fitzpatrick skin type"))
        for ax, (key, title) in zip(axes.flat, panels, strict=True):
            items = demo[key]
            _barh(ax, items, title, share=key != "body_location")
            for patch, (label, _) in zip(ax.patches, items[::-1], strict=False):
                if label == "not stated":
                    patch.set_color("#bbbbbb")
        fig.tight_layout()
        return fig
    return _png(draw)


def concepts(groups: dict[str, list[tuple]], per_group: int = 8) -> bytes:
    """The most frequent concepts of every group, one panel per group (a group with none says so)."""
    names = list(groups)
    cols = 2
    rows = max(1, math.ceil(len(names) / cols))

    def draw() -> plt.Figure:
        fig, axes = plt.subplots(rows, cols, figsize=(10, 2.3 * rows), squeeze=False)
        for ax, group in zip(axes.flat, names, strict=False):
            found = [r for r in groups[group] if r[1] > 0][:per_group]
            used = sum(1 for r in groups[group] if r[1] > 0)
            _barh(ax, found, f"{group} ({used}/{len(groups[group])} concepts seen)", SECOND)
        for ax in list(axes.flat)[len(names):]:
            ax.set_axis_off()
        fig.tight_layout()
        return fig
    return _png(draw)


def ontology_sunburst(nodes: list[OntologyNode], root: str) -> bytes:
    """The ontology as a sunburst: every leaf the same angle, so empty branches stay visible (grey),
    rings are levels, colour is the number of pairs at or below the node (log scale)."""
    by_id = {n.id: n for n in nodes}
    top = [n for n in nodes if n.parent is None]

    def leaves(node: OntologyNode) -> int:
        return sum(leaves(by_id[c]) for c in node.children) if node.children else 1

    spans: list[tuple[OntologyNode, float, float]] = []
    total_leaves = sum(leaves(n) for n in top) or 1

    def place(node: OntologyNode, start: float) -> float:
        width = 2 * math.pi * leaves(node) / total_leaves
        spans.append((node, start, width))
        cursor = start
        for c in node.children:
            cursor = place(by_id[c], cursor)
        return start + width

    cursor = 0.0
    for n in top:
        cursor = place(n, cursor)
    peak = max((n.total for n in nodes), default=0)

    def draw() -> plt.Figure:
        fig = plt.figure(figsize=(8.5, 8.5))
        ax = fig.add_subplot(projection="polar")
        cmap = colormaps["YlOrBr"]
        norm = LogNorm(vmin=1, vmax=max(peak, 2))
        for node, start, width in spans:
            color = EMPTY if node.total == 0 else cmap(0.25 + 0.75 * norm(node.total))
            ax.bar(start, 0.96, width=width, bottom=node.level, align="edge", color=color,
                   edgecolor="white", linewidth=0.6 if node.level <= 2 else 0.15)
        levels = max((n.level for n in nodes), default=1)
        for node, start, width in spans:
            if node.level != 1:
                continue
            mid = start + width / 2
            deg = math.degrees(mid)
            flip = 90 < deg < 270
            ax.text(mid, levels + 1.25, f"{_short(node.name, 22)}\n{node.total:,}", ha="right" if flip else "left",
                    va="center", rotation=deg + 180 if flip else deg, rotation_mode="anchor", fontsize=7)
        ax.set_ylim(0, levels + 1)
        ax.set_axis_off()
        ax.text(0, 0, f"{root}\n{sum(1 for n in nodes if n.total):,} of {len(nodes):,}\nnodes used", ha="center",
                va="center", fontsize=9)
        ax.set_title("Ontology coverage (rings = levels; grey = no pair)", pad=60)
        fig.subplots_adjust(left=0.17, right=0.83, top=0.83, bottom=0.17)
        return fig
    return _png(draw)


def models(rows: list[tuple[str, list[float | None]]], columns: list[str]) -> bytes:
    """The model comparison: one group of horizontal bars per headline metric, one bar per model
    (unscored metrics are left blank, not drawn as zero)."""
    def draw() -> plt.Figure:
        n_models = max(1, len(rows))
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.22 * len(columns) * n_models + 0.25 * len(columns)))
        palette = (ACCENT, SECOND, "#8c6d4a", "#9aa7b0", "#6b8e23", "#7b5ea7", "#c0504d", "#2f4f4f")
        h = 0.8 / n_models
        for k, (label, values) in enumerate(rows):
            ys = [i + (k - (n_models - 1) / 2) * h for i in range(len(columns))]
            shown = [(y, v) for y, v in zip(ys, values, strict=True) if v is not None]
            ax.barh([y for y, _ in shown], [v for _, v in shown], height=h,
                    color=palette[k % len(palette)], label=_short(label, 28))
            for y, v in shown:
                ax.text(v, y, f" {v:.3f}", va="center", fontsize=7)
        ax.set_yticks(range(len(columns)), [_short(c, 40) for c in columns])
        ax.invert_yaxis()
        ax.set_xlim(0, 1.12)
        ax.set_title("Models side by side (higher is better)", loc="left")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
        fig.tight_layout()
        return fig
    return _png(draw)
