"""TLS and proxy settings of the default clients (verify, cert, proxy, trust_env),
with certificates made on the fly by trustme: on both clients and through the model.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux._transport import tls
from msgflux._transport.async_client import AsyncHTTPTransport
from msgflux._transport.sync_client import HTTPTransport
from msgflux._transport.types import HttpRequest, Timeouts
from scripted_server import ConnectProxy, ScriptedServer, json_reply
from test_faults_support import completion

trustme = pytest.importorskip("trustme")

FAST = Timeouts(connect=3.0, first_byte=3.0, idle=3.0, total=10.0)
KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def pems(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CA, a client certificate it issued, and another CA nobody trusts."""
    d = tmp_path_factory.mktemp("pems")
    ca.cert_pem.write_to_path(d / "ca.pem")
    client = ca.issue_cert("client@msgflux.test")
    client.private_key_and_cert_chain_pem.write_to_path(d / "client.pem")
    client.cert_chain_pems[0].write_to_path(d / "client-cert.pem")
    client.private_key_pem.write_to_path(d / "client-key.pem")
    trustme.CA().cert_pem.write_to_path(d / "other-ca.pem")
    return {p.stem: p for p in d.iterdir()}


def server_context(ca: Any, *names: str, client_ca: Any = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    if client_ca is not None:  # mTLS: a client certificate is required
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def srv(ca: Any) -> Iterator[ScriptedServer]:
    names = ("localhost", "127.0.0.1", "scripted.test")  # the last one only through proxies
    with ScriptedServer(server_context=server_context(ca, *names)) as s:
        yield s


def send(kind: str, url: str, **options: Any) -> Any:
    req = HttpRequest("POST", url, (), b"{}")
    options.setdefault("trust_env", False)
    if kind == "sync":
        with HTTPTransport(**options) as t:
            return t.send(req, FAST)

    async def main() -> Any:
        async with AsyncHTTPTransport(**options) as t:
            return await t.send(req, FAST)

    return asyncio.run(main())


# ---------------------------------------------------------------- verify


@KINDS
def test_an_untrusted_ca_is_refused(srv: ScriptedServer, kind: str) -> None:
    with pytest.raises(exc.APIConnectionError, match="certificate verification failed") as info:
        send(kind, srv.url)
    assert not info.value.retryable
    assert srv.requests == []


@KINDS
def test_a_custom_ca_bundle_is_accepted(srv: ScriptedServer, kind: str, pems: dict) -> None:
    srv.enqueue(json_reply(200, {"ok": 1}), json_reply(200, {"ok": 1}))
    assert send(kind, srv.url, verify=str(pems["ca"])).body == b'{"ok": 1}'
    assert send(kind, srv.url, verify=pems["ca"]).body == b'{"ok": 1}'  # a PathLike too


@KINDS
def test_an_ssl_context_is_used_as_given(srv: ScriptedServer, kind: str, ca: Any) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    srv.enqueue(json_reply(200, {"ok": 1}))
    assert send(kind, srv.url, verify=ctx).status == 200


@KINDS
def test_a_wrong_host_name_is_refused(ca: Any, pems: dict, kind: str) -> None:
    with ScriptedServer(server_context=server_context(ca, "other.example")) as other, \
            pytest.raises(exc.APIConnectionError, match="certificate verification failed"):
        send(kind, f"https://localhost:{other.port}/", verify=str(pems["ca"]))


@KINDS
def test_trust_env_decides_whether_ssl_cert_file_counts(
        srv: ScriptedServer, kind: str, pems: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "_defaults", {})  # contexts are cached per trust_env
    monkeypatch.setenv("SSL_CERT_FILE", str(pems["ca"]))
    srv.enqueue(json_reply(200, {"ok": 1}))
    assert send(kind, srv.url, trust_env=True).status == 200
    with pytest.raises(exc.APIConnectionError, match="certificate verification failed"):
        send(kind, srv.url, trust_env=False)


def test_without_a_system_bundle_certifi_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    certifi = pytest.importorskip("certifi")
    nowhere = ssl.DefaultVerifyPaths(None, None, "SSL_CERT_FILE", "/nonexistent/cert.pem",
                                     "SSL_CERT_DIR", "/nonexistent/certs")
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: nowhere)
    assert tls.trust_store(True) == (certifi.where(), None)
    assert tls.trust_store(False) == (certifi.where(), None)


@pytest.mark.parametrize("verify, message", [
    (False, "always verified"), ("/nonexistent/ca.pem", "no such CA bundle"),
    (42, "verify must be"),
])
def test_bad_verify_values_fail_before_the_network(verify: Any, message: str) -> None:
    with pytest.raises(exc.InvalidParameterError, match=message):
        HTTPTransport(verify=verify)
    with pytest.raises(exc.InvalidParameterError, match=message):
        mf.Model.chat_completion("openai/m", base_url="https://h/v1", api_key="k",
                                 verify=verify)


# ---------------------------------------------------------------- mTLS


@pytest.fixture
def mtls(ca: Any) -> Iterator[ScriptedServer]:
    ctx = server_context(ca, "localhost", "127.0.0.1", client_ca=ca)
    with ScriptedServer(server_context=ctx) as s:
        yield s


@KINDS
@pytest.mark.parametrize("form", ["one-file", "pair"])
def test_mtls_with_a_client_certificate(mtls: ScriptedServer, pems: dict, kind: str,
                                        form: str) -> None:
    cert = (str(pems["client"]) if form == "one-file"
            else (str(pems["client-cert"]), str(pems["client-key"])))
    mtls.enqueue(json_reply(200, {"mtls": True}))
    assert send(kind, mtls.url, verify=str(pems["ca"]), cert=cert).body == b'{"mtls": true}'


@KINDS
def test_mtls_without_a_client_certificate_is_a_clear_error(
        mtls: ScriptedServer, pems: dict, kind: str) -> None:
    with pytest.raises(exc.APIConnectionError, match="client certificate") as info:
        send(kind, mtls.url, verify=str(pems["ca"]))
    assert "cert=" in str(info.value)
    if "ALERT" in str(info.value):  # the server said why: the same call fails the same way
        assert not info.value.retryable
    # else the alert was lost to the close (it races the request): an abrupt end of TLS,
    # which names cert= as the likely fix but stays retryable


def test_bad_cert_values_fail_before_the_network(pems: dict) -> None:
    with pytest.raises(exc.InvalidParameterError, match="no such file"):
        HTTPTransport(cert="/nonexistent/client.pem")
    with pytest.raises(exc.InvalidParameterError, match="cert must be"):
        HTTPTransport(cert=("a", "b", "c", "d"))
    with pytest.raises(exc.InvalidParameterError, match="load_cert_chain"):
        HTTPTransport(verify=ssl.create_default_context(), cert=str(pems["client"]))


# ---------------------------------------------------------------- https:// proxies


@KINDS
def test_https_origin_through_an_https_proxy(srv: ScriptedServer, ca: Any, pems: dict,
                                             kind: str) -> None:
    if kind == "async" and sys.version_info < (3, 11):
        pytest.skip("asyncio nests TLS from Python 3.11 on")
    srv.enqueue(json_reply(200, {"via": "tls-proxy"}))
    proxy_ctx = server_context(ca, "127.0.0.1")
    with ConnectProxy(("127.0.0.1", srv.port), server_context=proxy_ctx) as proxy:
        assert proxy.url.startswith("https://")
        url = f"https://scripted.test:{srv.port}/v1"  # loopback names never use a proxy
        resp = send(kind, url, verify=str(pems["ca"]), proxy=proxy.url)
    assert resp.body == b'{"via": "tls-proxy"}'
    assert proxy.targets == [f"scripted.test:{srv.port}"]


@KINDS
def test_an_https_proxy_with_an_untrusted_certificate_is_refused(
        srv: ScriptedServer, kind: str, pems: dict) -> None:
    rogue = server_context(trustme.CA(), "127.0.0.1")
    with ConnectProxy(("127.0.0.1", srv.port), server_context=rogue) as proxy, \
            pytest.raises(exc.APIConnectionError, match="certificate verification failed"):
        send(kind, f"https://scripted.test:{srv.port}/", verify=str(pems["ca"]),
             proxy=proxy.url)
    assert proxy.targets == []


# ---------------------------------------------------------------- model options


def test_model_options_reach_the_default_transports(mtls: ScriptedServer, pems: dict) -> None:
    mtls.enqueue(json_reply(200, completion("over mTLS")), json_reply(200, completion("async")))
    model = mf.Model.chat_completion(
        "openai/m", base_url=mtls.url + "/v1", api_key="sk-test", trust_env=False,
        verify=str(pems["ca"]), cert=(str(pems["client-cert"]), str(pems["client-key"])),
    )
    with model:
        assert model("hi").consume() == "over mTLS"

    async def main() -> str:
        async with model:
            return (await model.acall("hi")).consume()

    assert asyncio.run(main()) == "async"


def test_serialize_keeps_secrets_of_transport_options_out(pems: dict) -> None:
    model = mf.Model.chat_completion(
        "openai/m", base_url="https://h/v1", api_key="sk-test",
        verify=ssl.create_default_context(), proxy="http://user:pr0xy-pw@proxy.example:3128",
    )
    state = json.dumps(model.serialize())
    assert "pr0xy-pw" not in state and "user" not in state
    assert model.serialize()["state"]["proxy"] == "http://proxy.example:3128"
    assert "verify" not in model.serialize()["state"]  # an SSLContext is no data
    with_cert = mf.Model.chat_completion(
        "openai/m", base_url="https://h/v1", api_key="sk-test",
        cert=(str(pems["client-cert"]), str(pems["client-key"]), "k3y-pw"),
    )
    assert "k3y-pw" not in json.dumps(with_cert.serialize())


def test_transport_options_beside_a_custom_transport_are_refused() -> None:
    with pytest.raises(exc.InvalidParameterError, match="replaces it"):
        mf.Model.chat_completion("openai/m", base_url="https://h/v1", api_key="k",
                                 transport=HTTPTransport(), proxy="http://p.example:1")
