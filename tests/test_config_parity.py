"""`augur check-config` and `augur run` accept exactly the same configurations.

Every case of the table goes through `augur check-config` and through `augur run`, both as the
console script runs them (`cli.main`). `run` goes as far as serving: its real `serve` is called
with the stop event already set, so every cleanup context starts (Prometheus session with its
credentials and TLS, the text model and the alert loop with the webhook's token, the poller),
augur listens, and then shuts down. Both must accept, or both refuse with exit code 2 and the
same message, which names the failing setting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exporter import app, cli, logs
from exporter.config.alerts import REPO_MODEL_DIR
from exporter.config.root import Config

PROM = "url: 'http://127.0.0.1:1', retries: 0"
"""Nothing listens there: the poller's first cycle fails at once, which `run` survives."""
ALERTMANAGER = "alertmanager: {urls: ['http://127.0.0.1:1']}\n"
BROKEN_CERT = """-----BEGIN CERTIFICATE-----
MIIBeTCCAR+gAwIBAgIUJ4c2Zq1YmPZ7s0Jw7T3U3vUQF0AwCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----
"""
"""A PEM block cut short: no certificate in it."""


@dataclass
class Case:
    """A configuration file, the files it names (`{tmp}` is the test's folder), the environment."""

    yaml: str
    problem: str | None = None
    """What both commands must say (after `{tmp}` is filled in); None when the config is valid."""
    files: dict[str, str] = field(default_factory=dict)
    folders: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


CASES = {
    "valid minimal": Case(f"prometheus: {{{PROM}}}\n"),
    "valid: bearer token from the environment": Case(
        f"prometheus: {{{PROM}}}\n", env={"AUGUR_PROMETHEUS_BEARER_TOKEN": "s3cret"}
    ),
    "valid: basic auth with a password file, the alert loop with a webhook token": Case(
        f"prometheus: {{{PROM}, basic_auth: {{username: augur, password_file: '{{tmp}}/pw'}}}}\n"
        f"{ALERTMANAGER}webhook: {{bearer_token_file: '{{tmp}}/token'}}\n"
        f"model: {{dir: '{REPO_MODEL_DIR}'}}\n",
        files={"pw": "hunter2\n", "token": "s3cret\n"},
    ),
    "bearer token in the environment and basic_auth in the file": Case(
        f"prometheus: {{{PROM}, basic_auth: {{username: augur, password_file: '{{tmp}}/pw'}}}}\n",
        "prometheus: AUGUR_PROMETHEUS_BEARER_TOKEN and basic_auth are set; keep only one",
        files={"pw": "hunter2\n"},
        env={"AUGUR_PROMETHEUS_BEARER_TOKEN": "s3cret"},
    ),
    "bearer token from a file and from the environment": Case(
        f"prometheus: {{{PROM}, bearer_token_file: '{{tmp}}/token'}}\n",
        "prometheus: bearer_token_file and AUGUR_PROMETHEUS_BEARER_TOKEN are set; keep only one",
        files={"token": "s3cret\n"},
        env={"AUGUR_PROMETHEUS_BEARER_TOKEN": "s3cret"},
    ),
    "basic-auth password in the environment without basic_auth": Case(
        f"prometheus: {{{PROM}}}\n",
        "prometheus: AUGUR_PROMETHEUS_BASIC_AUTH_PASSWORD is set but basic_auth is not",
        env={"AUGUR_PROMETHEUS_BASIC_AUTH_PASSWORD": "hunter2"},
    ),
    "a colon in the basic-auth user name": Case(
        f"prometheus: {{{PROM}, basic_auth: {{username: 'a:b'}}}}\n",
        'prometheus.basic_auth.username: a ":" is not allowed',
    ),
    "empty webhook token file": Case(
        f"prometheus: {{{PROM}}}\n{ALERTMANAGER}webhook: {{bearer_token_file: '{{tmp}}/token'}}\n",
        "webhook.bearer_token_file: {tmp}/token is empty",
        files={"token": "\n"},
    ),
    "unreadable webhook token file (a folder)": Case(
        f"prometheus: {{{PROM}}}\n{ALERTMANAGER}webhook: {{bearer_token_file: '{{tmp}}/token'}}\n",
        "webhook.bearer_token_file: cannot read {tmp}/token: Is a directory",
        folders=("token",),
    ),
    "missing Prometheus token file": Case(
        f"prometheus: {{{PROM}, bearer_token_file: '{{tmp}}/none'}}\n",
        "prometheus.bearer_token_file: cannot read {tmp}/none: No such file or directory",
    ),
    "empty Prometheus token file": Case(
        f"prometheus: {{{PROM}, bearer_token_file: '{{tmp}}/token'}}\n",
        "prometheus.bearer_token_file: {tmp}/token is empty",
        files={"token": ""},
    ),
    "CA bundle without a certificate": Case(
        f"prometheus: {{{PROM}, tls: {{ca_file: '{{tmp}}/ca.pem'}}}}\n",
        "prometheus.tls.ca_file: {tmp}/ca.pem holds no usable PEM certificate",
        files={"ca.pem": BROKEN_CERT},
    ),
    "no text model for the alert loop": Case(
        f"prometheus: {{{PROM}}}\n{ALERTMANAGER}model: {{dir: '{{tmp}}'}}\n",
        "model.dir: no readable {tmp}/manifest.json",
    ),
    "unknown key": Case(
        f"prometheus: {{{PROM}, retires: 3}}\n", "prometheus.retires: unknown setting"
    ),
    "bad duration": Case(
        f"prometheus: {{{PROM}}}\npoll: {{interval: 5x}}\n", "poll.interval: not a duration"
    ),
    "unknown detector": Case(
        f"prometheus: {{{PROM}}}\nqueries: [{{name: a, expr: up, detectors: [arma]}}]\n",
        'queries[0].detectors: unknown detector "arma"',
    ),
    "secret in the file": Case(
        "prometheus: {url: 'http://127.0.0.1:1', bearer_token: s3cret}\n",
        "prometheus: bearer_token: secrets are not read from the file",
    ),
}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Config]]:
    """`run`'s real `serve`, stopped as soon as it listens; the configs it served."""
    real_serve = app.serve
    seen: list[Config] = []

    async def serve_once(
        config: Config, stop: asyncio.Event | None = None, load: Callable[[], Config] | None = None
    ) -> None:
        seen.append(config)
        stop = asyncio.Event()
        stop.set()
        await real_serve(config, stop, load)

    monkeypatch.setattr(app, "serve", serve_once)
    # Logging set-up replaces the root handlers (pytest's among them) and is not about config.
    monkeypatch.setattr(logs, "setup", lambda *args, **kwargs: None)
    for name in [n for n in os.environ if n.startswith("AUGUR_")]:
        monkeypatch.delenv(name)
    yield seen


@pytest.mark.parametrize("name", CASES)
def test_check_config_and_run_agree(
    name: str,
    tmp_path: Path,
    served: list[Config],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    for file, text in case.files.items():
        (tmp_path / file).write_text(text, encoding="utf-8")
    for folder in case.folders:
        (tmp_path / folder).mkdir()
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "augur.yaml"
    path.write_text(case.yaml.replace("{tmp}", str(tmp_path)), encoding="utf-8")
    flags = ["--config", str(path), "--state.path", str(tmp_path / "augur.db")]

    def run(command: str, *extra: str) -> tuple[int, str]:
        code = cli.main([command, *flags, *extra])
        return code, capsys.readouterr().err

    checked = run("check-config")
    ran = run("run", "--web.listen-address", "127.0.0.1:0")
    if case.problem is None:
        assert checked == (0, ""), checked[1]
        assert ran[0] == 0, ran[1]
        assert len(served) == 1, "run did not get as far as serving"
    else:
        assert checked[0] == 2
        assert case.problem.replace("{tmp}", str(tmp_path)) in checked[1]
        assert ran == checked
        assert served == []
