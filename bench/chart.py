"""Draw the bench's figures as one image: msgflux against the floors and the openai SDK.

    python bench/run.py --json run.json && python bench/scale.py --json scale.json
    python bench/chart.py run.json scale.json -o bench/figures.png

Reads any of the two JSON files (each panel is drawn only when its figure is
there) and writes a PNG (or SVG/PDF, by the output's suffix) with matplotlib
(extra ``bench``). Bars are grouped per figure; msgflux is the highlighted bar,
and the panel's title says whether higher or lower is better.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# (title, unit, better, where the {client: value} mapping lives in run.py's JSON)
RUN_PANELS = [
    ("cold start: import + build + first call", "ms", "lower", ("cold", "wall_ms")),
    ("sync call", "µs / call", "lower", ("sync", "us_per_call")),
    ("async, 100 in flight", "requests / s", "higher", ("async", "req_per_s")),
    ("stream", "µs / chunk", "lower", ("stream", "us_per_chunk")),
    ("tool-call stream", "ms / stream", "lower", ("tool", "ms_per_tool_stream")),
    ("structured call", "µs / call", "lower", ("struct", "us_per_call")),
    ("peak RSS", "MiB", "lower", ("rss",)),
]
MSGFLUX = "#d1495b"
OTHERS = "#7a8b99"
PEERS = "#edae49"


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, float] | None:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    if not isinstance(data, dict):
        return None
    values = {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}
    return values or None


def panels(documents: list[dict[str, Any]]) -> list[tuple[str, str, str, dict[str, float]]]:
    """``(title, unit, better, {label: value})`` for every figure found."""
    out = []
    for doc in documents:
        for title, unit, better, path in RUN_PANELS:
            values = _dig(doc, path)
            if values:
                out.append((title, unit, better, values))
        batch = doc.get("batch")
        if isinstance(batch, dict) and "items_per_s" in batch:
            out.append((f"batch of {batch['items']:,} prompts", "items / s", "higher",
                        dict(batch["items_per_s"])))
        hits = doc.get("cache_hit_us")
        if isinstance(hits, dict):
            out.append(("cache hit (model call)", "µs / call", "lower", dict(hits)))
    return out


def _color(label: str) -> str:
    low = label.lower()
    if low.startswith(("msgflux", "batch", "memory", "sqlite", "redis")):
        return MSGFLUX
    if "openai" in low:
        return PEERS
    return OTHERS


def draw(figures: list[tuple[str, str, str, dict[str, float]]], output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    cols = min(3, len(figures))
    rows = (len(figures) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (title, unit, better, values) in zip(axes.flat, figures, strict=False):
        labels = list(values)
        ax.barh(labels, [values[k] for k in labels], color=[_color(k) for k in labels])
        ax.invert_yaxis()
        ax.set_title(f"{title}\n({unit}, {better} is better)", fontsize=10)
        ax.tick_params(labelsize=8)
        top = max(values.values())
        for i, label in enumerate(labels):
            value = values[label]
            ax.text(value + top * 0.01, i, f"{value:,.1f}" if value < 100 else f"{value:,.0f}",
                    va="center", fontsize=7)
        ax.set_xlim(0, top * 1.22)
    for ax in list(axes.flat)[len(figures):]:
        ax.set_visible(False)
    fig.suptitle("msgflux (red) against raw floors (grey) and the openai SDK (yellow)",
                 fontsize=12)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="+", help="bench/run.py --json and/or bench/scale.py --json")
    ap.add_argument("-o", "--output", default="bench/figures.png")
    args = ap.parse_args(argv)
    figures = panels([json.loads(Path(p).read_text()) for p in args.json])
    if not figures:
        print("no figures found in " + ", ".join(args.json), file=sys.stderr)
        return 1
    draw(figures, args.output)
    print(f"wrote {args.output} ({len(figures)} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
