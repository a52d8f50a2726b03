"""Configuration: located error messages, precedence, secrets, and `augur check-config`."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import cli
from exporter.config.base import ConfigError
from exporter.config.durations import format_duration, parse_duration
from exporter.config.load import env_name, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "augur.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path, environ={}, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


def test_minimal_config_needs_only_the_prometheus_url(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "prometheus: {url: 'http://127.0.0.1:9090/'}\n"), environ={})
    assert cfg.prometheus.url == "http://127.0.0.1:9090"
    assert cfg.poll.interval == 60
    assert cfg.queries == []
    # With no queries, the built-in defaults are scored.
    names = [q.name for q in cfg.effective_queries()]
    assert "process_cpu" in names and "node_cpu_busy" in names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "prometheus: {url: 'http://p:9090'}\npoll: {interval: 5x}\n",
            "poll.interval: not a duration",
        ),
        (
            "prometheus: {url: 'http://p:9090'}\nqueries:\n"
            "  - {name: a, expr: up}\n  - {name: b, expr: up}\n"
            "  - {name: c, expr: up, detectors: [zscore, arma]}\n",
            'queries[2].detectors: unknown detector "arma"',
        ),
        (
            "prometheus: {url: 'http://p:9090'}\nqueries:\n"
            "  - {name: a, expr: up, detectors: {zscore: {windw: 5}}}\n",
            "queries[0].detectors: zscore.windw: unknown setting",
        ),
        (
            "prometheus: {url: 'http://p:9090', timeout: 1h, retires: 3}\n",
            "prometheus.retires: unknown setting",
        ),
        ("poll: {interval: 30s}\n", "prometheus: required setting is missing"),
        ("prometheus: {url: 'ftp://p'}\n", "prometheus.url: must be an http:// or https:// URL"),
        (
            "prometheus: {url: 'http://p:9090'}\nqueries:\n  - {name: a, expr: up, step: 5m, lookback: 5m}\n",
            "queries[0]: lookback (5m) must cover at least two steps (5m)",
        ),
        (
            "prometheus: {url: 'http://p:9090'}\nqueries:\n  - {name: a, expr: up}\n  - {name: a, expr: up}\n",
            'queries: query name "a" is used twice',
        ),
        (
            "prometheus: {url: 'http://p:9090'}\nqueries:\n  - {name: a, expr: up, direction: sideways}\n",
            "queries[0].direction:",
        ),
        (
            "prometheus: {url: 'http://p:9090', bearer_token: hunter2}\n",
            "bearer_token: secrets are not read from the file",
        ),
        (
            "prometheus: {url: 'http://p:9090'}\nweb: {listen_address: '9465'}\n",
            "web.listen_address: must be HOST:PORT",
        ),
    ],
)
def test_errors_name_the_failing_path(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(write(tmp_path, text))
    assert any(expected in p for p in found), found


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = (
        "prometheus: {url: 'http://p:9090'}\npoll: {interval: soon}\n"
        "queries:\n  - {name: a, expr: up, lookback: forever}\n  - {expr: up}\n"
    )
    found = problems(write(tmp_path, text))
    assert len(found) == 3, found
    assert any(p.startswith("poll.interval") for p in found)
    assert any(p.startswith("queries[0].lookback") for p in found)
    assert any(p.startswith("queries[1].name: required") for p in found)


def test_malformed_yaml_reports_the_line(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "prometheus:\n  url: [unclosed\n"))
    assert len(found) == 1 and "not valid YAML: line" in found[0]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    found = problems(tmp_path / "nope.yaml")
    assert "cannot read the file" in found[0]


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "prometheus: {url: 'http://file:9090'}\npoll: {interval: 1m}\n")
    env = {"AUGUR_PROMETHEUS_URL": "http://env:9090", "AUGUR_POLL_INTERVAL": "30s"}
    cfg = load(path, environ=env)
    assert cfg.prometheus.url == "http://env:9090"
    assert cfg.poll.interval == 30
    cfg = load(path, environ=env, overrides={("prometheus", "url"): "http://flag:9090"})
    assert cfg.prometheus.url == "http://flag:9090"
    assert cfg.poll.interval == 30
    # No file at all: the environment alone is enough.
    assert load(None, environ={"AUGUR_PROMETHEUS_URL": "http://x:1"}).prometheus.url == "http://x:1"


def test_env_names_cover_nested_settings() -> None:
    assert env_name(("prometheus", "tls", "ca_file")) == "AUGUR_PROMETHEUS_TLS_CA_FILE"
    cfg = load(
        None,
        environ={
            "AUGUR_PROMETHEUS_URL": "https://p",
            "AUGUR_PROMETHEUS_TLS_INSECURE_SKIP_VERIFY": "true",
            "AUGUR_WEB_LISTEN_ADDRESS": "127.0.0.1:1234",
        },
    )
    assert cfg.prometheus.tls.insecure_skip_verify is True
    assert cfg.web.host_port() == ("127.0.0.1", 1234)


def test_bad_env_value_names_the_setting() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, environ={"AUGUR_PROMETHEUS_URL": "http://p", "AUGUR_POLL_WORKERS": "many"})
    assert info.value.problems[0].startswith("poll.workers:")


def test_secrets_come_from_files_or_env(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    cfg = load(
        write(tmp_path, f"prometheus: {{url: 'http://p', bearer_token_file: '{token}'}}\n"),
        environ={},
    )
    assert cfg.prometheus.bearer_token() == "s3cret"
    cfg = load(
        None,
        environ={"AUGUR_PROMETHEUS_URL": "http://p", "AUGUR_PROMETHEUS_BEARER_TOKEN": "fromenv"},
    )
    assert cfg.prometheus.bearer_token() == "fromenv"
    assert "fromenv" not in repr(cfg) and "fromenv" not in cfg.model_dump_json()
    found = problems(
        write(tmp_path, f"prometheus: {{url: 'http://p', bearer_token_file: '{tmp_path}/none'}}\n")
    )
    assert found == [
        f"prometheus.bearer_token_file: cannot read {tmp_path}/none: No such file or directory"
    ]


def test_detectors_accept_list_or_mapping(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            "prometheus: {url: 'http://p'}\nqueries:\n"
            "  - {name: a, expr: up, detectors: [ewma]}\n"
            "  - {name: b, expr: up, detectors: {zscore: {robust: true, threshold: 4}}}\n",
        ),
        environ={},
    )
    assert list(cfg.queries[0].detectors) == ["ewma"]
    params = cfg.queries[1].detectors["zscore"]
    assert params.robust is True  # type: ignore[attr-defined]
    assert params.threshold == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1d", 86400),
        ("1w", 604800),
        ("500ms", 0.5),
        (15, 15),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_format_duration_round_trips() -> None:
    for text in ("30s", "5m", "1h30m", "1d", "500ms"):
        assert format_duration(parse_duration(text)) == text


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "prometheus: {url: 'http://p:9090'}\n")
    assert cli.main(["check-config", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "configuration is valid" in out and "built-in defaults" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text("prometheus: {url: 'http://p'}\npoll: {interval: x}\nqueries: [{expr: up}]\n")
    assert cli.main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "poll.interval: not a duration" in err
    assert "queries[0].name: required setting is missing" in err


@pytest.mark.parametrize(
    ("url", "compression", "gzip"),
    [
        ("http://127.0.0.1:9090", "auto", False),
        ("http://localhost:9090", "auto", False),
        ("http://[::1]:9090", "auto", False),
        ("http://prometheus.monitoring:9090", "auto", True),
        ("https://127.0.0.1.example.com/prom", "auto", True),
        ("http://127.0.0.1:9090", "gzip", True),
        ("http://prometheus:9090", "none", False),
    ],
)
def test_gzip_only_pays_off_over_a_network(url: str, compression: str, gzip: bool) -> None:
    cfg = load(
        None, environ={"AUGUR_PROMETHEUS_URL": url, "AUGUR_PROMETHEUS_COMPRESSION": compression}
    )
    assert cfg.prometheus.gzip() is gzip


def test_documented_example_is_valid_and_matches_the_readme() -> None:
    root = Path(__file__).resolve().parents[1]
    example = root / "docs" / "augur.yaml"
    cfg = load(example, environ={})
    assert [q.name for q in cfg.queries] == ["api_latency", "disk_used"]
    assert cfg.alertmanager.enabled()
    readme = (root / "README.md").read_text(encoding="utf-8")
    body = example.read_text(encoding="utf-8").split("\n", 2)[2]  # after the two comment lines
    assert f"```yaml\n{body}```" in readme


def test_two_credentials_are_refused(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("x")
    text = f"prometheus: {{url: 'http://p', bearer_token_file: '{token}', basic_auth: {{username: u}}}}\n"
    found = problems(write(tmp_path, text))
    assert found == [
        "prometheus: bearer_token_file and basic_auth are set; keep only one "
        "(Prometheus takes one credential)"
    ]


def test_seasonality_range_and_horizons(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            "prometheus: {url: 'http://p'}\nqueries:\n"
            "  - {name: a, expr: up, seasonality: 1d, valid_range: [0, 1], horizons: [4h, 1h, 4h]}\n"
            "  - {name: b, expr: up, seasonality: auto}\n  - {name: c, expr: up}\n",
        ),
        environ={},
    )
    a, b, c = cfg.queries
    assert a.season_seconds() == 86400 and a.valid_range == (0, 1) and a.horizons == [3600, 14400]
    assert b.season_seconds() == "auto" and c.season_seconds() == "auto"  # the default
    found = problems(
        write(
            tmp_path,
            "prometheus: {url: 'http://p'}\nqueries:\n"
            "  - {name: a, expr: up, seasonality: daily, valid_range: [1, 0], horizons: [0s]}\n",
        )
    )
    assert any(p.startswith("queries[0].seasonality: write none, auto or a period") for p in found)
    assert any(p.startswith("queries[0].valid_range: write [low, high]") for p in found)
    assert any(p.startswith("queries[0].horizons: every horizon") for p in found)
