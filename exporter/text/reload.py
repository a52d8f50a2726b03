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
from typing import Any

import numpy as np

from exporter.text.encoder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_TOKENS,
    Classification,
    ModelError,
    TextModel,
)

log = logging.getLogger("augur.model")

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
    ) -> None:
        """Load and verify `model_dir` now; raise ModelError if it cannot serve."""
        self.model_dir = model_dir
        self.threads = threads
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.on_inference = on_inference
        self._current = self._load(model_dir, threads)
        # created lazily: the constructor runs in an executor thread, outside any event loop
        self._lock: asyncio.Lock | None = None

    def _load(self, model_dir: Path, threads: int) -> TextModel:
        return TextModel(
            model_dir, threads=threads, max_tokens=self.max_tokens, batch_size=self.batch_size
        )

    @property
    def current(self) -> TextModel:
        """The model serving now; hold on to it to make several calls on one instance."""
        return self._current

    @property
    def name(self) -> str:
        """Model name from the manifest."""
        return self._current.name

    @property
    def version(self) -> str:
        """Model version from the manifest."""
        return self._current.version

    @property
    def sha256(self) -> str:
        """sha256 of the manifest, which pins every other file: identifies the model."""
        return self._current.sha256

    @property
    def labels(self) -> tuple[str, ...]:
        """Category names in head order."""
        return self._current.labels

    @property
    def dim(self) -> int:
        """Embedding width."""
        return self._current.dim

    @property
    def manifest(self) -> dict[str, Any]:
        """The current model's manifest."""
        return self._current.manifest

    def _timed(self, call: Callable[[TextModel], Any], texts: Sequence[str]) -> Any:
        model = self._current  # read once: a concurrent swap does not affect this call
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
        """Embeddings and verdicts from one pass of one model (a swap cannot split them)."""
        result: tuple[np.ndarray, list[Classification]] = self._timed(
            lambda m: m.embed_and_classify(texts), texts
        )
        return result

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

        Returns None after a swap, or the ModelError that kept the old model serving (it is also
        logged). Reloads are serialised; a SIGHUP during a reload waits for it, then loads again.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            new_dir = model_dir or self.model_dir
            new_threads = threads or self.threads
            old = self._current
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
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
            self._current = fresh
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
