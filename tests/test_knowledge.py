"""Runbook retrieval with the real text model: the right category's runbook, in the alert's language."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from exporter.config.alerts import RUNBOOKS_DIR
from exporter.text import TextModel, normalize_alert_text
from exporter.text.entities import language_of
from exporter.text.knowledge import KnowledgeBase

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "onnx"


@pytest.fixture(scope="module")
def model() -> Iterator[TextModel]:
    yield TextModel(MODEL_DIR, threads=1)


@pytest.fixture(scope="module")
def shipped(model: TextModel) -> KnowledgeBase:
    kb = KnowledgeBase(RUNBOOKS_DIR, model, categories=model.labels)
    assert kb.load() == []
    return kb


class Counting:
    """The real model, counting how many texts it was asked to embed."""

    def __init__(self, model: TextModel) -> None:
        self.model = model
        self.texts = 0
        self.sha256 = model.sha256

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.model.embed(texts)


def test_shipped_runbooks_cover_every_category_in_english_and_chinese(
    shipped: KnowledgeBase, model: TextModel
) -> None:
    covered = {(rb.category, rb.language) for rb in shipped.runbooks}
    assert covered == {(c, lang) for c in model.labels for lang in ("en", "zh")}
    for rb in shipped.runbooks:
        text = rb.path.read_text(encoding="utf-8")
        assert rb.path.name.endswith(f".{rb.language}.md")
        assert language_of(rb.title) == rb.language, rb.path
        # Useful to on-call: first checks with concrete queries or commands, then what to do.
        assert re.search(r"^## (First checks|首先检查)$", text, re.M), rb.path
        assert re.search(r"^## (Mitigation|处置)$", text, re.M), rb.path
        assert text.count("`") >= 8, rb.path
        assert len(text.splitlines()) <= 45, rb.path


def _cases() -> list[tuple[str, str, str]]:
    return [
        (
            "Filesystem has less than 5% space left.",
            "Filesystem on /dev/sda1 at pg-1:9100 has only 3.5% available space left.",
            "disk.en.md",
        ),
        ("磁盘空间不足，剩余 5%", "", "disk.zh.md"),
        ("服务器 CPU 使用率过高", "", "cpu.zh.md"),
        ("High CPU usage on web-03", "CPU usage is above 95% for 10 minutes", "cpu.en.md"),
        (
            "证书即将过期",
            "域名 shop.example.com 的证书将在 7 天后过期",
            "security-certificate.zh.md",
        ),
        (
            "SSL certificate expires soon",
            "SSL certificate for shop.example.com expires in 3 days",
            "security-certificate.en.md",
        ),
        (
            "Pod is crash looping.",
            'Pod shop/api-7d9f8b-x2kq (api) is in waiting state (reason: "CrashLoopBackOff").',
            "availability-crashloop.en.md",
        ),
        (
            "Pod 反复重启",
            "命名空间 shop 中的 Pod api-7d9f8b-x2kq 处于 CrashLoopBackOff 状态",
            "availability-crashloop.zh.md",
        ),
        ("Host out of memory", "Node memory is filling up (< 10% left) on db-01", "memory.en.md"),
        ("网卡 eth0 丢包率过高", "", "network.zh.md"),
        ("接口 P99 响应时间超过 3 秒", "", "latency.zh.md"),
        (
            "Request rate of checkout-api dropped by 85%",
            "checkout-api serves 52 req/s against 350 req/s at this hour last week.",
            "traffic.en.md",
        ),
        ("搜索服务请求量突增，QPS 达到平时的 4 倍", "", "traffic.zh.md"),
        ("HTTP 5xx error rate of checkout-api is 14%", "", "errors.en.md"),
        ("数据库备份任务失败", "", "data_integrity.zh.md"),
        ("Helm release billing upgrade failed", "", "deployment.en.md"),
        ("服务器风扇故障，转速为 0", "", "hardware.zh.md"),
        (
            "Instance pg-1:9100 is down",
            "Target pg-1:9100 of job node has been unreachable for 5 minutes.",
            "availability.en.md",
        ),
    ]


@pytest.mark.parametrize(("summary", "description", "runbook"), _cases())
def test_runbook_of_the_alerts_category_in_its_language(
    shipped: KnowledgeBase, model: TextModel, summary: str, description: str, runbook: str
) -> None:
    text = normalize_alert_text(summary, description)
    (cls,) = model.classify([text])
    match = shipped.best(text, cls.category, language_of(summary + description))
    assert match is not None
    assert Path(match.location).name == runbook, (cls, match)
    assert shipped.min_score <= match.score <= 1.0


def test_language_follows_the_alert_not_the_model(shipped: KnowledgeBase) -> None:
    text = "Disk almost full: / on log-02 has 4% free space left"
    english, chinese = (shipped.best(text, "disk", lang) for lang in ("en", "zh"))
    assert english is not None and Path(english.location).name == "disk.en.md"
    assert chinese is not None and Path(chinese.location).name == "disk.zh.md"


def test_no_runbook_is_claimed_when_none_fits(model: TextModel, tmp_path: Path) -> None:
    # Without the disk runbooks, a disk alert must not be handed the memory or saturation one.
    for path in RUNBOOKS_DIR.glob("*.md"):
        if not path.name.startswith("disk."):
            shutil.copy(path, tmp_path / path.name)
    kb = KnowledgeBase(tmp_path, model, categories=model.labels)
    assert kb.load() == []
    for text in (
        "磁盘空间不足，剩余 5%",
        "Filesystem on /dev/sda1 at pg-1 has only 3.5% space left.",
    ):
        assert kb.best(text, "disk", language_of(text)) is None


@pytest.mark.parametrize(
    ("text", "only", "runbook"),
    [
        ("磁盘空间不足，剩余 5%", "en", "disk.en.md"),
        ("数据库连接数接近上限", "en", "saturation.en.md"),
        ("网络丢包率超过 5%", "en", "network.en.md"),
        ("服务不可用，健康检查失败", "en", "availability.en.md"),
        ("Filesystem on /dev/sda1 at pg-1 has only 3.5% space left.", "zh", "disk.zh.md"),
    ],
)
def test_runbooks_in_one_language_serve_alerts_in_the_other(
    model: TextModel, tmp_path: Path, text: str, only: str, runbook: str
) -> None:
    # Many teams write runbooks in one language only; the language boost must not keep their
    # runbooks from alerts written in the other (it only picks between two that both fit).
    for path in RUNBOOKS_DIR.glob(f"*.{only}.md"):
        shutil.copy(path, tmp_path / path.name)
    kb = KnowledgeBase(tmp_path, model, categories=model.labels)
    assert kb.load() == []
    (cls,) = model.classify([text])
    match = kb.best(text, cls.category, language_of(text))
    assert match is not None, cls
    assert Path(match.location).name == runbook


class Fixed:
    """Embeds by table, to place runbooks at exact similarities (the scoring, not the model)."""

    sha256 = "fixed"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        def vector(text: str) -> list[float]:
            return next(v for key, v in self.table.items() if key in text)

        rows = np.asarray([vector(t) for t in texts], dtype=np.float32)
        unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit


def test_a_fitting_runbook_in_another_language_beats_an_unfitting_one_in_the_alerts(
    tmp_path: Path,
) -> None:
    # The language boost would rank the Chinese runbook first (0.80 + 0.06 + 0.03 = 0.89), but
    # without the boost it does not fit (0.86 < 0.87); the English one does (0.82 + 0.06).
    for name, title, lang in (("a.zh.md", "中文手册", "zh"), ("a.en.md", "English runbook", "en")):
        text = f"---\ncategory: disk\nlanguage: {lang}\n---\n# {title}\n\nSteps.\n"
        (tmp_path / name).write_text(text, encoding="utf-8")
    s = np.sqrt
    kb = KnowledgeBase(
        tmp_path,
        Fixed(
            {
                "中文手册": [0.80, s(1 - 0.80**2), 0.0],
                "English": [0.82, 0.0, s(1 - 0.82**2)],
                "磁盘": [1.0, 0.0, 0.0],
            }
        ),
        categories=["disk"],
    )
    assert kb.load() == []
    match = kb.best("磁盘满了", "disk", "zh")
    assert match is not None and Path(match.location).name == "a.en.md"
    assert match.score == pytest.approx(0.88, abs=1e-3)


def test_alertname_front_matter_picks_the_specific_runbook(
    model: TextModel, tmp_path: Path
) -> None:
    shutil.copy(RUNBOOKS_DIR / "availability.en.md", tmp_path)
    (tmp_path / "payments.md").write_text(
        "---\ncategory: availability\nalertnames: [PaymentsGatewayDown]\nurl: https://wiki.example.com/pay\n---\n"
        "# Payments gateway down\n\nThe card payment gateway is unreachable.\n",
        encoding="utf-8",
    )
    kb = KnowledgeBase(tmp_path, model, categories=model.labels)
    assert kb.load() == []
    text = "Instance pay-1:8443 is down"
    general = kb.best(text, "availability", "en", "InstanceDown")
    specific = kb.best(text, "availability", "en", "PaymentsGatewayDown")
    assert general is not None and general.title == "Service, instance or scrape target down"
    assert specific is not None and specific.location == "https://wiki.example.com/pay"


def test_front_matter_problems_are_reported_and_the_rest_still_loads(
    model: TextModel, tmp_path: Path
) -> None:
    (tmp_path / "bad-yaml.md").write_text("---\ncategory: [disk\n---\n# Broken\n", encoding="utf-8")
    (tmp_path / "no-title.md").write_text("just some notes\n", encoding="utf-8")
    (tmp_path / "list.md").write_text("---\n- a\n---\n# List\n", encoding="utf-8")
    (tmp_path / "odd.md").write_text("---\ncategory: [disk]\n---\n# Odd\n", encoding="utf-8")
    (tmp_path / "binary.md").write_bytes(b"# \xff\xfe\n")
    (tmp_path / "typo.md").write_text(
        "---\ncategory: dsik\n---\n# Disk full\n\nDisk is full.\n", encoding="utf-8"
    )
    (tmp_path / "plain.md").write_text("# 磁盘满了\n\n磁盘空间不足时怎么办。\n", encoding="utf-8")
    kb = KnowledgeBase(
        tmp_path, model, categories=model.labels, base_url="https://git.example.com/runbooks"
    )
    problems = kb.load()
    assert len(problems) == 6 and problems == kb.problems
    for name, words in [
        ("bad-yaml.md", "not valid YAML"),
        ("no-title.md", "no title"),
        ("list.md", "must be a mapping"),
        ("binary.md", "utf-8"),
        ("typo.md", "unknown category 'dsik'"),
        ("odd.md", "unknown category \"['disk']\""),
    ]:
        assert any(name in p and words in p for p in problems), (name, problems)
    by_name = {rb.path.name: rb for rb in kb.runbooks}
    assert set(by_name) == {"typo.md", "plain.md", "odd.md"}
    assert by_name["typo.md"].category is None
    assert by_name["plain.md"].language == "zh"  # no front-matter: told by its script
    assert by_name["plain.md"].location == "https://git.example.com/runbooks/plain.md"


def test_embeddings_are_cached_by_file_content(model: TextModel, tmp_path: Path) -> None:
    for name in ("cpu.en.md", "cpu.zh.md", "disk.en.md"):
        shutil.copy(RUNBOOKS_DIR / name, tmp_path)
    counting = Counting(model)
    kb = KnowledgeBase(tmp_path, counting, categories=model.labels)
    kb.load()
    assert counting.texts == 3
    kb.load()
    assert counting.texts == 3  # nothing changed, nothing embedded
    path = tmp_path / "disk.en.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    (tmp_path / "cpu.zh.md").unlink()
    kb.load()
    assert counting.texts == 4 and len(kb.runbooks) == 2
    matches = kb.best_many(
        ["Disk space low on /var", "CPU usage high"], ["disk", "cpu"], ["en", "en"], ["", ""]
    )
    assert counting.texts == 6  # one batch for both alerts
    assert [Path(m.location).name if m else None for m in matches] == ["disk.en.md", "cpu.en.md"]
    vectors = model.embed(["Disk space low on /var"])
    again = kb.best_many(["Disk space low on /var"], ["disk"], ["en"], [""], embeddings=vectors)
    assert counting.texts == 6  # given embeddings are not made again
    assert again[0] is not None and matches[0] is not None
    assert again[0].location == matches[0].location


def test_a_new_model_re_embeds_the_runbooks(model: TextModel, tmp_path: Path) -> None:
    for name in ("cpu.en.md", "disk.en.md"):
        shutil.copy(RUNBOOKS_DIR / name, tmp_path)
    counting = Counting(model)
    kb = KnowledgeBase(tmp_path, counting, categories=model.labels)
    kb.load()
    kb.best("CPU usage high", "cpu", "en")
    assert counting.texts == 3
    counting.sha256 = "another model"  # what a ReloadableModel swap looks like from here
    match = kb.best("CPU usage high", "cpu", "en")
    assert counting.texts == 6  # both runbooks again, then the alert
    assert match is not None and Path(match.location).name == "cpu.en.md"


def test_an_empty_or_missing_directory_claims_nothing(model: TextModel, tmp_path: Path) -> None:
    kb = KnowledgeBase(tmp_path / "missing", model)
    assert kb.load() == [f"{tmp_path / 'missing'}: no runbooks (*.md files) found"]
    assert kb.best("disk full", "disk", "en") is None
    assert kb.best_many([], [], [], []) == []
