"""Planning schemas: ask a model to reason in a fixed shape via ``generation_schema``.

>>> model(messages="What is 25 * 4 + 17?", generation_schema=ChainOfThoughts)
... # consume() -> {'reasoning': '25 * 4 = 100; 100 + 17 = 117', 'final_answer': '117'}

Every schema here can be filled under OpenAI's strict ``json_schema`` mode (and
llama.cpp's / vLLM's grammar-constrained decoding): every object is a Struct with
fixed fields, there are no free-form dicts and no ``Any``; optional values are
``X | None`` (required, may be null); choices are ``Literal``; there are no defaults
and no recursion (a tree is a flat list of nodes with parent ids).

Field order is generation order: reasoning fields come before ``final_answer``, so the
model writes its reasoning first and answers after it (the point of these schemas).

Class docstrings and field descriptions are sent to the model inside the JSON schema,
so they are written for the model. To type the answer, subclass and override the
field, e.g. ``class MathCoT(ChainOfThoughts): final_answer: float``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from msgflux.exceptions import ToolCallArgumentsError

__all__ = [
    "Action",
    "ChainOfThoughts",
    "ReAct",
    "ReasoningPath",
    "SelfConsistency",
    "Thought",
    "TreeOfThoughts",
]


class ChainOfThoughts(msgspec.Struct):
    """Reason step by step, then give the final answer.

    Fields: reasoning (the step-by-step working), final_answer (the answer only).
    """

    reasoning: Annotated[
        str,
        msgspec.Meta(
            description=(
                "Think step by step: restate what is asked, work through each step "
                "and check the result before answering."
            )
        ),
    ]
    final_answer: Annotated[
        str,
        msgspec.Meta(description="The final answer only, without the reasoning."),
    ]


class Action(msgspec.Struct):
    """One tool call: the tool's name and its arguments as a JSON object in a string."""

    name: Annotated[str, msgspec.Meta(description="Exact name of the tool to call.")]
    arguments: Annotated[
        str,
        msgspec.Meta(
            description=(
                'The tool\'s arguments as a JSON object text, e.g. {"city": "Paris"}; '
                "{} when it takes none."
            )
        ),
    ]


class ReAct(msgspec.Struct):
    """Reason, then act: either call tools or, when no tool is needed any more, answer.

    Fields: thought (what is known and what to do next), actions (tool calls to make
    now; empty when answering), final_answer (null while tools are still needed).
    """

    thought: Annotated[
        str,
        msgspec.Meta(description="What you know so far and what you will do next, and why."),
    ]
    actions: Annotated[
        list[Action],
        msgspec.Meta(
            max_length=8,  # bounds a runaway list; real steps call a few tools at most
            description=("Tool calls to run now, in order. Empty when you give the final answer.")
        ),
    ]
    final_answer: Annotated[
        str | None,
        msgspec.Meta(
            description=(
                "The answer to the user once no more tool calls are needed; "
                "null while actions are pending."
            )
        ),
    ]

    @staticmethod
    def tool_calls(result: ReAct | dict[str, Any]) -> list[dict[str, Any]]:
        """The actions of a decoded ReAct step as ``[{"name": ..., "arguments": {...}}]``.

        Accepts the Struct or the dict a chat model returns. Arguments are kept as a JSON
        string in the schema because strict mode forbids free-form objects (and it is
        the shape OpenAI's own tool calls use); this decodes them. Raises
        :class:`~msgflux.exceptions.ToolCallArgumentsError` when an action's arguments
        are not a JSON object.
        """
        actions = result.actions if isinstance(result, ReAct) else result.get("actions") or []
        calls = []
        for action in actions:
            name, text = (
                (action.name, action.arguments)
                if isinstance(action, Action)
                else (action["name"], action["arguments"])
            )
            try:
                arguments = msgspec.json.decode(text) if text and text.strip() else {}
            except msgspec.DecodeError as exc:
                raise ToolCallArgumentsError(
                    f"the arguments of tool {name!r} are not valid JSON: {exc}",
                    raw=text,
                    tool_name=name,
                ) from exc
            if not isinstance(arguments, dict):
                raise ToolCallArgumentsError(
                    f"the arguments of tool {name!r} are not a JSON object",
                    raw=text,
                    tool_name=name,
                )
            calls.append({"name": name, "arguments": arguments})
        return calls


class ReasoningPath(msgspec.Struct):
    """One independent attempt: its reasoning and the answer it reaches."""

    reasoning: Annotated[str, msgspec.Meta(description="Step-by-step reasoning of this attempt.")]
    answer: Annotated[str, msgspec.Meta(description="The answer this attempt reaches.")]


class SelfConsistency(msgspec.Struct):
    """Solve the problem several times independently, then give the answer most attempts agree on.

    Fields: paths (independent attempts, each with reasoning and answer), final_answer
    (the most consistent answer).
    """

    paths: Annotated[
        list[ReasoningPath],
        msgspec.Meta(
            max_length=5,
            description=(
                "Three or more independent attempts; each one reasons from scratch, "
                "without looking at the others."
            )
        ),
    ]
    final_answer: Annotated[
        str,
        msgspec.Meta(description="The answer most attempts agree on (the majority answer)."),
    ]


class Thought(msgspec.Struct):
    """One node of the tree of thoughts."""

    id: Annotated[int, msgspec.Meta(description="Unique number of this thought: 1, 2, 3, ...")]
    parent_id: Annotated[
        int | None,
        msgspec.Meta(description="id of the thought this one develops; null for a first idea."),
    ]
    content: Annotated[str, msgspec.Meta(description="The idea or partial solution.")]
    evaluation: Annotated[
        Literal["promising", "uncertain", "dead_end"],
        msgspec.Meta(description="How likely this thought leads to a correct solution."),
    ]


class TreeOfThoughts(msgspec.Struct):
    """Explore several lines of thought as a tree, prune dead ends, then answer.

    Fields: thoughts (the tree as a flat list; each thought names its parent),
    best_path (ids from a first idea down to the best final thought), final_answer.
    """

    thoughts: Annotated[
        list[Thought],
        msgspec.Meta(
            max_length=12,
            description=(
                "Several first ideas (parent_id null), each developed by child thoughts; "
                "evaluate every thought and stop developing dead ends."
            )
        ),
    ]
    best_path: Annotated[
        list[int],
        msgspec.Meta(
            max_length=12,
            description="ids of the thoughts on the best line, from first idea to conclusion."
        ),
    ]
    final_answer: Annotated[
        str, msgspec.Meta(description="The answer the best line of thought reaches.")
    ]
