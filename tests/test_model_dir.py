"""Where augur finds its text model: an explicit `model.dir` > the installed model > the checkout's.

The installed model is the package `augur_model` that augur's wheel carries (tests/test_wheel.py
installs the real wheel); here a folder of that name first on sys.path stands in for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from model_files import MODEL_DIR

from exporter.config import alerts as alert_config
from exporter.config.base import ConfigError
from exporter.config.load import load
from exporter.text import classify


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `augur_model` folder first on sys.path, as an install would put it (empty for now)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("AUGUR_MODEL_DIR", raising=False)
    package = tmp_path / alert_config.MODEL_PACKAGE
    package.mkdir()
    return package


def test_an_installed_model_comes_before_the_checkouts(fake_package: Path) -> None:
    (fake_package / "manifest.json").write_text("{}")
    assert alert_config.shipped_model_dir() == fake_package
    assert alert_config.ModelConfig().dir == fake_package
    assert classify.default_model_dir() == fake_package


def test_a_package_without_a_manifest_falls_back_to_the_checkout(fake_package: Path) -> None:
    assert alert_config.shipped_model_dir() == alert_config.REPO_MODEL_DIR == MODEL_DIR


def test_an_explicit_model_dir_beats_the_installed_model(
    fake_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_package / "manifest.json").write_text("{}")
    mine = tmp_path / "mine"
    config = tmp_path / "augur.yml"
    config.write_text(yaml.safe_dump({"prometheus": {"url": "http://127.0.0.1:1"}}))
    assert load(config, environ={}).model.dir == fake_package
    assert load(config, environ={"AUGUR_MODEL_DIR": str(mine)}).model.dir == mine
    config.write_text(
        yaml.safe_dump({"prometheus": {"url": "http://127.0.0.1:1"}, "model": {"dir": str(mine)}})
    )
    assert load(config, environ={}).model.dir == mine
    monkeypatch.setenv("AUGUR_MODEL_DIR", str(mine))
    assert classify.default_model_dir() == mine


def test_a_missing_model_says_how_to_get_it(tmp_path: Path) -> None:
    config = tmp_path / "augur.yml"
    doc = {
        "prometheus": {"url": "http://127.0.0.1:1"},
        "alertmanager": {"urls": ["http://127.0.0.1:2"]},
        "model": {"dir": str(tmp_path / "nothing")},
    }
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as caught:
        load(config, environ={})
    said = str(caught.value)
    assert "model.dir: no readable" in said and "augur model build" in said
    assert "augur_model" in said and "models/onnx" in said
