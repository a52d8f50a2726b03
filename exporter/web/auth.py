"""Who may call which endpoint: basic auth from `basic_auth_users`, the probes left open.

The rule, with `basic_auth_users` set (without it every endpoint is open, as in
exporter-toolkit):

- `/-/healthy` and `/-/ready` answer anyone: kubelet's probes carry no credentials.
- `/webhook` with `webhook.bearer_token_file` set: the webhook checks that token and basic auth
  is not asked for (Alertmanager's `http_config` sends one credential). Without the token it
  needs basic auth like the rest.
- Everything else (`/`, `/metrics`, unknown paths): a user of `basic_auth_users` and the
  password whose bcrypt hash is listed, else 401 with `WWW-Authenticate: Basic`.

An `Authorization` header that is not ASCII is answered 400 before any handler sees it.
bcrypt is slow on purpose (~50 ms at cost 10): checks run in a thread, one at a time as in
exporter-toolkit, and each (user, hash, password) outcome is remembered by its SHA-256, so a
scraper pays it once, not per scrape.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
from base64 import b64decode
from collections import OrderedDict
from collections.abc import Callable, Mapping

import bcrypt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

OPEN_PATHS = frozenset({"/-/healthy", "/-/ready"})
WEBHOOK_PATH = "/webhook"

# bcrypt of a string nobody uses: an unknown user costs what a known one does, so timing does
# not tell which user names exist (exporter-toolkit does the same).
_NOBODY = b"$2b$10$rtP0ycmDA/cpK.XGyw0KNetPmCJ6pThXC8DlVLdNAearj7PCeHd.6"
_REMEMBERED = 256


def basic_credentials(header: str) -> tuple[str, str] | None:
    """User and password of a `Basic` Authorization header; None if it is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class Users:
    """The basic-auth users and their bcrypt hashes, with the outcomes remembered."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {name: hashed.encode() for name, hashed in users.items()}
        self._outcomes: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = asyncio.Lock()

    def __bool__(self) -> bool:
        return bool(self._users)

    async def check(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s; bcrypt runs off the event loop, once per triple."""
        hashed = self._users.get(user)
        known = hashed is not None
        hashed = hashed if hashed is not None else _NOBODY
        key = hashlib.sha256(b"\0".join([user.encode(), hashed, password.encode()])).digest()
        outcome = self._outcomes.get(key)
        if outcome is None:
            async with self._lock:
                matches = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
            outcome = known and matches
            self._outcomes[key] = outcome
            while len(self._outcomes) > _REMEMBERED:
                self._outcomes.popitem(last=False)
        return outcome


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="401 Unauthorized: this endpoint needs basic auth (see docs/security.md)\n",
        headers={"WWW-Authenticate": 'Basic realm="augur"'},
    )


def auth_middleware(users: Callable[[], Users], webhook_token: Callable[[], bool]) -> Middleware:
    """The middleware applying the rule above; `users()` is the current list (it reloads), and
    `webhook_token()` whether the webhook checks a token of its own (a reload may change it)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if header is not None and not header.isascii():
            return web.Response(status=400, text="400 Bad Request: Authorization is not ASCII\n")
        if request.path in OPEN_PATHS:
            return await handler(request)
        if request.path == WEBHOOK_PATH and webhook_token():
            return await handler(request)
        current = users()
        if not current:
            return await handler(request)
        credentials = basic_credentials(header or "")
        if credentials is None or not await current.check(*credentials):
            return _unauthorized()
        return await handler(request)

    return authenticate
