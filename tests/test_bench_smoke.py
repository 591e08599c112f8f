"""Smoke test of bench/run.py: every figure is produced, on tiny workloads.

Never asserts a timing threshold: the machines are shared and noisy, and the
figures only mean something as ratios within one full run (see bench/README.md).
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
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


PATHS = ("openai", "anthropic", "google")
TARGETS = [
    ("cold: import + build + 1st call", "<= 0.6x httpx"),
    ("sync call", "<= +25 us"),
    ("async 40 req @ 10", ">= 2.5x aiohttp"),
    ("stream, 200 chunks", "<= +0.5 us"),
    ("tool stream, 20 fragments", "<= 1.5x socket"),
    ("structured call", "<= +40 us"),
    ("peak RSS after workload", "<= 40 MiB"),
]


def test_bench_produces_every_figure() -> None:
    bench = _load_bench()
    cfg = bench.Config.tiny()  # type: ignore[attr-defined]
    cfg.pin = "shared"  # the placement code runs too (and must give the CPUs back)
    before = os.sched_getaffinity(0)
    fig = bench.run_all(cfg, log=io.StringIO())  # type: ignore[attr-defined]
    assert os.sched_getaffinity(0) == before
    if len(before) >= 2:
        assert fig["machine"]["pinned"].startswith("server on cpu")

    cold = fig["cold"]
    names = ["python", "socket", "http.client", *(f"{side}:{path}" for path in PATHS
                                                  for side in ("httpx", "msgflux"))]
    assert list(cold["wall_ms"]) == names
    for name in names:
        assert _number(cold["wall_ms"][name]), name
    for name in names[1:]:
        assert set(cold["phases_ms"][name]) == {"import", "build", "call", "modules"}, name
    assert _number(cold["import"]["import_wall_ms"])
    assert _number(cold["import"]["importtime_cumulative_us"])

    assert list(fig["paths"]) == list(PATHS)
    for path, data in fig["paths"].items():
        refs = ("httpx", "http.client") if path == "openai" else ()
        for name in ("msgflux", "socket", *refs):
            assert _number(data["sync"]["us_per_call"][name]), (path, name)
            assert _number(data["stream"]["us_per_chunk"][name]), (path, name)
            assert _number(data["tool"]["ms_per_tool_stream"][name]), (path, name)
            assert _number(data["struct"]["us_per_call"][name]), (path, name)
        assert _number(data["struct"]["us_per_call"]["msgflux (text)"]), path
        # every round ran the core pair; the reference floors ran in the first rounds only
        assert len(data["sync"]["trials_ns"]["socket"]) == cfg.trials
        for name in ("msgflux", "aiohttp", "socket", *(("httpx",) if refs else ())):
            assert _number(data["async"]["req_per_s"][name]), (path, name)
        if path == "openai":
            for name in ("msgflux", "socket", "aiohttp"):
                assert _number(data["async"]["stream_us_per_chunk"][name]), name
            for name in ("msgflux", "httpx"):  # the httpx backend against raw httpx
                assert _number(data["httpx_backend"]["us_per_call"][name]), name
                assert _number(data["httpx_backend"]["us_per_chunk"][name]), name
        else:
            assert "stream_us_per_chunk" not in data["async"]
    for name in ("python", "raw", *(f"msgflux:{path}" for path in PATHS)):
        assert _number(fig["rss"][name]), name

    rows = fig["verdicts"]
    expected = [(path, figure, target) for path in PATHS for figure, target in TARGETS]
    expected[4:4] = [("openai", "httpx backend: sync call", "<= +60 us"),
                     ("openai", "httpx backend: stream", "<= +3 us"),
                     ("openai", "async stream", "(no target)")]  # reported, not judged
    assert [(r["path"], r["figure"], r["target"]) for r in rows] == expected
    for r in rows:
        assert math.isfinite(r["msgflux"]) and math.isfinite(r["floor"])
        if r["target"] == "(no target)":
            assert r["ok"] is None
            continue
        assert isinstance(r["ok"], bool) and math.isfinite(r["judged"])
        stats = r["stats"]
        if stats is not None:  # the verdict reads the adverse quartile, not the median
            assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
            assert r["judged"] == stats["q3" if r["sense"] == "<=" else "q1"]
            assert r["ok"] == (r["judged"] <= r["limit"] if r["sense"] == "<="
                               else r["judged"] >= r["limit"])

    out = io.StringIO()
    bench.print_report(fig, out)  # type: ignore[attr-defined]
    report = out.getvalue()
    for r in rows:
        assert r["figure"] in report and r["result_text"] in report
    for path in PATHS:
        assert f"{path}: " in report


def test_verdict_reads_the_adverse_quartile() -> None:
    """A target met by the median of the paired rounds but not by the adverse quartile
    is a miss (q3 for an "at most" target, q1 for an "at least" one)."""
    bench = _load_bench()
    spread, judge = bench.spread, bench.judge  # type: ignore[attr-defined]
    # sync: paired differences (us) of 5 rounds; the median is under +25, q3 is not
    noisy = spread([10.0, 18.0, 20.0, 30.0, 40.0])
    assert noisy["median"] == 20.0 and noisy["q3"] == 30.0
    assert judge(noisy, "<=", 25) == (30.0, False)
    assert judge(spread([10.0, 18.0, 20.0, 24.0, 90.0]), "<=", 25) == (24.0, True)
    # async: paired throughput ratios; the median is over 2.5x, q1 is not
    assert judge(spread([2.0, 2.4, 2.6, 2.7, 2.8]), ">=", 2.5) == (2.4, False)
    assert judge(spread([1.0, 2.5, 2.6, 2.7, 2.8]), ">=", 2.5) == (2.5, True)
    # one measurement (peak RSS) is judged as is; a figure without a target is not judged
    assert judge(35.0, "<=", 40) == (35.0, True)
    assert judge(spread([1.0, 2.0]), None, None) == (None, None)
    assert spread([7.0]) == {"n": 1, "min": 7.0, "q1": 7.0, "median": 7.0, "q3": 7.0,
                             "max": 7.0}
