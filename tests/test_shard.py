"""Sharding: the label-set hash is stable and fair, shards cover every series exactly once,
and the shard and extra-header settings load (or fail) as the rest of the configuration."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import flags
from exporter.config.base import ConfigError
from exporter.config.load import load
from exporter.scoring.shard import Shard, label_hash
from exporter.self_metrics import SelfMetrics

BASE = {"AUGUR_PROMETHEUS_URL": "http://prometheus:9090"}

# Pinned: a change of the hash moves series between replicas, and with them their detectors'
# history, on every deployment that upgrades. Change these only knowingly.
KNOWN = [
    ({}, 827973379046557408),
    ({"a": "b"}, 9762652563714445747),
    ({"__name__": "up", "job": "api", "instance": "10.0.0.1:9100"}, 273262075628828941),
]


def label_sets(n: int) -> list[dict[str, str]]:
    """`n` label sets shaped like a fleet's: a job, an instance, sometimes a device."""
    out = []
    for i in range(n):
        labels = {"job": f"job{i % 7}", "instance": f"10.0.{i // 250}.{i % 250}:9100"}
        if i % 3 == 0:
            labels["device"] = f"sd{chr(97 + i % 5)}"
        out.append(labels)
    return out


def test_hash_known_values() -> None:
    for labels, want in KNOWN:
        assert label_hash(labels) == want, labels
    # The order of the pairs as given does not matter; the pairs do.
    assert label_hash({"job": "api", "instance": "x"}) == label_hash(
        {"instance": "x", "job": "api"}
    )
    assert label_hash({"job": "api"}) != label_hash({"job": "apj"})


def test_hash_is_the_same_in_another_process() -> None:
    """Python's own `hash()` of a str changes with PYTHONHASHSEED; this one must not."""
    labels = label_sets(50)
    here = [label_hash(x) for x in labels]
    code = (
        "import json, sys; from exporter.scoring.shard import label_hash; "
        "print(json.dumps([label_hash(x) for x in json.load(sys.stdin)]))"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path.cwd())}
        out = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(labels),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(out.stdout) == here


def test_hash_is_unambiguous_and_ignores_the_name() -> None:
    # Length-prefixed: moving a character across the name/value boundary is another set.
    assert label_hash({"ab": "c"}) != label_hash({"a": "bc"})
    assert label_hash({"a": "b", "c": ""}) != label_hash({"a": "b"})
    # Whether an upstream keeps __name__ on a function's result must not move a series.
    assert label_hash({"__name__": "up", "job": "api"}) == label_hash({"job": "api"})


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_every_series_is_owned_exactly_once(count: int) -> None:
    shards = [Shard(count, i) for i in range(count)]
    for labels in label_sets(2000):
        assert sum(s.owns(labels) for s in shards) == 1, labels


@pytest.mark.parametrize("count", [2, 3, 5, 8])
def test_shares_are_balanced(count: int) -> None:
    labels = label_sets(10_000)
    shares = Counter(label_hash(x) % count for x in labels)
    expected = len(labels) / count
    # A fair hash stays within a few standard deviations (sqrt(n p (1-p)) < 50 here).
    assert set(shares) == set(range(count))
    assert all(abs(n - expected) < 0.05 * expected for n in shares.values()), shares


def test_one_replica_checks_nothing() -> None:
    assert Shard(1, 0).filter() is None
    two = Shard(2, 1)
    assert two.filter() == two.owns


@pytest.mark.parametrize(("count", "index"), [(0, 0), (2, 2), (2, -1)])
def test_bad_shards_are_refused(count: int, index: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(count, index)


def _load(env: dict[str, str], **overrides: str) -> tuple[int, int]:
    paths: dict[tuple[str, ...], object] = {("shard", k): v for k, v in overrides.items()}
    config = load(None, environ={**BASE, **env}, overrides=paths)
    shard = Shard.from_config(config.shard)
    return shard.index, shard.count


def test_index_from_env_flag_and_hostname() -> None:
    assert _load({}) == (0, 1)
    assert _load({"AUGUR_SHARD_COUNT": "3", "AUGUR_SHARD_INDEX": "2"}) == (2, 3)
    # The flag beats the environment.
    assert _load({"AUGUR_SHARD_COUNT": "3", "AUGUR_SHARD_INDEX": "2"}, index="1") == (1, 3)
    env = {"AUGUR_SHARD_COUNT": "3", "HOSTNAME": "augur-2"}
    assert _load({**env, "AUGUR_SHARD_INDEX": "from-hostname"}) == (2, 3)
    assert _load(env, index="from-hostname") == (2, 3)
    fqdn = {**env, "HOSTNAME": "augur-1.augur-headless.monitoring.svc.cluster.local"}
    assert _load(fqdn, index="from-hostname") == (1, 3)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"AUGUR_SHARD_COUNT": "0"}, "shard.count: Input should be greater than or equal to 1"),
        ({"AUGUR_SHARD_COUNT": "3"}, "shard.index: required when shard.count is 3"),
        ({"AUGUR_SHARD_COUNT": "3", "AUGUR_SHARD_INDEX": "3"}, "shard.index: is 3, but"),
        ({"AUGUR_SHARD_COUNT": "2", "AUGUR_SHARD_INDEX": "two"}, "shard.index: must be a number"),
        (
            {"AUGUR_SHARD_COUNT": "2", "AUGUR_SHARD_INDEX": "from-hostname", "HOSTNAME": "augur"},
            "shard.index: from-hostname: the host name 'augur' does not end in a StatefulSet",
        ),
        (
            # A Deployment's pod: its digits are no ordinal, but could pass for one; range saves it.
            {
                "AUGUR_SHARD_COUNT": "2",
                "AUGUR_SHARD_INDEX": "from-hostname",
                "HOSTNAME": "augur-7c9d-24567",
            },
            "shard.index: is 24567 (from the host name), but shard.count is 2",
        ),
    ],
)
def test_bad_shard_settings_are_located(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, environ={**BASE, **env})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_shard_flags() -> None:
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    args = parser.parse_args(
        ["--prometheus.url", "http://p:9090", "--shard.count", "4", "--shard.index", "3"]
    )
    config = flags.load_config(args)
    assert config is not None
    assert (config.shard.count, config.shard.resolved_index()) == (4, 3)


def test_shard_info_metric() -> None:
    registry = CollectorRegistry()
    metrics = SelfMetrics(registry)
    assert 'augur_shard_info{count="1",index="0"} 1.0' in generate_latest(registry).decode()
    metrics.set_shard(2, 3)
    text = generate_latest(registry).decode()
    assert 'augur_shard_info{count="3",index="2"} 1.0' in text
    assert 'count="1"' not in text


def test_headers_and_params_load(tmp_path: Path) -> None:
    secret = tmp_path / "tenant"
    secret.write_text("tenant-secret\n")
    config = load(
        None,
        environ={
            **BASE,
            "AUGUR_PROMETHEUS_HEADERS": "X-Scope-OrgID=team-a, X-Extra=1",
            "AUGUR_PROMETHEUS_HEADER_FILES": f"X-Secret-Tenant={secret}",
            "AUGUR_PROMETHEUS_PARAMS": "partial_response=false",
        },
    )
    prom = config.prometheus
    assert prom.request_headers() == {
        "X-Scope-OrgID": "team-a",
        "X-Extra": "1",
        "X-Secret-Tenant": "tenant-secret",
    }
    assert prom.params == {"partial_response": "false"}
    # A secret header's value is read at load and kept out of what can be printed.
    assert "tenant-secret" not in repr(config) and "tenant-secret" not in str(config)


def test_yaml_booleans_become_words(tmp_path: Path) -> None:
    path = tmp_path / "augur.yaml"
    path.write_text(
        "prometheus:\n  url: http://q:9090\n"
        "  params: {partial_response: false, dedup: true, deny_partial_response: 1}\n"
    )
    assert load(path, environ={}).prometheus.params == {
        "partial_response": "false",
        "dedup": "true",
        "deny_partial_response": "1",
    }


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"AUGUR_PROMETHEUS_HEADERS": "Authorization=x"}, "prometheus.headers: Authorization:"),
        ({"AUGUR_PROMETHEUS_HEADERS": "Bad Name=x"}, "prometheus.headers: 'Bad Name' is not"),
        ({"AUGUR_PROMETHEUS_HEADERS": "X-A"}, "prometheus.headers: expected name=value"),
        ({"AUGUR_PROMETHEUS_PARAMS": "step=1"}, "prometheus.params: step: augur sets"),
        ({"AUGUR_PROMETHEUS_HEADER_FILES": "X-T=/nonexistent"}, "prometheus.header_files"),
    ],
)
def test_bad_headers_are_located(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, environ={**BASE, **env})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_bad_header_file_value_is_located_at_header_files(tmp_path: Path) -> None:
    """A header read from a file is checked like one written inline, and reported there."""
    secret = tmp_path / "tenant"
    secret.write_text("line one\nline two\n", encoding="utf-8")
    env = {**BASE, "AUGUR_PROMETHEUS_HEADER_FILES": f"X-Scope-OrgID={secret}"}
    with pytest.raises(ConfigError) as caught:
        load(None, environ=env)
    assert caught.value.problems == [
        "prometheus.header_files: X-Scope-OrgID: a header value cannot hold a line break or NUL"
    ]
