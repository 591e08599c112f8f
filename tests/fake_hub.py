"""A loopback stand-in for the Hugging Face Hub, for ``huggingface_hub`` pointed at it
with ``HF_ENDPOINT``.

It answers the few routes a GGUF download needs, as recorded from
``huggingface_hub`` itself (2.x and 0.2x):

- ``GET /api/models/{repo}[/revision/{rev}]``: the repo's commit and file list
  (``model_info``; ``snapshot_download`` asks for the same);
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: a file's metadata (commit, ETag, size,
  as an LFS file: ``X-Linked-Etag``/``X-Linked-Size``), then its bytes, with
  ``Range`` support for resumed downloads.

Every request is recorded in ``requests`` as ``(method, path)``. Anything else is a
404 with the Hub's ``X-Error-Code: EntryNotFound`` or ``RepoNotFound``, so the client
sees the same errors as on the real Hub.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """``FakeHub({"owner/repo": {"file.gguf": Path, ...}})``; ``url`` is its ``HF_ENDPOINT``."""

    def __init__(self, repos: Mapping[str, Mapping[str, Path | bytes]]) -> None:
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.requests: list[tuple[str, str]] = []
        self._sha: dict[Path, str] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _etag(self, content: Path | bytes) -> str:
        if isinstance(content, bytes):
            return hashlib.sha256(content).hexdigest()
        with self._lock:
            if content not in self._sha:
                digest = hashlib.sha256()
                with content.open("rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                self._sha[content] = digest.hexdigest()
            return self._sha[content]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def end_headers(self) -> None:
                # One request per connection: once closed, the hub is unreachable for
                # good, with no kept-alive connection still answering.
                self.send_header("Connection", "close")
                self.close_connection = True
                super().end_headers()

            def _serve(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    return self._info("/".join(parts[2:4]))
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._file("/".join(parts[:2]), "/".join(parts[4:]), body)
                self._error(404, "EntryNotFound")

            def _info(self, repo: str) -> None:
                files = hub.repos.get(repo)
                if files is None:
                    return self._error(404, "RepoNotFound")
                # The fields the real Hub always sends (older huggingface_hub needs them).
                info = {"_id": "0" * 24, "id": repo, "modelId": repo, "sha": COMMIT,
                        "private": False, "gated": False, "disabled": False, "downloads": 0,
                        "likes": 0, "tags": ["gguf"], "library_name": "gguf",
                        "createdAt": "2025-01-01T00:00:00.000Z",
                        "lastModified": "2025-01-01T00:00:00.000Z",
                        "siblings": [{"rfilename": name} for name in files]}
                data = json.dumps(info).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _file(self, repo: str, name: str, body: bool) -> None:
                files = hub.repos.get(repo)
                if files is None:
                    return self._error(404, "RepoNotFound")
                content = files.get(name)
                if content is None:
                    return self._error(404, "EntryNotFound")
                size = len(content) if isinstance(content, bytes) else content.stat().st_size
                start = 0
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes=") and ranged.endswith("-"):
                    start = int(ranged[6:-1])
                self.send_response(206 if start else 200)
                etag = hub._etag(content)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()
                if not body:
                    return
                if isinstance(content, bytes):
                    self.wfile.write(content[start:])
                    return
                with content.open("rb") as f:
                    f.seek(start)
                    while block := f.read(1 << 20):
                        self.wfile.write(block)

            def _error(self, status: int, code: str) -> None:
                data = json.dumps({"error": code}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        return Handler
