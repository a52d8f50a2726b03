"""The model's template cache: which texts share an answer, the counts, the bound, reloads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from model_files import MODEL_DIR, swap_head_rows
from prometheus_client import CollectorRegistry

from exporter.config.alerts import ModelConfig
from exporter.text.cache import CacheMetrics, TemplateCache, decided, template_key
from exporter.text.encoder import Classification, TextModel
from exporter.text.reload import ReloadableModel

CRASH = "Pod checkout-api-7d9f8b6c5-{} in namespace shop is crash looping"
DOWN = "Target {}:9100 is down"
DISK_FULL = "Disk on {} will fill within 4 hours"


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-model")
    yield pool
    pool.shutdown(wait=True)


def same(a: Sequence[Classification], b: Sequence[Classification]) -> bool:
    """One verdict per text, equal but for float noise between two onnxruntime sessions."""
    return [v.category for v in a] == [v.category for v in b] and np.allclose(
        [v.confidence for v in a], [v.confidence for v in b], atol=1e-5
    )


@pytest.fixture(scope="module")
def plain() -> Iterator[TextModel]:
    """The model without a cache: what every text's own answer is."""
    yield TextModel(MODEL_DIR)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (CRASH.format("x2k4p"), CRASH.format("q9z7b")),
        ("DaemonSet pod node-exporter-x7k2p is not ready", "... node-exporter-b5m9q ..."),
        (DOWN.format("10.0.3.7"), DOWN.format("192.168.1.20")),
        ("Node node-17 is NotReady", "Node node-213 is NotReady"),
        (DISK_FULL.format("db1.prod.example.com"), DISK_FULL.format("web7.dc2.example.com")),
        (
            "container 3f2a9c81b7d4 of trace 550e8400-e29b-41d4-a716-446655440000 restarted",
            "container 9be0471aa2c3 of trace 123e4567-e89b-12d3-a456-426614174000 restarted",
        ),
        ("peer fd00:1:2::3 down", "peer fd00:1:2::99 down"),
    ],
)
def test_names_and_addresses_of_one_template_share_a_key(a: str, b: str) -> None:
    if "..." in b:
        b = a.replace("x7k2p", "b5m9q")
    assert a != b and template_key(a) == template_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # words differ: never one key
        ("Pod checkout-api-x2k4p is crash looping", "Pod checkout-api-x2k4p is OOMKilled"),
        ("Insufficient nvidia.com/gpu", "Insufficient example.com/gpu"),
        ("java.lang.OutOfMemoryError in app", "java.net.SocketTimeoutException in app"),
        ("Pod payment-queue is pending", "Pod payment-batch is pending"),  # vowels: not suffixes
        # standalone numbers move the model's answer too often to be masked (model card)
        ("Node NotReady for 854 minutes", "Node NotReady for 32 minutes"),
        ("disk at 93.5%", "disk at 7%"),
        # a number that says what happened is not a name's ordinal (review of issue 13)
        ("HTTP-500 on checkout", "HTTP-404 on checkout"),
        ("container exited with exit_code_137", "container exited with exit_code_0"),
        ("raid-0 array degraded on db-1", "raid-1 array degraded on db-1"),
        ("db-1:5432 refuses connections", "db-1:6379 refuses connections"),  # another port
    ],
)
def test_words_and_values_are_kept_in_the_key(a: str, b: str) -> None:
    assert template_key(a) != template_key(b)


def test_a_storm_is_answered_from_the_first_text(plain: TextModel) -> None:
    registry = CollectorRegistry()
    model = ReloadableModel(MODEL_DIR, cache_size=16, cache_metrics=CacheMetrics(registry))
    storm = [CRASH.format(s) for s in ("x2k4p", "q9z7b", "b5m9q")] + [
        DOWN.format(f"10.0.0.{n}") for n in (1, 2)
    ]
    own_embeddings, own = plain.embed_and_classify([storm[0], storm[3]])
    assert all(decided(v) for v in own)  # else the cache would not share them

    embeddings, verdicts = model.embed_and_classify(storm)

    assert [v.category for v in verdicts] == [own[0].category] * 3 + [own[1].category] * 2
    assert same([verdicts[1], verdicts[4]], own)
    assert np.allclose(embeddings[2], own_embeddings[0], atol=1e-6)
    assert model.cache is not None and len(model.cache) == 2
    assert (model.cache.hits, model.cache.misses) == (3, 2)

    model.embed_and_classify([CRASH.format("zz9kp"), "Node node-4 is NotReady"])
    value = registry.get_sample_value
    assert value("augur_model_cache_hits_total") == 4
    assert value("augur_model_cache_misses_total") == 3
    assert value("augur_model_cache_entries") == 3


def test_an_undecided_answer_is_not_shared(plain: TextModel) -> None:
    texts = [
        f"Blackbox probe took 4.2s to complete for https://db{n}.dc2.example.com" for n in (3, 4)
    ]
    own = plain.classify(texts)
    assert not decided(own[0])  # a text the model is unsure of (margin < MIN_MARGIN)
    model = ReloadableModel(MODEL_DIR, cache_size=16)

    assert same(model.embed_and_classify(texts)[1], own)
    assert same(model.embed_and_classify(texts[:1])[1], own[:1])
    assert model.cache is not None and (model.cache.hits, model.cache.misses, len(model.cache)) == (
        0,
        3,
        0,
    )


def test_the_cache_keeps_the_most_recently_used(plain: TextModel) -> None:
    model = ReloadableModel(MODEL_DIR, cache_size=2)
    cache = model.cache
    assert cache is not None
    for template in (CRASH, DOWN, DISK_FULL):
        model.embed_and_classify([template.format("x2k4p" if template is CRASH else "host-1")])
    assert len(cache) == 2
    assert cache.lookup([template_key(CRASH.format("q9z7b"))]) == [None]  # the oldest went
    assert cache.nbytes() > 2 * 384 * 4


def test_off_when_the_size_is_zero() -> None:
    model = ReloadableModel(MODEL_DIR, cache_size=0)
    assert model.cache is None
    _, verdicts = model.embed_and_classify([CRASH.format("x2k4p"), CRASH.format("q9z7b")])
    assert len(verdicts) == 2
    assert ModelConfig().cache_size > 0 and ModelConfig(cache_size=0).cache_size == 0
    assert TemplateCache(0).size == 0


async def test_a_reload_empties_the_cache(model_copy: Path, executor: ThreadPoolExecutor) -> None:
    registry = CollectorRegistry()
    model = await asyncio.get_running_loop().run_in_executor(
        executor,
        lambda: ReloadableModel(model_copy, cache_size=16, cache_metrics=CacheMetrics(registry)),
    )
    text = "主机 CPU 使用率过高：10.20.4.31 CPU 使用率 93.5%"
    first = model.embed_and_classify([text])[1][0]
    assert first.category == "cpu" and decided(first)

    swap_head_rows(model_copy, "cpu", "disk")
    assert await model.reload(executor) is None

    # the old answer is gone: the new model reads the text (its cpu row is now disk's)
    assert model.embed_and_classify([text.replace("10.20.4.31", "10.20.4.32")])[1][0].category == (
        "disk"
    )
    assert registry.get_sample_value("augur_model_cache_hits_total") == 0
    assert registry.get_sample_value("augur_model_cache_misses_total") == 2
    assert registry.get_sample_value("augur_model_cache_entries") == 1


def test_concurrent_calls_get_what_one_call_gets(plain: TextModel) -> None:
    texts = [CRASH.format(s) for s in ("x2k4p", "q9z7b", "b5m9q", "zz9kp")]
    texts += [DOWN.format(f"10.0.0.{n}") for n in range(4)]
    expected = [plain.classify([CRASH.format("x2k4p")])[0]] * 4
    expected += [plain.classify([DOWN.format("10.0.0.0")])[0]] * 4
    model = ReloadableModel(MODEL_DIR, cache_size=16)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: model.embed_and_classify([t])[1][0], texts * 4))
    assert [r.category for r in results] == [e.category for e in expected] * 4
    assert model.cache is not None and model.cache.hits + model.cache.misses == 32
    assert model.cache.misses >= 2 and len(model.cache) == 2
