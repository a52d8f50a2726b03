"""What the webhook makes of a body: the payload, or the 4xx answer that says why there is none.

Input that can never succeed is answered with a short reason (at most `MAX_PROBLEMS` problems
of at most `MAX_PROBLEM_CHARS` each), never with the attacker's megabytes echoed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic_core
from aiohttp import web
from pydantic import ValidationError

from exporter.alerts.payloads import WebhookPayload
from exporter.config.base import located

MAX_PROBLEMS = 20
"""How many validation problems an error answer lists."""
MAX_PROBLEM_CHARS = 300
"""Each is cut to this many characters: a 1 MB label name must not make a 4 MB answer."""


def error(
    status: int, message: str, problems: Sequence[str] = (), retry_after: float | None = None
) -> web.Response:
    body: dict[str, Any] = {"status": "error", "error": message}
    if problems:
        body["problems"] = list(problems)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="augur"'
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    return web.json_response(body, status=status, headers=headers)


def cut(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"…({len(text) - limit} more characters)"


def problems(exc: ValidationError) -> list[str]:
    """Each validation error as `path: message`, e.g. `alerts[0].startsAt: field required`.

    At most `MAX_PROBLEMS`, each at most `MAX_PROBLEM_CHARS`, then how many more there were.
    """
    errors = exc.errors(include_url=False, include_input=False)
    out = [cut(p) for p in located(errors[:MAX_PROBLEMS], noun="field", top="(body)")]
    if len(errors) > MAX_PROBLEMS:
        out.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return out


def parsed(body: bytes) -> WebhookPayload | web.Response:
    """The payload, or the 400 or 422 that says why there is none."""
    try:
        return parse(body)
    except BadInput as exc:
        return error(exc.status, str(exc))
    except ValidationError as exc:
        return error(422, "not an Alertmanager webhook payload (version 4)", problems(exc))


class BadInput(Exception):
    """Input that can never succeed: answered with `status` and not retried by Alertmanager."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse(body: bytes) -> WebhookPayload:
    """The payload in a body, or `BadInput` (400 not JSON) or ValidationError (422).

    pydantic's own JSON parser, not `json.loads`: it builds the models without a tree of
    Python dicts first (a third of the memory), and refuses invalid UTF-8, lone surrogates,
    trailing data and nesting deeper than 200. Duplicate keys: the last wins, as in Go's
    encoding/json, so augur reads a body the way Alertmanager itself would.
    """
    try:
        payload = WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        invalid = [e for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
        if invalid:
            raise BadInput(
                400,
                "the body is not JSON: " + cut(invalid[0]["msg"].removeprefix("Invalid JSON: ")),
            ) from None
        raise
    if b"NaN" in body or b"Infinity" in body:
        # pydantic's parser takes these literals (in ignored fields too); Go never writes them.
        try:
            pydantic_core.from_json(body, allow_inf_nan=False)
        except ValueError:
            raise BadInput(400, "the body is not JSON: NaN and Infinity are not JSON") from None
    return payload
