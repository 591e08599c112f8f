"""``msgflux batch INPUT -o OUTPUT``: a JSONL file of inputs through one model.

Each input line is a JSON string (the prompt) or an object with ``messages``
(a prompt or a list of messages), an optional ``id`` and any call arguments;
a line that is not JSON fails its item only. Each output line, in input
order, is ``{"index", "id", "output", "response_type", "usage", "cost",
"finish_reason", "model", "error"}`` (``error``: ``{"type", "message",
"status"}`` or null).

Finished items go to a SQLite checkpoint as they come (``--checkpoint``,
default ``OUTPUT.checkpoint.db``), so running the same command again after a
crash, Ctrl-C or SIGTERM does only what is missing. The default checkpoint is
removed once every item has succeeded and the output is written.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["add_parser"]


def add_parser(commands: Any, default_model: str, build_model: Any) -> None:
    """Add ``batch`` to the command's subparsers; ``build_model(args, **options)`` makes
    the model from ``-m`` and the shared options."""
    batch = commands.add_parser(
        "batch", help="run a JSONL file of prompts through a model (resumable)",
        description="Run every line of INPUT (a JSON string, or an object with 'messages', "
                    "'id' and call arguments) through a model, many at once, and write one "
                    "JSON line per input, in input order, to OUTPUT. Interrupted runs resume "
                    "from the checkpoint: run the same command again.",
        epilog="Exit codes: 0 every item succeeded, 1 some items failed (see their 'error'), "
               "2 bad usage, 130 interrupted (the checkpoint keeps what finished).",
    )
    batch.add_argument("input", help="the JSONL input file ('-' reads stdin)")
    batch.add_argument("-o", "--output", required=True, help="the JSONL output file")
    batch.add_argument("-m", "--model", default=default_model, metavar="PROVIDER/MODEL")
    batch.add_argument("-c", "--concurrency", type=int, metavar="N",
                       help="calls in flight (default 16; an embedded engine: its slots)")
    batch.add_argument("--rpm", type=float, metavar="N", help="at most N requests a minute")
    batch.add_argument("--tpm", type=float, metavar="N", help="at most N tokens a minute")
    batch.add_argument("--checkpoint", metavar="FILE",
                       help="SQLite file of finished items (default: OUTPUT.checkpoint.db)")
    batch.add_argument("--cache", metavar="SPEC",
                       help="response cache: sqlite:///answers.db, redis://host:6379/0")
    batch.add_argument("-s", "--system", metavar="TEXT", help="system prompt for every item")
    batch.add_argument("-t", "--temperature", type=float, metavar="T")
    batch.add_argument("--max-tokens", type=int, metavar="N")
    batch.add_argument("--json-schema", metavar="FILE",
                       help="a JSON Schema file: every answer is JSON valid against it")
    batch.add_argument("--base-url", metavar="URL", help="the provider's endpoint")
    batch.add_argument("--no-progress", action="store_true",
                       help="no progress bar (there is none when stderr is not a terminal)")
    batch.set_defaults(run=run, build_model=build_model)


def _inputs(path: str) -> Iterator[Any]:
    """Each non-blank line decoded; a line that is not JSON becomes the error of its item."""
    import msgspec

    from msgflux.exceptions import InvalidParameterError

    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield msgspec.json.decode(line)
            except msgspec.DecodeError as e:
                yield InvalidParameterError(f"line {number} of {path} is not JSON: {e}")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _count(path: str) -> int | None:
    if path == "-":
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


class _Sized:
    """The input lines, with their count for the progress bar (read lazily)."""

    def __init__(self, path: str, total: int | None) -> None:
        self.path = path
        self.total = total

    def __iter__(self) -> Iterator[Any]:
        return _inputs(self.path)

    def __len__(self) -> int:
        return self.total or 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the checkpoint is committed on the way out


def run(args: argparse.Namespace) -> int:
    import msgspec

    from msgflux.exceptions import InvalidParameterError

    if args.input != "-" and not os.path.isfile(args.input):
        raise InvalidParameterError(f"no such input file: {args.input}")
    schema = None
    if args.json_schema:
        from msgflux._cli.schema import load_schema_struct

        schema = load_schema_struct(args.json_schema)
    model = args.build_model(args, cache=args.cache)
    checkpoint = args.checkpoint or args.output + ".checkpoint.db"
    total = _count(args.input)
    inputs: Any = _Sized(args.input, total) if total is not None else _inputs(args.input)
    call: dict[str, Any] = {}
    if args.system:
        call["system_prompt"] = args.system
    if schema is not None:
        call["generation_schema"] = schema
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = model.batch(inputs, concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm,
                             checkpoint=checkpoint, progress=False if args.no_progress else None,
                             **call)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nmsgflux: interrupted; finished items are kept in {checkpoint}: "
                         "run the same command again to resume\n")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    encode = msgspec.json.Encoder().encode
    partial = args.output + ".partial"
    with open(partial, "wb") as out:
        for item in result:
            out.write(encode(item) + b"\n")
    os.replace(partial, args.output)
    summary = result.summary
    sys.stderr.write(f"msgflux: {summary}\n")
    if summary.failed:
        sys.stderr.write(f"msgflux: failed items keep their error in {args.output}; running "
                         "the same command again retries only them\n")
        return 1
    if not args.checkpoint:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(checkpoint + suffix):
                os.remove(checkpoint + suffix)
    return 0
