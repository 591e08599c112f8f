"""Media references as the native dialects need them: data URLs split, media types named.

OpenAI-shaped input carries images and files as URLs (``https://…`` or
``data:<type>;base64,<data>``); Anthropic and Gemini want the media type and
the base64 payload apart, and a media type even for a plain URL. Pure string
work: the stdlib ``mimetypes`` module is not used because it reads the
system's type files on first use, and a dialect does no I/O.

A YouTube link names no file, yet it is a video: Gemini takes public YouTube
URLs as ``fileData`` (Gemini API docs, "Video understanding", "YouTube URLs";
Google's own Vertex sample ``textgen_with_youtube_video.py`` sends them with
``video/mp4``), so such links are ``video/mp4``.
"""

from __future__ import annotations

__all__ = ["audio_media_type", "guess_media_type", "is_http_url", "is_youtube_url",
           "split_data_url"]

# Extensions a chat request plausibly points at; anything else gets the caller's default.
# Video and audio spellings follow the types the Gemini API lists as supported.
_BY_EXTENSION = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "html": "text/html",
    "htm": "text/html",
    "css": "text/css",
    "js": "text/javascript",
    "py": "text/x-python",
    "rtf": "text/rtf",
    "json": "application/json",
    "xml": "application/xml",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "aiff": "audio/aiff",
    "aif": "audio/aiff",
    "m4a": "audio/mp4",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mpeg": "video/mpeg",
    "mpg": "video/mpg",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "avi": "video/avi",
    "flv": "video/x-flv",
    "wmv": "video/wmv",
    "3gp": "video/3gpp",
}

_YOUTUBE = ("youtube.com", "youtu.be", "youtube-nocookie.com")

_AUDIO = {"mp3": "audio/mpeg", "m4a": "audio/mp4", "pcm16": "audio/pcm", "pcm": "audio/pcm"}


def is_http_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


def split_data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 payload)`` of a base64 ``data:`` URL, else ``None``."""
    if not url.startswith("data:"):
        return None
    head, sep, payload = url.partition(",")
    if not sep:
        return None
    params = head[5:].split(";")
    if "base64" not in params[1:]:
        return None  # percent-encoded data URLs carry no base64 payload to forward
    return (params[0] or "application/octet-stream", payload)


def guess_media_type(name: str | None, default: str) -> str:
    """The media type a URL (YouTube, or its extension) or file name implies, else ``default``."""
    if not name:
        return default
    if is_youtube_url(name):
        return "video/mp4"
    path = name.split("?", 1)[0].split("#", 1)[0]
    dot = path.rfind(".")
    if dot < 0 or "/" in path[dot:]:
        return default
    return _BY_EXTENSION.get(path[dot + 1:].lower(), default)


def is_youtube_url(url: str) -> bool:
    """``https://www.youtube.com/watch?v=…``, ``https://youtu.be/…``, shorts, live…"""
    if not is_http_url(url):
        return False
    host = url.split("://", 1)[1]
    for sep in "/?#":
        host = host.split(sep, 1)[0]
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return any(host == d or host.endswith("." + d) for d in _YOUTUBE)


def audio_media_type(fmt: str) -> str:
    """``wav`` → ``audio/wav``, ``mp3`` → ``audio/mpeg`` (OpenAI's ``input_audio.format``)."""
    fmt = fmt.lower()
    return _AUDIO.get(fmt) or (fmt if "/" in fmt else f"audio/{fmt}")
