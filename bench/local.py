"""The embedded llama.cpp engine through msgflux vs the same engine called directly.

    python bench/local.py                         # SmolLM2, 1 and 4 concurrent streams
    python bench/local.py --model hf.co/Owner/Repo:Q4_K_M --concurrency 1 2 8
    python bench/local.py --json local.json       # also every trial as JSON

One engine (one port, ``n_parallel`` = the largest concurrency) serves both
clients, on the same prompts, with the same request: greedy, ``max_tokens`` fixed
and ``ignore_eos`` so every answer has exactly that many tokens, and no prompt
cache, so time to first token includes reading the prompt.

- **direct**: raw HTTP to the engine's port (``http.client``, one connection per
  worker thread), reading the SSE lines and parsing each event's JSON, the least
  a client must do.
- **msgflux**: ``Model.chat_completion("llamacpp/...")`` with ``stream=True`` from
  the same worker threads, consuming every chunk.

For each concurrency N, a round runs N streams at once with each client, in
alternating order; a figure is the median over rounds. tok/s is the completion
tokens of all N streams over the round's wall time; TTFT is the median time to the
first content token. Target (DESIGN.md): msgflux >= 0.95x direct tok/s. The CPU
does the decoding, so the ratio measures what the client costs on top of it; on a
shared machine it swings with the load, so "client CPU/token" (direct / msgflux,
the CPU time of the client threads alone, per token) shows that cost directly.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import msgflux as mf
from msgflux.models.providers.llamacpp import (
    Engine,
    EngineOptions,
    get_engine,
    resolve_gguf,
)

PROMPTS = [
    "Tell me a story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "Describe a day at the beach.",
    "Write a letter to a friend about a trip to the mountains.",
    "Explain why the sky is blue.",
    "Describe a busy market in the morning.",
    "Tell me about the history of bread.",
    "Write a short speech for a school graduation.",
]
# Sent by both clients: same decoding work whatever the model says.
SAMPLING = {"temperature": 0, "ignore_eos": True, "cache_prompt": False}


@dataclass
class Config:
    model: str = "smollm2"
    concurrency: list[int] = field(default_factory=lambda: [1, 4])
    max_tokens: int = 128
    rounds: int = 5
    n_ctx: int = 4096

    @classmethod
    def tiny(cls) -> Config:
        """Seconds, for the smoke test: every figure, no meaning in the numbers."""
        return cls(concurrency=[1, 2], max_tokens=8, rounds=1, n_ctx=1024)


@dataclass
class Stream:
    ttft: float  # seconds to the first content token
    tokens: int
    cpu: float = 0.0  # CPU seconds of the client's own thread (the engine's threads excluded)


def direct_stream(root_url: str, prompt: str, max_tokens: int) -> Stream:
    parts = urlsplit(root_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "stream": True,
                       "max_tokens": max_tokens, "stream_options": {"include_usage": True},
                       **SAMPLING})
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body,
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    ttft = None
    tokens = 0
    for line in response:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        event = json.loads(line[6:])
        choices = event.get("choices")
        if choices and choices[0]["delta"].get("content") and ttft is None:
            ttft = time.perf_counter() - start
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
    conn.close()
    assert ttft is not None and tokens
    return Stream(ttft, tokens)


def msgflux_stream(model: Any, prompt: str) -> Stream:
    start = time.perf_counter()
    response = model(prompt, stream=True)
    ttft = None
    for _ in response.consume():
        if ttft is None:
            ttft = time.perf_counter() - start
    tokens = response.metadata.usage.completion_tokens
    assert ttft is not None and tokens
    return Stream(ttft, tokens)


def run_round(n: int, call: Any) -> dict[str, float]:
    """N streams at once; aggregate tok/s and median TTFT."""
    results: list[Stream] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n + 1)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            cpu = time.thread_time()
            result = call(PROMPTS[i % len(PROMPTS)])
            result.cpu = time.thread_time() - cpu
            results.append(result)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return {"tok_s": sum(r.tokens for r in results) / wall,
            "ttft_ms": statistics.median(r.ttft for r in results) * 1000,
            "tokens": sum(r.tokens for r in results), "wall_s": wall,
            "cpu_us_per_token": sum(r.cpu for r in results) / sum(r.tokens for r in results)
            * 1e6}


def run_all(cfg: Config, log: TextIO = sys.stderr) -> dict[str, Any]:
    options = EngineOptions(n_ctx=cfg.n_ctx, n_parallel=max(cfg.concurrency))
    path = resolve_gguf(cfg.model)
    engine: Engine = get_engine(path, options).start()
    # The model's engine options equal `options`, so it shares this engine and port.
    model = mf.Model.chat_completion(
        f"llamacpp/{cfg.model}", n_ctx=options.n_ctx, n_parallel=options.n_parallel,
        max_tokens=cfg.max_tokens, extra_body=dict(SAMPLING), temperature=0)
    clients = {
        "direct": lambda p: direct_stream(engine.root_url, p, cfg.max_tokens),
        "msgflux": lambda p: msgflux_stream(model, p),
    }
    for call in clients.values():  # warm-up: first-use costs out of the figures
        call(PROMPTS[0])
    assert model._wiring.endpoint.base_url == engine.base_url, "not the same engine"
    figures: dict[str, Any] = {"model": path.name, "max_tokens": cfg.max_tokens,
                               "load_avg": os.getloadavg(), "runs": {}}
    for n in cfg.concurrency:
        trials: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
        for r in range(cfg.rounds):
            order = list(clients) if r % 2 == 0 else list(reversed(clients))
            for name in order:
                trials[name].append(run_round(n, clients[name]))
            log.write(f"  concurrency {n}, round {r + 1}/{cfg.rounds}\n")
        summary = {name: {key: statistics.median(t[key] for t in runs)
                          for key in ("tok_s", "ttft_ms", "cpu_us_per_token")}
                   for name, runs in trials.items()}
        pairs = zip(trials["msgflux"], trials["direct"], strict=True)
        ratios = [m["tok_s"] / d["tok_s"] for m, d in pairs]
        figures["runs"][str(n)] = {"summary": summary, "ratio": statistics.median(ratios),
                                   "trials": trials}
    model.close()
    engine.close()
    return figures


def print_report(fig: dict[str, Any], out: TextIO = sys.stdout) -> None:
    out.write(f"local engine: {fig['model']}, {fig['max_tokens']} tokens per answer, "
              f"load average {fig['load_avg'][0]:.1f}\n")
    out.write(f"{'streams':>7}  {'direct tok/s':>12}  {'msgflux tok/s':>13}  {'ratio':>5}  "
              f"{'direct TTFT':>11}  {'msgflux TTFT':>12}  {'client CPU/token':>20}  "
              "target\n")
    for n, run in fig["runs"].items():
        d, m = run["summary"]["direct"], run["summary"]["msgflux"]
        ok = "ok" if run["ratio"] >= 0.95 else "MISSED"
        cpu = f"{d['cpu_us_per_token']:.0f} / {m['cpu_us_per_token']:.0f} us"
        out.write(f"{n:>7}  {d['tok_s']:>12.1f}  {m['tok_s']:>13.1f}  {run['ratio']:>5.2f}  "
                  f"{d['ttft_ms']:>8.0f} ms  {m['ttft_ms']:>9.0f} ms  {cpu:>20}  "
                  f">= 0.95x {ok}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="as after llamacpp/ (default smollm2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], metavar="N")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write every figure and trial")
    args = parser.parse_args(argv)
    cfg = Config(model=args.model, concurrency=args.concurrency, max_tokens=args.max_tokens,
                 rounds=args.rounds)
    fig = run_all(cfg)
    print_report(fig)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
