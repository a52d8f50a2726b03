"""`POST /api/v1/ask` (JSON) and `GET /ask?q=` (an HTML answer page with the question box).

Both go through `exporter.assistant.ask.ask`, behind the same authentication as every page of
augur. The text model is the alert loop's when it loaded one, else loaded here on the first
question (in a thread) and kept. The page is plain HTML, no script: the form works without JS.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from exporter.assistant.ask import MAX_QUESTION_CHARS, KnownLabels, ask
from exporter.assistant.match import Embedder
from exporter.config.alerts import AlertmanagerConfig
from exporter.prometheus.answer import PrometheusError
from exporter.prometheus.client import PrometheusClient

MAX_BODY_BYTES = 64 * 1024
"""A JSON body larger than this is refused (413) before it is parsed."""
MAX_CONCURRENT_ASKS = 4
"""Asks answered at once; one more is refused (429) rather than queued behind them."""
RETRY_AFTER_SECONDS = 2


class Busy(Exception):
    """MAX_CONCURRENT_ASKS asks are already being answered."""


class AskService:
    """What the ask routes share: the Prometheus client, the model and the known labels."""

    def __init__(
        self,
        client_of: Callable[[], PrometheusClient],
        model_of: Callable[[], Embedder | None],
        model_dir_of: Callable[[], Path],
        alertmanager_of: Callable[[], str | None] = lambda: None,
        max_concurrent: int = MAX_CONCURRENT_ASKS,
        alertmanager_config_of: Callable[[], AlertmanagerConfig | None] = lambda: None,
    ) -> None:
        """`model_of` gives the alert loop's model if it has one; else `model_dir_of` is loaded.
        `alertmanager_of` names the Alertmanager `related_anomalies` reads, with the
        credentials and TLS of `alertmanager_config_of`'s settings."""
        self.client_of = client_of
        self.alertmanager_of = alertmanager_of
        self.alertmanager_config_of = alertmanager_config_of
        self.model_of = model_of
        self.model_dir_of = model_dir_of
        self._own: Embedder | None = None
        self._lock = asyncio.Lock()
        self._known: tuple[PrometheusClient, KnownLabels] | None = None
        # Each ask embeds on the CPU and sends Prometheus several queries: a burst is refused,
        # not queued, so that it cannot pile up work the asker has long stopped waiting for.
        self._slots = asyncio.Semaphore(max_concurrent)

    async def model(self) -> Embedder:
        """The model to embed questions with."""
        shared = self.model_of()
        if shared is not None:
            return shared
        async with self._lock:
            if self._own is None:
                from exporter.text.encoder import TextModel

                self._own = await asyncio.to_thread(TextModel, self.model_dir_of())
            return self._own

    def known(self, client: PrometheusClient) -> KnownLabels:
        """The label-value cache of `client` (a reload makes a new client, so a new cache)."""
        if self._known is None or self._known[0] is not client:
            self._known = (client, KnownLabels(client))
        return self._known[1]

    async def answer(self, question: str, lang: str | None) -> dict[str, Any]:
        """The AskResult JSON of `question`; PrometheusError and Busy propagate."""
        if self._slots.locked():
            raise Busy
        async with self._slots:
            return await self._answer(question, lang)

    async def _answer(self, question: str, lang: str | None) -> dict[str, Any]:
        client = self.client_of()
        model = await self.model()
        result = await ask(
            question,
            model,
            client,
            known=self.known(client),
            lang=lang,
            alertmanager_url=self.alertmanager_of(),
            alertmanager=self.alertmanager_config_of(),
        )
        return result.to_json()


ASK = web.AppKey("ask", AskService)


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def api_ask(request: web.Request) -> web.Response:
    """`POST /api/v1/ask` {"question": ..., "lang"?: "en"|"zh"} -> the AskResult JSON."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error(400, 'expected a JSON object such as {"question": "which targets are down?"}')
    if not isinstance(body, dict) or not isinstance(body.get("question"), str):
        return _error(400, '"question" must be a string')
    lang = body.get("lang")
    if lang is not None and lang not in ("en", "zh"):
        return _error(400, '"lang" must be "en" or "zh"')
    question: str = body["question"]
    if len(question) > MAX_QUESTION_CHARS:
        return _error(413, f"question over {MAX_QUESTION_CHARS} characters")
    if not question.strip():
        return _error(400, '"question" is empty')
    try:
        result = await request.app[ASK].answer(question, lang)
    except Busy:
        response = _error(429, f"{MAX_CONCURRENT_ASKS} questions are being answered; ask again")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    except PrometheusError as exc:
        return _error(502, f"Prometheus failed: {exc}")
    return web.json_response(result, dumps=lambda d: json.dumps(d, ensure_ascii=False))


_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>augur · {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1rem; max-width: 60rem; }}
input[type=text] {{ width: 100%; box-sizing: border-box; padding: .4rem; font-size: 1rem; }}
table {{ border-collapse: collapse; margin: .5rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }}
pre {{ background: #f4f4f4; padding: .5rem; white-space: pre-wrap; word-break: break-all; }}
.reason {{ color: #a33; }}
</style></head>
<body>
<p><a href="./">augur</a></p>
{form}
{body}
</body></html>
"""
FORM = """<form action="ask" method="get" class="ask">
<label for="q">{label}</label>
<input type="text" id="q" name="q" value="{value}" maxlength="{limit}"
 placeholder="{placeholder}">
<button type="submit">{button}</button>
</form>"""


def form(value: str = "", lang: str = "en") -> str:
    """The question box, a plain GET form to `ask` (relative, so it works under a path prefix)."""
    zh = lang == "zh"
    return FORM.format(
        label="问一个问题" if zh else "Ask a question",
        value=html.escape(value),
        limit=MAX_QUESTION_CHARS,
        placeholder="哪些服务器 CPU 使用率最高？"
        if zh
        else "which hosts have the highest CPU usage?",
        button="提问" if zh else "Ask",
    )


def _body(result: dict[str, Any]) -> str:
    answer = result["answer"]
    parts = [f"<h1>{html.escape(result['question'][:200])}</h1>"]
    if answer is None:
        parts.append(f'<p class="reason">{html.escape(result["reason"])}</p>')
        if result["alternatives"]:
            parts.append('<ul class="alternatives">')
            for alt in result["alternatives"]:
                href = "ask?q=" + quote(alt["title"])
                parts.append(f'<li><a href="{href}">{html.escape(alt["title"])}</a></li>')
            parts.append("</ul>")
        return "\n".join(parts)
    parts.append(f'<p class="sentence">{html.escape(answer["sentence"])}</p>')
    head = "".join(f"<th>{html.escape(c)}</th>" for c in answer["columns"])
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in answer["rows"]
    )
    parts.append(f'<table class="answer"><tr>{head}</tr>\n{rows}\n</table>')
    parts.append("<h2>PromQL</h2>")
    parts.extend(f"<pre><code>{html.escape(q)}</code></pre>" for q in answer["promql"])
    return "\n".join(parts)


async def page_ask(request: web.Request) -> web.Response:
    """`GET /ask?q=...&lang=`: the answer as a page, with the question box to ask again."""
    question = request.query.get("q", "")
    lang = request.query.get("lang")
    lang = lang if lang in ("en", "zh") else None
    status = 200
    if not question.strip():
        body = ""
    elif len(question) > MAX_QUESTION_CHARS:
        status, body = 413, f'<p class="reason">over {MAX_QUESTION_CHARS} characters</p>'
    else:
        try:
            result = await request.app[ASK].answer(question, lang)
            body, lang = _body(result), result["lang"]
        except Busy:
            status, body = 429, '<p class="reason">busy answering other questions; ask again</p>'
        except PrometheusError as exc:
            status = 502
            body = f'<p class="reason">Prometheus failed: {html.escape(str(exc))}</p>'
    lang = lang or "en"
    text = _PAGE.format(
        lang=lang, title="ask", form=form(question[:MAX_QUESTION_CHARS], lang), body=body
    )
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 429 else None
    return web.Response(text=text, content_type="text/html", status=status, headers=headers)


def add_routes(app: web.Application, service: AskService) -> None:
    """Register `POST /api/v1/ask` and `GET /ask` with `service`."""
    app[ASK] = service
    app.router.add_post("/api/v1/ask", api_ask)
    app.router.add_get("/ask", page_ask)
