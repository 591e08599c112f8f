"""Smoke test of bench/local.py: every figure comes out, on a tiny workload.

Never asserts a timing or a ratio: the machines are shared and noisy.
"""

from __future__ import annotations

import importlib.util
import io
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("xllamacpp")

BENCH = Path(__file__).resolve().parent.parent / "bench" / "local.py"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.real_llm
def test_local_bench_produces_every_figure() -> None:
    spec = importlib.util.spec_from_file_location("msgflux_bench_local", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)

    cfg = bench.Config.tiny()
    fig = bench.run_all(cfg, log=io.StringIO())
    assert list(fig["runs"]) == [str(n) for n in cfg.concurrency]
    for n, run in fig["runs"].items():
        for client in ("direct", "msgflux"):
            assert _number(run["summary"][client]["tok_s"])
            assert _number(run["summary"][client]["ttft_ms"])
            assert _number(run["summary"][client]["cpu_us_per_token"])
            # ignore_eos: both clients got exactly max_tokens in each of the n streams
            assert {t["tokens"] for t in run["trials"][client]} == {cfg.max_tokens * int(n)}
        assert _number(run["ratio"])
    out = io.StringIO()
    bench.print_report(fig, out)
    assert out.getvalue().count(">= 0.95x") == len(cfg.concurrency)
