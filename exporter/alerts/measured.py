"""What an alert rule measured, in words, from its PromQL's shape and the value it read.

`predict_linear(…) < 0` is "predicted to run out in ~40 min", a ratio is a percentage, `rate()`
a figure per second, `increase(…[5m])` one per 5m, `histogram_quantile(0.99, …)` a p99
latency, `up == 0` "down", and a comparison names its threshold: "at 93 %, above the 90 %
threshold". The shape is read from the expression's tokens (exporter/text/promql.py), not
parsed: an expression it cannot read is said as "at <value>". Every phrase is in English and in
Chinese, and none is about the present once the alert has resolved (summary.py says that).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import pairwise

from exporter.alerts.related import Reading
from exporter.text.promql import promql_metric_names, promql_tokens

Token = tuple[str, str]
_COMPARISONS = frozenset((">", "<", ">=", "<=", "==", "!="))
_SETS = frozenset(("and", "or", "unless"))
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_AUGUR = ("augur_anomaly_incident", "augur_anomaly_score")


@dataclass(frozen=True, slots=True)
class Shape:
    """What a rule expression computes, as far as its tokens tell."""

    kind: str = "value"
    """`value`, `predict`, `quantile`, `rate`, `increase`, `down`, `incident` or `score`."""
    op: str = ""
    threshold: float | None = None
    ratio: bool = False  # `a / b`: a value in 0..1 is a share
    percent: bool = False  # `… * 100`: a percentage already
    unit: str = ""  # `s` or `B`, from the metric's name
    quantile: float = 0.0
    horizon: float = 0.0  # predict_linear's, in seconds
    window: str = ""  # increase's range


def _constant(tokens: list[Token]) -> float | None:
    """The value of a constant such as `0.9`, `1h`, `4 * 60 * 60` or `(86400 * 7)`; else None."""
    while len(tokens) >= 2 and tokens[0][1] == "(" and tokens[-1][1] == ")":
        tokens = tokens[1:-1]
    if not tokens or len(tokens) % 2 == 0:
        return None
    terms: list[float] = []
    sign = 1.0
    for i, (kind, text) in enumerate(tokens):
        if i % 2 == 0:
            if kind != "number" or (value := _number(text)) is None:
                return None
            if i and tokens[i - 1][1] in "*/":
                terms[-1] = terms[-1] * value if tokens[i - 1][1] == "*" else terms[-1] / value
            else:
                terms.append(sign * value)
        elif text in "+-":
            sign = 1.0 if text == "+" else -1.0
        elif text not in "*/":
            return None
    return sum(terms)


def _number(text: str) -> float | None:
    if _DURATION.fullmatch(text):
        return float(sum(int(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(text)))
    try:
        return float(int(text, 16)) if text[:2].lower() == "0x" else float(text)
    except ValueError:
        return None


def _depths(tokens: list[Token]) -> list[int]:
    """Each token's nesting depth in (), {} and []."""
    depth, out = 0, []
    for _, text in tokens:
        if text in ")}]":
            depth = max(0, depth - 1)
        out.append(depth)
        if text in "({[":
            depth += 1
    return out


def _args(tokens: list[Token], name: str) -> list[list[Token]]:
    """The top-level arguments of the first call of function `name`."""
    for i, (kind, text) in enumerate(tokens[:-1]):
        if kind == "ident" and text == name and tokens[i + 1][1] == "(":
            inner = tokens[i + 2 :]
            depths = _depths(inner)
            args: list[list[Token]] = [[]]
            for token, depth in zip(inner, depths, strict=True):
                if depth == 0 and token[1] == ")":
                    return args
                if depth == 0 and token[1] == ",":
                    args.append([])
                else:
                    args[-1].append(token)
            return args
    return []


def shape(expr: str) -> Shape:
    """The shape of a rule's expression: its kind, comparison, threshold and unit."""
    tokens = promql_tokens(expr)
    depths = _depths(tokens)
    while len(tokens) > 2 and tokens[0][1] == "(" and tokens[-1][1] == ")" and min(depths[1:-1]):
        tokens, depths = tokens[1:-1], [d - 1 for d in depths[1:-1]]  # `(…)` around it all
    # `a and b` answers a's values: the reading is the first operand's.
    for i, ((kind, text), depth) in enumerate(zip(tokens, depths, strict=True)):
        if depth == 0 and kind == "ident" and text.lower() in _SETS:
            tokens, depths = tokens[:i], depths[:i]
            break
    op, threshold, left = "", None, tokens
    for i, ((_, text), depth) in enumerate(zip(tokens, depths, strict=True)):
        if depth == 0 and text in _COMPARISONS:
            right = [t for t in tokens[i + 1 :] if t[1].lower() != "bool"]
            op, threshold, left = text, _constant(right), tokens[:i]
            if threshold is None and (flipped := _constant(left)) is not None:
                op, threshold, left = _FLIP.get(text, text), flipped, right
            break
    calls = {text for (kind, text), nxt in pairwise(left) if kind == "ident" and nxt[1] == "("}
    names = promql_metric_names(" ".join(text for _, text in left))
    unit = next(
        ("s" if "_seconds" in n else "B" for n in names if "_seconds" in n or "_bytes" in n), ""
    )
    percent = any(
        left[i][1] == "*" and "100" in (left[i - 1][1], left[i + 1][1])
        for i in range(1, len(left) - 1)
    )
    ratio = any(t == ("op", "/") for t in left) or any(n.endswith("_ratio") for n in names)
    if "time" in calls:
        unit = "s"  # `expiry - time()`: a time left
    elif ratio:
        unit = ""  # bytes / bytes
    base = Shape("value", op, threshold, ratio=ratio, percent=percent, unit=unit)
    if any(n in _AUGUR for n in names):
        kind = "incident" if "augur_anomaly_incident" in names else "score"
        return Shape(kind, op, threshold)
    if "predict_linear" in calls:
        args = _args(left, "predict_linear")
        horizon = _constant(args[1]) if len(args) > 1 else None
        return replace(base, kind="predict", horizon=horizon or 0.0)
    if "histogram_quantile" in calls:
        args = _args(left, "histogram_quantile")
        q = _constant(args[0]) if args else None
        return replace(base, kind="quantile", quantile=q or 0.0)
    if calls & {"rate", "irate"}:
        return replace(base, kind="rate")
    if "increase" in calls:
        args = _args(left, "increase")
        window = next((t for _, t in (args[0] if args else []) if _DURATION.fullmatch(t)), "")
        return replace(base, kind="increase", window=window)
    if names == ["up"] and not calls and op == "==" and threshold == 0:
        return Shape("down", op, threshold)
    return base


_FLIP = {">": "<", "<": ">", ">=": "<=", "<=": ">="}


_WORDS = {
    # English, Chinese
    "above": ("above", "高于"),
    "below": ("below", "低于"),
    "at": ("at {}", "当前 {}"),
    "threshold": ("{}, {} the {} threshold", "{}，{}阈值 {}"),
    "was": ("{} (was {} at {})", "{0}（{2} 时为 {1}）"),
    "run_out_in": ("predicted to run out in ~{}", "预计约 {}后耗尽"),
    "run_out_within": ("predicted to run out within {}", "预计 {}内耗尽"),
    "reach_in": ("predicted to reach {} in ~{}", "预计约 {1}后达到 {0}"),
    "reach_within": ("predicted to reach {} within {}", "预计 {1}内达到 {0}"),
    "fall_in": ("predicted to fall to {} in ~{}", "预计约 {1}后降到 {0}"),
    "fall_within": ("predicted to fall to {} within {}", "预计 {1}内降到 {0}"),
    "quantile": ("p{} latency {}", "p{} 延迟 {}"),
    "quantile_plain": ("p{} {}", "p{} 为 {}"),
    "per_second": ("{}/s", "{}/秒"),
    "increase": ("{} in the last {}", "最近 {1} 内增加 {0}"),
    "down": ("down (up == 0)", "已宕机（up == 0）"),
    "incident": ("augur incident stage {:g}", "augur 异常事件等级 {:g}"),
    "score": (
        "anomaly score {} (1 is the edge of its expected band)",
        "异常分数 {}（1 即预期区间边缘）",
    ),
    "band_times": (
        "{v}, {times}× its expected {e} (band {band})",
        "{v}，是预期 {e} 的 {times} 倍（正常区间 {band}）",
    ),
    "band_above": (
        "{v}, above its expected {e} (band {band})",
        "{v}，高于预期 {e}（正常区间 {band}）",
    ),
    "band_below": (
        "{v}, {pct} % below its expected {e} (band {band})",
        "{v}，比预期 {e} 低 {pct} %（正常区间 {band}）",
    ),
    "band_edge_above": ("{v}, above its expected band {band}", "{v}，高于预期区间 {band}"),
    "band_edge_below": ("{v}, below its expected band {band}", "{v}，低于预期区间 {band}"),
    "band_none": ("none: its detectors disagree", "无：各检测器不一致"),
    "band_within": ("{v}, within its band {band}", "{v}，在正常区间 {band} 内"),
}
_TIME_UNITS = (
    # seconds, English, Chinese
    (86400.0, " d", " 天"),
    (3600.0, " h", " 小时"),
    (60.0, " min", " 分钟"),
    (1.0, " s", " 秒"),
    (0.001, " ms", " 毫秒"),
)


def _w(key: str, zh: bool) -> str:
    return _WORDS[key][zh]


def _sig(value: float) -> str:
    """Three significant digits, without an exponent for everyday sizes."""
    text = f"{value:.3g}"
    return f"{value:.0f}" if "e+" in text and abs(value) < 1e6 else text


def duration(seconds: float, zh: bool) -> str:
    """`40 min`, `1.5 h`, `3 d`; in Chinese `40 分钟`, `1.5 小时`, `3 天`."""
    for size, en, cn in _TIME_UNITS:
        if abs(seconds) >= size or size == 0.001:
            value = seconds / size
            whole = size == 60.0 or abs(value) >= 100  # `23 min`, not `23.4 min`
            text = _sig(round(value)) if whole else f"{value:.2g}"
            return text + (cn if zh else en)
    return f"{seconds:.2g}{' 秒' if zh else ' s'}"  # pragma: no cover - the loop always returns


def amount(value: float, s: Shape, zh: bool) -> str:
    """A value in the shape's unit: `93 %`, `1.2 s`, `981 ms`, `3.2 GiB`, `12.3k`."""
    if not math.isfinite(value):
        return str(value)
    if s.percent:
        return f"{_sig(value)} %"
    if s.ratio and -0.005 <= value <= 1.005:
        return f"{_sig(value * 100)} %"
    if s.unit == "s":
        return duration(value, zh)
    if s.unit == "B":
        size, prefix = 1.0, ""
        for p in ("Ki", "Mi", "Gi", "Ti", "Pi"):
            if abs(value) < size * 1024:
                break
            size, prefix = size * 1024, p
        return f"{_sig(value / size)} {prefix}B"
    for size, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{_sig(value / size)}{prefix}"
    return _sig(value)


def _eta(s: Shape, r: Reading) -> float | None:
    """When predict_linear's line reaches the threshold, from its two readings.

    predict_linear answers v(t) + slope * horizon; between the two readings its answer moved by
    slope * dt (a steady slope moves v as much), so v(t) = answer - slope * horizon and the line
    meets the threshold T at horizon - (answer - T) / slope from now.
    """
    dt = r.at - r.earlier_at
    if s.threshold is None or s.horizon <= 0 or dt <= 0 or r.value == r.earlier:
        return None
    slope = (r.value - r.earlier) / dt
    eta = s.horizon - (r.value - s.threshold) / slope
    return eta if 0 < eta <= s.horizon * 1.05 else None


def measured(s: Shape, r: Reading, zh: bool) -> str:
    """What the rule read when the alert started, in words, in English or Chinese."""
    at = datetime.fromtimestamp(r.earlier_at, UTC).strftime("%H:%M UTC")
    if s.kind == "down":
        return _w("down", zh)
    if s.kind == "incident":
        return _w("incident", zh).format(r.value)
    if s.kind == "score":
        return _w("score", zh).format(_sig(r.value))
    if s.kind == "predict":
        to_zero = s.threshold == 0 and s.op in ("<", "<=")
        target = amount(s.threshold or 0.0, s, zh)
        verb = "run_out" if to_zero else "fall" if s.op in ("<", "<=") else "reach"
        if (eta := _eta(s, r)) is not None:
            text = _w(f"{verb}_in", zh)
            return (
                text.format(duration(eta, zh))
                if to_zero
                else text.format(target, duration(eta, zh))
            )
        if s.horizon <= 0 or s.threshold is None:
            return _w("at", zh).format(amount(r.value, s, zh))
        text = _w(f"{verb}_within", zh)
        horizon = duration(s.horizon, zh)
        return text.format(horizon) if to_zero else text.format(target, horizon)
    value, earlier = amount(r.value, s, zh), amount(r.earlier, s, zh)
    threshold = None if s.threshold is None else amount(s.threshold, s, zh)
    if s.kind == "quantile":
        q = f"{s.quantile * 100:g}"
        text = _w("quantile" if s.unit == "s" else "quantile_plain", zh).format(q, value)
    elif s.kind == "rate":
        value, earlier = (_w("per_second", zh).format(x) for x in (value, earlier))
        threshold = threshold and _w("per_second", zh).format(threshold)
        text = _w("at", zh).format(value)
    elif s.kind == "increase" and s.window:
        text = _w("increase", zh).format(value, s.window)
    else:
        text = _w("at", zh).format(value)
    if r.earlier_at < r.at and earlier != value:
        text = _w("was", zh).format(text, earlier, at)
    side = {">": "above", ">=": "above", "<": "below", "<=": "below"}.get(s.op)
    if threshold is not None and side:
        text = _w("threshold", zh).format(text, _w(side, zh), threshold)
    return text


def band(
    value: float, expected: float, lower: float, upper: float, zh: bool, s: Shape | None = None
) -> str:
    """A value against the band augur expected: `3.4× its expected 120 (band 95–150)`,
    in the unit of shape `s` (a metric's name read by `shape`: `_seconds`, `_ratio`, …)."""
    s = s or Shape()
    scale = 1.0
    if s.ratio and not s.percent and all(-0.005 <= x <= 1.005 for x in (value, expected)):
        # a share: the band's edges in percent too, even where they pass 0 or 100 %
        s, scale = replace(s, ratio=False, percent=True), 100.0
    v, e, lo, hi = (amount(x * scale, s, zh) for x in (value, expected, lower, upper))
    if upper <= lower:
        # A point: an ensemble whose members' bands do not overlap keeps none (detectors).
        lo, hi, sep = _w("band_none", zh), "", ""
    elif lo == hi:
        # Narrower than the digits printed ("band 404/s–404/s" read as a point): its middle and
        # half-width instead, "404/s ± 0.35/s".
        lo = amount((lower + upper) / 2 * scale, s, zh)
        hi = amount((upper - lower) / 2 * scale, s, zh)
        sep = " ± "
    else:
        sep = "–"
    if s.kind == "rate" and sep:
        v, e, lo, hi = (_w("per_second", zh).format(x) for x in (v, e, lo, hi))
    elif s.kind == "rate":
        v, e = (_w("per_second", zh).format(x) for x in (v, e))
    k = {"v": v, "e": e, "band": f"{lo}{sep}{hi}"}
    if lower <= value <= upper:
        return _w("band_within", zh).format(**k)
    if not lower <= expected <= upper:
        # An ensemble's band is where its members agree and its expected value their mean,
        # which can lie outside it: then the band alone is said, not a size against the mean.
        return _w("band_edge_above" if value > upper else "band_edge_below", zh).format(**k)
    if value > upper:
        if expected > 0 and value / expected >= 1.5:
            times = f"{value / expected:.2g}"
            return _w("band_times", zh).format(times=times, **k)
        return _w("band_above", zh).format(**k)
    pct = f"{(expected - value) / abs(expected) * 100:.0f}" if expected else "100"
    return _w("band_below", zh).format(pct=pct, **k)
