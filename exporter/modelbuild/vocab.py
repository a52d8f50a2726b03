"""Prune the XLM-R vocabulary to the pieces English and Chinese alert text can produce."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

META = "▁"

# Code-point ranges whose characters alert text in English and Chinese uses after nmt_nfkc
# (which already folds full-width ASCII and ideographic space to their ASCII forms).
KEEP_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0020, 0x007E, "ASCII"),
    # Latin-1 symbols only: its accented letters alone would add 15k European pieces.
    (0x00A0, 0x00BF, "Latin-1 symbols (°, ±, µ)"),
    (0x00D7, 0x00D7, "multiplication sign"),
    (0x00F7, 0x00F7, "division sign"),
    (0x2010, 0x205E, "general punctuation (– — ‘ ’ “ ” … ‰)"),
    (0x2190, 0x21FF, "arrows"),
    (0x2200, 0x22FF, "mathematical operators (≤ ≥ ≠)"),
    (0x3000, 0x303F, "CJK symbols and punctuation (、。「」【】)"),
    (0x3400, 0x4DBF, "CJK extension A"),
    (0x4E00, 0x9FFF, "CJK unified ideographs"),
    (0xF900, 0xFAFF, "CJK compatibility ideographs"),
    (0xFF01, 0xFF65, "full-width punctuation that survives nmt_nfkc (，：；！？（）)"),
)


def keep_char(ch: str) -> bool:
    """True if `ch` lies in one of KEEP_RANGES."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi, _ in KEEP_RANGES)


def keep_piece(piece: str) -> bool:
    """True if every character of `piece` (metaspace aside) is kept."""
    body = piece.replace(META, "")
    return all(keep_char(ch) for ch in body)


@dataclass(frozen=True)
class PrunedVocab:
    """Kept pieces in their original order, with the old id of each new id."""

    pieces: list[str]
    scores: np.ndarray
    old_ids: np.ndarray  # new id -> old id

    def remap(self, old: list[int]) -> list[int]:
        """Translate old ids to new ids; a pruned id becomes -1."""
        index = {int(o): n for n, o in enumerate(self.old_ids)}
        return [index.get(i, -1) for i in old]


def prune(pieces: list[str], scores: np.ndarray, specials: set[int]) -> PrunedVocab:
    """Keep specials plus every piece made only of kept characters; order is preserved.

    Because a Unigram segmentation of text whose characters are all kept can only use pieces
    made of kept characters, such text gets exactly the same pieces (and embeddings) as before.
    """
    # Unigram scores an unknown character at min(score) - 10, so keeping the lowest-scoring
    # piece keeps that penalty, and with it the segmentation around unknown characters.
    floor = int(np.argmin(scores))
    kept = [i for i, p in enumerate(pieces) if i in specials or i == floor or keep_piece(p)]
    old_ids = np.asarray(kept, dtype=np.int64)
    return PrunedVocab([pieces[i] for i in kept], scores[old_ids].astype(np.float32), old_ids)
