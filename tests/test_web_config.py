"""`web.config_file` (exporter-toolkit's format) and the upstreams' TLS and credentials at load.

Every refusal is a located configuration error, the same for `augur check-config` and
`augur run`, and never echoes a secret.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from certs import CA

from exporter.config import check, flags
from exporter.config.base import ConfigError
from exporter.config.load import load
from exporter.config.root import Config
from exporter.config.webfile import read_web_file

PROM = {"url": "http://127.0.0.1:9090"}
HASH = bcrypt.hashpw(b"s3cret-pass", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return CA(tmp_path_factory.mktemp("pki"))


def web_file(tmp_path: Path, doc: dict[str, Any] | str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return path


def problems(tmp_path: Path, doc: dict[str, Any] | str) -> list[str]:
    path = web_file(tmp_path, doc)
    with pytest.raises(ConfigError) as exc:
        load(overrides={("prometheus", "url"): PROM["url"], ("web", "config_file"): str(path)})
    return exc.value.problems


def test_a_full_file_loads(tmp_path: Path, ca: CA) -> None:
    server = ca.issue("server")
    path = web_file(
        tmp_path,
        {
            "tls_server_config": {
                "cert_file": str(server.cert),
                "key_file": str(server.key),
                "client_ca_file": str(ca.cert),
                "client_auth_type": "RequireAndVerifyClientCert",
                "min_version": "TLS13",
                "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            },
            "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
            "basic_auth_users": {"alice": HASH},
        },
    )
    cfg = load(overrides={("prometheus", "url"): PROM["url"], ("web", "config_file"): str(path)})
    assert cfg.web.config_file == path
    parsed = read_web_file(path)
    assert parsed.tls() and parsed.basic_auth_users == {"alice": HASH}


def test_relative_paths_are_relative_to_the_file(tmp_path: Path, ca: CA) -> None:
    server = ca.issue("relative")
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "s.pem").write_bytes(server.cert.read_bytes())
    (tmp_path / "tls" / "s.key").write_bytes(server.key.read_bytes())
    path = web_file(
        tmp_path, {"tls_server_config": {"cert_file": "tls/s.pem", "key_file": "tls/s.key"}}
    )
    tls = read_web_file(path).tls_server_config
    assert tls is not None and tls.cert_file == tmp_path / "tls" / "s.pem"


def test_missing_certificate_is_located(tmp_path: Path) -> None:
    found = problems(
        tmp_path, {"tls_server_config": {"cert_file": "/nonexistent/c.pem", "key_file": "k"}}
    )
    assert len(found) == 1
    assert found[0].startswith("web.config_file: tls_server_config.cert_file: /nonexistent/c.pem")
    assert "no such file" in found[0]


def test_a_key_that_does_not_match_is_refused(tmp_path: Path, ca: CA) -> None:
    one, other = ca.issue("one"), ca.issue("other")
    found = problems(
        tmp_path, {"tls_server_config": {"cert_file": str(one.cert), "key_file": str(other.key)}}
    )
    assert "not a matching PEM certificate and unencrypted key" in found[0]


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        ({"client_auth_type": "RequestClientCert"}, "RequestClientCert (a certificate asked for"),
        ({"client_auth_type": "RequireAndVerifyClientCert"}, "needs client_ca_file"),
        ({"client_auth_type": "Sometimes"}, "client_auth_type: Input should be"),
        ({"min_version": "TLS11"}, "TLS11 is not offered by augur"),
        ({"min_version": "TLS13", "max_version": "TLS12"}, "min_version TLS13 is above"),
        ({"cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}, "unsupported cipher suite"),
        ({"curve_preferences": ["X25519"]}, "curve_preferences: not supported"),
        ({"key": "-----BEGIN PRIVATE KEY-----"}, "key: an inline key is a secret"),
    ],
)
def test_what_augur_cannot_do_is_refused_by_name(
    tmp_path: Path, ca: CA, tls: dict[str, Any], expected: str
) -> None:
    server = ca.issue("named")
    doc = {"tls_server_config": {"cert_file": str(server.cert), "key_file": str(server.key), **tls}}
    found = problems(tmp_path, doc)
    assert len(found) == 1 and expected in found[0], found
    assert "BEGIN PRIVATE KEY" not in found[0]


def test_client_ca_without_verification_is_refused(tmp_path: Path, ca: CA) -> None:
    server = ca.issue("ca-only")
    doc = {
        "tls_server_config": {
            "cert_file": str(server.cert),
            "key_file": str(server.key),
            "client_ca_file": str(ca.cert),
        }
    }
    assert "client_ca_file is set without a client_auth_type" in problems(tmp_path, doc)[0]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Server": "augur"}, "HTTP header 'Server' can not be configured"),
        ({"X-Frame-Options": "allow"}, "X-Frame-Options must be one of deny, sameorigin"),
        ({"X-Content-Type-Options": "sniff"}, "must be one of nosniff"),
    ],
)
def test_only_exporter_toolkits_headers(
    tmp_path: Path, headers: dict[str, str], expected: str
) -> None:
    found = problems(tmp_path, {"http_server_config": {"headers": headers}})
    assert expected in found[0]


def test_a_password_instead_of_a_hash_is_refused_and_not_echoed(tmp_path: Path) -> None:
    found = problems(tmp_path, {"basic_auth_users": {"alice": "plain-text-password"}})
    assert found == [
        "web.config_file: basic_auth_users: alice: not a bcrypt hash; hash the password with "
        "`htpasswd -nBC 10 \"\" | tr -d ':\\n'` or bcrypt.hashpw"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config: [", "is not valid YAML at line"),
        ("- a\n", "the top level must be a mapping"),
        ("basic_auth_userz: {}\n", "basic_auth_userz: unknown setting"),
        ("rate_limit: {interval: 1s}\n", "rate_limit: not supported by augur"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1 and expected in found[0], found


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(overrides={("prometheus", "url"): PROM["url"], ("web", "config_file"): "/no/web.yml"})
    assert exc.value.problems == [
        "web.config_file: cannot read /no/web.yml: No such file or directory"
    ]


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    for name in ("file", "env", "flag"):
        (tmp_path / name).mkdir()
    by_file, by_env, by_flag = (web_file(tmp_path / n, {}) for n in ("file", "env", "flag"))
    config = tmp_path / "augur.yaml"
    config.write_text(
        yaml.safe_dump({"prometheus": PROM, "web": {"config_file": str(by_file)}}), encoding="utf-8"
    )
    assert load(config, environ={}).web.config_file == by_file
    env = {"AUGUR_WEB_CONFIG_FILE": str(by_env)}
    assert load(config, environ=env).web.config_file == by_env
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    args = parser.parse_args(["--config", str(config), "--web.config.file", str(by_flag)])
    loaded = flags.load_config(args)
    assert isinstance(loaded, Config) and loaded.web.config_file == by_flag


def test_check_config_reports_the_web_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = web_file(tmp_path, {"basic_auth_users": {"bob": "hunter2"}})
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    args = parser.parse_args(["--prometheus.url", PROM["url"], "--web.config.file", str(bad)])
    assert check.run(args) == 2
    err = capsys.readouterr().err
    assert "web.config_file: basic_auth_users: bob: not a bcrypt hash" in err
    assert "hunter2" not in err


def test_prometheus_url_with_credentials_is_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as exc:
        load(overrides={("prometheus", "url"): "https://admin:Pa55word@prom.example:9090"})
    text = str(exc.value)
    assert "prometheus.url: credentials in the URL are not supported (prom.example)" in text
    assert "basic_auth.password_file" in text
    assert "Pa55word" not in text and "admin" not in text


def test_alertmanager_credentials_and_client_certificate(tmp_path: Path, ca: CA) -> None:
    client = ca.issue("augur-client", client=True)
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("am-token\n")
    password.write_text("am-password\n")
    base = {"prometheus": PROM}
    cfg = Config.model_validate(
        {
            **base,
            "alertmanager": {
                "urls": ["https://127.0.0.1:9093"],
                "bearer_token_file": str(token),
                "tls": {
                    "ca_file": str(ca.cert),
                    "cert_file": str(client.cert),
                    "key_file": str(client.key),
                    "server_name": "alertmanager.test",
                },
            },
        }
    )
    assert cfg.alertmanager.authorization() == "Bearer am-token"
    assert "am-token" not in repr(cfg)
    basic = Config.model_validate(
        {
            **base,
            "alertmanager": {"basic_auth": {"username": "augur", "password_file": str(password)}},
        }
    )
    assert basic.alertmanager.authorization() == "Basic YXVndXI6YW0tcGFzc3dvcmQ="
    for alertmanager, expected in [
        (
            {
                "bearer_token_file": str(token),
                "basic_auth": {"username": "a", "password_file": str(password)},
            },
            "bearer_token_file and basic_auth are set; keep only one (Alertmanager takes one",
        ),
        ({"basic_auth": {"username": "a"}}, "basic_auth: set password_file"),
        ({"tls": {"cert_file": str(client.cert)}}, "cert_file and key_file go together"),
        (
            {"tls": {"cert_file": str(client.cert), "key_file": str(ca.key)}},
            "are not a matching PEM certificate",
        ),
    ]:
        path = tmp_path / "augur.yaml"
        path.write_text(yaml.safe_dump({**base, "alertmanager": alertmanager}), encoding="utf-8")
        with pytest.raises(ConfigError) as exc:
            load(path, environ={})
        assert expected in str(exc.value), exc.value
        assert "am-password" not in str(exc.value) and "am-token" not in str(exc.value)
