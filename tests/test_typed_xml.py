"""typed_xml: the guide's template and decode, formats, robustness, attacks, round trips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import msgflux as mf
from msgflux.dotdict import dotdict
from msgflux.dsl.typed_parsers import (
    BaseTypedParser,
    TypedParser,
    get_typed_parser,
    register_typed_parser,
    typed_parser_registry,
)
from msgflux.dsl.typed_parsers import typed_xml as typed_xml_module
from msgflux.exceptions import (
    InvalidParameterError,
    MissingDependencyError,
    TypedParserError,
    TypedParserNotFoundError,
)

GUIDE_ANSWER = Path(__file__).parent / "data" / "typed_xml_guide_answer.xml"
GUIDE_RESULT = {"name": "science fair", "date": "Friday", "participants": ["Alice", "Bob"]}

XML = typed_parser_registry["typed_xml"]
decode = XML.decode
encode = XML.encode


# ---------------------------------------------------------------- the guide, as written


def test_guide_template_renders_a_system_prompt() -> None:
    from jinja2 import Template

    # Get typed XML parser
    typed_xml = mf.dsl.typed_parsers.typed_parser_registry["typed_xml"]

    # Define instructions
    instructions = """Extract the event information:
name: str
date: str
participants: list[str]
"""

    # Create system prompt
    template = Template(typed_xml.template)
    system_prompt = template.render({"instructions": instructions}).strip()

    assert system_prompt.startswith("Extract the event information:\nname: str")
    assert "participants: list[str]\n\nWrite your answer only as typed XML" in system_prompt
    for needed in ("dtype", "<item>", 'dtype="list"', 'dtype="none"/>', "true or false"):
        assert needed in system_prompt
    assert "{{" not in system_prompt and "{%" not in system_prompt
    # the template's own example decodes with the parser it describes
    example = system_prompt.split("Example:\n", 1)[1]
    assert typed_xml.decode(example) == {
        "title": "Quarterly review",
        "attendees": 12,
        "budget": 1250.5,
        "approved": True,
        "topics": ["revenue", "hiring"],
        "venue": {"city": "Lisbon", "room": 4},
        "notes": None,
    }


def test_template_without_instructions() -> None:
    from jinja2 import Template

    prompt = Template(XML.template).render({}).strip()
    assert prompt.startswith("Write your answer only as typed XML")


def test_guide_decode_side() -> None:
    """What ``model(..., typed_parser="typed_xml").consume()`` returns for the guide."""
    result = decode(GUIDE_ANSWER.read_text())
    assert result == GUIDE_RESULT
    assert isinstance(result, dotdict)
    assert result.participants == ["Alice", "Bob"]


@pytest.mark.parametrize(
    "answer",
    [
        "Here is the event:\n\n{xml}\n\nLet me know if you need more.",
        "```xml\n{xml}\n```",
        "Sure!\n```\n{xml}\n```\nDone.",
        '<?xml version="1.0" encoding="UTF-8"?>\n{xml}',
        "<response>\n{xml}\n</response>",
        "<root>{xml}</root>",
        "{xml}".replace("\n", "\r\n"),
        "<!-- the event -->{xml}",
    ],
)
def test_guide_decode_survives_what_models_add(answer: str) -> None:
    xml = GUIDE_ANSWER.read_text().strip()
    assert decode(answer.replace("{xml}", xml)) == GUIDE_RESULT


def test_variants_models_write_for_the_guide() -> None:
    expected = GUIDE_RESULT
    assert (
        decode(
            '<name>science fair</name><date>Friday</date><participants dtype="list[str]">'
            "<item>Alice</item><item>Bob</item></participants>"
        )
        == expected
    )
    assert (
        decode(
            "<name>science fair</name><date>Friday</date>"
            "<participants><item>Alice</item><item>Bob</item></participants>"
        )
        == expected
    )
    assert (
        decode(
            "<name>science fair</name><date>Friday</date>"
            "<participants>Alice</participants><participants>Bob</participants>"
        )
        == expected
    )
    assert (
        decode(
            '<name>  science fair\n</name>\n<date>Friday</date>\n<participants dtype="list">'
            '["Alice", "Bob"]</participants>'
        )
        == expected
    )
    assert (
        decode(
            "<name>science fair</name><date>Friday</date>"
            "<participants type=list><item>Alice</item><item>Bob</item></participants>"
        )
        == expected
    )


# ---------------------------------------------------------------- types


def test_scalar_types() -> None:
    assert decode(
        '<s>text</s><i dtype="int">-42</i><f dtype="float">2.5</f><e dtype="float">1e-3</e>'
        '<t dtype="bool">True</t><n dtype="bool">false</n><y dtype="boolean">yes</y>'
        '<z dtype="none"/><big dtype="integer">123456789012345678901234567890</big>'
        '<w dtype="int">3.0</w><x dtype="number">7</x><u dtype="date">2026-01-01</u>'
    ) == {
        "s": "text",
        "i": -42,
        "f": 2.5,
        "e": 0.001,
        "t": True,
        "n": False,
        "y": True,
        "z": None,
        "big": 123456789012345678901234567890,
        "w": 3,
        "x": 7.0,
        "u": "2026-01-01",  # an unknown dtype reads as str
    }


def test_empty_elements_and_none() -> None:
    # 0.5.1 decoded empty elements to the string 'None'
    assert decode(
        '<a></a><b/><c dtype="none"/><d dtype="list"/><e dtype="dict"></e>'
        '<f dtype="int"></f><g dtype="str | None"></g><h dtype="Optional[int]"> </h>'
        '<i dtype="null">ignored</i><j dtype="str"></j>'
    ) == {
        "a": "",
        "b": "",
        "c": None,
        "d": [],
        "e": {},
        "f": None,
        "g": None,
        "h": None,
        "i": None,
        "j": "",
    }


def test_nested_values() -> None:
    text = """
    <event dtype="dict">
      <title>Fair</title>
      <slots dtype="list[int]"><item>9</item><item>10</item></slots>
      <people dtype="list">
        <item dtype="dict"><name>Alice</name><age dtype="int">30</age></item>
        <item dtype="dict"><name>Bob</name><age dtype="none"/></item>
      </people>
      <item key="first name">Ann</item>
      <meta dtype="dict">{"k": [1, 2]}</meta>
    </event>
    """
    assert decode(text) == {
        "event": {
            "title": "Fair",
            "slots": [9, 10],
            "people": [{"name": "Alice", "age": 30}, {"name": "Bob", "age": None}],
            "first name": "Ann",
            "meta": {"k": [1, 2]},
        }
    }
    assert decode(text).event.people[0].name == "Alice"


def test_single_top_level_key_is_kept() -> None:
    # 0.5.1 unwrapped a lone dict but not a lone scalar; here neither is unwrapped...
    assert decode("<answer>42</answer>") == {"answer": "42"}
    assert decode('<answer dtype="dict"><a>1</a></answer>') == {"answer": {"a": "1"}}
    assert decode('<items dtype="list"><item>1</item></items>') == {"items": ["1"]}
    # ...except a generic wrapper without dtype, which models add on their own
    assert decode("<response><a>1</a></response>") == {"a": "1"}
    assert decode("<output><a>1</a><b>2</b></output>") == {"a": "1", "b": "2"}
    assert decode("<response><a>1</a></response>", unwrap=False) == {"response": {"a": "1"}}
    assert decode('<root dtype="dict"><a>1</a></root>') == {"root": {"a": "1"}}
    assert decode("<root>text</root>") == {"root": "text"}


# ---------------------------------------------------------------- robustness


def test_code_with_lt_and_amp_inside_values() -> None:
    assert decode("<code>if a < b && c: return a<b</code>") == {"code": "if a < b && c: return a<b"}
    assert decode("<code>List<String> xs = new ArrayList<>();</code>") == {
        "code": "List<String> xs = new ArrayList<>();"
    }
    assert decode("<code><![CDATA[if a < b && c:\n    pass]]></code>") == {
        "code": "if a < b && c:\n    pass"
    }
    assert decode("<q>AT&amp;T &lt;3 &#65;&#x42; &nbsp; &bogus; & done</q>") == {
        "q": "AT&T <3 AB &nbsp; &bogus; & done"
    }
    assert decode("<q>x > y and ]]> here</q>") == {"q": "x > y and ]]> here"}
    assert decode("<html>use <b>bold</b> and <i>it</i>!</html>") == {
        "html": "use <b>bold</b> and <i>it</i>!"
    }


def test_prose_with_stray_tags_and_truncation() -> None:
    assert decode("I will use <name> tags.\n<name>fair</name>") == {"name": "fair"}
    assert decode("<a>1</a><b>unfinished") == {"a": "1"}
    assert decode('<a>1</a><b dtype="list"><item>x</item>') == {"a": "1", "item": "x"}
    assert decode("<a x='1' x='2' ns:y=\"3\" dtype=int>5</a>") == {"a": 5}
    assert decode("<a>\x00bad\x1bchars</a>") == {"a": "\ufffdbad\ufffdchars"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("no xml here", "no XML element"),
        ("", "no XML element"),
        ("<a>unclosed", "no XML element"),
        ('<a dtype="int">twelve</a>', "<a> should be int"),
        ('<a dtype="float">x</a>', "<a> should be float"),
        ('<a dtype="bool">maybe</a>', "<a> should be bool"),
        ('<a dtype="int">1.5</a>', "<a> should be int"),
        ('<a dtype="list">{"not": "a list"}</a>', "should hold a list"),
        ('<a dtype="dict">not json</a>', "typed_xml"),
        ("<a>" * 2000 + "</a>" * 2000, "nested too deeply"),
    ],
)
def test_failures_raise_typed_parser_error_with_raw_text(text: str, words: str) -> None:
    with pytest.raises(TypedParserError) as info:
        decode(text)
    assert words in str(info.value)
    assert info.value.raw == text


def test_non_text_input() -> None:
    with pytest.raises(TypedParserError):
        decode(b"<a>1</a>")  # type: ignore[arg-type]


# ---------------------------------------------------------------- attacks

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol4;</lolz>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ELEMENT foo ANY><!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<foo>&xxe;</foo>"""
PARAMETER_ENTITY = """<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>
<r>x</r>"""
ATTACKS = [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, "<a>1</a><!doctype x><b>2</b>"]


@pytest.mark.parametrize("payload", ATTACKS)
def test_xml_attacks_are_refused(payload: str) -> None:
    with pytest.raises(TypedParserError) as info:
        decode(payload)
    assert info.value.raw == payload


@pytest.mark.parametrize("payload", ATTACKS)
def test_attacks_fail_even_without_the_repair_step(
    payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # second line of defence: the defused parser alone must refuse them too
    monkeypatch.setattr(typed_xml_module, "repair", lambda text: text)
    with pytest.raises(TypedParserError):
        decode(payload)


def test_entities_are_never_expanded() -> None:
    assert decode("<a>&xxe;&lol9;</a>") == {"a": "&xxe;&lol9;"}


def test_huge_input_is_linear() -> None:
    import time

    text = "<a>" * 20_000 + "</b>" * 20_000 + "<c>ok</c>"
    start = time.thread_time()  # CPU time: a busy machine does not count against it
    assert decode(text) == {"c": "ok"}
    assert time.thread_time() - start < 2.0


# ---------------------------------------------------------------- encode


def test_encode_shape() -> None:
    assert encode(GUIDE_RESULT) == (
        "<name>science fair</name>\n"
        "<date>Friday</date>\n"
        '<participants dtype="list">\n'
        "  <item>Alice</item>\n"
        "  <item>Bob</item>\n"
        "</participants>"
    )
    assert encode({"n": None, "e": "", "l": [], "d": {}}) == (
        '<n dtype="none"/>\n<e></e>\n<l dtype="list"/>\n<d dtype="dict"/>'
    )
    # 0.5.1 wrote dtype="NoneType", which its own decode rejected
    assert decode(encode({"n": None})) == {"n": None}


def test_encode_structs_and_rejects_non_mappings() -> None:
    import msgspec

    class Event(msgspec.Struct):
        name: str
        participants: tuple[str, ...]

    assert decode(encode(Event("fair", ("Alice", "Bob")))) == {
        "name": "fair",
        "participants": ["Alice", "Bob"],
    }
    with pytest.raises(InvalidParameterError):
        encode(["not", "a", "mapping"])
    with pytest.raises(InvalidParameterError, match="cannot represent"):
        encode({"a": "NUL \x00 inside"})


# ---------------------------------------------------------------- round trips

_XML_CHARS = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="".join(chr(c) for c in range(32) if c not in (9, 10, 13))
    + "\ufffe\uffff",
)
_TEXT = st.text(_XML_CHARS, max_size=30)
_TRICKY = st.sampled_from(
    [
        "",
        " ",
        "  \n\t ",
        "<",
        "&",
        "]]>",
        "a < b && c",
        "&amp;",
        "\"'",
        "<b>x</b>",
        "\r\n",
        "é 日本 🙂",
    ]
)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT | _TRICKY
_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_TEXT | _TRICKY, children, max_size=4)
    ),
    max_leaves=20,
)
# min_size=1: an empty mapping encodes to "", and an answer without elements is an error
_DOCUMENTS = st.dictionaries(
    _TEXT | _TRICKY | st.sampled_from(["root", "item", "xml"]), _VALUES, min_size=1
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS)
@example({"root": {"a": 1}})
@example({"response": "text"})
@example({"item": [None, "", " ", {"item": []}]})
@example({"": {"": ""}, "first name": "Ann", "xml:space": "x"})
@example({"code": "if a < b && c:\n    return ']]>'", "q": "\"quoted\" 'too'"})
@example({"ws": "   ", "nl": "\n", "cr": "a\rb", "empty": "", "uni": "ação 日本 🙂"})
@example({"f": 1e300, "g": -0.0, "h": float("inf"), "i": -(2**70)})
def test_round_trip(document: dict[str, Any]) -> None:
    assert decode(encode(document)) == document


# ---------------------------------------------------------------- fuzz

_PIECES = st.sampled_from(
    [
        "<a>", "</a>", '<b dtype="list">', "</b>", "<item>", "</item>", '<c dtype="int">',
        "</c>", '<d dtype="dict">', "</d>", "<e/>", "&", "&amp;", "&#0;", "&#x41;", "<", ">",
        "text", "1", " ", "\n", "<![CDATA[", "]]>", "<!--", "-->", "<?xml?>", '"', "'",
        'dtype="bool"', "<!DOCTYPE", "<!ENTITY", "&x;", "\x00", "<root>", "</root>",
    ]
)  # fmt: skip


def _decodes_or_raises_typed(text: str) -> None:
    try:
        result = decode(text)
    except TypedParserError as exc:
        assert exc.raw == text
    else:
        assert isinstance(result, dict)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_fuzz_random_text(text: str) -> None:
    _decodes_or_raises_typed(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_fuzz_xml_like_text(text: str) -> None:
    _decodes_or_raises_typed(text)


@settings(max_examples=200, deadline=None)
@given(_DOCUMENTS, st.data())
def test_fuzz_truncated_answers(document: dict[str, Any], data: st.DataObject) -> None:
    text = encode(document)
    cut = data.draw(st.integers(0, len(text)))
    _decodes_or_raises_typed(text[:cut])


# ---------------------------------------------------------------- dependency and import cost


def test_missing_defusedxml_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "defusedxml", None)
    monkeypatch.setitem(sys.modules, "defusedxml.ElementTree", None)
    with pytest.raises(MissingDependencyError) as info:
        decode("<a>1</a>")
    assert 'pip install "msgflux[xml]"' in str(info.value)
    assert isinstance(info.value, ImportError)


def test_imports_neither_defusedxml_nor_jinja2_until_needed() -> None:
    code = (
        "import sys\n"
        "import msgflux as mf\n"
        "parser = mf.dsl.typed_parsers.typed_parser_registry['typed_xml']\n"
        "assert parser.template\n"
        "assert 'defusedxml' not in sys.modules and 'jinja2' not in sys.modules\n"
        "parser.decode('<a>1</a>')\n"
        "assert 'defusedxml' in sys.modules and 'jinja2' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- registry


def test_registry_lookup() -> None:
    assert "typed_xml" in typed_parser_registry
    assert "typed_xml" in list(typed_parser_registry)
    assert get_typed_parser("typed_xml") is XML
    assert mf.dsl.typed_parsers.TypedXMLParser is XML
    assert XML.typed_parser_type == "typed_xml"
    assert isinstance(XML, TypedParser)
    assert typed_parser_registry.get("nope") is None
    assert typed_parser_registry.get("nope", 1) == 1
    with pytest.raises(TypedParserNotFoundError, match="Did you mean 'typed_xml'"):
        typed_parser_registry["typed_xmll"]
    with pytest.raises(ValueError):
        get_typed_parser("nope")


@pytest.fixture
def clean_registry() -> Any:
    before = dict.fromkeys(typed_parser_registry)
    yield
    for name in list(typed_parser_registry):
        if name not in before:
            del typed_parser_registry[name]


def test_register_a_class_with_the_decorator(clean_registry: None) -> None:
    @register_typed_parser
    class TypedLines(BaseTypedParser):
        typed_parser_type = "typed_lines"
        template = "{{ instructions }}\nAnswer as key: value lines."

        @classmethod
        def decode(cls, text: str) -> dotdict:
            return dotdict(line.split(": ", 1) for line in text.splitlines() if ": " in line)

        @classmethod
        def encode(cls, obj: Any) -> str:
            return "\n".join(f"{k}: {v}" for k, v in obj.items())

    assert typed_parser_registry["typed_lines"] is TypedLines
    assert get_typed_parser("typed_lines").decode("a: 1\nb: 2") == {"a": "1", "b": "2"}
    with pytest.raises(InvalidParameterError, match="already registered"):
        register_typed_parser(TypedLines)
    assert register_typed_parser(TypedLines, replace=True) is TypedLines


def test_register_an_instance_under_another_name(clean_registry: None) -> None:
    class Upper:
        typed_parser_type = "upper"
        template = "{{ instructions }}"

        def decode(self, text: str) -> dotdict:
            return dotdict(text=text.upper())

        def encode(self, obj: Any) -> str:
            return str(obj["text"])

    parser = Upper()
    assert register_typed_parser(name="shout")(parser) is parser
    assert typed_parser_registry["shout"].decode("hi") == {"text": "HI"}
    assert "upper" not in typed_parser_registry


def test_register_rejects_what_is_not_a_parser(clean_registry: None) -> None:
    class Half:
        typed_parser_type = "half"

        def decode(self, text: str) -> dotdict:
            return dotdict()

    with pytest.raises(InvalidParameterError, match="template"):
        register_typed_parser(Half())
    with pytest.raises(TypedParserNotFoundError):
        del typed_parser_registry["never-registered"]
