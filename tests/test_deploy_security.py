"""The deploy manifests turn the webhook token on, and the TLS overlay serves as documented.

Beside tests/test_deploy.py: the token's Secret is mounted where the environment says, the
configuration loads with it, the TLS overlay builds (kubectl), and the sample web configuration
of docs/security.md is one augur accepts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from certs import CA
from test_deploy import (
    BASE,
    K8S,
    ROOT,
    SIDECAR,
    config_from_configmap,
    containers,
    load_one,
    mounts,
)

from exporter.config.load import env_name
from exporter.config.webfile import read_web_file

TOKEN_ENV = env_name(("webhook", "bearer_token_file"))
WEB_ENV = env_name(("web", "config_file"))


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize(
    ("manifest", "secret_volume"),
    [
        (BASE / "augur-deployment.yaml", "webhook-token"),
        (SIDECAR / "prometheus-patch.yaml", "augur-webhook-token"),
    ],
)
def test_the_webhook_token_is_on_by_default(
    manifest: Path, secret_volume: str, tmp_path: Path
) -> None:
    doc = load_one(manifest)
    (container,) = containers(doc)
    token_path = PurePosixPath(env_of(container)[TOKEN_ENV])
    at = mounts(container, doc["spec"]["template"]["spec"]["volumes"])
    volume = at[str(token_path.parent)]
    assert volume["name"] == secret_volume
    assert volume["secret"]["secretName"] == "augur-webhook-token"
    assert token_path.name == "token"  # the key the README's `kubectl create secret` uses
    # The ConfigMap with the environment loads, and the webhook then wants the token.
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    cfg = config_from_configmap(environ={TOKEN_ENV: str(token)})
    assert cfg.webhook.bearer_token() == "t0ken"


def test_readme_creates_the_secrets_the_manifests_mount() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    assert "create secret generic augur-webhook-token" in readme
    assert "--from-literal=token=" in readme
    assert "credentials_file: /etc/alertmanager/secrets/augur-webhook-token/token" in readme
    assert "create secret generic augur-web " in readme


def test_tls_overlay_builds_https_probes_and_an_authenticated_scrape() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / "tls")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d}
    deployment = docs["Deployment"]
    (container,) = containers(deployment)
    env = env_of(container)
    web_file = PurePosixPath(env[WEB_ENV])
    assert env[TOKEN_ENV]  # still there: the overlay adds to the base
    at = mounts(container, deployment["spec"]["template"]["spec"]["volumes"])
    assert at[str(web_file.parent)]["secret"]["secretName"] == "augur-web"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    (endpoint,) = docs["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "augur-web"
    assert endpoint["basicAuth"]["password"]["name"] == "augur-scrape"


def test_the_documented_web_config_is_accepted(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    sample = re.search(r"```yaml\n(tls_server_config:.*?)```", text, re.S)
    assert sample is not None
    ca = CA(tmp_path / "pki")
    server = ca.issue("server")
    for name, source in (("tls.crt", server.cert), ("tls.key", server.key), ("ca.crt", ca.cert)):
        (tmp_path / name).write_bytes(source.read_bytes())
    path = tmp_path / "web.yml"
    path.write_text(sample.group(1), encoding="utf-8")
    parsed = read_web_file(path)
    assert parsed.tls() and "prometheus" in parsed.basic_auth_users
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sample = re.search(r"## Security.*?```yaml\n(.*?)```", readme, re.S)
    assert sample is not None
    doc = yaml.safe_load(sample.group(1))
    assert set(doc) == {"tls_server_config", "http_server_config", "basic_auth_users"}
