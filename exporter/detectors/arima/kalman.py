"""ARIMA models in state-space form, and one Kalman filter that runs many series at once.

Each series' model becomes the matrices of

    x_t     = Z a_t                 (no observation noise: ARIMA has none)
    a_{t+1} = T a_t + R e_t,        e_t ~ N(0, sigma2)

with a state vector laid out the same way for every series, padded with zeros to a common
length K so that the matrices of all series stack into `(series, K, K)` arrays:

    [1, level or trend line (else unused), ARMA state s_0 .. s_{r-1}, zero padding]

- index 0 is the constant 1: it carries the mean (d=0) or the drift (d=1) through `Z` and `T`,
  so the filter needs no separate intercept terms;
- for d=1, index 1 is the level x_{t-1} (statsmodels' representation of an integrated model,
  with the drift added to the transition), started "exactly diffuse": unknown until the first
  observation fixes it, after which no approximation remains;
- for d=0 with a linear trend, index 1 is the trend line's value, advanced by the slope;
- the ARMA block is Harvey's form, as statsmodels' SARIMAX builds it: the AR coefficients in
  the first column, ones above the diagonal, and R = (1, theta_1, ..., theta_{r-1}).

Every operation of a filter step is an einsum or matmul over the stacked arrays, so the
cost of one step over a thousand series is a few numpy calls, not a thousand.

`moment_models` estimates an AR(1) per series by moments, all series at once: the stand-in
while the real fit (statsmodels, in `fit.py`) runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.detectors.base import FloatArray

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ARIMAModel:
    """Fitted parameters of one series' ARIMA(p, d, q) with its deterministic term."""

    order: tuple[int, int, int]
    trend: str
    """"n" none, "c" mean (d=0) or drift (d=1), "t" linear trend (d=0) or drift (d=1)."""
    ar: tuple[float, ...]
    ma: tuple[float, ...]
    mean: float
    """The mean (d=0; for a linear trend its value at `ref_time`) or the drift per step (d=1)."""
    slope: float
    """Change of the mean per step (d=0 with a linear trend only)."""
    sigma2: float
    ref_time: float
    """When `mean` holds, for a linear trend; in the clock's unit (seconds or columns)."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ARIMAModel:
        """The inverse of `dataclasses.asdict` after a JSON round trip (lists for tuples)."""
        return cls(
            order=(int(d["order"][0]), int(d["order"][1]), int(d["order"][2])),
            trend=str(d["trend"]),
            ar=tuple(float(v) for v in d["ar"]),
            ma=tuple(float(v) for v in d["ma"]),
            **{name: float(d[name]) for name in ("mean", "slope", "sigma2", "ref_time")},
        )

    @property
    def has_line(self) -> bool:
        """Whether the state carries a deterministic trend line (d=0, trend "t")."""
        return self.order[1] == 0 and self.trend == "t"


def moment_models(
    x: FloatArray, d: int, trend: str, ref_times: FloatArray, ar: bool = True
) -> list[ARIMAModel | None]:
    """(1, d, 0) per row of `x` by moments ((0, d, 0) when not `ar`), all rows at once.

    The lag-1 autocorrelation (clipped to ±0.95) is the AR coefficient, the mean (or a least
    squares line) the deterministic term; None for rows with fewer than 3 usable points.
    """
    y = np.diff(x, axis=1) if d else x
    ok = np.isfinite(y)
    n = np.count_nonzero(ok, axis=1)
    t = np.where(ok, np.arange(y.shape[1], dtype=np.float64), 0.0)
    ys = np.where(ok, y, 0.0)
    slope = np.zeros(len(y))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = ys.sum(axis=1) / n if trend != "n" else np.zeros(len(y))
        if d == 0 and trend == "t":
            tc = np.where(ok, t - (t.sum(axis=1) / n)[:, None], 0.0)
            slope = np.nan_to_num(np.einsum("ij,ij->i", tc, ys) / np.einsum("ij,ij->i", tc, tc))
            mean = (ys.sum(axis=1) - slope * t.sum(axis=1)) / n
        c = np.where(ok, y - mean[:, None] - slope[:, None] * t, 0.0)
        var = np.einsum("ij,ij->i", c, c) / n
        phi = np.einsum("ij,ij->i", c[:, 1:], c[:, :-1]) / (var * n)
    phi = np.clip(np.nan_to_num(phi), -0.95, 0.95) if ar else np.zeros(len(y))
    sigma2 = np.nan_to_num(var * (1 - phi**2))
    order = (1, d, 0) if ar else (0, d, 0)
    return [
        ARIMAModel(
            order,
            trend,
            (float(phi[i]),) if ar else (),
            (),
            float(mean[i]),
            float(slope[i]),
            float(sigma2[i]),
            float(ref_times[i]),
        )
        if n[i] >= 3
        else None
        for i in range(len(y))
    ]


def state_dim(p: int, q: int) -> int:
    """State length for AR order `p` and MA order `q` at most: constant, level, ARMA block."""
    return 2 + max(p, q + 1)


@dataclass
class StateSpace:
    """Stacked system matrices of a group of series: `T (m,K,K)`, `Z (m,K)`, `RQR (m,K,K)`."""

    T: FloatArray
    Z: FloatArray
    RQR: FloatArray
    integrated: BoolArray
    """Rows whose index 1 is a diffuse level (d=1)."""


@dataclass
class FilterState:
    """The filter's prediction for the next step: mean `a (m,K)`, covariance `P (m,K,K)`."""

    a: FloatArray
    P: FloatArray
    diffuse: BoolArray
    """Rows whose level has not been observed yet (no prediction possible)."""


def build(models: Sequence[ARIMAModel], k: int) -> StateSpace:
    """Stack the system matrices of `models`, each padded to state length `k`."""
    m = len(models)
    T = np.zeros((m, k, k))
    Z = np.zeros((m, k))
    R = np.zeros((m, k))
    sigma2 = np.zeros(m)
    integrated = np.zeros(m, dtype=bool)
    T[:, 0, 0] = 1.0
    for i, model in enumerate(models):
        p, d, q = model.order
        r = max(p, q + 1)
        if 2 + r > k:
            raise ValueError(f"ARIMA{model.order} needs a state of {2 + r} > {k}")
        s = 2  # index 1 stays unused without a level or line: one layout for all
        if d:
            integrated[i] = True
            Z[i, 0] = model.mean  # the drift enters each observation
            Z[i, 1] = 1.0
            T[i, 1, 0], T[i, 1, 1], T[i, 1, s] = model.mean, 1.0, 1.0
        elif model.has_line:
            Z[i, 1] = 1.0
            T[i, 1, 0], T[i, 1, 1] = model.slope, 1.0
        elif model.trend != "n":
            Z[i, 0] = model.mean
        Z[i, s] = 1.0
        T[i, s : s + p, s] = model.ar
        T[i, np.arange(s, s + r - 1), np.arange(s + 1, s + r)] = 1.0
        R[i, s] = 1.0
        R[i, s + 1 : s + 1 + q] = model.ma
        sigma2[i] = max(model.sigma2, 0.0)
    RQR = sigma2[:, None, None] * R[:, :, None] * R[:, None, :]
    return StateSpace(T=T, Z=Z, RQR=RQR, integrated=integrated)


def initial_state(
    ssm: StateSpace, models: Sequence[ARIMAModel], since_ref: FloatArray
) -> FilterState:
    """The prior of the first step: ARMA block stationary, level diffuse, line at its value.

    `since_ref[i]` is how many steps the first step lies after `models[i].ref_time`.
    """
    m, k = ssm.Z.shape
    a = np.zeros((m, k))
    a[:, 0] = 1.0
    for i, model in enumerate(models):
        if model.has_line:
            a[i, 1] = model.mean + model.slope * since_ref[i]
    return FilterState(a=a, P=_stationary_cov(ssm), diffuse=ssm.integrated.copy())


def _stationary_cov(ssm: StateSpace) -> FloatArray:
    """Solve P = T P T' + RQR for the ARMA block of every row at once (Kronecker form).

    The constant, level and line rows of T are zeroed first: their variance is known (0) or
    handled by the diffuse start, and the ARMA block does not depend on them.
    """
    m, k = ssm.Z.shape
    T = ssm.T.copy()
    T[:, :2, :] = 0.0
    T[:, :, :2] = 0.0
    eye = np.eye(k * k)
    lhs = eye - np.einsum("mij,mkl->mikjl", T, T).reshape(m, k * k, k * k)
    rhs = ssm.RQR.reshape(m, k * k, 1)
    try:
        vec = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        # An AR unit root (fits exclude them; hand-made models may not): least squares.
        vec = np.linalg.pinv(lhs) @ rhs
    P = vec.reshape(m, k, k)
    return 0.5 * (P + P.transpose(0, 2, 1))


def run(
    ssm: StateSpace, state: FilterState, y: FloatArray, compiled: bool = False
) -> tuple[FloatArray, FloatArray]:
    """Filter the columns of `y (m, L)` in order, updating `state` in place.

    Returns the one-step predictions and their variances `(m, L)` made before each column
    was seen (NaN while a level is still diffuse). NaN in `y` is a missing sample: the
    state is only propagated. With `compiled`, a few long series (a backtest) go through
    statsmodels' compiled filter with the same matrices, ~15x faster than numpy steps for
    one series; not the default, as it imports statsmodels (seconds, the first time).
    """
    m, steps = y.shape
    expected = np.empty((m, steps))
    variance = np.empty((m, steps))
    j = 0
    few_long = m <= COMPILED_ROWS and steps >= COMPILED_STEPS
    if compiled and few_long and (ssm.RQR.max(axis=(1, 2)) > 0).all():
        while j < steps and state.diffuse.any():
            _steps(ssm, state, y[:, j : j + 1], expected[:, j : j + 1], variance[:, j : j + 1])
            j += 1
        if _compiled(ssm, state, y[:, j:], expected[:, j:], variance[:, j:]):
            return expected, variance
    _steps(ssm, state, y[:, j:], expected[:, j:], variance[:, j:])
    return expected, variance


COMPILED_ROWS, COMPILED_STEPS = 8, 64
"""Where statsmodels' per-series loop beats one numpy step for all rows (measured)."""


def _steps(
    ssm: StateSpace, state: FilterState, y: FloatArray, expected: FloatArray, variance: FloatArray
) -> None:
    """The vectorised filter: one set of numpy calls per step for all rows."""
    m, steps = y.shape
    T, Z, RQR = ssm.T, ssm.Z, ssm.RQR
    Tt = np.ascontiguousarray(T.transpose(0, 2, 1))  # contiguous: matmul is 2x faster
    a, P, diffuse = state.a, state.P, state.diffuse
    zero = np.zeros(m)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for j in range(steps):
            yj = y[:, j]
            pz = np.einsum("mij,mj->mi", P, Z)
            f = np.einsum("mi,mi->m", Z, pz)
            za = np.einsum("mi,mi->m", Z, a)
            expected[:, j] = za
            variance[:, j] = f
            seen = np.isfinite(yj)
            ok = seen & (f > 0.0)
            if diffuse.any():
                expected[diffuse, j] = np.nan
                variance[diffuse, j] = np.nan
                ok &= ~diffuse
            inv = np.divide(1.0, f, out=zero.copy(), where=ok)
            gain = pz * inv[:, None]
            a = a + gain * np.where(ok, yj - za, 0.0)[:, None]
            P = P - gain[:, :, None] * pz[:, None, :]
            if diffuse.any():
                _observe_level(Z, a, P, diffuse, yj, seen)
            a = np.einsum("mij,mj->mi", T, a)
            P = T @ P @ Tt + RQR
            if j % 8 == 7:  # rounding makes P drift from symmetric over many steps
                P = 0.5 * (P + P.transpose(0, 2, 1))
    state.a, state.P = a, P


def _compiled(
    ssm: StateSpace, state: FilterState, y: FloatArray, expected: FloatArray, variance: FloatArray
) -> bool:
    """Filter row by row with statsmodels' KalmanFilter; False (nothing changed) if it fails."""
    from statsmodels.tsa.statespace.kalman_filter import KalmanFilter

    m, k = ssm.Z.shape
    out = []
    for i in range(m):
        kf = KalmanFilter(k_endog=1, k_states=k, k_posdef=k)
        kf.bind(np.asfortranarray(y[i : i + 1]))
        kf["design"], kf["transition"] = ssm.Z[i : i + 1], ssm.T[i]
        kf["selection"], kf["state_cov"] = np.eye(k), ssm.RQR[i]
        kf.initialize_known(state.a[i], state.P[i])
        try:
            out.append(kf.filter())
        except np.linalg.LinAlgError:
            return False
    for i, res in enumerate(out):
        expected[i], variance[i] = res.forecasts[0], res.forecasts_error_cov[0, 0]
        state.a[i], state.P[i] = res.predicted_state[:, -1], res.predicted_state_cov[:, :, -1]
    return True


def _observe_level(
    Z: FloatArray, a: FloatArray, P: FloatArray, diffuse: BoolArray, y: FloatArray, seen: BoolArray
) -> None:
    """The exact diffuse update: the first observation of a flat level pins it down.

    With x = level + Z_s s, the ARMA state s keeps its distribution and the level becomes
    x - Z_s s: mean x - Z_s a_s, variance Z_s P_s Z_s', covariance -Z_s P_s with s.
    """
    rows = np.flatnonzero(diffuse & seen)
    if not rows.size:
        return
    zs = Z[rows].copy()
    zs[:, 1] = 0.0
    ai, Pi = a[rows], P[rows]
    Pi[:, 1, :] = 0.0
    Pi[:, :, 1] = 0.0
    u = np.einsum("mij,mj->mi", Pi, zs)
    ai[:, 1] = y[rows] - np.einsum("mi,mi->m", zs, ai)
    Pi[:, 1, :] = -u
    Pi[:, :, 1] = -u
    Pi[:, 1, 1] = np.einsum("mi,mi->m", zs, u)
    a[rows], P[rows] = ai, Pi
    diffuse[rows] = False


def forecast(
    ssm: StateSpace, state: FilterState, steps: Sequence[int]
) -> tuple[FloatArray, FloatArray]:
    """Means and variances `(m, len(steps))` of the values `steps[k]` (>= 1) steps ahead.

    `state` is the prediction for step 1. Longer horizons jump there by repeated squaring
    of (T^n, sum of T^i RQR T^i'), so a 24 h horizon at a 15 s step costs ~13 products.
    """
    m = ssm.Z.shape[0]
    mean = np.full((m, len(steps)), np.nan)
    var = np.full((m, len(steps)), np.nan)
    a, P = state.a.copy(), state.P.copy()
    at = 1
    for h, col in sorted((h, col) for col, h in enumerate(steps)):
        if h < 1:
            raise ValueError(f"forecast steps must be >= 1, got {h}")
        if h > at:
            Tn, Sn = _jump(ssm, h - at)
            a = np.einsum("mij,mj->mi", Tn, a)
            P = Tn @ P @ Tn.transpose(0, 2, 1) + Sn
            at = h
        mean[:, col] = np.einsum("mi,mi->m", ssm.Z, a)
        var[:, col] = np.einsum("mi,mij,mj->m", ssm.Z, P, ssm.Z)
    mean[state.diffuse] = np.nan
    var[state.diffuse] = np.nan
    return mean, var


def _jump(ssm: StateSpace, n: int) -> tuple[FloatArray, FloatArray]:
    """(T^n, sum_{i<n} T^i RQR T^i') by binary powers: a jump of n steps of the state."""
    m, k = ssm.Z.shape
    Tn = np.broadcast_to(np.eye(k), (m, k, k)).copy()
    Sn = np.zeros((m, k, k))
    Tb, Sb = ssm.T, ssm.RQR
    while n:
        if n & 1:
            # Jump by the accumulated steps, then by 2^i more.
            Sn = Tb @ Sn @ Tb.transpose(0, 2, 1) + Sb
            Tn = Tb @ Tn
        n >>= 1
        if n:
            Sb = Tb @ Sb @ Tb.transpose(0, 2, 1) + Sb
            Tb = Tb @ Tb
    return Tn, Sn
