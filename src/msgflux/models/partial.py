"""Partial structured answers: what a streaming JSON or typed-XML answer says so far.

A reader is fed the answer's text chunk by chunk; :meth:`feed` says whether a value
was completed, and :meth:`snapshot` gives the answer as far as it is complete:

- **JSON** (:class:`PartialJSON`): a field appears once its value is complete (a
  string when its closing quote came, a number when the character after it did, an
  object or list as soon as one of its members is complete); containers still open
  are closed, nothing incomplete is guessed. An incremental scanner keeps the
  position of the last complete value and the brackets open there, so a snapshot is
  one msgspec decode of that prefix.
- **typed XML** (:class:`PartialXML`): a field appears once its top-level element
  is closed; the prefix up to there is decoded by the parser.

Incomplete is not invalid: snapshots are not validated (required fields may be
missing); the stream's final value is, as for any structured answer.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from msgflux.dotdict import to_dotdict
from msgflux.exceptions import MsgfluxError
from msgflux.models.schema import restore

__all__ = ["PartialJSON", "PartialXML"]

_decode = msgspec.json.decode
_STRING_STOP = re.compile(r'["\\]')
_SCALAR_END = frozenset(',]}: \t\r\n')
_CLOSE = {"{": "}", "[": "]"}


class PartialJSON:
    """Reads one JSON value as it streams (text before it, such as a code fence, is
    skipped; text after it is ignored)."""

    __slots__ = ("_buf", "_closers", "_expect_key", "_in_string", "_key", "_lowered", "_mark",
                 "_pos", "_scalar", "_snapped", "_stack", "done")

    def __init__(self, lowered: Any = None) -> None:
        self._lowered = lowered  # the schema's LoweredSchema, to restore snapshots
        self._buf = ""
        self._pos = 0
        self._stack: list[str] = []  # open containers, "{" or "["
        self._expect_key: list[bool] = []  # per open container: is a key due (objects)?
        self._in_string = False
        self._key = False  # the open string is an object key
        self._scalar = False  # inside a number or a literal
        self._mark = 0  # end of the last complete value
        self._closers = ""  # what closes the containers open at _mark
        self._snapped = 0  # _mark of the last snapshot
        self.done = False

    def feed(self, text: str) -> bool:
        """Read ``text``; True when a value was completed since the last snapshot."""
        if self.done:
            return False
        self._buf += text
        buf = self._buf
        i, n = self._pos, len(buf)
        stack = self._stack
        while i < n:
            if self._in_string:
                m = _STRING_STOP.search(buf, i)
                if m is None:
                    i = n
                    break
                j = m.start()
                if buf[j] == "\\":
                    if j + 1 >= n:
                        i = j  # the escaped character has not come yet
                        break
                    i = j + 2
                    continue
                self._in_string = False
                i = j + 1
                if not self._key:
                    self._complete(i)
                continue
            c = buf[i]
            if not stack:  # before the value: prose, a fence; only an object or list opens it
                if c == "{" or c == "[":
                    stack.append(c)
                    self._expect_key.append(c == "{")
                i += 1
                continue
            if self._scalar:
                if c not in _SCALAR_END:
                    i += 1
                    continue
                self._scalar = False
                self._complete(i)
            if c == '"':
                self._in_string = True
                self._key = bool(stack) and stack[-1] == "{" and self._expect_key[-1]
            elif c == "{" or c == "[":
                stack.append(c)
                self._expect_key.append(c == "{")
            elif c == "}" or c == "]":
                stack.pop()
                self._expect_key.pop()
                self._complete(i + 1)
            elif c == ":":
                if self._expect_key:
                    self._expect_key[-1] = False
            elif c == ",":
                if stack and stack[-1] == "{":
                    self._expect_key[-1] = True
            elif c not in " \t\r\n":
                self._scalar = True
            i += 1
            if self.done:
                break
        self._pos = i
        return self._mark > self._snapped

    def _complete(self, end: int) -> None:
        """A value ends at ``end``: remember the prefix and what closes it."""
        self._mark = end
        self._closers = "".join(_CLOSE[c] for c in reversed(self._stack))
        if not self._stack:
            self.done = True

    def snapshot(self) -> Any:
        """The answer as far as it is complete (``None`` before any value is)."""
        self._snapped = self._mark
        if not self._mark:
            return None
        text = self._buf[:self._mark]
        start = min((k for k in (text.find("{"), text.find("[")) if k >= 0), default=0)
        try:
            value = _decode(text[start:] + self._closers)
        except msgspec.DecodeError:
            return None
        if self._lowered is not None:
            value = restore(value, self._lowered)
        return to_dotdict(value)


_TAG = re.compile(r"<(/?)([A-Za-z_][\w.\-]*)[^<>]*?(/?)>|<!\[CDATA\[|<!--|<\?")
_SKIP = {"<![CDATA[": "]]>", "<!--": "-->", "<?": "?>"}


class PartialXML:
    """Reads a typed-XML answer as it streams, one closed top-level element at a time."""

    __slots__ = ("_buf", "_depth", "_mark", "_parser", "_pos", "_snapped", "_unwrap")

    def __init__(self, parser: Any, unwrap: bool = False) -> None:
        self._parser = parser
        self._unwrap = unwrap  # the schema's root is wrapped as <value>
        self._buf = ""
        self._pos = 0
        self._depth = 0
        self._mark = 0
        self._snapped = 0

    def feed(self, text: str) -> bool:
        self._buf += text
        buf = self._buf
        while True:
            m = _TAG.search(buf, self._pos)
            if m is None:
                # Keep an unfinished tag for the next chunk.
                last = buf.rfind("<", self._pos)
                if last >= 0 and ">" not in buf[last:]:
                    self._pos = last
                break
            token = m.group(0)
            closer = _SKIP.get(token)
            if closer is not None:
                end = buf.find(closer, m.end())
                if end < 0:
                    self._pos = m.start()
                    break
                self._pos = end + len(closer)
                continue
            self._pos = m.end()
            if m.group(1):
                self._depth -= 1
                if self._depth <= 0:
                    self._depth = 0
                    self._mark = m.end()
            elif m.group(3):
                if self._depth == 0:
                    self._mark = m.end()
            else:
                self._depth += 1
        return self._mark > self._snapped

    def snapshot(self) -> Any:
        self._snapped = self._mark
        if not self._mark:
            return None
        try:
            value = self._parser.decode(self._buf[:self._mark])
        except MsgfluxError:
            return None
        if self._unwrap and isinstance(value, dict) and set(value) == {"value"}:
            return to_dotdict(value["value"])
        return value
