"""The committed text model: verified loading, embeddings, categories in English and Chinese."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_files import MODEL_DIR, flip_byte

from exporter.text import CATEGORIES as ALL_CATEGORIES
from exporter.text import ModelError, TextModel, encoder, normalize_alert_text

CATEGORIES = set(ALL_CATEGORIES)


@pytest.fixture(scope="module")
def model() -> Iterator[TextModel]:
    yield TextModel(MODEL_DIR, threads=1)


def test_manifest_lists_the_design_categories(model: TextModel) -> None:
    assert set(model.labels) == CATEGORIES
    assert len(model.labels) == len(CATEGORIES)
    assert model.name and model.version and len(model.sha256) == 64


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("High CPU usage on web-03: CPU usage is above 95% for 10 minutes", "cpu"),
        ("Host db-01 is out of memory: only 2% of memory available", "memory"),
        ("Disk almost full: / on log-02 has 4% free space left", "disk"),
        ("SSL certificate for shop.example.com expires in 3 days", "security"),
        ("HTTP 5xx error rate of checkout-api is 14%", "errors"),
        ("UPS battery nearly empty (6% left)", "hardware"),
        ("Database backup failed for postgres-main", "data_integrity"),
        ("Helm release billing upgrade failed", "deployment"),
        ("Request rate of search-api is 6,100 req/s, 3x the same hour last week", "traffic"),
        pytest.param(
            "payments-api has received no requests for 20 minutes",
            "traffic",
            # short "nothing arrives" texts sit on the availability border (docs/model-card.md,
            # Limits): availability 0.52, traffic 0.36 with the shipped model
            marks=pytest.mark.xfail(strict=True, reason="read as availability"),
        ),
    ],
)
def test_english_alerts(model: TextModel, text: str, category: str) -> None:
    (result,) = model.classify([text])
    assert result.category == category, result


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("服务器 CPU 使用率过高", "cpu"),
        ("主机内存使用率超过 95%，可用内存不足", "memory"),
        ("磁盘空间不足，剩余 5%", "disk"),
        ("证书即将过期", "security"),
        ("网卡 eth0 丢包率过高", "network"),
        ("服务器风扇故障，转速为 0", "hardware"),
        ("数据库备份任务失败", "data_integrity"),
        ("接口 P99 响应时间超过 3 秒", "latency"),
        ("订单接口请求量掉零，最近 10 分钟 QPS 为 0", "traffic"),
        ("Kafka 主题 audit-log 消息写入速率突增到平时的 8 倍", "traffic"),
    ],
)
def test_chinese_alerts(model: TextModel, text: str, category: str) -> None:
    (result,) = model.classify([text])
    assert result.category == category, result


# The demo's AugurAnomaly alerts on its request-rate series (exporter/demo/config.py, as
# tests/test_demo.py renders them): issue 13 found both classified as latency.
_DEMO_ANOMALY = (
    "demo_http_requests_per_second of service {service} is anomalous",
    "augur opened an incident on the series demo_http_requests_per_second with "
    'instance="demo-workload" service="{service}" (query http_requests): it went far outside '
    "the band augur expects from its recent history. Stage 1: 1 when opened, one more each time "
    "it got much worse. The alert resolves once the series is back in its band.",
)


@pytest.mark.parametrize("service", ["search", "checkout"])  # a spike, a drop
def test_the_demos_request_rate_anomalies_are_traffic(model: TextModel, service: str) -> None:
    summary, description = (part.format(service=service) for part in _DEMO_ANOMALY)
    (result,) = model.classify([normalize_alert_text(summary, description)])
    assert result.category == "traffic", result


def test_the_demos_latency_rule_stays_latency(model: TextModel) -> None:
    text = normalize_alert_text(
        "p99 latency of checkout is 1.25s, above 800 ms",
        "1 in 100 requests to checkout on demo-workload takes longer than 1.25s; "
        "it should stay under 800 ms.",
    )
    assert model.classify([text])[0].category == "latency"


def test_classification_shape(model: TextModel) -> None:
    results = model.classify(["磁盘空间不足", "Disk almost full", ""])
    assert len(results) == 3
    for res in results:
        assert res.category == res.top3[0][0]
        assert res.confidence == pytest.approx(res.top3[0][1])
        probs = [p for _, p in res.top3]
        assert probs == sorted(probs, reverse=True)
        assert 0.0 < sum(probs) <= 1.0 + 1e-6
    assert model.classify([]) == []


def test_embeddings_are_unit_vectors(model: TextModel) -> None:
    texts = ["CPU load is very high on server", "服务器 CPU 使用率过高", "disk almost full"]
    batch = model.embed(texts)
    assert batch.shape == (3, model.dim) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-4)
    single = np.vstack([model.embed([t]) for t in texts])
    np.testing.assert_array_equal(batch, single)  # one text per run by default
    # the same problem in two languages sits closer than two different problems
    assert batch[0] @ batch[1] > batch[1] @ batch[2]


def test_padded_batches_stay_close_to_single_texts() -> None:
    batched = TextModel(MODEL_DIR, batch_size=8)
    texts = [
        "disk almost full",
        "服务器 CPU 使用率过高，当前 97%，持续 10 分钟",
        "证书即将过期",
        "x",
    ]
    single = np.vstack([batched.embed([t]) for t in texts])
    together = batched.embed(texts)
    assert np.all(np.sum(together * single, axis=1) > 0.99)


def test_long_text_is_truncated_not_rejected(model: TextModel) -> None:
    (res,) = model.classify(["磁盘空间不足 " * 2000])
    assert res.category == "disk"


def test_corrupted_encoder_is_refused(model_copy: Path) -> None:
    manifest = json.loads((model_copy / "manifest.json").read_text())
    encoder = model_copy / manifest["encoder"]
    flip_byte(encoder)
    with pytest.raises(ModelError, match=manifest["encoder"].replace(".", r"\.")) as info:
        TextModel(model_copy)
    assert "sha256" in str(info.value)


def test_altered_head_is_refused(model_copy: Path) -> None:
    head = model_copy / "head.json"
    doc = json.loads(head.read_text())
    doc["bias"][0] += 1.0
    head.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"head\.json"):
        TextModel(model_copy)


def test_missing_file_is_refused(model_copy: Path) -> None:
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer\.json.*missing"):
        TextModel(model_copy)


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"manifest\.json"):
        TextModel(tmp_path)


@pytest.mark.parametrize(
    ("summary", "description", "alertname", "expected"),
    [
        (
            "Host out of disk space",
            "Disk is almost full (< 10% left) on {{ $labels.instance }}",
            "HostOutOfDiskSpace",
            "Host out of disk space. Disk is almost full (< 10% left) on instance",
        ),
        (
            "Container high CPU",
            "{{ $value | humanizePercentage }} throttling in {{$labels.namespace}}/{{ $labels.pod }}",
            "",
            "Container high CPU. N throttling in namespace/pod",
        ),
        (
            "Load high",
            'is currently at {{ printf "%.2f" $value }}.\nThis might   indicate saturation.',
            "",
            "Load high. is currently at N. This might indicate saturation.",
        ),
        ("", "", "KubePodCrashLooping", "Kube Pod Crash Looping"),
        ("磁盘空间不足", "剩余 {{ $value }}%", "", "磁盘空间不足. 剩余 N%"),
        (
            "Disk full!",
            "{{ with $labels.device }}{{ . }}{{ end }} is full",
            "",
            "Disk full! device is full",
        ),
    ],
)
def test_normalize_alert_text(
    summary: str, description: str, alertname: str, expected: str
) -> None:
    assert normalize_alert_text(summary, description, alertname) == expected


def test_normalize_leaves_filled_in_text_alone() -> None:
    text = "Disk is almost full (< 10% left) on web-03:9100"
    assert normalize_alert_text("", text) == text


_UNBOUNDED_TEMPLATE = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
"""The template pattern before it stopped at the next `{{` (quadratic on unclosed `{{`)."""


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["{{", "}}", "{", "}", "-", " $value ", "$labels.a", "x"]), max_size=30
    ).map("".join)
)
def test_template_actions_read_as_before_on_well_formed_text(text: str) -> None:
    """Stopping an action at the next `{{` changes nothing where no action holds a `{{`."""
    bodies = [m.group(1) for m in _UNBOUNDED_TEMPLATE.finditer(text)]
    if any("{{" in body for body in bodies):
        return  # an unclosed `{{` before a real action: the one case read differently
    assert normalize_alert_text(text) == " ".join(
        _UNBOUNDED_TEMPLATE.sub(encoder._fill_template, text).split()
    )


def test_the_corpus_templates_read_as_before() -> None:
    """The 1,296 real rules' summaries and descriptions (shared/, beside the repo)."""
    corpus = Path(__file__).resolve().parents[2] / "shared" / "data" / "alerts" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"alert corpus not found at {corpus} (a copy of shared/ beside the repo)")
    texts = [
        json.loads(line).get(field) or ""
        for line in corpus.read_text(encoding="utf-8").splitlines()
        if line.strip()
        for field in ("summary", "description")
    ]
    assert sum("{{" in t for t in texts) > 500
    for text in texts:
        old = " ".join(_UNBOUNDED_TEMPLATE.sub(encoder._fill_template, text).split())
        assert normalize_alert_text(text) == old
