"""A 10-million-point answer does not take the client's memory with it.

A real Prometheus refuses to return this much (its own limits stop it first), so a small
aiohttp server on 127.0.0.1 streams it: 1,000 series x 10,000 points, about 170 MB of JSON,
chunked (no Content-Length, so only counting while reading can stop it). The client runs in a
subprocess that reports its own peak RSS; the test prints the figures and asserts only what
the client did with the answer (refused it, or kept `max_series` of it), never a size or a time.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
SERIES, POINTS = 1000, 10_000
HEAD = b'{"status":"success","data":{"resultType":"matrix","result":['

CLIENT = """
import asyncio, json, resource, sys
import aiohttp
from exporter.prometheus.client import PrometheusClient, PrometheusError

async def main(url, cap, max_series):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        client = PrometheusClient(session, url, retries=0, max_response_bytes=cap)
        try:
            m = await client.range_matrix("big", 0, 1, 1, max_series=max_series)
            out = {"kept": len(m), "dropped": m.dropped}
        except PrometheusError as exc:
            out = {"error": exc.error_type, "message": str(exc)}
    out["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def one_series(i: int) -> bytes:
    pairs = ",".join(f'[{1_700_000_000 + j},"{j % 97}"]' for j in range(POINTS))
    return b'{"metric":{"i":"%05d"},"values":[%s]}' % (i, pairs.encode())


async def endless_matrix(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    template = one_series(0)
    try:
        await resp.write(HEAD)
        for i in range(SERIES):
            chunk = template.replace(b'"i":"00000"', b'"i":"%05d"' % i)
            await resp.write(chunk + (b"," if i < SERIES - 1 else b""))
        await resp.write(b"]}}")
    except (ConnectionResetError, ConnectionError):
        pass  # the client stopped reading: what a cap should do
    return resp


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    """40 MB of JSON in about 40 kB of gzip: the Content-Length is small, the body is not."""
    body = gzip.compress(HEAD + b" " * 40_000_000 + b"]}}", compresslevel=9)
    return web.Response(
        body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )


async def client_run(url: str, cap: int, max_series: int) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        url,
        str(cap),
        str(max_series),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.integration
async def test_ten_million_points_are_refused_at_the_cap(aiohttp_server: ServerFactory) -> None:
    app = web.Application()
    app.router.add_route("*", "/api/v1/query_range", endless_matrix)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    capped = await client_run(url, 64 * 2**20, 1000)
    print(f"10M points, max_response_bytes 64 MiB: {capped}")
    assert capped["error"] == "too_large"
    assert "'big'" in str(capped["message"]) and "max_response_bytes" in str(capped["message"])

    kept = await client_run(url, 2**30, 10)
    print(f"10M points (~170 MB), max_response_bytes 1 GiB, max_series 10: {kept}")
    assert kept == {"kept": 10, "dropped": SERIES - 10, "maxrss_mib": kept["maxrss_mib"]}


async def test_gzip_bomb_stops_at_the_cap(aiohttp_server: ServerFactory) -> None:
    app = web.Application()
    app.router.add_route("*", "/api/v1/query_range", gzip_bomb)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    result = await client_run(url, 2**20, 1000)
    print(f"gzip bomb (40 kB -> 40 MB), max_response_bytes 1 MiB: {result}")
    assert result["error"] == "too_large"
