"""The runbook knowledge base: Markdown files, found by meaning with the text model's embeddings.

Each file in `knowledge.dir` is one runbook: an optional YAML front-matter block, then a title
(the first `# ` heading) and a lead paragraph saying what the alert means. Title and lead are
embedded once at load (a file whose sha256 did not change keeps its embedding across reloads);
an alert's text is matched by cosine similarity, nudged towards runbooks whose front-matter names
the alert's category, language or alert name.

    ---
    category: disk
    language: en
    alertnames: [NodeFilesystemAlmostOutOfSpace]
    url: https://wiki.example.com/runbooks/disk
    ---
    # Disk space or inodes running out

Where an alert is told to read it (`Runbook.location`): the front-matter's `url`, else the file
under `enrich.runbook_base_url`, else augur's own page of it (`/runbooks/<name>?lang=<lang>`
under `web.external_url`, served by exporter/web/runbooks.py), else the file's path.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote

import numpy as np
import yaml

from exporter.config.alerts import RUNBOOK_MIN_SCORE
from exporter.text.entities import language_of

logger = logging.getLogger("augur.knowledge")

# The minimum score a runbook must reach, and the starter runbooks' folder, are the defaults of
# `enrich.runbook_min_score` and `enrich.knowledge_dir` (exporter.config.alerts).
CATEGORY_BOOST = 0.06
"""Added when the runbook's category is the alert's, subtracted when it is another one."""
LANGUAGE_BOOST = 0.03
"""Added when the runbook is in the alert's language. It only decides between runbooks, and
does not count towards the minimum score (`enrich.runbook_min_score`): a team with English
runbooks only must still get one for a Chinese alert (docs/benchmarks.md, runbooks)."""
ALERTNAME_BOOST = 0.10
MAX_FILE_BYTES = 256 * 1024
_LEAD_CHARS = 600

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*\r?$\n?", re.S | re.M)
_TITLE = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)
_PAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
LANGUAGES = ("en", "zh")


def title_and_body(text: str) -> tuple[str, str]:
    """A runbook's title (its first `# ` heading, or ``) and its Markdown without front-matter."""
    if match := _FRONT_MATTER.match(text):
        text = text[match.end() :]
    heading = _TITLE.search(text)
    return (heading.group(1).strip() if heading else ""), text


def page_name(path: Path) -> tuple[str, str] | None:
    """A runbook file's page name and language by its name: `latency.en.md` -> (`latency`,
    `en`), `disk.md` -> (`disk`, ``); None for a name that cannot be a page's (dots, spaces)."""
    stem = path.name.removesuffix(".md")
    name, dot, lang = stem.rpartition(".")
    if not dot or lang not in LANGUAGES:
        name, lang = stem, ""
    return (name, lang) if _PAGE_NAME.fullmatch(name) else None


class Embedder(Protocol):
    """What the knowledge base needs of the text model (TextModel, ReloadableModel)."""

    @property
    def sha256(self) -> str:
        """Identifies the model: embeddings of different models do not compare."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, one row per text."""
        ...


@dataclass(frozen=True, slots=True)
class Runbook:
    """One Markdown runbook and what its front-matter says it applies to."""

    title: str
    location: str
    path: Path
    language: str
    category: str | None = None
    alertnames: frozenset[str] = frozenset()
    sha256: str = ""


class RunbookMatch(NamedTuple):
    """The runbook claimed for an alert: its title, where to read it, and the match score."""

    title: str
    location: str
    score: float


@dataclass(frozen=True, slots=True)
class _Index:
    runbooks: tuple[Runbook, ...]
    matrix: np.ndarray  # [len(runbooks), dim], L2-normalised rows
    model: str = ""  # sha256 of the model that made `matrix`


def _names(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


class KnowledgeBase:
    """Runbooks from a directory of Markdown files, matched to alert text by embeddings."""

    def __init__(
        self,
        directory: Path,
        embedder: Embedder,
        *,
        base_url: str | None = None,
        pages_url: str | None = None,
        categories: Collection[str] = (),
        min_score: float = RUNBOOK_MIN_SCORE,
        category_boost: float = CATEGORY_BOOST,
        language_boost: float = LANGUAGE_BOOST,
        alertname_boost: float = ALERTNAME_BOOST,
    ) -> None:
        self.directory = directory
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.pages_url = pages_url.rstrip("/") + "/" if pages_url else None
        """augur's own runbook pages (`<web.external_url>/runbooks/`), linked when no
        `runbook_base_url` is set."""
        self.categories = frozenset(categories)
        self.min_score = min_score
        self.category_boost = category_boost
        self.language_boost = language_boost
        self.alertname_boost = alertname_boost
        self.problems: list[str] = []
        """What was wrong with files skipped or partly read at the last load, one per line."""
        self._embedder = embedder
        self._cache: dict[str, np.ndarray] = {}
        self._index = _Index((), np.zeros((0, 0), dtype=np.float32))
        self._lock = threading.Lock()  # two loads at once would race on the cache

    @property
    def runbooks(self) -> tuple[Runbook, ...]:
        """The runbooks of the last load, sorted by file name."""
        return self._index.runbooks

    def load(self) -> list[str]:
        """(Re)read the directory and embed new or changed files; blocking, run it off the loop.

        Returns the problems found (also kept in `problems`); a bad file is skipped, not fatal.
        Embeddings are cached by model and file content, so a reload costs only what changed.
        """
        with self._lock:
            model = self._embedder.sha256
            problems: list[str] = []
            parsed: list[tuple[Runbook, str]] = []
            paths = sorted(self.directory.glob("*.md")) if self.directory.is_dir() else []
            if not paths:
                problems.append(f"{self.directory}: no runbooks (*.md files) found")
            for path in paths:
                try:
                    parsed.append(self._parse(path, problems))
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    problems.append(f"{path}: {exc}; the file is skipped")
            keyed = [(f"{model}:{rb.sha256}", text) for rb, text in parsed]
            missing = [(key, text) for key, text in keyed if key not in self._cache]
            if missing:
                vectors = self._embedder.embed([text for _, text in missing])
                self._cache.update(
                    (key, vec) for (key, _), vec in zip(missing, vectors, strict=True)
                )
            # Keep only what is still on disk, so edits do not grow the cache without bound.
            self._cache = {key: self._cache[key] for key, _ in keyed}
            rows = [self._cache[key] for key, _ in keyed]
            matrix = np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
            # One assignment: readers see the old index or the new one, never a mix.
            self._index = _Index(tuple(rb for rb, _ in parsed), matrix, model)
            self.problems = problems  # the caller logs them, once, with its own context
            return problems

    def _parse(self, path: Path, problems: list[str]) -> tuple[Runbook, str]:
        raw = path.read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES // 1024} KiB; keep runbooks short")
        text = raw.decode("utf-8").lstrip("\ufeff")
        meta: dict[str, Any] = {}
        if match := _FRONT_MATTER.match(text):
            try:
                loaded = yaml.safe_load(match.group(1))
            except yaml.YAMLError as exc:
                raise ValueError(f"front-matter is not valid YAML ({exc})") from None
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError("front-matter must be a mapping such as `category: disk`")
            meta = loaded or {}
            text = text[match.end() :]
        heading = _TITLE.search(text)
        title = str(meta.get("title") or (heading.group(1) if heading else "")).strip()
        if not title:
            raise ValueError("no title: start the file with a `# Title` line")
        body = text[heading.end() :] if heading else text
        lead = body.strip().split("\n\n", 1)[0].split("\n#", 1)[0]
        lead = " ".join(lead.split())[:_LEAD_CHARS]
        category = None if meta.get("category") is None else str(meta["category"])
        if category is not None and self.categories and category not in self.categories:
            known = ", ".join(sorted(self.categories))
            problems.append(f"{path}: unknown category {category!r} (known: {known}); ignored")
            category = None
        language = str(meta.get("language") or meta.get("lang") or language_of(title + lead))
        language = language.lower().split("-")[0]
        runbook = Runbook(
            title=title,
            location=self._location(path, meta, language),
            path=path,
            language=language,
            category=category,
            alertnames=_names(meta.get("alertnames", meta.get("alertname"))),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
        return runbook, f"{title}. {lead}".strip()

    def _location(self, path: Path, meta: dict[str, Any], language: str) -> str:
        if meta.get("url"):
            return str(meta["url"])
        if self.base_url:
            return self.base_url + path.name
        if self.pages_url and (page := page_name(path)):
            return f"{self.pages_url}{page[0]}?lang={quote(language, safe='')}"
        return str(path)

    def best(
        self, text: str, category: str | None = None, lang: str | None = None, alertname: str = ""
    ) -> RunbookMatch | None:
        """The best runbook for one alert text, or None when nothing scores `min_score`."""
        return self.best_many([text], [category], [lang], [alertname])[0]

    def best_many(
        self,
        texts: Sequence[str],
        categories: Sequence[str | None],
        langs: Sequence[str | None],
        alertnames: Sequence[str],
        embeddings: np.ndarray | None = None,
    ) -> list[RunbookMatch | None]:
        """`best` for many alerts with one batched embedding; blocking, run it off the loop.

        `embeddings` of the texts, when the caller has them already, save encoding them again.
        """
        index = self._index
        if index.model and index.model != self._embedder.sha256:
            logger.info("runbooks_reembedded", extra={"model": self._embedder.sha256})
            self.load()  # the model was swapped: the old vectors do not compare with its own
            index = self._index
        if not texts or not index.runbooks:
            return [None] * len(texts)
        if embeddings is None:
            embeddings = self._embedder.embed(texts)
        similarity = embeddings @ index.matrix.T
        languages = np.asarray([rb.language for rb in index.runbooks])
        out: list[RunbookMatch | None] = []
        for i, row in enumerate(similarity):
            lang = langs[i] or language_of(texts[i])
            boosts = [self._boost(rb, categories[i], alertnames[i]) for rb in index.runbooks]
            fit = row + np.asarray(boosts, dtype=np.float32)
            same_language = languages == lang
            # among the runbooks that fit, the one in the alert's language is preferred
            scores = np.where(fit >= self.min_score, fit + self.language_boost * same_language, -1)
            best = int(np.argmax(scores))
            if scores[best] < 0:
                out.append(None)
                continue
            rb = index.runbooks[best]
            score = min(1.0, float(scores[best]))  # boosts can pass 1; a reader expects 0..1
            out.append(RunbookMatch(rb.title, rb.location, round(score, 3)))
        return out

    def _boost(self, rb: Runbook, category: str | None, alertname: str) -> float:
        boost = 0.0
        if category is not None and rb.category is not None:
            boost += self.category_boost if rb.category == category else -self.category_boost
        if alertname and alertname in rb.alertnames:
            boost += self.alertname_boost
        return boost
