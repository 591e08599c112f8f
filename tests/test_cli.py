"""The ``msgflux`` command, run as a subprocess (``python -m msgflux``) exactly as users run it.

Chat runs against the real llama.cpp server (``llama_server`` fixture), the embedded
model, and scripted loopback servers where a test needs exact bytes or timing
(streaming flushes, conversation history, provider errors). Assertions are about
structure and exit codes, never about the small model's wording.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from msgflux._cli.schema import SchemaFileError, struct_from_json_schema
from scripted_server import ScriptedServer, json_reply, sse_reply
from signals import sigint_not_ignored

TIMEOUT = 60  # seconds; every subprocess is bounded
SECRET = "sk-test-0123456789-never-printed"


@pytest.fixture(scope="module")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment without any real key or endpoint override, and a private cache."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_KEY", "_TOKEN", "_BASE_URL"))}
    env.pop("COLUMNS", None)
    env["MSGFLUX_CACHE_DIR"] = str(tmp_path_factory.mktemp("msgflux-cache"))
    return env


def run(env: dict[str, str], *args: str, input: str | None = None,
        timeout: float = TIMEOUT, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "msgflux", *args],
        input=input if input is not None else "",  # never inherit pytest's stdin
        capture_output=True, text=True, timeout=timeout, env={**env, **extra_env},
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a failed run: exactly one line, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("msgflux: error: ")
    return lines[0]


def dead_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_aligned(lines: list[str]) -> None:
    """Every column of a left-aligned table starts at the header's offset."""
    header = lines[0]
    starts = [i for i in range(1, len(header)) if header[i] != " " and header[i - 2:i] == "  "]
    assert starts
    for line in lines[1:]:
        for start in starts:
            assert line[start - 1] == " ", (line, start)


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse_answer(*parts: str, delay: float = 0.0) -> Any:
    events = [chunk(p) for p in parts] + [chunk(finish="stop"), "data: [DONE]\n\n"]
    return sse_reply(events, delay_between=delay)


def with_openai(env: dict[str, str], base_url: str) -> dict[str, str]:
    return {**env, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "dummy"}


# ---------------------------------------------------------------- usage and startup


def test_help_and_version(base_env: dict[str, str]) -> None:
    result = run(base_env, "--help")
    assert result.returncode == 0
    for command in ("chat", "providers", "models", "profiles"):
        assert command in result.stdout
    version = run(base_env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("msgflux ")


def test_cli_module_imports_nothing_heavy(base_env: dict[str, str]) -> None:
    code = ("import sys, msgflux.cli; "
            "print(sorted(m for m in ('msgspec', 'msgflux.models.model', 'msgflux.exceptions',"
            " 'json', 'urllib.request', 'ssl') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=TIMEOUT, env=base_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [
    (),                                         # no command
    ("nosuchcommand",),
    ("chat", "--temperature", "hot", "hi"),
    ("models", "--max-price", "cheap"),
    ("profiles",),                              # an action is required
])
def test_bad_usage_exits_2(base_env: dict[str, str], args: tuple[str, ...]) -> None:
    result = run(base_env, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- providers


def test_providers_table(base_env: dict[str, str]) -> None:
    result = run(base_env, "providers", GROQ_API_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "DIALECT", "BASE", "URL", "KEY", "VARIABLE", "KEY"]
    assert_aligned(lines)
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["groq"][-2:] == ["GROQ_API_KEY", "set"]
    assert rows["openai"][-2:] == ["OPENAI_API_KEY", "missing"]
    assert rows["llamacpp"][-2:] == ["not", "needed"]  # a local engine
    assert rows["ollama"][2] == "http://localhost:11434/v1"
    assert SECRET not in result.stdout + result.stderr


def test_providers_json(base_env: dict[str, str]) -> None:
    result = run(base_env, "providers", "--json", GROQ_API_KEY=SECRET,
                 OLLAMA_BASE_URL="http://10.0.0.5:11434/v1")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert len(rows) > 50
    assert rows["groq"]["key_set"] is True and rows["groq"]["key_set_in"] == "GROQ_API_KEY"
    assert rows["openai"]["key_set"] is False and rows["openai"]["key_env"] == ["OPENAI_API_KEY"]
    assert rows["anthropic"]["dialect"] == "anthropic"
    assert rows["llamacpp"]["key_required"] is False
    # The base URL shown is the one msgflux will use: the override variable wins.
    assert rows["ollama"]["base_url"] == "http://10.0.0.5:11434/v1"
    assert rows["ollama"]["default_base_url"] == "http://localhost:11434/v1"


def test_providers_search(base_env: dict[str, str]) -> None:
    result = run(base_env, "providers", "groq", "--json")
    assert [row["id"] for row in json.loads(result.stdout)] == ["groq"]


# ---------------------------------------------------------------- models and profiles


def test_models_table(base_env: dict[str, str]) -> None:
    result = run(base_env, "models", "openai")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "CONTEXT"]
    assert_aligned([line for line in lines])
    models = {line.split()[0]: line.split() for line in lines[1:]}
    assert all(m.startswith("openai/") for m in models)
    gpt4o = models["openai/gpt-4o"]
    assert gpt4o[1].endswith("k") and "tools" in gpt4o[5]


def test_models_json_and_filters(base_env: dict[str, str]) -> None:
    everything = json.loads(run(base_env, "models", "openai", "--json").stdout)
    assert everything and all(p["provider_id"] == "openai" for p in everything)
    result = run(base_env, "models", "--tools", "--vision", "--max-price", "2", "--json")
    assert result.returncode == 0, result.stderr
    picked = json.loads(result.stdout)
    assert picked
    for p in picked:
        assert p["capabilities"]["tool_call"] is True
        assert "image" in p["modalities"]["input"]
        assert p["cost"]["output_per_million"] <= 2
    all_models = json.loads(run(base_env, "models", "--json").stdout)
    assert len(picked) < len(all_models)


def test_models_of_a_local_engine_is_empty(base_env: dict[str, str]) -> None:
    result = run(base_env, "models", "ollama", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []
    assert "no model profiles" in result.stderr


def test_models_unknown_provider(base_env: dict[str, str]) -> None:
    result = run(base_env, "models", "opnai")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "Unknown provider 'opnai'" in line and "openai" in line  # the closest names


class Terminal:
    """A child process on a pseudo-terminal, so msgflux sees a TTY; output accumulates."""

    def __init__(self, args: list[str], env: dict[str, str], stdin_tty: bool = True) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "msgflux", *args],
            stdin=slave if stdin_tty else subprocess.DEVNULL, stdout=slave, stderr=slave,
            env={**env, "TERM": "dumb"},
        )
        os.close(slave)
        self.output = b""

    def read(self, until: bytes | None = None, count: int = 1) -> bytes:
        """Read until ``until`` was seen ``count`` times in all the output so far (with
        ``until=None``: until the child exits); bounded by TIMEOUT."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if until is not None and self.output.count(until) >= count:
                return self.output
            ready, _, _ = select.select([self.master], [], [], 0.1)
            piece = b""
            if ready:
                with contextlib.suppress(OSError):  # EIO: the child closed the terminal
                    piece = os.read(self.master, 65536)
            self.output += piece
            if not piece and self.proc.poll() is not None:
                if until is None:
                    return self.output
                break
        raise AssertionError(f"waiting for {until!r}; got {self.output[-500:]!r}")

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def test_table_fits_the_terminal(base_env: dict[str, str]) -> None:
    term = Terminal(["providers"], {**base_env, "COLUMNS": "70"}, stdin_tty=False)
    try:
        output = term.read().decode()
        assert term.proc.wait(timeout=TIMEOUT) == 0
    finally:
        term.close()
    lines = [line for line in output.replace("\r", "").splitlines() if line]
    assert len(lines) > 50
    assert all(len(line) <= 70 for line in lines)
    assert any("…" in line for line in lines)  # long cells were shortened
    assert lines[0].split()[-1] == "KEY"  # every column survived


def test_profiles_refresh_offline(base_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{dead_port()}/api.json"
    result = run(base_env, "profiles", "refresh", "--url", url, "--timeout", "5")
    assert result.returncode == 1
    assert url in one_line_error(result)


def test_profiles_refresh_from_a_mirror(base_env: dict[str, str], tmp_path: Path) -> None:
    data = {"fakeprov": {"id": "fakeprov", "name": "Fake", "api": "http://127.0.0.1:1/v1",
                         "env": ["FAKEPROV_API_KEY"], "models": {"m1": {
                             "id": "m1", "name": "M1", "tool_call": True,
                             "limit": {"context": 32000, "output": 4000},
                             "cost": {"input": 1, "output": 2}}}}}
    env = {**base_env, "MSGFLUX_CACHE_DIR": str(tmp_path)}
    with ScriptedServer() as srv:
        srv.enqueue(json_reply(200, data))
        result = run(env, "profiles", "refresh", "--url", f"{srv.url}/api.json", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"] == 1
    listed = json.loads(run(env, "models", "fakeprov", "--json").stdout)
    assert [(p["id"], p["limits"]["context"]) for p in listed] == [("m1", 32000)]


# ---------------------------------------------------------------- chat: errors before the network


def test_chat_unknown_provider(base_env: dict[str, str]) -> None:
    result = run(base_env, "chat", "-m", "nosuchprovider/x", "hi")
    assert result.returncode == 2
    assert "Unknown provider" in one_line_error(result)


def test_chat_missing_key_names_the_variable(base_env: dict[str, str]) -> None:
    result = run(base_env, "chat", "-m", "groq/llama-3.3-70b-versatile", "hi")
    assert result.returncode == 2
    assert "GROQ_API_KEY" in one_line_error(result)


def test_chat_model_without_provider(base_env: dict[str, str]) -> None:
    result = run(base_env, "chat", "-m", "gpt-4o", "hi")
    assert result.returncode == 2
    assert "provider/model" in one_line_error(result)


def test_chat_empty_stdin(base_env: dict[str, str]) -> None:
    result = run(base_env, "chat", input="  \n")
    assert result.returncode == 2
    assert "no prompt" in one_line_error(result)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    ("{not json", "not valid JSON"),
    ('{"type": "string"}', "root must be an object"),
    ('{"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}}', "allOf"),
    ('{"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}}', "$ref"),
])
def test_chat_bad_json_schema_file(base_env: dict[str, str], tmp_path: Path,
                                   content: str | None, message: str) -> None:
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    result = run(base_env, "chat", "--json-schema", str(path), "hi")
    assert result.returncode == 2
    assert message in one_line_error(result)


# ---------------------------------------------------------------- chat: provider errors


@pytest.mark.parametrize("mode", [(), ("--no-stream",)])
def test_chat_connection_refused(base_env: dict[str, str], mode: tuple[str, ...]) -> None:
    port = dead_port()
    env = with_openai(base_env, f"http://127.0.0.1:{port}/v1")
    result = run(env, "chat", "-m", "openai/x", *mode, "hi")
    assert result.returncode == 1
    assert str(port) in one_line_error(result)
    assert result.stdout == ""


@pytest.mark.parametrize("mode", [(), ("--no-stream",)])
def test_chat_provider_error_status(base_env: dict[str, str], mode: tuple[str, ...]) -> None:
    error = {"error": {"message": "Incorrect API key\nprovided", "type": "invalid_request_error",
                       "code": "invalid_api_key"}}
    with ScriptedServer() as srv:
        srv.enqueue(json_reply(401, error))
        result = run(with_openai(base_env, f"{srv.url}/v1"), "chat", "-m", "openai/x", *mode, "hi")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "401" in line and "Incorrect API key provided" in line
    assert "dummy" not in line  # the key is never echoed


# ---------------------------------------------------------------- chat: scripted answers


def test_chat_streams_each_chunk_as_it_arrives(base_env: dict[str, str]) -> None:
    answer = sse_answer("one ", "two ", "three")
    # The server holds the rest of the answer until the test has read the first chunk.
    gate = threading.Event()
    with ScriptedServer() as srv:
        srv.enqueue(answer.hold_after(len(answer.steps[0][1]) + len(answer.steps[1][1]), gate))
        proc = subprocess.Popen(
            [sys.executable, "-m", "msgflux", "chat", "-m", "openai/x", "hi"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=with_openai(base_env, f"{srv.url}/v1"),
        )
        try:
            first = os.read(proc.stdout.fileno(), 1024)  # type: ignore[union-attr]
            running = proc.poll() is None
            gate.set()
            rest, err = proc.communicate(timeout=TIMEOUT)
        finally:
            gate.set()
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert first == b"one "  # printed before the rest had been sent
    assert running
    assert first + rest == b"one two three\n"
    request = srv.requests[0].json()
    assert request["stream"] is True
    assert request["messages"] == [{"role": "user", "content": "hi"}]


def test_chat_stream_broken_midway(base_env: dict[str, str]) -> None:
    with ScriptedServer() as srv:
        # The body ends after one chunk: no finish_reason, no [DONE].
        srv.enqueue(sse_reply([chunk("one ")], chunked=False))
        result = run(with_openai(base_env, f"{srv.url}/v1"), "chat", "-m", "openai/x", "hi")
    assert result.returncode == 1
    assert result.stdout == "one \n"  # the partial answer, its line ended
    one_line_error(result)


def test_chat_invalid_structured_output(base_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    reply = {"id": "r1", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"name": 1}'},
                          "finish_reason": "stop"}]}
    with ScriptedServer() as srv:
        srv.enqueue(json_reply(200, reply))
        result = run(with_openai(base_env, f"{srv.url}/v1"), "chat", "-m", "openai/x",
                     "--json-schema", str(path), "hi")
        sent = srv.requests[0].json()
    assert result.returncode == 1
    one_line_error(result)
    assert sent["response_format"]["type"] == "json_schema"
    assert set(sent["response_format"]["json_schema"]["schema"]["properties"]) == {
        "name", "age", "hobbies"}


def test_chat_interrupted_exits_130(base_env: dict[str, str]) -> None:
    with ScriptedServer() as srv:
        srv.enqueue(sse_answer("one ", "two", delay=30))
        with sigint_not_ignored():
            proc = subprocess.Popen(
                [sys.executable, "-m", "msgflux", "chat", "-m", "openai/x", "hi"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=with_openai(base_env, f"{srv.url}/v1"),
            )
        try:
            assert os.read(proc.stdout.fileno(), 1024) == b"one "  # type: ignore[union-attr]
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=TIMEOUT)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert b"Traceback" not in err


def test_chat_json_output(base_env: dict[str, str]) -> None:
    reply = {"id": "r1", "object": "chat.completion", "created": 1, "model": "m-2024",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    with ScriptedServer() as srv:
        srv.enqueue(json_reply(200, reply))
        result = run(with_openai(base_env, f"{srv.url}/v1"), "chat", "-m", "openai/x",
                     "--json", "-s", "Be brief.", "-t", "0.5", "--max-tokens", "20", "hi")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["output"] == "Hello." and doc["provider"] == "openai"
    assert doc["finish_reason"] == "stop" and doc["usage"]["total_tokens"] == 7
    sent = srv.requests[0].json()
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["temperature"] == 0.5
    assert 20 in (sent.get("max_tokens"), sent.get("max_completion_tokens"))


@pytest.mark.parametrize("mode", [(), ("--no-stream",)], ids=["stream", "no-stream"])
def test_chat_system_prompt_reaches_the_server(base_env: dict[str, str],
                                               mode: tuple[str, ...]) -> None:
    reply = {"id": "r1", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "Blue."},
                          "finish_reason": "stop"}]}
    with ScriptedServer() as srv:
        srv.enqueue(json_reply(200, reply) if mode else sse_answer("Blue."))
        result = run(with_openai(base_env, f"{srv.url}/v1"), "chat", "-m", "openai/x", *mode,
                     "--system", "You answer in one short sentence.", "Name a colour.")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Blue.\n"
    sent = srv.requests[0].json()
    assert sent.get("stream", False) is (not mode)
    assert sent["messages"] == [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Name a colour."},
    ]


def test_chat_interactive_keeps_history(base_env: dict[str, str]) -> None:
    with ScriptedServer() as srv:
        srv.enqueue(sse_answer("Hello", " there"), sse_answer("Fine."))
        term = Terminal(["chat", "-m", "openai/x"], with_openai(base_env, f"{srv.url}/v1"))
        try:
            term.read(b"> ", 1)
            term.write(b"first question\n")
            term.read(b"> ", 2)  # the answer, then the next prompt
            term.write(b"second\n")
            out = term.read(b"> ", 3)
            term.write(b"/exit\n")
            assert term.proc.wait(timeout=TIMEOUT) == 0
        finally:
            term.close()
    assert b"Hello there" in out and b"Fine." in out
    second = srv.requests[1].json()["messages"]
    assert second == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "second"},
    ]


def test_chat_interactive_quits_on_eof(base_env: dict[str, str]) -> None:
    term = Terminal(["chat", "-m", "openai/x"], with_openai(base_env, "http://127.0.0.1:1/v1"))
    try:
        term.read(b"> ", 1)
        term.write(b"\x04")  # Ctrl-D
        assert term.proc.wait(timeout=TIMEOUT) == 0
    finally:
        term.close()


# ---------------------------------------------------------------- chat: the real llama.cpp server


@pytest.fixture
def llama_env(base_env: dict[str, str], llama_server: Any) -> dict[str, str]:
    return with_openai(base_env, llama_server.base_url)


def test_chat_streamed_against_llama(llama_env: dict[str, str]) -> None:
    result = run(llama_env, "chat", "-m", "openai/smollm2", "--max-tokens", "16",
                 "Name a colour.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and result.stdout.endswith("\n")


def test_chat_no_stream_with_system_against_llama(llama_env: dict[str, str],
                                                  prompt_tokens: Any) -> None:
    result = run(llama_env, "chat", "-m", "openai/smollm2", "--no-stream", "--json",
                 "--max-tokens", "16", "--system", "You answer in one short sentence.", "-t", "0",
                 "Name a colour.")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc["output"], str) and doc["output"]
    # The server was prompted with the system prompt and the question: its count says so.
    assert doc["usage"]["prompt_tokens"] == prompt_tokens([
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Name a colour."}])


def test_chat_prompt_from_stdin_against_llama(llama_env: dict[str, str]) -> None:
    result = run(llama_env, "chat", "-m", "openai/smollm2", "--max-tokens", "16",
                 input="What is 2 + 2?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    dash = run(llama_env, "chat", "-m", "openai/smollm2", "--max-tokens", "8", "-",
               input="Say hi.")
    assert dash.returncode == 0, dash.stderr


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20},
                    "maxItems": 2},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_chat_json_schema_against_llama(llama_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(SCHEMA))
    result = run(llama_env, "chat", "-m", "openai/smollm2", "--json-schema", str(path),
                 "--max-tokens", "200", "-t", "0", "Describe a person as JSON.")
    assert result.returncode == 0, result.stderr
    jsonschema.validate(json.loads(result.stdout), SCHEMA)


@pytest.mark.real_llm
def test_chat_default_embedded_model(base_env: dict[str, str]) -> None:
    result = run(base_env, "chat", "Say hi", "--max-tokens", "8", timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_chat_warns_on_stderr_when_the_answer_is_cut(llama_env: dict[str, str]) -> None:
    for mode in ((), ("--no-stream",)):
        result = run(llama_env, "chat", "-m", "openai/smollm2", "--max-tokens", "3", *mode,
                     "Tell me a long story.")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()  # the partial answer is still printed
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("msgflux: warning: "), result.stderr
        assert "--max-tokens" in lines[0]


@pytest.mark.real_llm
def test_readme_first_command_is_short_and_reproducible(base_env: dict[str, str]) -> None:
    # The README's first command, on the embedded demo model with every default. Run
    # twice: the same short answer, ended by the model (no cut-off warning). Its wording
    # is the model's business and is not checked here.
    answers = [run(base_env, "chat", "What is the capital of France?", timeout=180)
               for _ in range(2)]
    for result in answers:
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr
    assert answers[0].stdout == answers[1].stdout
    assert 0 < len(answers[0].stdout.split()) <= 40


# ---------------------------------------------------------------- the JSON Schema -> Struct helper


def test_schema_struct_round_trip() -> None:
    import msgspec

    from msgflux.models.structured import compile_schema, decode_structured

    schema = {
        "name": "book", "schema": {  # OpenAI's response_format wrapper is accepted
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 1},
                "author": {"$ref": "#/$defs/Person"},
                "tags": {"type": "object", "additionalProperties": {"type": "integer"}},
                "kind": {"enum": ["novel", "essay"]},
                "class": {"type": ["string", "null"]},
            },
            "required": ["title", "class"],
            "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}},
                                 "required": ["name"]}},
        },
    }
    struct = struct_from_json_schema(schema)
    compiled = compile_schema(struct)
    assert compiled.output.name == "book"
    props = compiled.output.schema["properties"]
    assert props["author"]["properties"]["name"] == {"type": "string"}
    assert set(compiled.output.schema["required"]) == {"title", "class"}
    value = decode_structured(compiled, '{"title": "T", "class": null, "kind": "essay"}')
    assert value == {"title": "T", "class": None, "kind": "essay"}  # absent stays absent
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"title": "", "class": null}', type=struct)


@pytest.mark.parametrize("schema", [
    [],
    {"type": "array", "items": {"type": "string"}},
    {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
     "$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}}},
    {"type": "object", "properties": {"a": {"enum": [True, False]}}},
])
def test_schema_struct_refuses_what_it_cannot_enforce(schema: Any) -> None:
    with pytest.raises(SchemaFileError):
        struct_from_json_schema(schema)
