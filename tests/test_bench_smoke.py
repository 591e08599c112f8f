"""Smoke test of bench/run.py: every figure is produced, on tiny workloads.

Never asserts a timing threshold: the machines are shared and noisy, and the
figures only mean something as ratios within one full run (see bench/README.md).
"""

from __future__ import annotations

import importlib.util
import io
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("aiohttp")

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load_bench() -> object:
    # bench/ is not a package: load run.py by path, as `python bench/run.py` would.
    spec = importlib.util.spec_from_file_location("msgflux_bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_produces_every_figure() -> None:
    bench = _load_bench()
    cfg = bench.Config.tiny()  # type: ignore[attr-defined]
    fig = bench.run_all(cfg, log=io.StringIO())  # type: ignore[attr-defined]

    cold = fig["cold"]
    for name in ("python", "http.client", "httpx", "msgflux"):
        assert _number(cold["wall_ms"][name]), name
    for name in ("http.client", "httpx", "msgflux"):
        assert set(cold["phases_ms"][name]) == {"import", "build", "call", "modules"}
    assert _number(cold["import"]["import_wall_ms"])
    assert _number(cold["import"]["importtime_cumulative_us"])

    for name in ("msgflux", "httpx", "http.client", "socket"):
        assert _number(fig["sync"]["us_per_call"][name]), name
        assert _number(fig["stream"]["us_per_chunk"][name]), name
    for name in ("msgflux", "httpx", "http.client"):
        assert _number(fig["tool"]["ms_per_tool_stream"][name]), name
    for name in ("msgflux", "msgflux (text)", "httpx", "http.client"):
        assert _number(fig["struct"]["us_per_call"][name]), name
    for name in ("msgflux", "aiohttp", "httpx"):
        assert _number(fig["async"]["req_per_s"][name]), name
    for name in ("msgflux", "aiohttp"):
        assert _number(fig["async"]["stream_us_per_chunk"][name]), name
    for name in ("python", "raw", "msgflux"):
        assert _number(fig["rss"][name]), name

    rows = fig["verdicts"]
    assert [r["target"] for r in rows] == [
        "<= 1.3x", "<= 60 us", ">= 0.7x", "<= 3 us", "<= 3 us", "<= 1.3x", "<= 100 us",
        "<= 60 MiB",
    ]
    for r in rows:
        assert math.isfinite(r["result"]) and isinstance(r["ok"], bool)

    out = io.StringIO()
    bench.print_report(fig, out)  # type: ignore[attr-defined]
    report = out.getvalue()
    for r in rows:
        assert r["figure"] in report
