"""The category head's trainer (build-time, numpy + scipy): it must reach the optimum."""

from __future__ import annotations

import numpy as np

from exporter.modelbuild.train import train_head


def _blobs(
    seed: int, n_per_class: int = 40, dim: int = 24, classes: int = 4, noise: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    x = np.concatenate([c + noise * rng.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(classes), n_per_class)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # like the encoder's L2-normalised output
    return x.astype(np.float32), y


def test_head_separates_what_is_separable() -> None:
    x, y = _blobs(0)
    head = train_head(x, y, 4, l2=0.01)
    assert np.mean(head.predict(x) == y) > 0.95


def test_head_is_the_optimum_not_an_accident_of_order() -> None:
    # The loss is convex: a converged solver gives the same head for any row order. An
    # optimiser stopped early (the Adam loop this replaced) does not, and then the figures of a
    # rebuild depend on BLAS threads and summation order.
    # Shaped like the real problem: 13 classes, 384 dimensions, few texts per class, weak L2
    # (the Adam loop's weights differed by 6e-2 here; the solver's do not).
    x, y = _blobs(1, n_per_class=15, dim=384, classes=13, noise=1.5)
    order = np.random.default_rng(2).permutation(len(y))
    a = train_head(x, y, 13, l2=0.003)
    b = train_head(x[order], y[order], 13, l2=0.003)
    assert np.allclose(a.weight, b.weight, atol=1e-3)
    assert np.allclose(a.bias, b.bias, atol=1e-3)


def test_balanced_weights_keep_a_small_class() -> None:
    x, y = _blobs(3)
    keep = (y != 3) | (np.arange(len(y)) % 8 == 0)  # class 3 down to 5 examples
    head = train_head(x[keep], y[keep], 4, l2=0.01)
    assert np.mean(head.predict(x[y == 3]) == 3) > 0.8
