"""Answer shapes for the structured-output and stream figures.

No ``from __future__ import annotations`` here on purpose: msgspec and pydantic
resolve these annotations eagerly, and classes built inside a function cannot
be found again from strings. Built lazily so a raw-floor process (the RSS
figure) imports neither msgspec nor pydantic.
"""

from functools import cache
from typing import Optional


@cache
def msgspec_types() -> tuple[type, type]:
    """(the structured answer Struct, the stream floor's typed chunk Struct)."""
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

    class ChunkDelta(msgspec.Struct):
        content: Optional[str] = None  # noqa: UP045

    class ChunkChoice(msgspec.Struct):
        delta: ChunkDelta

    class Chunk(msgspec.Struct):
        choices: list[ChunkChoice] = []  # msgspec copies mutable defaults

    return PersonAnswer, Chunk


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
