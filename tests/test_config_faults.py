"""Hostile configuration files: each gives a located error from `augur check-config`, exit 2.

Never a traceback: binary files, 5,000-deep nesting, a YAML bomb, duplicate keys, NaN and
infinity, a zero timeout. The named cases run the real command as a subprocess; hypothesis
feeds arbitrary YAML-ish bytes to the same entry point in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import cli
from exporter.config.base import ConfigError
from exporter.config.load import load

URL = "prometheus: {url: 'http://127.0.0.1:9090'}\n"
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)

CASES: list[tuple[str, bytes, str]] = [
    ("binary", bytes(range(256)) * 4, "not UTF-8 text (byte 0x80 at offset 128)"),
    (
        "nul byte",
        b"prometheus: {url: 'http://p:9090'}\nx: \x00\n",
        "character 38: control characters are not allowed",
    ),
    ("deep flow", ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nesting depth"),
    (
        "deep block",
        "".join("  " * i + f"k{i}:\n" for i in range(5000)).encode(),
        "nesting depth",
    ),
    ("deep within libyaml", ("a: " + "[" * 200 + "]" * 200 + "\n").encode(), "deeper than 64"),
    ("bomb", (URL + BOMB).encode(), "YAML bomb"),
    ("recursive alias", (URL + "a: &a [*a]\n").encode(), "contains it"),
    (
        "duplicate key",
        (URL + "poll:\n  interval: 30s\n  interval: 1m\n").encode(),
        "line 4, column 3: duplicate key 'interval' (first at line 3)",
    ),
    (
        "duplicate section",
        (URL + "poll: {interval: 30s}\n" + URL).encode(),
        "line 3, column 1: duplicate key 'prometheus' (first at line 1)",
    ),
    ("impossible date", (URL + "when: 2024-02-30\n").encode(), "day is out of range"),
    ("interval .inf", (URL + "poll: {interval: .inf}\n").encode(), "poll.interval: a duration"),
    ("interval .nan", (URL + "poll: {interval: .nan}\n").encode(), "must be finite"),
    ("timeout 0s", b"prometheus: {url: 'http://p:9090', timeout: 0s}\n", "prometheus.timeout"),
    (
        "float .inf",
        (URL + "queries: [{name: a, expr: up, min_deviation: .inf}]\n").encode(),
        "queries[0].min_deviation: Input should be a finite number",
    ),
    (
        "detector .nan",
        (URL + "queries: [{name: a, expr: up, detectors: {zscore: {threshold: .nan}}}]\n").encode(),
        "queries[0].detectors: zscore.threshold",
    ),
    (
        "huge duration",
        (URL + "poll: {interval: " + "9" * 400 + "}\n").encode(),
        "poll.interval: a duration cannot be 400 digits long",
    ),
    ("tiny response cap", (URL[:-2] + ", max_response_bytes: 10}\n").encode(), "greater than"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_config_locates_the_problem(tmp_path: Path, text: bytes, expected: str) -> None:
    path = tmp_path / "augur.yaml"
    path.write_bytes(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUGUR_")}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert str(path) in proc.stderr and expected in proc.stderr, proc.stderr
    print(f"{path.name}: {proc.stderr.strip().splitlines()[-1]}")


def test_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    """`<<: *base` then a key of base is YAML's way of overriding, not a duplicate."""
    path = tmp_path / "augur.yaml"
    path.write_text(
        URL + "queries:\n  - &base {name: a, expr: up, step: 1m}\n"
        "  - {<<: *base, name: b, step: 30s}\n",
        encoding="utf-8",
    )
    cfg = load(path, environ={})
    assert [(q.name, q.step) for q in cfg.queries] == [("a", 60.0), ("b", 30.0)]


def test_nan_from_the_environment_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "augur.yaml"
    path.write_text(URL, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path, environ={"AUGUR_POLL_INTERVAL": "nan", "AUGUR_POLL_CPU_TIMEOUT": ".inf"})
    assert any(p.startswith("poll.interval: not a duration") for p in info.value.problems)
    assert any(p.startswith("poll.cpu_timeout: not a duration") for p in info.value.problems)


YAMLISH = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "prometheus:",
                " url: http://p:9090",
                "poll:",
                "  interval: ",
                "queries:",
                "- ",
                "{",
                "}",
                "[",
                "]",
                "&a ",
                "*a",
                "<<: ",
                ": ",
                "\n",
                "  ",
                ".nan",
                ".inf",
                "!!binary ",
                "!!python/object ",
                "2024-02-30",
                "0s",
                "-1",
                "~",
                "'",
                '"',
                "#",
                "%YAML 1.1\n",
                "---\n",
                "...\n",
                "?",
                "|",
                ">",
                "\t",
                "\x00",
                "\xff",
            ]
        ),
        st.text(max_size=8),
    ),
    max_size=40,
).map(lambda parts: "".join(parts).encode("utf-8", "surrogateescape"))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(YAMLISH, st.binary(max_size=200)))
def test_check_config_never_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: bytes
) -> None:
    """Whatever the bytes, check-config answers 0 or 2: an escaping exception is a traceback."""
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(body)
    code = cli.main(["check-config", "--config", str(path)])
    assert code in (0, 2)
    capsys.readouterr()
