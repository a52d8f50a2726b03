"""TLS on augur's endpoints (served as `augur run` serves them) and towards its upstreams.

Real handshakes on loopback: client certificates required and verified, the minimum version,
a certificate rotated on disk served without a restart (a broken one never replaces it), and
augur's own client certificate against a real Prometheus and Alertmanager that require one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from certs import CA, Pair
from prometheus_client import CollectorRegistry
from serving import running

from exporter.alerts.alertmanager import AlertmanagerSender
from exporter.alerts.metrics import AlertMetrics
from exporter.alerts.outbox import Outbox
from exporter.config.root import Config
from exporter.demo.procs import Process, find_binary, free_port
from exporter.prometheus.client import make_session
from exporter.web import server as web_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = CA(folder / "ca"), CA(folder / "other", "other-ca")
    return {
        "ca": ca,
        "other": other,
        "server": ca.issue("server"),
        "client": ca.issue("client", client=True),
        "stranger": other.issue("stranger", client=True),
        "named": ca.issue("named", hosts="DNS:upstream.test"),
    }


def augur_config(tmp_path: Path, tls: dict[str, Any], **web: Any) -> Config:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"tls_server_config": tls}), encoding="utf-8")
    return Config.model_validate(
        {
            "prometheus": {"url": "http://127.0.0.1:1", "timeout": "1s", "retries": 0},
            "web": {
                "listen_address": f"127.0.0.1:{free_port()}",
                "config_file": str(path),
                **web,
            },
            "state": {"path": str(tmp_path / "augur.db")},
        }
    )


def client_context(
    ca: Path, pair: Pair | None = None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    if max_version is not None:
        context.maximum_version = max_version
    return context


async def healthy(port: int, context: ssl.SSLContext) -> int:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(f"https://127.0.0.1:{port}/-/healthy") as resp,
    ):
        return resp.status


async def test_tls_served_and_plain_http_refused(tmp_path: Path, pki: dict[str, Any]) -> None:
    server: Pair = pki["server"]
    cfg = augur_config(tmp_path, {"cert_file": str(server.cert), "key_file": str(server.key)})
    port = cfg.web.host_port()[1]
    async with running(cfg):
        assert await healthy(port, client_context(pki["ca"].cert)) == 200
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/-/healthy") as resp:
                    await resp.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await healthy(port, client_context(pki["other"].cert))


async def test_client_certificate_required_and_verified(
    tmp_path: Path, pki: dict[str, Any]
) -> None:
    server: Pair = pki["server"]
    tls = {
        "cert_file": str(server.cert),
        "key_file": str(server.key),
        "client_ca_file": str(pki["ca"].cert),
        "client_auth_type": "RequireAndVerifyClientCert",
    }
    cfg = augur_config(tmp_path, tls)
    port = cfg.web.host_port()[1]
    ca = pki["ca"].cert
    async with running(cfg):
        assert await healthy(port, client_context(ca, pki["client"])) == 200
        for refused in (client_context(ca), client_context(ca, pki["stranger"])):
            # TLS 1.3 reports the refusal after the handshake: an SSL or a connection error.
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                await healthy(port, refused)


async def test_client_certificate_verified_if_given(tmp_path: Path, pki: dict[str, Any]) -> None:
    server: Pair = pki["server"]
    tls = {
        "cert_file": str(server.cert),
        "key_file": str(server.key),
        "client_ca_file": str(pki["ca"].cert),
        "client_auth_type": "VerifyClientCertIfGiven",
    }
    cfg = augur_config(tmp_path, tls)
    port = cfg.web.host_port()[1]
    ca = pki["ca"].cert
    async with running(cfg):
        assert await healthy(port, client_context(ca)) == 200
        assert await healthy(port, client_context(ca, pki["client"])) == 200
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await healthy(port, client_context(ca, pki["stranger"]))


async def test_cipher_suites_limit_tls12(tmp_path: Path, pki: dict[str, Any]) -> None:
    # The test certificates are ECDSA: an RSA-only suite leaves a TLS 1.2 client nothing.
    server: Pair = pki["server"]
    tls = {
        "cert_file": str(server.cert),
        "key_file": str(server.key),
        "max_version": "TLS12",
        "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    }
    cfg = augur_config(tmp_path, tls)
    port = cfg.web.host_port()[1]
    async with running(cfg):
        with pytest.raises(aiohttp.ClientConnectorError):
            await healthy(port, client_context(pki["ca"].cert))
    tls["cipher_suites"] = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]
    cfg = augur_config(tmp_path, tls)
    async with running(cfg):
        assert await healthy(cfg.web.host_port()[1], client_context(pki["ca"].cert)) == 200


async def test_min_version_tls13_refuses_a_tls12_client(
    tmp_path: Path, pki: dict[str, Any]
) -> None:
    server: Pair = pki["server"]
    tls = {"cert_file": str(server.cert), "key_file": str(server.key), "min_version": "TLS13"}
    cfg = augur_config(tmp_path, tls)
    port = cfg.web.host_port()[1]
    ca = pki["ca"].cert
    async with running(cfg):
        assert await healthy(port, client_context(ca)) == 200
        with pytest.raises(aiohttp.ClientConnectorError):
            await healthy(port, client_context(ca, max_version=ssl.TLSVersion.TLSv1_2))


async def served_by(port: int, ca: Path) -> bool:
    """Whether the server's certificate now verifies against `ca`."""
    try:
        return await healthy(port, client_context(ca)) == 200
    except aiohttp.ClientConnectorCertificateError:
        return False


async def test_rotated_certificate_is_served_without_restart(
    tmp_path: Path,
    pki: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(web_server, "RELOAD_SECONDS", 0.1)
    first: Pair = pki["server"]
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    cfg = augur_config(tmp_path, {"cert_file": str(cert), "key_file": str(key)})
    port = cfg.web.host_port()[1]
    old_ca, new_ca = pki["ca"].cert, pki["other"].cert
    async with running(cfg):
        assert await served_by(port, old_ca)
        # A broken pair (the new certificate with the old key) is refused and the old one stays.
        rotated = pki["other"].issue("rotated")
        with caplog.at_level(logging.ERROR, "augur.web"):
            cert.write_bytes(rotated.cert.read_bytes())
            await wait_for(lambda: "web_config_reload_failed" in caplog.text)
        assert await served_by(port, old_ca)
        key.write_bytes(rotated.key.read_bytes())

        async def rotated_in() -> bool:
            return await served_by(port, new_ca)

        await wait_until(rotated_in)
        assert not await served_by(port, old_ca)


async def wait_for(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await wait_until(check)


async def wait_until(condition: Callable[[], Any], limit: float = 30) -> None:
    async def loop() -> None:
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), limit)


def mutual_tls(pki: dict[str, Any], pair: Pair) -> dict[str, Any]:
    return {
        "tls_server_config": {
            "cert_file": str(pair.cert),
            "key_file": str(pair.key),
            "client_ca_file": str(pki["ca"].cert),
            "client_auth_type": "RequireAndVerifyClientCert",
        }
    }


async def test_prometheus_with_client_certificate_and_server_name(
    tmp_path: Path, pki: dict[str, Any]
) -> None:
    # Prometheus's own TLS wants augur's client certificate; its certificate names only
    # upstream.test, so augur verifies it through tls.server_name.
    named: Pair = pki["named"]
    web_file = tmp_path / "prom-web.yml"
    web_file.write_text(yaml.safe_dump(mutual_tls(pki, named)), encoding="utf-8")
    port = free_port()
    proc = await asyncio.to_thread(start_mtls, "prometheus", tmp_path, web_file, port, pki)
    try:
        tls = {"ca_file": str(pki["ca"].cert), "server_name": "upstream.test"}
        client: Pair = pki["client"]
        good = {**tls, "cert_file": str(client.cert), "key_file": str(client.key)}
        url = f"https://127.0.0.1:{port}"
        assert await buildinfo(url, good) == 200
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await buildinfo(url, tls)  # no client certificate
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await buildinfo(url, {**good, "server_name": None})  # 127.0.0.1 is not named
    finally:
        proc.stop()


async def buildinfo(url: str, tls: dict[str, Any]) -> int:
    cfg = Config.model_validate({"prometheus": {"url": url, "tls": tls}})
    async with (
        make_session(cfg.prometheus) as session,
        session.get(url + "/api/v1/status/buildinfo") as resp,
    ):
        return resp.status


def start_mtls(kind: str, workdir: Path, web_file: Path, port: int, pki: dict[str, Any]) -> Process:
    """Prometheus or Alertmanager requiring a client certificate, ready when this returns."""
    workdir = workdir / kind
    workdir.mkdir()
    if kind == "prometheus":
        (workdir / "p.yml").write_text("global: {}\n")
        argv = [
            find_binary("prometheus"),
            f"--config.file={workdir / 'p.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
        ]
    else:
        (workdir / "a.yml").write_text("route: {receiver: x}\nreceivers: [{name: x}]\n")
        argv = [
            find_binary("alertmanager"),
            f"--config.file={workdir / 'a.yml'}",
            f"--storage.path={workdir / 'data'}",
            "--cluster.listen-address=",
        ]
    argv += [f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web_file}"]
    log_path = workdir / f"{kind}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    context = client_context(pki["ca"].cert, pki["client"])
    context.check_hostname = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
                context.wrap_socket(sock) as tls,
            ):
                tls.sendall(b"GET /-/ready HTTP/1.0\r\n\r\n")
                if tls.recv(64).startswith(b"HTTP/1.0 200"):
                    break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise TimeoutError(f"{kind} not ready:\n{log_path.read_text()[-2000:]}")
    url = f"https://127.0.0.1:{port}"
    return Process(url, port, proc, workdir, argv, log_path)


async def test_alertmanager_with_client_certificate(tmp_path: Path, pki: dict[str, Any]) -> None:
    # The sender's session, as `AlertmanagerSender.start()` makes it, posts to a real
    # Alertmanager that requires augur's client certificate.
    named: Pair = pki["named"]
    web_file = tmp_path / "am-web.yml"
    web_file.write_text(yaml.safe_dump(mutual_tls(pki, named)), encoding="utf-8")
    port = free_port()
    proc = await asyncio.to_thread(start_mtls, "alertmanager", tmp_path, web_file, port, pki)
    client: Pair = pki["client"]
    try:
        for cert, expected in ((True, 200), (False, None)):
            tls: dict[str, Any] = {"ca_file": str(pki["ca"].cert), "server_name": "upstream.test"}
            if cert:
                tls |= {"cert_file": str(client.cert), "key_file": str(client.key)}
            cfg = Config.model_validate(
                {
                    "prometheus": {"url": "http://127.0.0.1:1"},
                    "alertmanager": {"urls": [f"https://127.0.0.1:{port}"], "tls": tls},
                }
            )
            outbox = await Outbox.open(tmp_path / f"outbox-{cert}.db", cfg.alertmanager.urls)
            sender = AlertmanagerSender(cfg.alertmanager, outbox, AlertMetrics(CollectorRegistry()))
            await sender.start()
            try:
                session = sender._session
                assert session is not None
                url = f"https://127.0.0.1:{port}/api/v2/status"
                if expected is None:
                    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                        async with session.get(url) as resp:
                            await resp.read()
                else:
                    async with session.get(url) as resp:
                        assert resp.status == expected
            finally:
                await sender.stop()
                await outbox.close()
    finally:
        proc.stop()
