"""Turn XML as models write it into well-formed XML, before a real (safe) parser sees it.

Models put prose and code fences around their XML, write ``if a < b && c:`` inside
values without escaping, open a tag in a sentence and never close it, or start with an
``<?xml ...?>`` header. :func:`repair` keeps every tag that is part of a balanced
element (or self-closing) and turns everything else into escaped text:

- a start tag counts only if a matching end tag follows (innermost first), so the
  ``<String>`` in ``List<String>`` or a tag cut off by truncation becomes text;
- ``&`` that does not start one of XML's five entities or a legal character reference
  becomes ``&amp;`` (so ``&nbsp;`` stays literal and no entity is ever expanded);
- attributes are re-quoted and re-escaped, duplicates and namespaced ones dropped;
- comments and processing instructions (including the ``<?xml?>`` header) are dropped,
  CDATA sections kept; characters XML 1.0 cannot carry become U+FFFD.

DTD declarations (``<!DOCTYPE``, ``<!ENTITY``...) outside CDATA are refused with
:class:`DTDFound`: a model answer has no use for them and they are the vehicle of entity
attacks. The repaired text still goes through defusedxml, which refuses DTDs as well.
"""

from __future__ import annotations

import re

__all__ = ["DTDFound", "ILLEGAL_XML_CHARS", "escape_text", "is_legal_char", "repair"]

# Characters XML 1.0 forbids, even as character references.
ILLEGAL_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_NAME = r"[^\W\d][\w.\-]*"  # no ':' - namespace prefixes would need declarations
_ATTR_VALUE = r"""(?:"[^"]*"|'[^']*'|[^\s"'=<>`/]+)"""
_ATTR = rf"[^\W\d][\w.:\-]*\s*=\s*{_ATTR_VALUE}"
_TOKEN = re.compile(
    rf"""
    (?P<comment><!--.*?-->)
    |(?P<cdata><!\[CDATA\[.*?\]\]>)
    |(?P<pi><\?.*?\?>)
    |(?P<dtd><!(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)\b)
    |</(?P<end>{_NAME})\s*>
    |<(?P<start>{_NAME})(?P<attrs>(?:\s+{_ATTR})*)\s*(?P<empty>/?)>
    """,
    re.DOTALL | re.VERBOSE | re.IGNORECASE,
)
_ATTR_PARTS = re.compile(rf"([^\W\d][\w.:\-]*)\s*=\s*({_ATTR_VALUE})")
_AMPERSAND = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#(\d{1,7})|#x([0-9a-fA-F]{1,6}))?;?")


class DTDFound(ValueError):  # noqa: N818 - internal signal, turned into TypedParserError
    """The text declares a DTD or entities."""


def is_legal_char(code_point: int) -> bool:
    return (
        code_point in (0x9, 0xA, 0xD)
        or 0x20 <= code_point <= 0xD7FF
        or 0xE000 <= code_point <= 0xFFFD
        or 0x10000 <= code_point <= 0x10FFFF
    )


def _ampersand(match: re.Match[str]) -> str:
    whole = match.group(0)
    if whole.endswith(";"):
        if match.group(1):
            return whole
        number = match.group(2) or match.group(3)
        if number is not None and is_legal_char(int(number, 10 if match.group(2) else 16)):
            return whole
    return "&amp;" + whole[1:]


def escape_text(text: str) -> str:
    """Escape text for element content, keeping valid entity and character references."""
    return _AMPERSAND.sub(_ampersand, text).replace("<", "&lt;").replace(">", "&gt;")


def _attributes(source: str) -> str:
    out = []
    seen = set()
    for name, raw in _ATTR_PARTS.findall(source):
        if name in seen or (":" in name and name != "xml:space"):
            continue
        seen.add(name)
        value = raw[1:-1] if raw[:1] in "\"'" else raw
        out.append(f' {name}="{escape_text(value).replace(chr(34), "&quot;")}"')
    return "".join(out)


def repair(text: str) -> str:
    """Well-formed XML content (no root element) for the balanced elements in ``text``."""
    text = ILLEGAL_XML_CHARS.sub("\ufffd", text)
    tokens = list(_TOKEN.finditer(text))
    # Decide which start/end tags are real: match ends to the innermost open start.
    # Starts skipped over by a match are dropped from the stack, and ends whose name is
    # not open are skipped without a scan, so this stays linear on hostile input.
    real: set[int] = set()
    open_starts: list[int] = []
    open_names: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.group("dtd"):
            raise DTDFound(token.group("dtd"))
        name = token.group("start")
        if name:
            if token.group("empty"):
                real.add(i)
            else:
                open_starts.append(i)
                open_names[name] = open_names.get(name, 0) + 1
            continue
        name = token.group("end")
        if not name or not open_names.get(name):
            continue
        depth = len(open_starts) - 1
        while tokens[open_starts[depth]].group("start") != name:
            depth -= 1
        real.add(open_starts[depth])
        real.add(i)
        for dropped in open_starts[depth:]:  # the match and the starts left open inside it
            open_names[tokens[dropped].group("start")] -= 1
        del open_starts[depth:]

    out = []
    position = 0
    for i, token in enumerate(tokens):
        out.append(escape_text(text[position : token.start()]))
        position = token.end()
        if token.group("cdata"):
            out.append(token.group(0))
        elif i in real:
            if token.group("end"):
                out.append(f"</{token.group('end')}>")
            else:
                close = "/>" if token.group("empty") else ">"
                out.append(f"<{token.group('start')}{_attributes(token.group('attrs'))}{close}")
        elif not (token.group("comment") or token.group("pi")):
            out.append(escape_text(token.group(0)))
    out.append(escape_text(text[position:]))
    return "".join(out)
