"""msgflux.integrations.ray on a real local Ray runtime (one session for the module, two
CPUs, a tiny dataset): the same results as the local runner, errors and usage included."""

from __future__ import annotations

import pytest

import msgflux as mf
from echo_server import EchoServer

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own settings


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def echo():
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


def test_map_batches_gives_what_the_local_runner_gives(ray_session, echo) -> None:
    from msgflux.integrations.ray import ChatCompletionBatch

    rows = [{"id": i, "messages": f"row {i}"} for i in range(6)]
    rows[4]["messages"] = "status:400"
    kwargs = {"base_url": echo.url, "api_key": "sk-ray", "max_retries": 0}
    ds = ray.data.from_items(rows).map_batches(
        ChatCompletionBatch, fn_constructor_kwargs={
            "model": "openai/echo", "model_kwargs": kwargs, "concurrency": 4, "rpm": 6000,
            "system_prompt": "same for every row"},
        concurrency=1, batch_size=3)
    got = sorted(ds.take_all(), key=lambda row: row["id"])

    with mf.Model.chat_completion("openai/echo", **kwargs) as model:
        local = model.batch(rows, system_prompt="same for every row")
    assert [row["output"] for row in got] == local.outputs()
    assert [row["error"] for row in got] == [
        f"{i.error.type}: {i.error.message}" if i.error else None for i in local]
    assert [row["prompt_tokens"] for row in got] == [
        i.usage["prompt_tokens"] if i.usage else None for i in local]
    assert got[4]["error"].startswith("BadRequestError") and got[0]["output"] == "echo:row 0"
    assert [row["response_type"] for row in got][:2] == ["text_generation"] * 2


def test_a_missing_column_is_a_clear_error(ray_session) -> None:
    from msgflux.integrations.ray import ChatCompletionBatch

    udf = ChatCompletionBatch("openai/echo", model_kwargs={"api_key": "k",
                                                          "base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(mf.exceptions.InvalidParameterError, match="no column 'messages'"):
        udf({"prompt": ["x"]})
