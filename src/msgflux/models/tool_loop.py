"""The tool loop: ``model(..., tool_schemas=[fn, ...], run_tools=True)``.

The spec's tool flow, run for the caller: the model proposes calls (a
:class:`~msgflux.models.tool_calls.ToolCallAggregator`), the functions among
``tool_schemas`` run (``acall``: the calls of one turn concurrently; sync functions
in worker threads), their results go back through ``insert_results`` /
``get_messages``, and the model is called again — until it answers in text (or in
its ``generation_schema``) or ``max_steps`` calls were made
(:class:`~msgflux.exceptions.ToolLoopLimitError`, default
:data:`DEFAULT_MAX_STEPS`).

Why ``run_tools=True`` on the call rather than a separate runner: the spec's API
is the model call with ``tool_schemas``/``tool_choice``; the loop is that same call
carried through, so every option (streaming, ``generation_schema``, sampling,
timeouts, ``acall``) keeps its meaning and the answer is the usual
``ModelResponse``/``ModelStreamResponse``. Without ``run_tools`` nothing changes:
``consume()`` hands out the aggregator, as the spec shows.

Errors: a tool that raises has its error reported to the model as its result
(``"Error: ValueError: ..."``) so the model can recover (``tool_errors="report"``,
the default), or stops the loop with
:class:`~msgflux.exceptions.ToolExecutionError` (``tool_errors="raise"``); either
way the exception object is kept (``metadata.tool_calls[i].error``, or the error's
``__cause__``). Arguments that do not validate, and calls of unknown tools, are
reported to the model the same way. A call of a tool given only as a dict (no
function to run) ends the loop: the answer is that turn's aggregator, as without
``run_tools``.

A forced ``tool_choice`` (``"required"``, a tool's name) applies to the first call;
the later ones are ``"auto"``, so the model can answer (as the OpenAI Agents SDK's
``reset_tool_choice`` does).

``metadata``: ``steps`` (model calls), ``tool_calls`` (one record per call run:
``id``, ``name``, ``arguments``, ``result`` or ``error``), ``messages`` (the turns
the loop added: append them to continue the conversation), and the usage and
cost summed over every step.

Streaming: the text of every step streams as it comes (so does any text the model
writes beside its tool calls); ``data`` is the final answer. The loop's own calls
run in the stream's iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec

from msgflux.dotdict import dotdict
from msgflux.exceptions import (
    InvalidParameterError,
    MsgfluxError,
    ToolCallArgumentsError,
    ToolExecutionError,
    ToolLoopLimitError,
)
from msgflux.models.messages import to_messages
from msgflux.models.request import Delta, ToolCallDelta, ToolChoice
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.stream import AsyncSource, StreamAssembler, SyncSource
from msgflux.models.structured_modes import current, stream_call
from msgflux.models.tool_calls import ToolCallAggregator

__all__ = ["DEFAULT_MAX_STEPS", "ToolLoop"]

DEFAULT_MAX_STEPS = 10
_ERRORS = ("report", "raise")


class _Run:
    """One proposed call: what to run it with, or why it cannot run."""

    __slots__ = ("arguments", "function", "id", "name", "problem")

    def __init__(self, id: str, name: str, arguments: Any, function: Any,
                 problem: str | None) -> None:
        self.id = id
        self.name = name
        self.arguments = arguments
        self.function = function
        self.problem = problem


class ToolLoop:
    """Runs one prepared call's tool loop (see the module doc); sans-I/O decisions,
    with thin sync and async drivers."""

    def __init__(self, call: Any, max_steps: Any = None, tool_errors: Any = None) -> None:
        if call.tools is None or not call.tools.functions:
            raise InvalidParameterError(
                "run_tools=True runs the functions among tool_schemas, and there are none: "
                "pass functions (tool_schemas=[get_weather]) or leave run_tools off and run "
                "the calls from response.consume().get_calls()"
            )
        if max_steps is None:
            max_steps = DEFAULT_MAX_STEPS
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise InvalidParameterError(f"max_steps must be an int >= 1, got {max_steps!r}")
        if tool_errors is None:
            tool_errors = "report"
        if tool_errors not in _ERRORS:
            raise InvalidParameterError(
                f"tool_errors must be 'report' (the error goes to the model as the tool's "
                f"result) or 'raise', got {tool_errors!r}"
            )
        self.call = call
        self.max_steps = max_steps
        self.raise_errors = tool_errors == "raise"
        self.steps = 0
        self.usage: Any = None
        self.records: list[dotdict] = []
        self.added: list[dict[str, Any]] = []

    # -------------------------------------------------------------- decisions

    def _step(self) -> None:
        if self.steps >= self.max_steps:
            meta = dotdict(steps=self.steps, tool_calls=self.records, messages=self.added)
            self.call.wiring.set_usage(meta, self.usage)
            raise ToolLoopLimitError(
                f"The model still asked for tools after max_steps={self.max_steps} calls. "
                "Raise max_steps, or continue from the error's .messages.",
                messages=list(self.added), metadata=meta,
            )
        self.steps += 1
        self.call = current(self.call)

    def _runs(self, agg: ToolCallAggregator) -> list[_Run] | None:
        """The calls to run, or ``None`` when one calls a tool with no function."""
        functions = self.call.tools.functions
        known = {s.name for s in self.call.tools.specs}
        runs = []
        for call in agg.to_tool_calls():
            if call.name in known and call.name not in functions:
                return None  # a dict tool: the caller runs it
            problem = None
            try:
                arguments = _arguments(call.name, call.arguments)
            except ToolCallArgumentsError as e:
                arguments, problem = call.arguments, str(e)
            if call.name not in functions:
                problem = f"There is no tool named {call.name!r}; the tools are {sorted(known)}."
            runs.append(_Run(call.id, call.name, arguments, functions.get(call.name), problem))
        return runs

    def _record(self, agg: ToolCallAggregator, run: _Run, result: Any,
                error: BaseException | None) -> None:
        record = dotdict(id=run.id, name=run.name, arguments=run.arguments)
        if error is None:
            record["result"] = result
            agg.insert_results(run.id, _jsonable(result))
        else:
            record["error"] = error
            agg.insert_results(run.id, _error_text(error))
            if self.raise_errors and run.problem is None:
                self.records.append(record)
                raise ToolExecutionError(
                    f"Tool {run.name!r} raised {type(error).__name__}: {error}",
                    tool_name=run.name, call_id=run.id, arguments=run.arguments,
                    messages=list(self.added),
                ) from error
        self.records.append(record)

    def _continue(self, agg: ToolCallAggregator) -> None:
        """The next step's call: the turn and its results appended."""
        turns = agg.get_messages()
        self.added.extend(turns)
        new = to_messages(turns)
        tools = self.call.tools
        if tools.renamed:
            new = tools.to_wire(new)
        call = self.call
        # A forced tool choice ("required", a named tool) holds for the first call only;
        # kept, it would force a call at every step and the loop could never end.
        choice = call.request.tool_choice
        if choice is not None and choice.mode in ("required", "tool"):
            choice = ToolChoice("auto")
        request = msgspec.structs.replace(call.request, tool_choice=choice,
                                          messages=(*call.request.messages, *new))
        base = msgspec.structs.replace(call.base, tool_choice=choice,
                                       messages=(*call.base.messages, *new))
        self.call = call.derive(request, base=base)

    def _count(self, meta: Any) -> None:
        self.usage = self.call.wiring.usage_of(meta, self.usage)

    def _finish(self, meta: Any) -> Any:
        meta["steps"] = self.steps
        meta["tool_calls"] = self.records
        meta["messages"] = self.added
        self.call.wiring.set_usage(meta, self.usage)
        return meta

    # -------------------------------------------------------------- drivers

    def run(self) -> ModelResponse | ModelStreamResponse:
        if self.call.request.stream:
            return ModelStreamResponse.open(LoopStreamCall(self))
        while True:
            self._step()
            response = self.call.answer()
            self._count(response.metadata)
            agg = response.data if response.response_type == "tool_call" else None
            runs = self._runs(agg) if agg is not None else None
            if runs is None:
                self._finish(response.metadata)
                return response
            for run in runs:
                self._run_sync(agg, run)
            self._continue(agg)

    async def arun(self) -> ModelResponse | ModelStreamResponse:
        if self.call.request.stream:
            return await ModelStreamResponse.aopen(LoopStreamCall(self))
        while True:
            self._step()
            response = await self.call.aanswer()
            self._count(response.metadata)
            agg = response.data if response.response_type == "tool_call" else None
            runs = self._runs(agg) if agg is not None else None
            if runs is None:
                self._finish(response.metadata)
                return response
            await self._run_async(agg, runs)
            self._continue(agg)

    def _run_sync(self, agg: ToolCallAggregator, run: _Run) -> None:
        if run.problem is not None:
            self._record(agg, run, None, _UnrunnableCallError(run.problem))
            return
        try:
            result = run.function.invoke(run.arguments)
        except ToolCallArgumentsError as e:
            self._record(agg, _problem(run, str(e)), None, _UnrunnableCallError(str(e)))
            return
        except Exception as e:
            self._record(agg, run, None, e)
            return
        self._record(agg, run, result, None)

    async def _run_async(self, agg: ToolCallAggregator, runs: list[_Run]) -> None:
        async def one(run: _Run) -> Any:
            if run.problem is not None:
                return _UnrunnableCallError(run.problem)
            try:
                return await run.function.ainvoke(run.arguments)
            except ToolCallArgumentsError as e:
                run.problem = str(e)
                return _UnrunnableCallError(str(e))

        results = await asyncio.gather(*(one(r) for r in runs), return_exceptions=True)
        for run, result in zip(runs, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation and the like are not the tool's answer
            if isinstance(result, Exception):
                self._record(agg, run, None, result)
            else:
                self._record(agg, run, result, None)


class _UnrunnableCallError(Exception):
    """A call that could not run (bad arguments, unknown tool): said to the model."""

    def __str__(self) -> str:
        return str(self.args[0])


def _problem(run: _Run, text: str) -> _Run:
    run.problem = text
    return run


def _arguments(name: str, raw: str) -> dict[str, Any]:
    raw = raw.strip()
    if not raw:
        return {}
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise ToolCallArgumentsError(
            f"The arguments of tool call {name!r} are not valid JSON ({e})", raw=raw,
            tool_name=name,
        ) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ToolCallArgumentsError(
            f"The arguments of tool call {name!r} must be a JSON object", raw=raw,
            tool_name=name,
        )
    return value


def _error_text(error: BaseException) -> str:
    if isinstance(error, _UnrunnableCallError):
        return f"Error: {error}"
    return f"Error: {type(error).__name__}: {error}"


def _jsonable(result: Any) -> Any:
    """A result as the model reads it: text as is, pydantic models by their JSON."""
    dump = getattr(result, "model_dump", None)
    if callable(dump) and not isinstance(result, type):
        try:
            return dump(mode="json")
        except Exception:  # not pydantic's model_dump after all: str() it is
            return str(result)
    return result


# ---------------------------------------------------------------- streaming


class _LoopSync(SyncSource):
    """The deltas of every step of a streamed loop, as one source."""

    def __init__(self, stream: LoopStreamCall, first: SyncSource) -> None:
        self.stream = None
        self.secret = None
        self.decoder = stream
        self.deltas = stream.steps_sync(first)

    def failed(self, error: BaseException) -> None:
        self.close()  # each step's own source masked the key and let its connection go

    def close(self) -> None:
        self.deltas.close()  # type: ignore[attr-defined]


class _LoopAsync(AsyncSource):
    def __init__(self, stream: LoopStreamCall, first: AsyncSource) -> None:
        self.stream = None
        self.secret = None
        self.decoder = stream
        self.loop = first.loop
        self.deltas = stream.steps_async(first)

    async def aclose(self) -> None:
        await self.deltas.aclose()  # type: ignore[attr-defined]


class LoopStreamCall:
    """A :class:`~msgflux.models.response.StreamCall` over the loop's steps: the start
    opens the first step (retried like any stream); later steps are opened as the
    caller reads. It is also the combined source's decoder (``done`` once the final
    step ended properly)."""

    has_end_marker = True

    def __init__(self, loop: ToolLoop) -> None:
        self.loop = loop
        self.done = False
        loop._step()
        self.step = stream_call(loop.call)
        self.final: tuple[Any, StreamAssembler] | None = None
        kind = self.step.default_type
        self.known_type = kind
        self.default_type = kind
        self.lead = None

    @property
    def partial(self) -> Callable[[], Any] | None:
        return self.step.partial

    def open_sync(self) -> SyncSource:
        return _LoopSync(self, self.step.open_sync())

    async def open_async(self) -> AsyncSource:
        return _LoopAsync(self, await self.step.open_async())

    def retry(self, attempt: Callable[[], None]) -> None:
        self.step.retry(attempt)

    async def aretry(self, attempt: Callable[[], Awaitable[None]]) -> None:
        await self.step.aretry(attempt)

    def steps_sync(self, source: SyncSource) -> Iterator[Delta | str]:
        loop = self.loop
        while True:
            asm = StreamAssembler()
            try:
                for delta in source.deltas:
                    asm.add(delta)
                    out = _forward(delta)
                    if out is not None:
                        yield out
            except MsgfluxError as e:
                source.failed(e)
                raise
            finally:
                source.close()
            self._ended(source, asm)
            agg = asm.aggregator()
            runs = loop._runs(_renamed(agg, loop.call)) if agg is not None else None
            if runs is None:
                yield self._last(asm)
                return
            for run in runs:
                loop._run_sync(agg, run)
            loop._continue(agg)
            source = self._next_sync()

    async def steps_async(self, source: AsyncSource) -> Any:
        loop = self.loop
        while True:
            asm = StreamAssembler()
            async for delta in source.deltas:
                asm.add(delta)
                out = _forward(delta)
                if out is not None:
                    yield out
            self._ended(source, asm)
            agg = asm.aggregator()
            runs = loop._runs(_renamed(agg, loop.call)) if agg is not None else None
            if runs is None:
                yield self._last(asm)
                return
            await loop._run_async(agg, runs)
            loop._continue(agg)
            source = await self._next_async()

    def _next_sync(self) -> SyncSource:
        """The next step's stream, opened (retried like any stream's start)."""
        self.loop._step()
        self.step = stream_call(self.loop.call)
        opened: list[SyncSource] = []
        self.step.retry(lambda: opened.append(self.step.open_sync()))
        return opened[-1]

    async def _next_async(self) -> AsyncSource:
        self.loop._step()
        self.step = stream_call(self.loop.call)
        opened: list[AsyncSource] = []

        async def attempt() -> None:
            opened.append(await self.step.open_async())

        await self.step.aretry(attempt)
        return opened[-1]

    def _ended(self, source: Any, asm: StreamAssembler) -> None:
        """A step's stream must have ended properly before the loop goes on."""
        decoder = source.decoder
        if not decoder.done and (decoder.has_end_marker or asm.finish_reason is None):
            raise asm.broken("A step of the tool loop ended before the provider's end "
                             "marker: its answer is incomplete.")
        self.loop._count(dotdict(usage=_usage(asm)))

    def _last(self, asm: StreamAssembler) -> Delta:
        self.final = (self.step, asm)
        self.done = True
        return Delta(finish_reason=asm.finish_reason, model=asm.model, done=True)

    def spent(self, usage: Any) -> None:
        self.step.spent(usage)

    def broken(self, error: BaseException) -> None:
        self.step.broken(error)

    def finish(self, outer: StreamAssembler) -> tuple[str, Any, dotdict]:
        assert self.final is not None
        step, asm = self.final
        kind, data, meta = step.finish(asm)
        return kind, data, self.loop._finish(meta)


def _forward(delta: Delta | str) -> Delta | str | None:
    """What of a step's delta reaches the caller: text, refusals and reasoning (tool
    calls, finish and usage belong to the step)."""
    if delta.__class__ is str:  # text only
        return delta
    if delta.__class__ is ToolCallDelta:  # a call's fragment only
        return None
    d: Delta = delta  # type: ignore[assignment]
    if d.text or d.refusal or d.reasoning or d.reasoning_signature is not None \
            or d.reasoning_block is not None:
        return Delta(text=d.text, refusal=d.refusal, reasoning=d.reasoning,
                     reasoning_signature=d.reasoning_signature,
                     reasoning_block=d.reasoning_block)
    return None


def _renamed(agg: ToolCallAggregator, call: Any) -> ToolCallAggregator:
    """The calls under the caller's tool names (as a non-streamed answer has them)."""
    tools = call.tools
    if tools is not None and tools.renamed:
        agg.rename(tools.user)
    return agg


def _usage(asm: StreamAssembler) -> Any:
    u = asm.usage
    if u is None:
        return None
    return dotdict({k: getattr(u, k) for k in u.__struct_fields__ if getattr(u, k) is not None})
