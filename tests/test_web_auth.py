"""Basic auth and headers on the real app, served as `augur run` serves it: the per-endpoint rule.

With `basic_auth_users`: `/`, `/metrics` and unknown paths need a user; `/-/healthy` and
`/-/ready` stay open; `/webhook` takes the webhook's bearer token when one is set, and basic
auth when not. A garbage `Authorization` header is a 400 or 401, never a 500.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from serving import running

from exporter.config.root import Config
from exporter.demo.procs import free_port
from exporter.web import auth

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
TOKEN = "webhook-token-123"


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def make_config(tmp_path: Path, *, token: bool = False, users: bool = True) -> Config:
    web_file = tmp_path / "web.yml"
    doc: dict[str, Any] = {
        "http_server_config": {
            "headers": {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}
        }
    }
    if users:
        doc["basic_auth_users"] = {"alice": HASH}
    web_file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    data: dict[str, Any] = {
        "prometheus": {"url": "http://127.0.0.1:1", "timeout": "1s", "retries": 0},
        "web": {"listen_address": f"127.0.0.1:{free_port()}", "config_file": str(web_file)},
        "state": {"path": str(tmp_path / "augur.db")},
    }
    if token:
        (tmp_path / "token").write_text(TOKEN)
        data["webhook"] = {"bearer_token_file": str(tmp_path / "token")}
    return Config.model_validate(data)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    cfg = make_config(tmp_path)
    async with running(cfg), aiohttp.ClientSession() as session:
        yield f"http://{cfg.web.listen_address}", session


async def status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with session.get(url, **kwargs) as resp:
        await resp.read()
        return resp.status


async def raw(port: int, request: bytes) -> bytes:
    """What the server answers to `request` sent byte for byte, up to its end or 64 KiB."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 30)
    finally:
        writer.close()


async def test_basic_auth_right_wrong_missing(
    served: tuple[str, aiohttp.ClientSession],
) -> None:
    url, session = served
    for path in ("/", "/metrics", "/no-such-page"):
        assert await status(session, url + path) == 401
        assert await status(session, url + path, headers=basic("alice", "wrong")) == 401
        assert await status(session, url + path, headers=basic("mallory", PASSWORD)) == 401
    assert await status(session, url + "/metrics", headers=basic("alice", PASSWORD)) == 200
    assert await status(session, url + "/", headers=basic("alice", PASSWORD)) == 200
    assert await status(session, url + "/no-such-page", headers=basic("alice", PASSWORD)) == 404
    async with session.get(url + "/metrics") as resp:
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="augur"'


async def test_probes_stay_open(served: tuple[str, aiohttp.ClientSession]) -> None:
    url, session = served
    assert await status(session, url + "/-/healthy") == 200
    # Not ready (Prometheus is unreachable), but answered: not a 401.
    assert await status(session, url + "/-/ready") == 503


async def test_headers_on_every_answer(served: tuple[str, aiohttp.ClientSession]) -> None:
    url, session = served
    for path, headers in (
        ("/metrics", basic("alice", PASSWORD)),
        ("/metrics", {}),
        ("/-/healthy", {}),
    ):
        async with session.get(url + path, headers=headers) as resp:
            assert resp.headers["X-Frame-Options"] == "deny"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Basic", b"401"),
        (b"Basic !!!not-base64!!!", b"401"),
        (b"Basic " + base64.b64encode(b"no-colon"), b"401"),
        (b"Basic " + base64.b64encode(b"alice:\xff\xfe"), b"401"),
        (b"Bearer " + base64.b64encode(b"alice:x"), b"401"),
        (b"Basic \xff\xfe\xfd", b"400"),
        (b"\xc3\x28 garbage", b"400"),
    ],
)
async def test_garbage_authorization_is_never_a_500(
    served: tuple[str, aiohttp.ClientSession], header: bytes, expected: bytes
) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    for path in (b"/metrics", b"/webhook"):
        method = b"POST" if path == b"/webhook" else b"GET"
        answer = await raw(
            port,
            method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            b"Connection: close\r\nAuthorization: " + header + b"\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 " + expected), answer[:200]


async def test_webhook_takes_its_token_not_basic_auth(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, token=True)
    url = f"http://{cfg.web.listen_address}"
    async with running(cfg), aiohttp.ClientSession() as session:
        # Passed to the webhook, which checks the token (and, with alert enrichment off here,
        # answers 503 so Alertmanager retries): the middleware asks no basic auth of it.
        async with session.post(url + "/webhook", json={}) as resp:
            assert resp.status == 503
        # Everything else still needs the user.
        assert await status(session, url + "/metrics") == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert await status(session, url + "/metrics", headers=bearer) == 401


async def test_webhook_without_a_token_needs_basic_auth(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, token=False)
    url = f"http://{cfg.web.listen_address}"
    async with running(cfg), aiohttp.ClientSession() as session:
        async with session.post(url + "/webhook", json={}) as resp:
            assert resp.status == 401
        async with session.post(
            url + "/webhook", json={}, headers=basic("alice", PASSWORD)
        ) as resp:
            assert resp.status == 503  # through to the webhook (enrichment off)


async def test_no_users_no_auth(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, users=False)
    url = f"http://{cfg.web.listen_address}"
    async with running(cfg), aiohttp.ClientSession() as session:
        assert await status(session, url + "/metrics") == 200


async def test_bcrypt_is_paid_once_per_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    users = auth.Users({"alice": HASH})
    for _ in range(5):
        assert await users.check("alice", PASSWORD)
        assert not await users.check("alice", "wrong")
        assert not await users.check("nobody", PASSWORD)
    assert len(calls) == 3
