"""Answer shapes for the structured-output figure, and the socket floors' wire types.

No ``from __future__ import annotations`` here on purpose: msgspec and pydantic
resolve these annotations eagerly, and classes built inside a function cannot
be found again from strings. Built lazily so a raw-floor process (the RSS
figure) imports neither msgspec nor pydantic.
"""

from functools import cache
from types import SimpleNamespace
from typing import Optional


@cache
def person_struct() -> type:
    """The structured answer as a msgspec Struct (msgflux and the floors decode into it)."""
    import msgspec

    class Address(msgspec.Struct):
        street: str
        city: str
        zip: str

    class Project(msgspec.Struct):
        title: str
        year: int
        stars: int

    class PersonAnswer(msgspec.Struct):
        name: str
        age: int
        email: Optional[str]  # noqa: UP045 - runtime annotation, read on Python 3.10 too
        tags: list[str]
        address: Address
        projects: list[Project]

    return PersonAnswer


@cache
def wire_types() -> SimpleNamespace:
    """The socket floors' typed views of each wire format: only the fields a hand-written
    client reads to get the text, a chunk's content, or a tool call's arguments."""
    import msgspec

    # OpenAI Chat Completions
    class OMessage(msgspec.Struct):
        content: Optional[str] = None  # noqa: UP045

    class OChoice(msgspec.Struct):
        message: OMessage

    class OCompletion(msgspec.Struct):
        choices: list[OChoice]

    class OFunction(msgspec.Struct):
        name: Optional[str] = None  # noqa: UP045
        arguments: Optional[str] = None  # noqa: UP045

    class OToolDelta(msgspec.Struct):
        index: int
        id: Optional[str] = None  # noqa: UP045
        function: Optional[OFunction] = None  # noqa: UP045

    class ODelta(msgspec.Struct):
        content: Optional[str] = None  # noqa: UP045
        tool_calls: Optional[list[OToolDelta]] = None  # noqa: UP045

    class OChunkChoice(msgspec.Struct):
        delta: ODelta

    class OChunk(msgspec.Struct):
        choices: list[OChunkChoice] = []  # msgspec copies mutable defaults

    # Anthropic Messages
    class ABlock(msgspec.Struct):
        type: str
        text: Optional[str] = None  # noqa: UP045
        id: Optional[str] = None  # noqa: UP045
        name: Optional[str] = None  # noqa: UP045

    class AMessage(msgspec.Struct):
        content: list[ABlock]

    class ADelta(msgspec.Struct):
        type: Optional[str] = None  # noqa: UP045
        text: Optional[str] = None  # noqa: UP045
        partial_json: Optional[str] = None  # noqa: UP045

    class AEvent(msgspec.Struct):
        type: str
        index: int = 0
        delta: Optional[ADelta] = None  # noqa: UP045
        content_block: Optional[ABlock] = None  # noqa: UP045

    # Gemini generateContent
    class GFunctionCall(msgspec.Struct):
        name: str
        args: dict = {}
        id: Optional[str] = None  # noqa: UP045

    class GPart(msgspec.Struct, rename="camel"):
        text: Optional[str] = None  # noqa: UP045
        function_call: Optional[GFunctionCall] = None  # noqa: UP045

    class GContent(msgspec.Struct):
        parts: list[GPart] = []

    class GCandidate(msgspec.Struct):
        content: Optional[GContent] = None  # noqa: UP045

    class GResponse(msgspec.Struct):
        candidates: list[GCandidate] = []

    return SimpleNamespace(
        OCompletion=OCompletion, OChunk=OChunk, AMessage=AMessage, AEvent=AEvent,
        GResponse=GResponse,
    )


@cache
def pydantic_person() -> type:
    """The same answer shape as a pydantic model (what the openai SDK parses into)."""
    from pydantic import BaseModel

    class Address(BaseModel):
        street: str
        city: str
        zip: str

    class Project(BaseModel):
        title: str
        year: int
        stars: int

    class PersonAnswer(BaseModel):
        name: str
        age: int
        email: Optional[str]  # noqa: UP045
        tags: list[str]
        address: Address
        projects: list[Project]

    return PersonAnswer
