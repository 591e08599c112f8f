"""bench/scale.py and bench/chart.py on tiny workloads: every figure comes out and the
chart is drawn. No timing is checked (shared machines are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_scale_bench_and_chart(tmp_path) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "scale.json", tmp_path / "figures.png"
    subprocess.run([sys.executable, str(BENCH / "scale.py"), "--tiny", "--items", "300",
                    "--json", str(out)], check=True, capture_output=True, timeout=300)
    fig = json.loads(out.read_text())
    batch = fig["batch"]
    assert set(batch["items_per_s"]) == {"aiohttp floor", "msgflux acall loop",
                                         "batch (memory)", "batch (checkpoint)"}
    assert all(rate > 0 for rate in batch["items_per_s"].values())
    assert {"growth_mib", "peak_mib_1000", "peak_mib_300"} <= set(batch["rss"])
    assert {"no cache (server call)", "memory", "sqlite"} <= set(fig["cache_hit_us"])
    done = subprocess.run([sys.executable, str(BENCH / "chart.py"), str(out), "-o", str(png)],
                          check=True, capture_output=True, text=True, timeout=120)
    assert "2 panels" in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
