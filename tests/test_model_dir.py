"""Where augur finds its text model: an explicit `model.dir` > the installed model > the checkout's.

A wheel installs the model as the package `augur_model` beside `exporter` in site-packages
(tests/test_wheel.py installs the real wheel); here a folder laid out the same way stands in.
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
def site(tmp_path: Path) -> Path:
    """A site-packages with augur installed in it, and a checkout's models/onnx beside it."""
    (tmp_path / "exporter").mkdir()
    (tmp_path / "models" / "onnx").mkdir(parents=True)
    (tmp_path / "models" / "onnx" / "manifest.json").write_text("{}")
    (tmp_path / alert_config.MODEL_PACKAGE).mkdir()
    return tmp_path


def test_the_installed_model_comes_before_a_checkouts(site: Path) -> None:
    (site / "augur_model" / "manifest.json").write_text("{}")
    assert alert_config.shipped_model_dir(package=site / "exporter") == site / "augur_model"


def test_without_an_installed_manifest_the_checkouts_model_is_used(site: Path) -> None:
    assert alert_config.shipped_model_dir(package=site / "exporter") == site / "models" / "onnx"


def test_in_this_checkout_the_default_is_its_own_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not another checkout's or an installed augur's: each worktree runs its own model.
    monkeypatch.delenv("AUGUR_MODEL_DIR", raising=False)
    assert alert_config.shipped_model_dir() == alert_config.REPO_MODEL_DIR == MODEL_DIR
    assert alert_config.ModelConfig().dir == MODEL_DIR
    assert classify.default_model_dir() == MODEL_DIR


def test_an_explicit_model_dir_beats_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    config = tmp_path / "augur.yml"
    config.write_text(yaml.safe_dump({"prometheus": {"url": "http://127.0.0.1:1"}}))
    assert load(config, environ={}).model.dir == MODEL_DIR
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
