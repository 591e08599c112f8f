"""GGUF models from the Hugging Face Hub, named the way llama.cpp and Ollama name them.

Spellings (after the ``llamacpp/`` provider prefix)::

    hf.co/bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M     # Ollama's `ollama run hf.co/...`
    bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M           # llama.cpp's `llama-server -hf ...`
    hf.co/bartowski/Qwen2.5-1.5B-Instruct-GGUF            # the Q4_K_M file, or the only GGUF
    hf.co/bartowski/Qwen2.5-1.5B-Instruct-GGUF/Qwen2.5-1.5B-Instruct-Q8_0.gguf   # one file

``huggingface.co/`` and ``https://`` (a URL pasted from the browser) work as the
prefix too. Without a prefix only ``Owner/Repo[:QUANT]`` is read as a Hub name, and
only when no local file has that path: anything ending in ``.gguf`` stays a path.

Files are downloaded with ``huggingface_hub`` into its cache (``HF_HOME``,
``HF_HUB_CACHE``), with its progress bar; ``HF_ENDPOINT`` and ``HF_TOKEN`` work as
usual. When the Hub cannot be reached, a matching file already in the cache is used;
if there is none, the error says which file to download and where to put it.

Choosing a file is pure (:func:`choose_gguf`); only :func:`download_gguf` does I/O
and imports ``huggingface_hub``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec

from msgflux.exceptions import ConfigurationError, MissingDependencyError

__all__ = ["DEFAULT_QUANT", "HubModel", "choose_gguf", "download_gguf", "parse_hub_id"]

#: The quantization picked when the name gives none: llama.cpp's and Ollama's default.
DEFAULT_QUANT = "Q4_K_M"

_HOSTS = ("hf.co/", "huggingface.co/")
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO = re.compile(rf"^({_PART}/{_PART})(?::({_PART}))?$")
_REPO_FILE = re.compile(rf"^({_PART}/{_PART})/(.+\.gguf)$", re.IGNORECASE)
# Shards of one model: name-00001-of-00003.gguf; llama.cpp loads the first, finds the rest.
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_INSTALL = 'pip install "msgflux[hf]"'


class HubModel(msgspec.Struct, frozen=True):
    """A GGUF on the Hub: ``repo`` (``Owner/Repo``) and either a ``quant`` tag or a ``file``."""

    repo: str
    quant: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        return f"hf.co/{self.repo}" + (f"/{self.file}" if self.file else
                                       f":{self.quant}" if self.quant else "")


def parse_hub_id(model_id: str) -> HubModel | None:
    """The Hub model ``model_id`` names, or None when it is no Hub spelling."""
    name = model_id.strip()
    url = name.lower().startswith(("https://", "http://"))
    if url:
        name = name.split("://", 1)[1]
    prefixed = name.lower().startswith(_HOSTS)
    if url and not prefixed:
        return None  # a URL elsewhere: not ours to guess
    if prefixed:
        name = name.split("/", 1)[1]
        # A URL copied from a file's page: Owner/Repo/blob/main/file.gguf
        name = re.sub(r"^([^/]+/[^/]+)/(?:blob|resolve)/main/", r"\1/", name)
        match = _REPO_FILE.match(name)
        if match:
            return HubModel(match[1], file=match[2])
    if name.lower().endswith(".gguf") and not prefixed:
        return None
    match = _REPO.match(name)
    if match is None:
        if prefixed:
            raise ConfigurationError(
                f"llamacpp model {model_id!r}: a Hugging Face model is named "
                "hf.co/Owner/Repo, hf.co/Owner/Repo:QUANT (e.g. :Q4_K_M) or "
                "hf.co/Owner/Repo/file.gguf"
            )
        return None
    return HubModel(match[1], quant=match[2])


def choose_gguf(model: HubModel, names: list[str]) -> list[str]:
    """The repo files to download for ``model``, from the repo's file ``names``.

    The first is the file to load; the others are the rest of its shards. Projector
    files (``mmproj``) are never chosen. Raises ConfigurationError, listing what the
    repo offers, when nothing or more than one model matches.
    """
    ggufs = [n for n in names
             if n.lower().endswith(".gguf") and "mmproj" not in n.rsplit("/", 1)[-1].lower()]
    if model.file is not None:
        chosen = [n for n in ggufs if n == model.file]
    else:
        quant = model.quant or DEFAULT_QUANT
        tag = re.compile(rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])", re.IGNORECASE)
        chosen = [n for n in ggufs if tag.search(n)]
        if not chosen and model.quant is None and len(_models(ggufs)) == 1:
            chosen = ggufs  # a repo with a single model needs no tag
    models = _models(chosen)
    if len(models) != 1:
        offered = ", ".join(sorted(_models(ggufs))) or "no GGUF files"
        what = (f"file {model.file!r}" if model.file else
                f"quantization {model.quant or DEFAULT_QUANT!r}")
        many = "more than one model matches" if models else f"it has no {what}"
        raise ConfigurationError(
            f"Hugging Face repo {model.repo}: {many}. It offers: {offered}. Name one as "
            f"hf.co/{model.repo}:QUANT or hf.co/{model.repo}/FILE.gguf"
        )
    return sorted(next(iter(models.values())))


def _models(ggufs: list[str]) -> dict[str, list[str]]:
    """GGUF files grouped by model: the shards of one model form one group."""
    groups: dict[str, list[str]] = {}
    for name in ggufs:
        shard = _SHARD.search(name)
        groups.setdefault(name[: shard.start()] if shard else name, []).append(name)
    return groups


def download_gguf(model: HubModel) -> Path:
    """Download ``model``'s file(s) into the Hub cache (or find them there) and return
    the path of the file to load."""
    try:
        import huggingface_hub as hub
        from huggingface_hub.utils import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise MissingDependencyError(
            f"model {model} is on the Hugging Face Hub: downloading it needs package "
            f"huggingface_hub. Install it with: {_INSTALL}"
        ) from None
    # Passed explicitly: huggingface_hub reads HF_ENDPOINT once, when first imported.
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        info = hub.HfApi(endpoint=endpoint).model_info(model.repo)
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        gated = isinstance(exc, GatedRepoError)
        raise ConfigurationError(
            f"llamacpp model {model}: the Hugging Face repo {model.repo} "
            + ("is gated: accept its terms on its page, then set HF_TOKEN to a token of "
               "that account" if gated else
               "does not exist, or is private (then set HF_TOKEN to a token that can read it)")
        ) from None
    except Exception as exc:
        if not _unreachable(exc):
            raise  # a bug, not the network: the traceback is what a report needs
        return _from_cache(model, hub, LocalEntryNotFoundError, exc)
    files = choose_gguf(model, [s.rfilename for s in info.siblings or ()])
    paths = [hub.hf_hub_download(model.repo, name, endpoint=endpoint) for name in files]
    return Path(paths[0])


def _unreachable(error: Exception) -> bool:
    """Whether ``error`` means the Hub could not be asked: no network, offline mode
    (``HF_HUB_OFFLINE``), a proxy, a timeout, a 5xx. huggingface_hub's HTTP stack is
    requests in 0.x and httpx after, so its errors are told by their module."""
    from huggingface_hub.utils import HfHubHTTPError

    stack = type(error).__module__.partition(".")[0]
    return isinstance(error, (OSError, HfHubHTTPError)) or stack in (
        "httpx", "httpx2", "httpcore", "requests", "urllib3")


def _from_cache(model: HubModel, hub: Any, not_found: type[Exception],
                reason: Exception) -> Path:
    """The model's file from the Hub cache, for when the Hub cannot be reached."""
    try:
        folder = Path(hub.snapshot_download(model.repo, local_files_only=True))
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf")]
        files = choose_gguf(model, names)
    except (not_found, ConfigurationError):
        raise ConfigurationError(_offline_message(model, reason)) from reason
    return folder / files[0]


def _offline_message(model: HubModel, reason: Exception) -> str:
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    from huggingface_hub import constants

    cache = constants.HF_HUB_CACHE
    why = " ".join(f"{type(reason).__name__}: {reason}".split())[:300]
    if model.file is not None:
        what = (f"download {endpoint}/{model.repo}/resolve/main/{model.file} into any "
                f"folder and run llamacpp/<that folder>/{model.file.rsplit('/', 1)[-1]}, "
                f"or run `hf download {model.repo} {model.file}` where there is network "
                f"and copy {cache}/models--{model.repo.replace('/', '--')} here")
    else:
        quant = model.quant or DEFAULT_QUANT
        what = (f"run `hf download {model.repo} --include '*{quant}*.gguf'` where there is "
                f"network and copy {cache}/models--{model.repo.replace('/', '--')} here, or "
                f"download the {quant} .gguf file(s) from {endpoint}/{model.repo}/tree/main "
                "into any folder and run llamacpp/<path of the file>")
    return (f"llamacpp model {model}: the Hugging Face Hub at {endpoint} could not be "
            f"reached ({why}) and the model is not in the cache at {cache}. To use it "
            f"offline, {what}.")
