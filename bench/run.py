"""msgflux performance bench: msgflux against the physical limit, on one local server, in one run.

    python bench/run.py [--quick] [--json out.json] [--profile] [--[no-]peers]

Every figure is measured on three wire formats (OpenAI Chat Completions,
Anthropic Messages, Gemini generateContent), each against a hand-rolled
"socket" floor: one socket, request bytes built once, HTTP/1.1 framing parsed
by hand, msgspec typed decoding (see bench/README.md for each figure's floor):

1. cold start: fresh process, import + build model + first call (vs raw httpx);
   plus ``python -X importtime -c "import msgflux"`` and the ``import msgflux`` wall time;
2. sync per-call overhead: sequential non-stream calls over one keep-alive connection;
3. async throughput: 1,000 requests, 100 in flight (vs raw aiohttp and raw asyncio sockets);
4. streaming per-chunk overhead: one 5,000-chunk SSE stream (and async, on the OpenAI path);
5. one streamed tool call of 200 argument fragments, read to parsed arguments;
6. structured output: a ``generation_schema`` call, decoded into a msgspec Struct;
7. peak RSS of a process running the msgflux side of 2-6.

The server (bench/canned_server.py) runs in its own process, so client figures
never include server CPU. Trials of the clients being compared are interleaved
(in rotating order) and compared round by round; a target is met only if it
holds for the adverse quartile of those paired rounds, not just their median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import http.client
import json
import math
import os
import platform
import re
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER = HERE / "canned_server.py"
sys.path.insert(0, str(HERE))  # the sibling modules, when run as a script

from canned_server import PATHS, tool_arguments  # noqa: E402
from clients import (  # noqa: E402
    WIRES,
    AsyncSocketFloor,
    Msgflux,
    OpenAIPeer,
    OpenAIWire,
    RawAiohttp,
    RawHttpx,
    RawHttpxAsync,
    RawStdlib,
    SocketFloor,
    Wire,
)

now_ns = time.perf_counter_ns


@dataclass
class Config:
    """Workload sizes and repetitions. The sizes are the budget's (DESIGN.md);
    ``quick()`` keeps them and trims repetitions, the openai column and raw httpx async."""

    sync_calls: int = 500
    async_requests: int = 1000
    concurrency: int = 100
    chunks: int = 5000
    fragments: int = 200
    tool_reps: int = 20  # tool streams per trial, at least (one stream is ~ms: time a few)
    min_trial_ms: float = 20  # ... and more if a trial would be shorter than this
    struct_calls: int = 300
    trials: int = 15  # rounds of msgflux against its socket floor (sync, stream, tool, struct)
    ref_trials: int = 5  # of those rounds, how many also run the slow reference floors
    async_trials: int = 9  # rounds of the async batches (msgflux, aiohttp)
    cold_runs: int = 9
    paths: tuple[str, ...] = PATHS
    peers: bool = True
    httpx_async: bool = True  # raw httpx async collapses at high concurrency: slow to run
    # The httpx backend (http_client=) against raw httpx, on the OpenAI path: calls per
    # trial, and rounds of calls and of streams (httpx is slow: few of them).
    httpx_calls: int = 200
    httpx_trials: int = 7
    rss: bool = True
    # Where the server and this process run (see Pinning): "off" lets the scheduler
    # choose; "shared" puts both on one CPU for the request-and-answer figures, so
    # each is the sum of both sides' work with no cross-CPU wakeup in it, and moves
    # this process to another CPU for the async batches; "split" keeps them apart.
    pin: str = "off"
    # Untimed child runs that fill the bytecode cache first (see _child_env). Only the
    # smoke test turns them off: its figures are never read as measurements.
    warmup: bool = True

    @classmethod
    def quick(cls) -> Config:
        # The openai SDK is ~10x slower than msgflux: measuring it would take most of a
        # minute, so --quick leaves it out unless --peers asks for it.
        return cls(trials=9, ref_trials=3, async_trials=5, cold_runs=5, tool_reps=10,
                   struct_calls=200, httpx_async=False, peers=False, httpx_trials=5)

    @classmethod
    def tiny(cls) -> Config:
        """For the smoke test: every figure, tiny counts, no peers."""
        return cls(sync_calls=20, async_requests=40, concurrency=10, chunks=200, fragments=20,
                   tool_reps=2, min_trial_ms=0, struct_calls=10, trials=2, ref_trials=1,
                   async_trials=1, cold_runs=1, peers=False, httpx_async=True, warmup=False,
                   httpx_calls=10, httpx_trials=1)


def have(module: str) -> bool:
    return find_spec(module) is not None


# ---------------------------------------------------------------- the server process


class Server:
    """The canned server in a child process; always stopped (terminate, then kill)."""

    def __init__(self, cfg: Config, cpu: int | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--chunks", str(cfg.chunks),
             "--fragments", str(cfg.fragments)],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            if cpu is not None:
                os.sched_setaffinity(self.proc.pid, {cpu})
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], 15)
            line = self.proc.stdout.readline() if ready else ""
            if not line.startswith("PORT "):
                raise RuntimeError(f"bench server did not start (got {line!r})")
            self.port = int(line.split()[1])
        except BaseException:
            self.stop()
            raise
        self.root = f"http://127.0.0.1:{self.port}"

    def url(self, wire: Wire, scenario: str) -> str:
        return self.root + wire.http_path(scenario)

    def last_body(self, model: str) -> bytes:
        """The exact body the last client sent to ``model`` (the floors replay it)."""
        return fetch_last(self.port, model)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def fetch_last(port: int, model: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/bench/last/{model}")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"no request recorded for model {model!r}")
    return body


class Pinning:
    """The CPUs of ``cfg.pin``: the server's, and this process's for the request-and-answer
    figures and for the async batches; :meth:`client` moves this process, and
    :meth:`restore` undoes it (the smoke test runs the bench inside pytest)."""

    def __init__(self, cfg: Config) -> None:
        self.server = self.serial = self.batches = None
        self.before: set[int] | None = None
        if cfg.pin not in ("off", "shared", "split"):
            raise SystemExit(f"--pin takes off, shared or split, not {cfg.pin!r}")
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
        if cfg.pin == "off" or len(cpus) < 2:
            return
        self.before = set(cpus)
        self.server, self.batches = cpus[0], cpus[1]
        self.serial = cpus[0] if cfg.pin == "shared" else cpus[1]

    def describe(self) -> str:
        if self.server is None:
            return "off (the scheduler places the server and the client)"
        return (f"server on cpu {self.server}; client on cpu {self.serial} for calls and "
                f"streams, on cpu {self.batches} for async batches")

    def client(self, cpu: int | None) -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    def restore(self) -> None:
        if self.before is not None:
            os.sched_setaffinity(0, self.before)


@contextlib.contextmanager
def running_server(cfg: Config, pinning: Pinning | None = None) -> Iterator[Server]:
    server = Server(cfg, pinning.server if pinning is not None else None)
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- timing helpers


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def _rounds(core: list[str], refs: list[str], trials: int, ref_trials: int
            ) -> Iterator[list[str]]:
    """The order of each round: every core client, plus the reference clients in the
    first ``ref_trials`` rounds, rotated by one each round (fair under slow drifts)."""
    for t in range(trials):
        names = core + (refs if t < ref_trials else [])
        k = t % len(names)
        yield names[k:] + names[:k]


def interleaved(fns: dict[str, Callable[[], object]], trials: int,
                refs: dict[str, Callable[[], object]] | None = None, ref_trials: int = 0
                ) -> dict[str, list[int]]:
    """ns per trial for each function, in interleaved rounds (see :func:`_rounds`).

    Reference clients run in the first rounds only, so ``zip`` of two clients' trials
    pairs the trials of one round."""
    refs = refs or {}
    every = {**fns, **refs}
    out: dict[str, list[int]] = {n: [] for n in every}
    for order in _rounds(list(fns), list(refs), trials, min(ref_trials, trials)):
        for name in order:
            gc.collect()  # a collection from the previous client must not land in this one
            t0 = now_ns()
            every[name]()
            out[name].append(now_ns() - t0)
    return out


async def ainterleaved(fns: dict[str, Callable[[], Awaitable[object]]], trials: int,
                       refs: dict[str, Callable[[], Awaitable[object]]] | None = None,
                       ref_trials: int = 0) -> dict[str, list[int]]:
    refs = refs or {}
    every = {**fns, **refs}
    out: dict[str, list[int]] = {n: [] for n in every}
    for order in _rounds(list(fns), list(refs), trials, min(ref_trials, trials)):
        for name in order:
            gc.collect()
            t0 = now_ns()
            await every[name]()
            out[name].append(now_ns() - t0)
    return out


def _time_once(fn: Callable[[], object], runs: int = 3) -> int:
    """The fastest of a few runs of ``fn``, in ns (to size the trials)."""
    best = sys.maxsize
    for _ in range(runs):
        t0 = now_ns()
        fn()
        best = min(best, now_ns() - t0)
    return best


# ---------------------------------------------------------------- cold start

# Each script is run as ``python -c PRELUDE + SCRIPT``; the prelude defines the names in
# capitals. Every script reports its phases: import, build a client, first call.

_REPORT = """
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "call": t3 - t2,
                  "modules": len(sys.modules)}))
"""

_COLD = {
    "python": "import json; print(json.dumps({}))",
    "msgflux": """
import json, sys, time
t0 = time.perf_counter()
import msgflux as mf
t1 = time.perf_counter()
m = mf.Model.chat_completion(MODEL, **KWARGS)
t2 = time.perf_counter()
assert m("Hello").consume()
""" + _REPORT,
    "httpx": """
import json, sys, time
t0 = time.perf_counter()
import httpx
t1 = time.perf_counter()
c = httpx.Client()
t2 = time.perf_counter()
value = json.loads(c.post(URL, content=BODY, headers=HEADERS).content)
for key in KEYS:
    value = value[key]
assert value
""" + _REPORT,
    "http.client": """
import json, sys, time
t0 = time.perf_counter()
import http.client
t1 = time.perf_counter()
c = http.client.HTTPConnection("127.0.0.1", PORT)
t2 = time.perf_counter()
c.request("POST", PATH, BODY, HEADERS)
value = json.loads(c.getresponse().read())
for key in KEYS:
    value = value[key]
assert value
""" + _REPORT,
    "socket": """
import json, sys, time
t0 = time.perf_counter()
import socket
t1 = time.perf_counter()
s = socket.create_connection(("127.0.0.1", PORT))
t2 = time.perf_counter()
s.sendall(REQUEST)
buf = b""
while b"\\r\\n\\r\\n" not in buf:
    buf += s.recv(65536)
head, _, body = buf.partition(b"\\r\\n\\r\\n")
i = head.lower().index(b"content-length:") + 15
length = int(head[i:].split(b"\\r\\n")[0])
while len(body) < length:
    body += s.recv(65536)
value = json.loads(body)
for key in KEYS:
    value = value[key]
assert value
""" + _REPORT,
    "openai-sdk": """
import json, sys, time
t0 = time.perf_counter()
import openai
t1 = time.perf_counter()
c = openai.OpenAI(base_url=BASE, api_key="x", max_retries=0)
t2 = time.perf_counter()
assert c.chat.completions.create(model="bench", messages=[{"role": "user", "content": "Hello"}]
                                 ).choices[0].message.content
""" + _REPORT,
}


PYCACHE = Path(tempfile.gettempdir()) / "msgflux-bench-pycache"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing from the caller's shell may redirect or slow the children's requests.
    for key in list(env):
        if key.upper() in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL",
                           "ANTHROPIC_API_KEY", "GEMINI_BASE_URL", "GEMINI_API_KEY",
                           "GOOGLE_API_KEY", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                           "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONPROFILEIMPORTTIME",
                           "PYTHONDONTWRITEBYTECODE"):
            del env[key]
    env["NO_PROXY"] = "127.0.0.1,localhost"
    # Children read and write bytecode in a cache of our own. A user's pip install has
    # .pyc files; an editable checkout under PYTHONDONTWRITEBYTECODE=1 has none and would
    # compile every msgflux module from source at each start (~100 ms), which is not what
    # users pay. Every client gets the same treatment, and the first (untimed) run fills it.
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def _cold_scripts(server: Server, wires: dict[str, Wire], bodies: dict[str, dict[str, bytes]],
                  cfg: Config) -> dict[str, str]:
    """Cold-start name → the whole ``python -c`` program. msgflux and raw httpx on every
    path; the bare interpreter, a socket and http.client on the OpenAI path."""

    def prelude(**names: Any) -> str:
        return "".join(f"{k} = {v!r}\n" for k, v in names.items())

    scripts = {"python": _COLD["python"]}
    for name, wire in wires.items():
        body = bodies[name]["text"]
        keys = list(wire.text_keys)
        if name == "openai":
            scripts["socket"] = prelude(PORT=server.port, KEYS=keys, REQUEST=wire.request(
                "text", server.port, body)) + _COLD["socket"]
            scripts["http.client"] = prelude(PORT=server.port, PATH=wire.http_path("text"),
                                             BODY=body, HEADERS=wire.headers,
                                             KEYS=keys) + _COLD["http.client"]
            if cfg.peers and have("openai"):
                scripts["openai-sdk"] = prelude(BASE=server.root + "/v1") + _COLD["openai-sdk"]
        scripts[f"httpx:{name}"] = prelude(URL=server.url(wire, "text"), BODY=body,
                                           HEADERS=wire.headers, KEYS=keys) + _COLD["httpx"]
        scripts[f"msgflux:{name}"] = prelude(MODEL=wire.model_path("text"),
                                             KWARGS=wire.msgflux_kwargs(server.root)
                                             ) + _COLD["msgflux"]
    return scripts


def cold_start(server: Server, wires: dict[str, Wire], bodies: dict[str, dict[str, bytes]],
               cfg: Config) -> dict[str, Any]:
    scripts = _cold_scripts(server, wires, bodies, cfg)
    names = list(scripts)
    env = _child_env()
    walls: dict[str, list[float]] = {n: [] for n in names}
    parts: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for name in names if cfg.warmup else ():  # untimed: fills the bytecode and file caches
        subprocess.run([sys.executable, "-c", scripts[name]], env=env, capture_output=True,
                       timeout=120, check=True)
    for order in _rounds(names, [], cfg.cold_runs, 0):
        for name in order:
            t0 = now_ns()
            proc = subprocess.run([sys.executable, "-c", scripts[name]], env=env,
                                  capture_output=True, text=True, timeout=120)
            wall = (now_ns() - t0) / 1e6
            if proc.returncode != 0:
                raise RuntimeError(f"cold start {name} failed:\n{proc.stderr[-2000:]}")
            walls[name].append(wall)
            parts[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"wall_ms": {n: median(w) for n, w in walls.items()},
                           "trials_ms": walls}
    out["phases_ms"] = {
        n: {k: median([p[k] for p in ps]) * (1 if k == "modules" else 1000) for k in ps[0]}
        for n, ps in parts.items() if ps[0]
    }
    out["import"] = import_figures(env, cfg)
    return out


def import_figures(env: dict[str, str], cfg: Config) -> dict[str, Any]:
    """``-X importtime`` cumulative for msgflux, and the wall time of ``import msgflux``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import msgflux"],
                          env=env, capture_output=True, text=True, timeout=60)
    cumulative = None
    count = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s+)(\S+)", line)
        if m:
            count += 1
            if m.group(4) == "msgflux" and len(m.group(3)) == 1:
                cumulative = int(m.group(2))
    code = ("import sys, time; n = len(sys.modules); t = time.perf_counter(); import msgflux; "
            "print((time.perf_counter() - t) * 1000, len(sys.modules) - n)")
    walls, added = [], 0
    for _ in range(cfg.cold_runs):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)
        ms, added_s = proc.stdout.split()
        walls.append(float(ms))
        added = int(added_s)
    return {"importtime_cumulative_us": cumulative, "importtime_lines": count,
            "import_wall_ms": median(walls), "modules_added": added}


# ---------------------------------------------------------------- sections


def capture_bodies(server: Server, mf: Msgflux) -> dict[str, bytes]:
    """One msgflux call per scenario (also a warm-up), then the exact bytes it sent."""
    mf.calls(1)
    mf.stream_once()
    mf.tool_once()
    mf.structs(1)
    return {s: server.last_body(m) for s, m in mf.wire.models.items()}


def sync_section(core: dict[str, Any], refs: dict[str, Any], cfg: Config) -> dict[str, Any]:
    n = cfg.sync_calls
    for c in {**core, **refs}.values():
        c.calls(min(50, n))  # warm-up: connections open, caches filled
    ns = interleaved({k: (lambda c=c: c.calls(n)) for k, c in core.items()}, cfg.trials,
                     {k: (lambda c=c: c.calls(n)) for k, c in refs.items()}, cfg.ref_trials)
    return {"us_per_call": {k: median(v) / n / 1e3 for k, v in ns.items()}, "trials_ns": ns}


def stream_section(core: dict[str, Any], refs: dict[str, Any], cfg: Config) -> dict[str, Any]:
    for name, c in {**core, **refs}.items():
        got = c.stream_once()
        if got != cfg.chunks:
            raise RuntimeError(f"{name} read {got} stream chunks, expected {cfg.chunks}")
    ns = interleaved({k: c.stream_once for k, c in core.items()}, cfg.trials,
                     {k: c.stream_once for k, c in refs.items()}, cfg.ref_trials)
    return {"ms_per_stream": {k: median(v) / 1e6 for k, v in ns.items()},
            "us_per_chunk": {k: median(v) / cfg.chunks / 1e3 for k, v in ns.items()},
            "trials_ns": ns}


def httpx_section(backend: Msgflux, raw: RawHttpx, cfg: Config) -> dict[str, Any]:
    """msgflux over an httpx client (``http_client=``) against raw httpx on the same
    client settings: what the backend adds per call and per streamed chunk."""
    n = cfg.httpx_calls
    pair: dict[str, Any] = {"msgflux": backend, "httpx": raw}
    for name, c in pair.items():
        c.calls(min(20, n))
        if c.stream_once() != cfg.chunks:
            raise RuntimeError(f"{name} (httpx backend figure) read a wrong chunk count")
    calls = interleaved({k: (lambda c=c: c.calls(n)) for k, c in pair.items()},
                        cfg.httpx_trials)
    streams = interleaved({k: c.stream_once for k, c in pair.items()}, cfg.httpx_trials)
    return {"us_per_call": {k: median(v) / n / 1e3 for k, v in calls.items()},
            "calls_trials_ns": calls,
            "us_per_chunk": {k: median(v) / cfg.chunks / 1e3 for k, v in streams.items()},
            "stream_trials_ns": streams}


def tool_section(core: dict[str, Any], refs: dict[str, Any], cfg: Config) -> dict[str, Any]:
    expected = json.loads(tool_arguments(cfg.fragments)[0])
    for name, c in {**core, **refs}.items():
        calls = c.tool_once()
        if len(calls) != 1 or calls[0]["function"]["arguments"] != expected:
            raise RuntimeError(f"{name} reassembled the tool arguments wrongly")
    # Enough streams per trial that a trial outlasts a scheduler slice: a Gemini tool
    # stream is one event (~0.1 ms), the others' are 200.
    once = min(_time_once(c.tool_once) for c in core.values())
    reps = max(cfg.tool_reps, math.ceil(cfg.min_trial_ms * 1e6 / once))
    ns = interleaved({k: (lambda c=c: c.tools(reps)) for k, c in core.items()}, cfg.trials,
                     {k: (lambda c=c: c.tools(reps)) for k, c in refs.items()}, cfg.ref_trials)
    return {"ms_per_tool_stream": {k: median(v) / reps / 1e6 for k, v in ns.items()},
            "reps": reps, "trials_ns": ns}


def struct_section(core: dict[str, Any], refs: dict[str, Any], cfg: Config) -> dict[str, Any]:
    n = cfg.struct_calls
    fns: dict[str, Callable[[], object]] = {}
    for k, c in core.items():
        c.structs(min(20, n))
        fns[k] = lambda c=c: c.structs(n)
        if isinstance(c, Msgflux):  # the same answer as text: what decoding alone costs
            c.struct_texts(min(20, n))
            fns["msgflux (text)"] = lambda c=c: c.struct_texts(n)
    for c in refs.values():
        c.structs(min(20, n))
    ns = interleaved(fns, cfg.trials, {k: (lambda c=c: c.structs(n)) for k, c in refs.items()},
                     cfg.ref_trials)
    return {"us_per_call": {k: median(v) / n / 1e3 for k, v in ns.items()}, "trials_ns": ns}


async def async_section(server: Server, wire: Wire, mf: Msgflux, bodies: dict[str, bytes],
                        cfg: Config) -> dict[str, Any]:
    """The async batch on one wire (and, on the OpenAI path, the async stream)."""
    total, conc = cfg.async_requests, cfg.concurrency
    core: dict[str, Any] = {"msgflux": mf}
    if have("aiohttp"):
        core["aiohttp"] = RawAiohttp(server.root, wire, bodies, conc)
    core["socket"] = AsyncSocketFloor(server.port, wire, bodies)
    slow: dict[str, Any] = {}
    if wire.name == "openai":
        if cfg.peers and have("openai"):
            slow["openai"] = OpenAIPeer(server.root + "/v1")
        if cfg.httpx_async and have("httpx"):
            slow["httpx"] = RawHttpxAsync(server.url(wire, "text"), bodies, conc)
    try:
        for c in {**core, **slow}.values():  # warm-up: open the whole pool, fill caches
            await c.abatch(conc * 2, conc)
        # A batch lasts ~0.2 s, so one busy moment of a neighbour skews a trial: the
        # verdict reads the paired rounds' adverse quartile, not one trial.
        ns = await ainterleaved(
            {k: (lambda c=c: c.abatch(total, conc)) for k, c in core.items()}, cfg.async_trials)
        # The openai SDK and raw httpx are 10-50x slower here (seconds per batch): a few
        # trials of their own, outside the rotation, so they cannot stretch the run.
        for k, c in slow.items():
            ns.update(await ainterleaved({k: lambda c=c: c.abatch(total, conc)},
                                         min(cfg.ref_trials, 3)))
        out: dict[str, Any] = {"req_per_s": {k: total / (median(v) / 1e9)
                                             for k, v in ns.items()}, "trials_ns": ns}
        if wire.name == "openai":  # the async stream: msgflux against the asyncio floor
            streams = {k: c for k, c in {**core, **slow}.items() if hasattr(c, "astream_once")}
            for name, c in streams.items():
                got = await c.astream_once()
                if got != cfg.chunks:
                    raise RuntimeError(f"{name} async stream read {got} chunks")
            sns = await ainterleaved(
                {k: streams[k].astream_once for k in ("msgflux", "socket")}, cfg.trials,
                {k: c.astream_once for k, c in streams.items() if k not in ("msgflux", "socket")},
                cfg.ref_trials)
            out["stream_us_per_chunk"] = {k: median(v) / cfg.chunks / 1e3
                                          for k, v in sns.items()}
            out["stream_trials_ns"] = sns
        return out
    finally:
        for k, c in {**core, **slow}.items():
            if k != "msgflux":
                await c.aclose()
        # msgflux's async pools belong to this loop; asyncio.run closes them at its end.


# ---------------------------------------------------------------- peak RSS


def rss_section(server: Server, cfg: Config) -> dict[str, float]:
    kinds = ["python", "raw", *(f"msgflux:{p}" for p in cfg.paths)]
    if cfg.peers and have("openai"):
        kinds.append("openai-sdk")
    out = {}
    tiny = asdict(Config.tiny())
    tiny.update(chunks=cfg.chunks, fragments=cfg.fragments)  # the server's, not tiny's
    # A tiny untimed run first fills the bytecode cache, since compiling modules from
    # source would inflate the measured process's peak. The first msgflux path's run
    # compiles what the others import too (cold start compiled their dialects).
    warm = {"raw", "openai-sdk", f"msgflux:{cfg.paths[0]}"} if cfg.warmup else set()
    for kind in kinds:
        for sizes in (tiny, asdict(cfg)) if kind in warm else (asdict(cfg),):
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
                 "--worker-config", json.dumps({**sizes, "root": server.root})],
                env=_child_env(), capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"RSS worker {kind} failed:\n{proc.stderr[-2000:]}")
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])["max_rss_mib"]
    return out


def worker(kind: str, raw_cfg: str) -> None:
    """A process that runs one side of figures 2-6 once, then reports its peak RSS."""
    opts = json.loads(raw_cfg)
    root = opts.pop("root")
    opts["paths"] = tuple(opts["paths"])
    cfg = Config(**opts)
    port = int(root.rsplit(":", 1)[1])
    total, conc = cfg.async_requests, cfg.concurrency
    side: Any = None
    async_side: Callable[[], Any] | None = None  # built inside the loop, when not `side`
    if kind.startswith("msgflux:"):
        side = Msgflux(WIRES[kind.split(":", 1)[1]](), root)
    elif kind == "raw":  # the OpenAI path by hand: httpx, then aiohttp
        wire = OpenAIWire()
        bodies = {s: fetch_last(port, m) for s, m in wire.models.items()}
        side = RawHttpx(root + wire.http_path("text"), bodies)
        async_side = functools.partial(RawAiohttp, root, wire, bodies, conc)
    elif kind == "openai-sdk":
        side = OpenAIPeer(root + "/v1")
    if side is not None:
        side.calls(cfg.sync_calls)
        side.tools(cfg.tool_reps)
        side.structs(cfg.struct_calls)
        side.stream_once()

        async def amain() -> None:
            client = side if async_side is None else async_side()
            await client.abatch(total, conc)
            await client.astream_once()
            await client.aclose()

        asyncio.run(amain())
    print(json.dumps({"max_rss_mib": peak_rss_kib() / 1024}))


def peak_rss_kib() -> int:
    """Peak RSS of this process image.

    VmHWM, not ru_maxrss: a child's ru_maxrss keeps the high-water mark of the
    forked copy of its parent from before exec (Linux carries it over), so every
    worker would report at least the bench process's own size.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# ---------------------------------------------------------------- profiling (--profile)


def profile_msgflux(sides: dict[str, Msgflux], cfg: Config, top: int = 14) -> None:
    """cProfile of the msgflux side of each per-call figure, on each path: by own time
    and by cumulative time. Syscalls (sendall, recv) include the server's wake-up on a
    busy machine; compare Python-level costs with the socket floor's instead."""
    import cProfile
    import pstats

    for path, mf in sides.items():
        def run_async(mf: Msgflux = mf) -> None:
            asyncio.run(mf.abatch(cfg.async_requests, cfg.concurrency))

        cases: list[tuple[str, Callable[[], object]]] = [
            (f"sync: {cfg.sync_calls} calls", lambda mf=mf: mf.calls(cfg.sync_calls)),
            (f"stream: {cfg.chunks} chunks", mf.stream_once),
            (f"tool stream x{cfg.tool_reps}", lambda mf=mf: mf.tools(cfg.tool_reps)),
            (f"structured: {cfg.struct_calls} calls",
             lambda mf=mf: mf.structs(cfg.struct_calls)),
            (f"async: {cfg.async_requests} at {cfg.concurrency}", run_async),
        ]
        for title, fn in cases:
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            for order in ("tottime", "cumulative"):  # where the time is, and in which layer
                print(f"\n--- profile, msgflux {path} {title} (sorted by {order}) ---")
                pstats.Stats(prof).sort_stats(order).print_stats(top)


# ---------------------------------------------------------------- statistics and verdicts


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": os.getloadavg(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    versions = {}
    for mod in ("msgflux", "msgspec", "httpx", "aiohttp", "openai"):
        if have(mod):
            from importlib.metadata import PackageNotFoundError, version

            with contextlib.suppress(PackageNotFoundError):
                versions[mod] = version(mod)
    info["versions"] = versions
    return info


def spread(values: list[float]) -> dict[str, float]:
    """min, quartiles (inclusive method: interpolated between trials) and max."""
    xs = sorted(values)
    if len(xs) >= 2:
        q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q2 = q3 = xs[0]
    return {"n": len(xs), "min": xs[0], "q1": q1, "median": q2, "q3": q3, "max": xs[-1]}


def paired(trials: dict[str, list[float]], a: str, b: str, op: Callable[[float, float], float]
           ) -> dict[str, float]:
    """The spread over rounds of ``op(a_i, b_i)``.

    Trials of one round ran back to back (interleaved), so pairing them cancels the
    slow drifts of a shared machine that a difference of two medians would keep.
    """
    return spread([op(x, y) for x, y in zip(trials[a], trials[b], strict=False)])


def _diff(scale: float) -> Callable[[float, float], float]:
    return lambda x, y: (x - y) / scale


def _ratio(x: float, y: float) -> float:
    return x / y


def _speedup(x: float, y: float) -> float:
    return y / x  # time ratio = throughput ratio


def _us(x: float) -> str:
    return f"{x:+.0f}" if abs(x) >= 10 else f"{x:+.1f}"


def _us2(x: float) -> str:
    return f"{x:+.2f}"


def _x(x: float) -> str:
    return f"{x:.2f}"


def judge(stats: dict[str, float] | float, sense: str | None, limit: float | None
          ) -> tuple[float | None, bool | None]:
    """``(the value judged, met?)`` for a target ``sense limit`` ("<=" or ">="; None: no
    target). The value judged is the adverse quartile of the paired rounds: q3 for an
    "at most" target, q1 for an "at least" one; a single measurement is judged as is."""
    if sense is None or limit is None:
        return None, None
    value = stats if not isinstance(stats, dict) else stats["q3" if sense == "<=" else "q1"]
    return value, value <= limit if sense == "<=" else value >= limit


def verdicts(fig: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per path and figure: the floor the target is set against, msgflux (medians
    of their trials), the paired comparison's spread, the target and whether it is met.

    A target is met only when it holds for the adverse quartile of the paired rounds
    (the upper quartile for "at most" targets, the lower one for "at least"): three
    rounds in four must meet it, so a target met only by the median is not met.
    """
    rows: list[dict[str, Any]] = []
    cfg = fig["config"]

    def row(path: str, figure: str, unit: str, floor: tuple[str, float], msgflux: float,
            stats: dict[str, float] | None, fmt: Callable[[float], str], unit_text: str,
            target: str, limit: float | None, sense: str | None,
            refs: dict[str, tuple[float, str]] | None = None) -> None:
        if stats is None:  # one measurement (RSS): no spread to read
            result = f"{fmt(msgflux)}{unit_text}"
            stats_or_value: dict[str, float] | float = msgflux
        else:
            result = (f"{fmt(stats['median'])}{unit_text} "
                      f"[{fmt(stats['q1'])}, {fmt(stats['q3'])}]")
            stats_or_value = stats
        judged, ok = judge(stats_or_value, sense, limit)
        rows.append({"path": path, "figure": figure, "unit": unit, "floor_name": floor[0],
                     "floor": floor[1], "msgflux": msgflux, "stats": stats,
                     "result_text": result, "target": target, "limit": limit, "sense": sense,
                     "judged": judged, "ok": ok, "refs": refs or {}})

    def refs_of(values: dict[str, float], trials: dict[str, list[float]], skip: set[str],
                fmt: Callable[[float], str], unit_text: str, op: Callable[[float, float], float]
                ) -> dict[str, tuple[float, str]]:
        return {k: (v, fmt(paired(trials, "msgflux", k, op)["median"]) + unit_text)
                for k, v in values.items() if k not in skip and k in trials}

    cold, ctr = fig["cold"]["wall_ms"], fig["cold"]["trials_ms"]
    for path in cfg["paths"]:
        data = fig["paths"][path]
        mine, raw = f"msgflux:{path}", f"httpx:{path}"
        stats = paired(ctr, mine, raw, _ratio)
        refs = {}
        if path == "openai":
            refs = {k: (cold[k], _x(paired(ctr, mine, k, _ratio)["median"]) + "x")
                    for k in ("python", "socket", "http.client", "openai-sdk") if k in cold}
        row(path, "cold: import + build + 1st call", "ms", ("httpx", cold[raw]), cold[mine],
            stats, _x, "x", "<= 0.6x httpx", 0.6, "<=", refs)

        s, tr = data["sync"]["us_per_call"], data["sync"]["trials_ns"]
        op = _diff(cfg["sync_calls"] * 1e3)
        row(path, "sync call", "us/call", ("socket", s["socket"]), s["msgflux"],
            paired(tr, "msgflux", "socket", op), _us, " us", "<= +25 us", 25, "<=",
            refs_of(s, tr, {"msgflux", "socket"}, _us, " us", op))

        a, tr = data["async"]["req_per_s"], data["async"]["trials_ns"]
        if "aiohttp" in a:
            row(path, f"async {cfg['async_requests']} req @ {cfg['concurrency']}", "req/s",
                ("aiohttp", a["aiohttp"]), a["msgflux"], paired(tr, "msgflux", "aiohttp",
                                                                _speedup),
                _x, "x", ">= 2.5x aiohttp", 2.5, ">=",
                refs_of(a, tr, {"msgflux", "aiohttp"}, _x, "x", _speedup))

        st, tr = data["stream"]["us_per_chunk"], data["stream"]["trials_ns"]
        op = _diff(cfg["chunks"] * 1e3)
        row(path, f"stream, {cfg['chunks']} chunks", "us/chunk", ("socket", st["socket"]),
            st["msgflux"], paired(tr, "msgflux", "socket", op), _us2, " us", "<= +0.5 us",
            0.5, "<=", refs_of(st, tr, {"msgflux", "socket"}, _us2, " us", op))

        hb = data.get("httpx_backend")
        if hb:
            tr = hb["calls_trials_ns"]
            row(path, "httpx backend: sync call", "us/call", ("httpx", hb["us_per_call"]["httpx"]),
                hb["us_per_call"]["msgflux"],
                paired(tr, "msgflux", "httpx", _diff(cfg["httpx_calls"] * 1e3)), _us, " us",
                "<= +60 us", 60, "<=")
            tr = hb["stream_trials_ns"]
            row(path, "httpx backend: stream", "us/chunk", ("httpx", hb["us_per_chunk"]["httpx"]),
                hb["us_per_chunk"]["msgflux"],
                paired(tr, "msgflux", "httpx", _diff(cfg["chunks"] * 1e3)), _us2, " us",
                "<= +3 us", 3, "<=")

        ast = data["async"].get("stream_us_per_chunk")
        if ast:
            tr = data["async"]["stream_trials_ns"]
            row(path, "async stream", "us/chunk", ("socket", ast["socket"]), ast["msgflux"],
                paired(tr, "msgflux", "socket", op), _us2, " us", "(no target)", None, None,
                refs_of(ast, tr, {"msgflux", "socket"}, _us2, " us", op))

        t, tr = data["tool"]["ms_per_tool_stream"], data["tool"]["trials_ns"]
        row(path, f"tool stream, {cfg['fragments']} fragments", "ms", ("socket", t["socket"]),
            t["msgflux"], paired(tr, "msgflux", "socket", _ratio), _x, "x", "<= 1.5x socket",
            1.5, "<=", refs_of(t, tr, {"msgflux", "socket"}, _x, "x", _ratio))

        sc, tr = data["struct"]["us_per_call"], data["struct"]["trials_ns"]
        op = _diff(cfg["struct_calls"] * 1e3)
        row(path, "structured call", "us/call", ("socket", sc["socket"]), sc["msgflux"],
            paired(tr, "msgflux", "socket", op), _us, " us", "<= +40 us", 40, "<=",
            refs_of(sc, tr, {"msgflux", "socket"}, _us, " us", op))

        if "rss" in fig:
            m = fig["rss"]
            refs = {k: (m[k], f"{m[f'msgflux:{path}'] - m[k]:+.1f} MiB")
                    for k in ("raw", "openai-sdk") if k in m and path == "openai"}
            row(path, "peak RSS after workload", "MiB", ("bare python", m["python"]),
                m[f"msgflux:{path}"], None, lambda v: f"{v:.1f}", " MiB", "<= 40 MiB", 40, "<=",
                refs)
    return rows


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _table(rows: list[tuple[str, ...]], out: Any) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)


def print_report(fig: dict[str, Any], out: Any = sys.stdout) -> None:
    info = fig["machine"]
    print(f"\nmachine: {info.get('cpu', '?')}, {info['cpus']} cpus "
          f"({info['usable_cpus']} usable), {info['implementation']} {info['python']}, "
          f"load average {' '.join(f'{x:.2f}' for x in info['loadavg'])} at start, "
          f"{' '.join(f'{x:.2f}' for x in fig['loadavg_end'])} at end", file=out)
    print(f"pinned: {info.get('pinned', 'off')}", file=out)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()), file=out)
    print(f"config: {fig['config']}", file=out)
    cold = fig["cold"]
    print("\ncold start, median wall ms of a fresh process (phases in-process, ms):", file=out)
    for name, wall in cold["wall_ms"].items():
        ph = cold["phases_ms"].get(name)
        extra = (f"  import {ph['import']:.1f}, build {ph['build']:.1f}, 1st call "
                 f"{ph['call']:.1f}, {ph['modules']:.0f} modules" if ph else "")
        print(f"  {name:<18} {wall:8.1f}{extra}", file=out)
    imp = cold["import"]
    cumulative = imp["importtime_cumulative_us"]
    print(f"  import msgflux: {imp['import_wall_ms']:.1f} ms wall, -X importtime cumulative "
          f"{(cumulative or 0) / 1000:.1f} ms, {imp['modules_added']} modules added", file=out)
    for path, data in fig["paths"].items():
        decode = paired(data["struct"]["trials_ns"], "msgflux", "msgflux (text)",
                        _diff(fig["config"]["struct_calls"] * 1e3))["median"]
        print(f"{path}: structured decode alone {decode:+.0f} us over msgflux reading it as "
              f"text; stream {_fmt(data['stream']['ms_per_stream'])} ms/stream", file=out)

    rows = fig["verdicts"]
    table = [("path", "figure", "unit", "floor", "msgflux", "msgflux vs floor: median [q1, q3]",
              "target", "verdict")]
    for r in rows:
        verdict = "-" if r["ok"] is None else "ok" if r["ok"] else "MISS"
        table.append((r["path"], r["figure"], r["unit"], f"{_num(r['floor'])} {r['floor_name']}",
                      _num(r["msgflux"]), r["result_text"], r["target"], verdict))
    print("\nEvery target is judged on the adverse quartile of the paired rounds (q3 for "
          "'<=', q1 for '>='):", file=out)
    _table(table, out)

    print("\nreference floors (median; msgflux against each, paired median):", file=out)
    for r in rows:
        if r["refs"]:
            text = ", ".join(f"{k} {_num(v)} ({cmp})" for k, (v, cmp) in r["refs"].items())
            print(f"  {r['path']:<9} {r['figure']}, {r['unit']}: {text}", file=out)

    judged = [r for r in rows if r["ok"] is not None]
    for path in fig["config"]["paths"]:
        mine = [r for r in judged if r["path"] == path]
        misses = [r["figure"] for r in mine if not r["ok"]]
        print(f"\n{path}: {len(mine) - len(misses)}/{len(mine)} targets met"
              + (f"; missed: {', '.join(misses)}" if misses else ""), file=out, end="")
    print("", file=out)


def _fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in d.items())


# ---------------------------------------------------------------- main


def run_all(cfg: Config, *, profile: bool = False, log: Any = sys.stderr) -> dict[str, Any]:
    """Every figure, in one run against one server. Returns the figures dict."""
    fig: dict[str, Any] = {"machine": machine_info(), "config": asdict(cfg), "paths": {}}
    pinning = Pinning(cfg)
    fig["machine"]["pinned"] = pinning.describe()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    peers = cfg.peers and have("openai")
    for mod in ("httpx", "aiohttp"):
        if not have(mod):
            raise SystemExit(f"bench needs {mod}: pip install -e '.[bench]'")

    def step(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=log, flush=True)

    with running_server(cfg, pinning) as server, contextlib.ExitStack() as closing:
        closing.callback(pinning.restore)
        pinning.client(pinning.serial)
        wires = {p: WIRES[p]() for p in cfg.paths}
        sides: dict[str, Msgflux] = {}
        bodies: dict[str, dict[str, bytes]] = {}
        for path, wire in wires.items():
            sides[path] = mf = Msgflux(wire, server.root)
            closing.callback(mf.close)
            bodies[path] = capture_bodies(server, mf)
        step("cold start")
        fig["cold"] = cold_start(server, wires, bodies, cfg)
        for path, wire in wires.items():
            data: dict[str, Any] = {}
            fig["paths"][path] = data
            sock = SocketFloor(server.port, wire, bodies[path])
            closing.callback(sock.close)
            core: dict[str, Any] = {"msgflux": sides[path], "socket": sock}
            refs: dict[str, Any] = {}
            if path == "openai":
                refs["httpx"] = RawHttpx(server.url(wire, "text"), bodies[path])
                refs["http.client"] = RawStdlib(server.port, bodies[path])
                if peers:
                    refs["openai"] = OpenAIPeer(server.root + "/v1")
                for c in refs.values():
                    closing.callback(c.close)
            step(f"{path}: sync calls")
            data["sync"] = sync_section(core, refs, cfg)
            step(f"{path}: stream")
            data["stream"] = stream_section(core, refs, cfg)
            step(f"{path}: tool stream")
            data["tool"] = tool_section(core, refs, cfg)
            step(f"{path}: structured")
            data["struct"] = struct_section(core, refs, cfg)
            if path == "openai":
                import httpx

                step(f"{path}: httpx backend")
                client = httpx.Client(timeout=30)
                closing.callback(client.close)  # a model never closes the caller's client
                backend = Msgflux(wire, server.root, http_client=client)
                closing.callback(backend.close)
                data["httpx_backend"] = httpx_section(backend, refs["httpx"], cfg)

        pinning.client(pinning.batches)

        async def all_async() -> None:
            for path, wire in wires.items():
                step(f"{path}: async")
                fig["paths"][path]["async"] = await async_section(
                    server, wire, sides[path], bodies[path], cfg)

        asyncio.run(all_async())
        if cfg.rss:
            step("peak RSS")
            fig["rss"] = rss_section(server, cfg)
        if profile:
            profile_msgflux(sides, cfg)
    fig["loadavg_end"] = os.getloadavg()
    fig["verdicts"] = verdicts(fig)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="msgflux vs hand-rolled floors on a local server")
    ap.add_argument("--quick", action="store_true", help="fewer trials (< 60 s)")
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    ap.add_argument("--profile", action="store_true",
                    help="after the figures, cProfile the msgflux side of each one")
    ap.add_argument("--peers", action=argparse.BooleanOptionalAction, default=None,
                    help="the openai SDK column (default: on, off with --quick; skipped when "
                    "openai is not installed)")
    ap.add_argument("--pin", choices=("off", "shared", "split"), default="off",
                    help="CPU placement of the server and the client (see Config.pin); "
                    "'shared' gives the tightest spreads for calls on a busy machine")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.worker_config)
        return 0
    cfg = Config.quick() if args.quick else Config()
    if args.peers is not None:
        cfg.peers = args.peers
    cfg.pin = args.pin
    t0 = time.monotonic()
    fig = run_all(cfg, profile=args.profile)
    fig["elapsed_s"] = time.monotonic() - t0
    print_report(fig)
    print(f"\nelapsed {fig['elapsed_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
