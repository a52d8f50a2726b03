"""`augur classify`, `augur model eval|build` and the reloadable model, on the committed model."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from model_files import MODEL_DIR, copy_model, flip_byte, swap_head_rows
from waiting import eventually

from exporter.cli import main
from exporter.text import ModelError, TextModel, classify, model_command
from exporter.text.baseline import KeywordBaseline
from exporter.text.card import CARD_BEGIN, CARD_END
from exporter.text.entities import is_chinese, language_of
from exporter.text.evaluate import score
from exporter.text.reload import ReloadableModel

CPU_TEXT = "High CPU usage on web-03: CPU usage is above 95% for 10 minutes"
CPU_TEXT_ZH = "服务器 CPU 使用率过高"
DISK_TEXT_ZH = "磁盘空间不足，剩余 5%"


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-model")
    yield pool
    pool.shutdown(wait=True)


# --- augur classify ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category"),
    [(CPU_TEXT, "cpu"), (CPU_TEXT_ZH, "cpu"), (DISK_TEXT_ZH, "disk")],
)
def test_classify_one_text(capsys: pytest.CaptureFixture[str], text: str, category: str) -> None:
    assert main(["classify", text]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["category", category]
    assert lines[1].startswith("confidence  ")
    confidence = float(lines[1].split()[1])
    assert 0.4 < confidence <= 1.0
    top3 = lines[2].removeprefix("top 3").strip().split(", ")
    assert len(top3) == 3 and top3[0] == f"{category} {confidence:.3f}"


def test_classify_json_gives_scores_for_every_category(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["classify", "--json", CPU_TEXT_ZH, "Disk almost full on /var"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["category"] for r in rows] == ["cpu", "disk"]
    labels = TextModel(MODEL_DIR).labels
    for row in rows:
        assert list(row["scores"]) == list(labels)
        assert row["confidence"] == max(row["scores"].values())
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=0.01)


def test_classify_file_reports_each_bad_line_and_classifies_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_text = "Disk almost full on db-01: only 3% free on /var/lib/postgresql. " * 40
    lines = [
        json.dumps({"summary": "Disk almost full", "description": "/var on db-01 has 3% left"}),
        '{"text": "CPU high"',  # 2: bad JSON
        json.dumps({"alertname": "HostHighCpuLoad", "labels": {}}),  # 3: missing fields
        json.dumps({"text": "   "}),  # 4: empty text
        json.dumps({"text": "磁盘空间不足 " * 15_000}, ensure_ascii=False),  # 5: ~100 KB
        json.dumps({"id": 7, "text": CPU_TEXT_ZH}, ensure_ascii=False),  # 6: good, extra field
        "[1, 2]",  # 7: not an object
        json.dumps({"text": long_text}),  # 8: good, longer than the token window
        "",  # 9: blank
        json.dumps({"summary": 5}),  # 10: wrong type
    ]
    assert len(lines[4].encode()) > 100_000
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["classify", "--file", str(data), "--json"]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["category"] for r in rows] == ["disk", "cpu", "disk"]
    assert rows[0]["summary"] == "Disk almost full"  # the input object comes back, added to
    assert rows[1]["id"] == 7 and rows[1]["text"] == CPU_TEXT_ZH
    assert all(set(r) >= {"category", "confidence", "scores"} for r in rows)

    numbered = (re.match(rf"{re.escape(str(data))}:(\d+): ", line) for line in err.splitlines())
    errors = {int(m.group(1)): m.string for m in numbered if m}
    assert sorted(errors) == [2, 3, 4, 5, 7, 8, 9, 10]
    assert "not valid JSON" in errors[2]
    assert "missing fields" in errors[3]
    assert "empty text" in errors[4]
    assert "16 KiB" in errors[5] and "refused" in errors[5]
    assert "expected a JSON object" in errors[7]
    assert "truncated" in errors[8] and "line skipped" not in errors[8]  # a note, not an error
    assert "empty line" in errors[9]
    assert '"summary" must be a string' in errors[10]
    for number in (2, 3, 4, 5, 7, 9, 10):
        assert errors[number].startswith(f"{data}:{number}: ")
        assert errors[number].endswith("line skipped")
    assert "classified 3 line(s), 1 truncated" in err and "7 line(s) skipped" in err


def test_classify_file_all_good_exits_0_with_a_plain_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "ok.jsonl"
    data.write_text(
        json.dumps({"text": DISK_TEXT_ZH}, ensure_ascii=False)
        + "\n"
        + json.dumps({"text": CPU_TEXT}),
        encoding="utf-8",
    )
    assert main(["classify", "--file", str(data)]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[:2] for line in out.splitlines()] == [["1", "disk"], ["2", "cpu"]]
    assert "skipped" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["classify"],
        ["classify", "x", "--file", "in.jsonl"],
        ["classify", "--file", "/no/such.jsonl"],
    ],
)
def test_classify_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("augur classify: ")


def test_classify_with_a_broken_model_dir_says_why(
    model_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(model_copy / "head.json")
    assert main(["classify", "--model-dir", str(model_copy), CPU_TEXT]) == 1
    err = capsys.readouterr().err
    assert "cannot load the text model" in err and "head.json" in err and "sha256" in err


def test_model_dir_defaults_to_the_config_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, model_copy: Path
) -> None:
    monkeypatch.delenv("AUGUR_MODEL_DIR", raising=False)
    assert classify.default_model_dir() == MODEL_DIR
    monkeypatch.setenv("AUGUR_MODEL_DIR", str(model_copy))
    assert classify.default_model_dir() == model_copy


# --- augur model eval and build ---------------------------------------------------------------


def test_score_by_hand() -> None:
    labels = ("cpu", "disk", "other")
    s = score(["cpu", "cpu", "disk", "disk"], ["cpu", "disk", "disk", "other"], labels)
    assert s.accuracy == 0.5
    assert s.per_class["cpu"].precision == 1.0 and s.per_class["cpu"].recall == 0.5
    assert s.per_class["disk"].precision == 0.5 and s.per_class["disk"].recall == 0.5
    assert "other" not in s.per_class  # no true texts: left out of the macro average
    assert s.macro_f1 == pytest.approx((2 / 3 + 0.5) / 2)
    assert s.confusion.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_language_is_detected_by_script() -> None:
    assert language_of("Pod 频繁重启") == "zh"
    assert language_of("Pod is crash looping (CrashLoopBackOff)") == "en"
    # a compatibility ideograph: the runtime (is_chinese) and evaluation read it alike
    assert language_of("\uf900") == "zh" and is_chinese("\uf900")


def test_keyword_baseline_reads_english_and_not_chinese() -> None:
    baseline = KeywordBaseline()
    assert baseline.predict(["Disk almost full on /var", "SSL certificate expires in 3 days"]) == [
        "disk",
        "security",
    ]
    assert baseline.match("磁盘空间不足") is None
    assert baseline.predict(["证书即将过期"]) == ["other"]


def test_model_eval_prints_tables_and_writes_only_the_marked_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ("Disk almost full: / on log-02 has 4% free space left", "disk", "test"),
        ("SSL certificate for shop.example.com expires in 3 days", "security", "test"),
        (CPU_TEXT, "cpu", "test"),
        ("磁盘空间不足，剩余 5%", "disk", "test"),
        ("证书即将过期", "security", "test"),
        ("服务器 CPU 使用率过高", "cpu", "test"),
        ("This row is dev and must not be counted", "other", "dev"),
    ]
    data = tmp_path / "small.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": t, "category": c, "split": s}, ensure_ascii=False) + "\n"
            for t, c, s in rows
        ),
        encoding="utf-8",
    )
    card = tmp_path / "card.md"
    card.write_text(
        f"# Card\n\nhand-written intro\n\n{CARD_BEGIN}\nold figures\n{CARD_END}\n\n## Limits\n"
    )
    argv = ["model", "eval", "--data", str(data), "--split", "test", "--card", str(card)]

    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in out.splitlines()
        if line.startswith(("| all ", "| English ", "| Chinese "))
    }
    assert summary["all"][0] == "6" and summary["English"][0] == "3"
    assert summary["English"][1] == "**1.000**" and summary["Chinese"][1] == "**1.000**"
    assert summary["English"][3] == "1.000"  # baseline macro-F1: it reads English...
    assert float(summary["Chinese"][3]) < 0.5  # ...but only the ASCII in Chinese ("CPU")
    assert summary["Chinese"][5].startswith("2 ")  # matched nothing in 磁盘…, 证书…
    assert "Confusion matrix" in out and "baseline F1" in out and "model Chinese (n)" in out
    assert f"--data {data} --split test --card {card}" in out

    text = card.read_text()
    assert text.startswith("# Card\n\nhand-written intro\n\n") and text.endswith("\n## Limits\n")
    assert "old figures" not in text and "**1.000**" in text
    assert main(argv) == 0  # a second run replaces the block instead of adding one
    assert card.read_text() == text


def test_model_eval_refuses_bad_data_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"text": "disk full", "category": "disk"}\n{"text": "x", "category": "cpus"}\n'
    )
    assert main(["model", "eval", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data}:2: category 'cpus' is not one of the model's" in err


def test_model_build_without_the_build_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(model_command, "BUILD_MODULES", ("augur_no_such_build_tool",))
    assert main(["model", "build", "--out", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "augur_no_such_build_tool" in err and "pip install '.[build]'" in err


# --- ReloadableModel ---------------------------------------------------------------------------


async def test_reload_swaps_in_new_files(model_copy: Path, executor: ThreadPoolExecutor) -> None:
    seen: list[tuple[float, int]] = []
    model = await asyncio.get_running_loop().run_in_executor(
        executor, lambda: ReloadableModel(model_copy, on_inference=lambda s, n: seen.append((s, n)))
    )
    assert [r.category for r in model.classify([CPU_TEXT, DISK_TEXT_ZH])] == ["cpu", "disk"]
    assert len(seen) == 1 and seen[0][0] > 0 and seen[0][1] == 2
    assert (model.name, model.dim, len(model.labels)) == ("augur-alert-e5-small", 384, 14)
    old_sha, old_instance = model.sha256, model.current

    swap_head_rows(model_copy, "cpu", "disk")
    assert await model.reload(executor) is None

    assert [r.category for r in model.classify([CPU_TEXT, DISK_TEXT_ZH])] == ["disk", "cpu"]
    assert model.sha256 != old_sha and model.current is not old_instance
    # a call that took the old instance before the swap still completes on it
    assert old_instance.classify([CPU_TEXT])[0].category == "cpu"
    assert model.embed([CPU_TEXT]).shape == (1, 384)


async def test_failed_reload_keeps_serving_the_old_model(
    model_copy: Path, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    model = ReloadableModel(model_copy)
    before = model.sha256
    flip_byte(model_copy / "encoder.int8.onnx")
    with caplog.at_level(logging.ERROR, logger="augur.model"):
        error = await model.reload(executor)
    assert isinstance(error, ModelError) and "sha256" in str(error)
    assert "encoder.int8.onnx" in str(error)
    assert [r.message for r in caplog.records] == ["model_reload_failed"]
    assert model.sha256 == before
    assert model.classify([CPU_TEXT_ZH])[0].category == "cpu"

    error = await model.reload(executor, model_dir=model_copy.parent / "nowhere")
    assert isinstance(error, ModelError) and "manifest.json" in str(error)
    assert model.model_dir == model_copy and model.classify([CPU_TEXT])[0].category == "cpu"


async def test_calls_during_reloads_never_fail(
    model_copy: Path, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    swapped = copy_model(tmp_path / "swapped")
    swap_head_rows(swapped, "cpu", "disk")
    model = ReloadableModel(model_copy)
    stop = threading.Event()
    answers: list[str] = []
    failures: list[Exception] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                answers.append(model.classify([CPU_TEXT])[0].category)
            except Exception as exc:  # reported below: any failure fails the test
                failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(2)]

    async def served_by_the_new_model(before: int) -> None:
        # More answers than calls that may have taken the old model just before the swap.
        await eventually(lambda: len(answers) > before + len(threads) or failures)

    for t in threads:
        t.start()
    try:
        for target in (swapped, model_copy, swapped, model_copy):
            assert await model.reload(executor, model_dir=target) is None
            await served_by_the_new_model(len(answers))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert set(answers) == {"cpu", "disk"}  # served by both models, nothing else
    assert model.classify([CPU_TEXT])[0].category == "cpu"
