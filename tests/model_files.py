"""Copies of the committed text model that a test may alter, without 65 MB per copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from exporter.text.encoder import sha256_file

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "onnx"
LINK_FROM_BYTES = 1 << 20
"""Files this big (the encoder, the tokenizer) are linked to the committed model, not copied."""


def copy_model(target: Path, source: Path = MODEL_DIR) -> Path:
    """`source` under `target`: small files copied, big ones symlinked (they are only read).

    Change a linked file with `flip_byte`, which cuts the link before writing: writing through
    it would alter the committed model.
    """
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.stat().st_size >= LINK_FROM_BYTES:
            (target / path.name).symlink_to(path.resolve())
        else:
            shutil.copyfile(path, target / path.name)
    return target


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt one byte of `path` (its middle by default), in a file of its own."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0xFF
    path.unlink()  # a link to the committed model stays untouched
    path.write_bytes(bytes(data))


def swap_head_rows(model_dir: Path, a: str, b: str) -> None:
    """Exchange two categories' rows of head.json and re-pin it in the manifest, as a rebuild would."""
    head_path, manifest_path = model_dir / "head.json", model_dir / "manifest.json"
    assert not head_path.is_symlink() and not manifest_path.is_symlink()
    head = json.loads(head_path.read_text())
    i, j = head["labels"].index(a), head["labels"].index(b)
    head["weight"][i], head["weight"][j] = head["weight"][j], head["weight"][i]
    head["bias"][i], head["bias"][j] = head["bias"][j], head["bias"][i]
    head_path.write_text(json.dumps(head) + "\n")
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["head.json"] = {
        "sha256": sha256_file(head_path),
        "bytes": head_path.stat().st_size,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
