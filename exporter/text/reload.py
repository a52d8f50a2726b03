"""A handle on the text model whose files can be replaced while augur keeps serving.

`reload` builds a complete new TextModel off the event loop (sha256 checks included) and only
then swaps it in with one attribute assignment. Each call reads the current model once, so a call
that started before the swap finishes on the old instance, which Python frees when the last such
call returns. For the length of a reload both models are in memory (~80 MB more).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from exporter.text.cache import Answer, CacheMetrics, TemplateCache, decided, template_key
from exporter.text.encoder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_TOKENS,
    MANIFEST,
    Classification,
    ModelError,
    TextModel,
    read_manifest,
    sha256_file,
    verify_files,
)

log = logging.getLogger("augur.model")


class _Serving(NamedTuple):
    """The model serving now and its template cache, swapped together by a reload."""

    model: TextModel
    cache: TemplateCache | None


InferenceCallback = Callable[[float, int], None]
"""Called after each inference with (seconds, number of texts)."""


class ReloadableModel:
    """The current TextModel: `classify`/`embed` go to it, `reload` swaps in a new one if it loads.

    Build it in the executor (the constructor reads and hashes ~73 MB):
    `await loop.run_in_executor(pool, lambda: ReloadableModel(dir, threads=2))`.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int = 1,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_inference: InferenceCallback | None = None,
        cache_size: int = 0,
        cache_metrics: CacheMetrics | None = None,
    ) -> None:
        """Load and verify `model_dir` now; raise ModelError if it cannot serve.

        `cache_size` > 0 answers `embed_and_classify` from a TemplateCache of that many
        templates (text/cache.py), emptied whenever a reload swaps the model.
        """
        self.model_dir = model_dir
        self.threads = threads
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.on_inference = on_inference
        self.cache_size = cache_size
        self.cache_metrics = cache_metrics
        self._serving = self._serve(self._load(model_dir, threads))
        # created lazily: the constructor runs in an executor thread, outside any event loop
        self._lock: asyncio.Lock | None = None

    def _load(self, model_dir: Path, threads: int) -> TextModel:
        return TextModel(
            model_dir, threads=threads, max_tokens=self.max_tokens, batch_size=self.batch_size
        )

    def _serve(self, model: TextModel) -> _Serving:
        cache = TemplateCache(self.cache_size, self.cache_metrics) if self.cache_size else None
        if cache is not None:
            cache.clear()  # the entries gauge shows the new, empty cache
        return _Serving(model, cache)

    @property
    def current(self) -> TextModel:
        """The model serving now; hold on to it to make several calls on one instance."""
        return self._serving.model

    @property
    def cache(self) -> TemplateCache | None:
        """The current model's template cache, None when `cache_size` is 0."""
        return self._serving.cache

    @property
    def name(self) -> str:
        """Model name from the manifest."""
        return self.current.name

    @property
    def version(self) -> str:
        """Model version from the manifest."""
        return self.current.version

    @property
    def sha256(self) -> str:
        """sha256 of the manifest, which pins every other file: identifies the model."""
        return self.current.sha256

    @property
    def labels(self) -> tuple[str, ...]:
        """Category names in head order."""
        return self.current.labels

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self.current.dim

    @property
    def manifest(self) -> dict[str, Any]:
        """The current model's manifest."""
        return self.current.manifest

    def _timed(self, call: Callable[[TextModel], Any], texts: Sequence[str]) -> Any:
        model = self.current  # read once: a concurrent swap does not affect this call
        started = time.perf_counter()
        result = call(model)
        if self.on_inference is not None and texts:
            self.on_inference(time.perf_counter() - started, len(texts))
        return result

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """Category, confidence and top three per text, from the current model."""
        result: list[Classification] = self._timed(lambda m: m.classify(texts), texts)
        return result

    def embed_and_classify(self, texts: Sequence[str]) -> tuple[np.ndarray, list[Classification]]:
        """Embeddings and verdicts from one pass of one model (a swap cannot split them).

        With a cache, a text whose template (names and numbers masked) the model has read gets
        that reading; the model reads the first text of each new template in `texts`.
        """
        serving = self._serving  # model and cache read together: a swap replaces both
        if serving.cache is None or not texts:
            result: tuple[np.ndarray, list[Classification]] = self._timed(
                lambda m: serving.model.embed_and_classify(texts), texts
            )
            return result
        keys = [template_key(text) for text in texts]
        cached = serving.cache.lookup(keys)
        first: dict[str, int] = {}  # the first text of each template the cache lacks
        for i, (key, answer) in enumerate(zip(keys, cached, strict=True)):
            if answer is None:
                first.setdefault(key, i)
        read = self._read(serving.model, texts, list(first.values()))
        shared = {keys[i]: a for i, a in read.items() if decided(a.verdict)}
        serving.cache.store(shared)
        # the rest of an undecided template's texts are read too: its answer is not shared
        again = [i for i, a in enumerate(cached) if a is None and keys[i] not in shared]
        read |= self._read(serving.model, texts, [i for i in again if i not in read])
        serving.cache.count(hits=len(texts) - len(read), misses=len(read))
        answers = [read.get(i) or cached[i] or shared[keys[i]] for i in range(len(texts))]
        return (
            np.stack([a.embedding for a in answers if a is not None]),
            [a.verdict for a in answers if a is not None],
        )

    def _read(self, model: TextModel, texts: Sequence[str], rows: list[int]) -> dict[int, Answer]:
        """The model's own answers for texts[rows], by row."""
        if not rows:
            return {}
        chosen = [texts[i] for i in rows]
        embeddings, verdicts = self._timed(lambda _: model.embed_and_classify(chosen), chosen)
        return {i: Answer(embeddings[n].copy(), verdicts[n]) for n, i in enumerate(rows)}

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Category probabilities [len(texts), len(labels)] from the current model."""
        result: np.ndarray = self._timed(lambda m: m.probabilities(texts), texts)
        return result

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings [len(texts), dim] from the current model."""
        result: np.ndarray = self._timed(lambda m: m.embed(texts), texts)
        return result

    async def reload(
        self,
        executor: Executor | None,
        *,
        model_dir: Path | None = None,
        threads: int | None = None,
    ) -> ModelError | None:
        """Load the files again (or `model_dir`) in `executor`; swap only if that succeeds.

        Files that verify and are the ones serving (the manifest's sha256 pins every other
        file) are not loaded again. Returns None after a swap (or no change), or the ModelError
        that kept the old model serving (it is also logged). Reloads are serialised; a SIGHUP
        during a reload waits for it, then loads again.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            new_dir = model_dir or self.model_dir
            new_threads = threads or self.threads
            old = self.current
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                same = new_dir == self.model_dir and new_threads == self.threads
                if same and await loop.run_in_executor(executor, _same_files, new_dir, old.sha256):
                    # Verified and identical: loading it again would only hold a second copy
                    # (~180 MB at the peak) and empty the cache.
                    log.info("model_unchanged", extra={"model": old.name, "sha256": old.sha256})
                    return None
                fresh = await loop.run_in_executor(executor, self._load, new_dir, new_threads)
            except Exception as exc:  # whatever broke the new files, the old model serves on
                error = (
                    exc
                    if isinstance(exc, ModelError)
                    else ModelError(f"{new_dir}: the model does not load: {exc!r}")
                )
                log.error(
                    "model_reload_failed",
                    extra={
                        "error": str(error),
                        "serving": f"{old.name} {old.version} sha256={old.sha256[:12]}",
                    },
                )
                return error
            self._serving = self._serve(fresh)  # one assignment: model and empty cache
            self.model_dir, self.threads = new_dir, new_threads
            log.info(
                "model_reloaded",
                extra={
                    "model": fresh.name,
                    "version": fresh.version,
                    "sha256": fresh.sha256,
                    "changed": fresh.sha256 != old.sha256,
                    "seconds": round(time.perf_counter() - started, 3),
                },
            )
            return None


def _same_files(model_dir: Path, sha256: str) -> bool:
    """Whether `model_dir` holds the model whose manifest has `sha256`, every file verified;
    raises ModelError for a file that does not match its manifest."""
    if sha256_file(model_dir / MANIFEST) != sha256:
        return False
    verify_files(model_dir, read_manifest(model_dir))
    return True
