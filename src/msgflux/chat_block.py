"""``ChatBlock``: builders of chat messages and content parts.

Every builder returns a plain dict in OpenAI message / content-part shape, so
the result can be printed, stored as JSON, or sent to any provider (dialects
translate it). ``ChatBlock("user", "hi")`` is ``ChatBlock.user("hi")``.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path
from typing import Any

import msgspec

from msgflux.exceptions import MessageFormatError

__all__ = ["ChatBlock"]

_encode = msgspec.json.Encoder().encode


def _read_b64(path: Path) -> str:
    try:
        return base64.b64encode(path.read_bytes()).decode()
    except OSError as e:
        raise MessageFormatError(f"Cannot read {str(path)!r}: {e.strerror}") from None


_REMOTE = ("http://", "https://", "gs://", "s3://")


def _local_path(value: str) -> Path | None:
    """A local file path, or None for URLs and data URLs."""
    if value.startswith((*_REMOTE, "data:")):
        return None
    path = Path(os.path.expanduser(value))
    if path.is_file():
        return path
    if value.startswith(("/", "./", "../", "~")) or os.sep in value:
        raise MessageFormatError(f"No such file: {value!r} (give a URL, a data URL or a path)")
    return None


def _media_type(path: Path, fallback: str) -> str:
    return mimetypes.guess_type(path.name)[0] or fallback


def _text_content(content: Any) -> str:
    if isinstance(content, str):
        return content
    try:
        return _encode(content).decode()
    except (TypeError, ValueError, OverflowError) as e:  # not JSON-serialisable
        raise MessageFormatError(
            f"content must be a str or JSON-serialisable, got {type(content).__name__} ({e})"
        ) from None


class _ChatBlockMeta(type):
    def __call__(cls, role: str, content: Any = None, media: Any = None) -> dict[str, Any]:
        builders = {"user": cls.user, "assistant": cls.assistant, "assist": cls.assistant,
                    "system": cls.system}
        builder = builders.get(str(role).lower())
        if builder is None:
            raise MessageFormatError(
                f"ChatBlock role must be 'user', 'assistant' or 'system', got {role!r}; "
                "use ChatBlock.tool(tool_call_id, content) for tool results"
            )
        if media is not None:
            if builder is not cls.user:
                raise MessageFormatError("media= is only accepted for user messages")
            return cls.user(content, media=media)
        return builder(content)


class ChatBlock(metaclass=_ChatBlockMeta):
    """Message and content-part builders (all static)."""

    # -------------------------------------------------------------- messages

    @staticmethod
    def user(content: Any, media: dict[str, Any] | list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
        """A user message; ``media`` (one part or a list) follows the text."""
        if media is None:
            return {"role": "user", "content": _text_content(content)}
        if not isinstance(media, (dict, list, tuple)):
            raise MessageFormatError(
                "media must be a content part or a list of them, such as ChatBlock.image(url)"
            )
        parts = [media] if isinstance(media, dict) else list(media)
        for part in parts:
            if not isinstance(part, dict) or "type" not in part:
                raise MessageFormatError(
                    "media must be content parts such as ChatBlock.image(url)"
                )
        if content:
            parts.insert(0, {"type": "text", "text": _text_content(content)})
        return {"role": "user", "content": parts}

    @staticmethod
    def assistant(content: Any) -> dict[str, Any]:
        """An assistant message (non-str content is JSON-encoded)."""
        return {"role": "assistant", "content": _text_content(content)}

    assist = assistant

    @staticmethod
    def system(content: str) -> dict[str, Any]:
        return {"role": "system", "content": _text_content(content)}

    @staticmethod
    def tool(tool_call_id: str, content: Any) -> dict[str, Any]:
        """The result of tool call ``tool_call_id`` (non-str content is JSON-encoded)."""
        return {"role": "tool", "tool_call_id": tool_call_id, "content": _text_content(content)}

    @staticmethod
    def tool_call(tool_id: str, name: str, arguments: Any) -> dict[str, Any]:
        """One tool call, as found in an assistant message's ``tool_calls``."""
        return {"id": tool_id, "type": "function",
                "function": {"name": name, "arguments": _text_content(arguments)}}

    @staticmethod
    def assist_tool_calls(tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
        """An assistant message that made ``tool_calls``."""
        if not isinstance(tool_calls, (list, tuple)):
            raise MessageFormatError("tool_calls must be a list of ChatBlock.tool_call(...) dicts")
        return {"role": "assistant", "content": None, "tool_calls": list(tool_calls)}

    # -------------------------------------------------------------- content parts

    @staticmethod
    def text(text: str) -> dict[str, Any]:
        return {"type": "text", "text": text}

    @staticmethod
    def image(url: str | list[str], detail: str | None = None, **extra: Any
              ) -> dict[str, Any] | list[dict[str, Any]]:
        """An image part from a URL, a data URL or a local file (read and base64-encoded)."""
        if isinstance(url, list):
            return [ChatBlock.image(u, detail, **extra) for u in url]  # type: ignore[misc]
        if not isinstance(url, str):
            raise MessageFormatError(f"image wants a URL or a path, got {type(url).__name__}")
        path = _local_path(url)
        if path is not None:
            url = f"data:{_media_type(path, 'image/png')};base64,{_read_b64(path)}"
        image: dict[str, Any] = {"url": url, **extra}
        if detail is not None:
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}

    @staticmethod
    def audio(data: str, format: str | None = None) -> dict[str, Any]:
        """An audio part from base64 ``data`` (give ``format``) or a local file."""
        path = _local_path(data)
        if path is not None:
            format = format or path.suffix.lstrip(".").lower() or "wav"
            data = _read_b64(path)
        if not format:
            raise MessageFormatError("audio needs format= ('wav', 'mp3', ...) for base64 data")
        return {"type": "input_audio", "input_audio": {"data": data, "format": format}}

    @staticmethod
    def file(filename: str, file_data: str | None = None, media_type: str | None = None
             ) -> dict[str, Any]:
        """A file part: a local file, a URL, or ``filename`` with base64/data-URL ``file_data``.

        ``media_type`` (``"video/mp4"``, ``"application/pdf"``…) says what the file
        is when its name does not (a link without an extension, an unknown suffix).
        """
        file: dict[str, Any]
        if file_data is None and filename.startswith(_REMOTE):
            file = {"url": filename}
        elif file_data is None:
            path = _local_path(filename)
            if path is None:
                raise MessageFormatError(f"No such file: {filename!r}; pass file_data= too")
            media = media_type or _media_type(path, "application/octet-stream")
            file = {"filename": path.name,
                    "file_data": f"data:{media};base64,{_read_b64(path)}"}
        else:
            if not file_data.startswith("data:"):
                media = (media_type or mimetypes.guess_type(filename)[0]
                         or "application/octet-stream")
                file_data = f"data:{media};base64,{file_data}"
            file = {"filename": filename, "file_data": file_data}
        if media_type is not None:
            file["media_type"] = media_type
        return {"type": "file", "file": file}
