"""Structured decode, per answer: msgspec Struct and pydantic model, msgflux vs the raw floor.

    python bench/structured_decode.py [--n 20000]

Decodes the bench's structured answer (``canned_server.PERSON_ANSWER``, the body of
figure 6 of bench/run.py) into the same shape four ways, and prints µs per decode:

- raw msgspec: ``msgspec.json.decode(text, type=PersonAnswer)`` (the Struct floor);
- msgflux, Struct: ``decode_structured`` (what a ``generation_schema=Struct`` call does
  after the transport: decode, validate, the spec's dict result);
- raw pydantic: ``PersonAnswer.model_validate_json(text)`` (the pydantic floor);
- msgflux, pydantic: ``decode_structured`` of the pydantic model (an instance back).

Trials of the four are interleaved; each figure is the median of the trials.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_schemas import person_struct, pydantic_person  # noqa: E402
from canned_server import PERSON_ANSWER  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="decodes per trial")
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args(argv)

    import msgspec

    from msgflux.models.structured import compile_schema, decode_structured

    struct = person_struct()
    model = pydantic_person()
    text = json.dumps(PERSON_ANSWER, separators=(",", ":"))
    compiled_struct = compile_schema(struct)
    compiled_model = compile_schema(model)
    decoder = msgspec.json.Decoder(struct)
    cases = {
        "raw msgspec (Struct)": lambda: decoder.decode(text),
        "msgflux, Struct -> dotdict": lambda: decode_structured(compiled_struct, text),
        "raw pydantic (model_validate_json)": lambda: model.model_validate_json(text),
        "msgflux, pydantic -> instance": lambda: decode_structured(compiled_model, text),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for trial in range(args.trials):
        order = list(cases)[trial % 4:] + list(cases)[:trial % 4]
        for name in order:
            fn = cases[name]
            fn()
            gc.collect()
            start = time.perf_counter_ns()
            for _ in range(args.n):
                fn()
            times[name].append((time.perf_counter_ns() - start) / args.n / 1000)
    for name, values in times.items():
        print(f"{name:38s} {statistics.median(values):7.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
