"""``typed_xml``: answers as XML elements whose ``dtype`` attribute gives the value's type.

What a model writes (following :attr:`TypedXMLParser.template`)::

    <name>science fair</name>
    <date>Friday</date>
    <participants dtype="list">
      <item>Alice</item>
      <item>Bob</item>
    </participants>

and what :meth:`TypedXMLParser.decode` returns:
``{'name': 'science fair', 'date': 'Friday', 'participants': ['Alice', 'Bob']}``.

Format
    Each top-level element is a key. ``dtype`` is ``str`` (the default), ``int``,
    ``float``, ``bool`` (``true``/``false``), ``none``, ``list`` (one ``<item>`` per
    entry) or ``dict`` (one child per key; a key that is not a plain ASCII name is
    written ``<item key="first name">``). Python-style spellings are understood too:
    ``list[int]`` (items default to ``int``), ``dict[str, Any]``, ``int | None``,
    ``Optional[int]``, ``string``, ``integer``, ``number``, ``boolean``, ``array``,
    ``object``, ``null``; an unknown dtype reads as ``str``. An element without
    ``dtype`` that holds only child elements is a list when they are all ``<item>``,
    else a dict. A ``str`` holding markup (``a <b>bold</b> word``) keeps it as text.

Values
    Text is stripped of surrounding whitespace unless the element has
    ``xml:space="preserve"`` (which :meth:`encode` writes when it matters). An empty
    element is ``""`` for ``str``, ``[]``/``{}`` for ``list``/``dict`` and ``None`` for
    ``none`` and the other scalar types. A ``list``/``dict`` written as JSON text
    (``<tags dtype="list">["a", "b"]</tags>``) is accepted. Repeated keys collect into
    a list (``<tag>a</tag><tag>b</tag>`` → ``{'tag': ['a', 'b']}``).

Top level
    Never unwrapped, except for one case: when the whole answer is a single ``root``,
    ``response``, ``output`` or ``xml`` element *without* a ``dtype`` that holds child
    elements, it is taken as a wrapper the model added and its children are returned
    (``decode(text, unwrap=False)`` keeps it). So ``<answer>42</answer>`` is
    ``{'answer': '42'}`` and ``<response><a>1</a></response>`` is ``{'a': '1'}``.

Robustness and safety
    Prose, code fences and ``<?xml?>`` headers around the XML are ignored; ``<`` and
    ``&`` inside values (``if a < b && c:``) are read as text (see ``_lenient_xml``);
    parsing is done by defusedxml with DTDs forbidden, and any DTD or entity
    declaration is refused, so entity-expansion and external-entity attacks fail
    with :class:`~msgflux.exceptions.TypedParserError`. Every decode failure raises
    that error, with the model's text in ``.raw``.

Needs ``defusedxml`` (``pip install "msgflux[xml]"``), imported on the first decode.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from msgflux.dotdict import dotdict, to_dotdict
from msgflux.dsl.typed_parsers._lenient_xml import ILLEGAL_XML_CHARS, DTDFound, repair
from msgflux.dsl.typed_parsers.base import BaseTypedParser
from msgflux.exceptions import InvalidParameterError, MissingDependencyError, TypedParserError

__all__ = ["TEMPLATE", "TypedXMLParser"]

TEMPLATE = """\
{% if instructions %}{{ instructions | trim }}

{% endif %}Write your answer only as typed XML: no text before or after it, no code fences.

Rules:
- One element per field, named after the field, all at the top level (no wrapping root element).
- The dtype attribute gives the value's type: str (the default, may be left out), int, float, \
bool, none, list or dict.
- bool values are true or false. A missing value is an empty element with dtype="none".
- A list holds one <item> element per entry; each item may have its own dtype.
- A dict holds one child element per key, each with its own dtype.
- Write text as it is; put code or text full of < and & inside <![CDATA[ ... ]]>.

Example:
<title>Quarterly review</title>
<attendees dtype="int">12</attendees>
<budget dtype="float">1250.5</budget>
<approved dtype="bool">true</approved>
<topics dtype="list">
  <item>revenue</item>
  <item>hiring</item>
</topics>
<venue dtype="dict">
  <city>Lisbon</city>
  <room dtype="int">4</room>
</venue>
<notes dtype="none"/>
"""

_ROOT = "typed-xml-root"
_WRAPPERS = frozenset({"root", "response", "output", "xml"})
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_TAG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_KINDS = {
    "str": "str", "string": "str", "text": "str",
    "int": "int", "integer": "int",
    "float": "float", "number": "float", "double": "float", "decimal": "float",
    "bool": "bool", "boolean": "bool",
    "none": "none", "null": "none", "nonetype": "none",
    "list": "list", "array": "list", "tuple": "list", "sequence": "list",
    "dict": "dict", "object": "dict", "mapping": "dict",
}  # fmt: skip


class _Type(msgspec.Struct, frozen=True):
    kind: str  # one of _KINDS' values
    item: _Type | None = None  # the items' default type, for list[...]
    nullable: bool = False


_STR = _Type("str")


@functools.lru_cache(maxsize=256)
def _parse_dtype(dtype: str) -> _Type:
    spec = dtype.strip().lower().replace(" ", "")
    if spec.startswith("optional[") and spec.endswith("]"):
        spec = f"{spec[9:-1]}|none"
    parts = [p for p in spec.split("|") if p]
    if len(parts) > 1 and any(_KINDS.get(p) == "none" for p in parts):
        rest = [p for p in parts if _KINDS.get(p) != "none"]
        inner = _parse_dtype("|".join(rest)) if rest else _Type("none")
        return _Type(inner.kind, inner.item, True)
    base, _, args = spec.partition("[")
    kind = _KINDS.get(base, "str")
    if kind == "list" and args.endswith("]") and "," not in args:
        return _Type("list", _parse_dtype(args[:-1]))
    return _Type(kind)


class TypedXMLParser(BaseTypedParser):
    """Typed XML: template for the system prompt, ``decode`` and ``encode``. See the module."""

    typed_parser_type: ClassVar[str] = "typed_xml"
    template: ClassVar[str] = TEMPLATE

    @classmethod
    def decode(cls, text: str, *, unwrap: bool = True) -> dotdict:
        """The answer as a ``dotdict``; :class:`TypedParserError` (``.raw``: the text) if not."""
        if not isinstance(text, str):
            raise TypedParserError(
                f"typed_xml decodes text, not {type(text).__name__}", raw=repr(text)
            )
        root = _parse(text)
        if len(root) == 0:
            raise TypedParserError(
                "no XML element found in the model's answer; expected elements like "
                '<name>…</name> or <items dtype="list">…</items>',
                raw=text,
            )
        try:
            if unwrap and len(root) == 1:
                only = root[0]
                if only.tag in _WRAPPERS and _dtype_attr(only) is None and _holds_elements(only):
                    root = only
            return to_dotdict(_dict(root))
        except (ValueError, OverflowError, msgspec.DecodeError) as exc:
            raise TypedParserError(f"typed_xml: {exc}", raw=text) from exc
        except RecursionError:
            raise TypedParserError("typed_xml: the answer is nested too deeply", raw=text) from None

    @classmethod
    def encode(cls, obj: Any) -> str:
        """Typed XML for a mapping (or a Struct/dataclass with fields), one element per key.

        Values may be str, int, float, bool, None, lists/tuples and mappings, nested;
        other types go through :func:`msgspec.to_builtins` first. Raises
        :class:`~msgflux.exceptions.InvalidParameterError` for a non-mapping or for text
        with characters XML 1.0 cannot carry (NUL and most other control characters).
        ``decode(encode(obj)) == obj`` for such values, except for an empty mapping:
        it encodes to ``""``, and :meth:`decode` refuses an answer without elements.
        """
        data = obj if isinstance(obj, Mapping) else msgspec.to_builtins(obj)
        if not isinstance(data, Mapping):
            raise InvalidParameterError(
                f"typed_xml encodes a mapping of field names to values, not {type(obj).__name__}"
            )
        lines: list[str] = []
        for key, value in data.items():
            _encode(lines, str(key), value, "", as_item=False)
        return "\n".join(lines)


# ---------------------------------------------------------------- decoding


def _parse(text: str) -> Any:
    try:
        from defusedxml import DefusedXmlException
        from defusedxml.ElementTree import ParseError, fromstring
    except ImportError as exc:
        raise MissingDependencyError(
            'typed_xml needs the defusedxml package: pip install "msgflux[xml]"'
        ) from exc
    try:
        body = repair(text)
    except DTDFound as exc:
        raise TypedParserError(
            f"the answer declares a DTD ({exc}); typed_xml refuses DTDs and entity declarations",
            raw=text,
        ) from None
    try:
        return fromstring(f"<{_ROOT}>{body}</{_ROOT}>", forbid_dtd=True)
    except (ParseError, DefusedXmlException) as exc:
        raise TypedParserError(f"the answer is not readable as typed XML: {exc}", raw=text) from exc


def _dtype_attr(element: Any) -> str | None:
    dtype = element.get("dtype")
    return element.get("type") if dtype is None else dtype


def _holds_elements(element: Any) -> bool:
    """True when ``element`` has children and no text of its own besides whitespace."""
    if len(element) == 0 or (element.text and element.text.strip()):
        return False
    return not any(child.tail and child.tail.strip() for child in element)


def _value(element: Any, default: _Type) -> Any:
    dtype = _dtype_attr(element)
    kind = _parse_dtype(dtype) if dtype is not None else default
    if dtype is None and kind.kind == "str" and _holds_elements(element):
        all_items = all(child.tag == "item" for child in element)
        kind = _Type("list") if all_items else _Type("dict")
    if kind.kind == "list":
        return _list(element, kind.item or _STR)
    if kind.kind == "dict":
        return _dict(element)
    if kind.kind == "none":
        return None
    text = _text(element)
    if kind.kind == "str":
        return text if text or not kind.nullable else None
    if not text:
        return None
    try:
        return _scalar(kind.kind, text)
    except (ValueError, OverflowError):
        raise ValueError(f"<{element.tag}> should be {kind.kind}, got {text[:80]!r}") from None


def _scalar(kind: str, text: str) -> int | float | bool:
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            number = float(text)  # "3.0" and "1e3" are ints written as floats
            if not number.is_integer():
                raise
            return int(number)
    if kind == "float":
        return float(text)
    lowered = text.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise ValueError(text)


def _text(element: Any) -> str:
    """The element's text, markup of child elements included; stripped unless preserved."""
    text = element.text or ""
    if len(element):
        from xml.etree.ElementTree import tostring  # stdlib serialiser; parsing stays defused

        text += "".join(tostring(child, encoding="unicode") for child in element)
    return text if element.get(_XML_SPACE) == "preserve" else text.strip()


def _list(element: Any, item: _Type) -> list[Any]:
    if len(element):
        return [_value(child, item) for child in element]
    return _json_or_empty(element, list)


def _dict(element: Any) -> dict[str, Any]:
    if not len(element):
        return _json_or_empty(element, dict)
    result: dict[str, Any] = {}
    repeated: set[str] = set()
    for child in element:
        key = child.get("key")
        key = child.tag if key is None else key
        value = _value(child, _STR)
        if key not in result:
            result[key] = value
        elif key in repeated:
            result[key].append(value)
        else:
            result[key] = [result[key], value]
            repeated.add(key)
    return result


def _json_or_empty(element: Any, kind: type) -> Any:
    text = (element.text or "").strip()
    if not text:
        return kind()
    value = msgspec.json.decode(text)
    if not isinstance(value, kind):
        raise ValueError(f"<{element.tag}> should hold a {kind.__name__}, got {text[:80]!r}")
    return value


# ---------------------------------------------------------------- encoding


def _escape(text: str) -> str:
    if ILLEGAL_XML_CHARS.search(text):
        raise InvalidParameterError(
            f"{text[:40]!r}… contains a character XML 1.0 cannot represent "
            "(a control character or a lone surrogate)"
        )
    # & < > always, and \r as a reference: a literal one would be read back as \n.
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _open(key: str, as_item: bool) -> tuple[str, str]:
    """(tag, attributes) for a value stored under ``key``."""
    if as_item:
        return "item", ""
    if _TAG_KEY.fullmatch(key) and not key.lower().startswith("xml"):
        return key, ""
    attr = _escape(key).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return "item", f' key="{attr}"'


def _encode(lines: list[str], key: str, value: Any, indent: str, *, as_item: bool) -> None:
    tag, attrs = _open(key, as_item)
    if value is None:
        lines.append(f'{indent}<{tag}{attrs} dtype="none"/>')
    elif isinstance(value, bool):
        lines.append(f'{indent}<{tag}{attrs} dtype="bool">{"true" if value else "false"}</{tag}>')
    elif isinstance(value, int):
        lines.append(f'{indent}<{tag}{attrs} dtype="int">{value}</{tag}>')
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value)
        lines.append(f'{indent}<{tag}{attrs} dtype="float">{text}</{tag}>')
    elif isinstance(value, str):
        if value != value.strip():
            attrs += ' xml:space="preserve"'
        lines.append(f"{indent}<{tag}{attrs}>{_escape(value)}</{tag}>")
    elif isinstance(value, (list, tuple, Mapping)):
        dtype = "dict" if isinstance(value, Mapping) else "list"
        if not value:
            lines.append(f'{indent}<{tag}{attrs} dtype="{dtype}"/>')
            return
        lines.append(f'{indent}<{tag}{attrs} dtype="{dtype}">')
        inner = indent + "  "
        if isinstance(value, Mapping):
            for child_key, child in value.items():
                _encode(lines, str(child_key), child, inner, as_item=False)
        else:
            for child in value:
                _encode(lines, "item", child, inner, as_item=True)
        lines.append(f"{indent}</{tag}>")
    else:
        _encode(lines, key, msgspec.to_builtins(value), indent, as_item=as_item)
