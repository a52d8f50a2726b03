"""PNG plots of the report's series: observed value inside its expected band, the anomalous
stretches shaded and incidents marked.

matplotlib is optional (`pip install 'augur[report]'`): `available()` says whether it is
there, and the report says plots are off when it is not. Figures are built with the object
API on the Agg canvas, never pyplot, so nothing global (no GUI backend, no figure manager) is
touched; the CJK font, when installed, is on the font list so Chinese titles render.
"""

from __future__ import annotations

import importlib.util
import io
from datetime import UTC, datetime
from functools import cache

import numpy as np

from exporter.assistant.report_data import Series, series_name
from exporter.assistant.report_text import say

WIDTH, HEIGHT, DPI = 8.0, 3.0, 100
_CJK = ("Noto Sans CJK SC", "Noto Serif CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei")


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


@cache
def _fonts() -> list[str]:
    """DejaVu Sans first (Latin, digits), then an installed CJK family for the rest."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(name for name in _CJK if name in names)]


def _days(ts: float | np.ndarray) -> float | np.ndarray:
    """Unix seconds as matplotlib's dates (days since its 1970 epoch)."""
    return ts / 86400.0


def _spacing(seconds: float) -> float:
    """Ticks on whole hours (or days): at most about six over the period."""
    for hours in (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48):
        if seconds / (hours * 3600) <= 6:
            return hours / 24
    return 7.0


def _tick(days: float, _: object) -> str:
    return datetime.fromtimestamp(days * 86400.0, UTC).strftime("%H:%M")


def plot(series: Series, lang: str, start: float, end: float) -> bytes:
    """The PNG of one series over the period `start`..`end`."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MultipleLocator

    with rc_context({"font.family": _fonts(), "axes.unicode_minus": False}):
        fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)  # Agg, whatever the default backend is
        ax = fig.add_subplot()
        lower = series.bands.get("augur_expected_lower")
        upper = series.bands.get("augur_expected_upper")
        if lower is not None and upper is not None and len(lower) and len(upper):
            common, li, ui = np.intersect1d(lower[:, 0], upper[:, 0], return_indices=True)
            if len(common):
                ax.fill_between(
                    _days(common),
                    lower[li, 1],
                    upper[ui, 1],
                    color="#9ecae1",
                    alpha=0.5,
                    label=say(lang, "legend_band"),
                    linewidth=0,
                )
        expected = series.bands.get("augur_expected_value")
        if expected is not None and len(expected):
            ax.plot(
                _days(expected[:, 0]),
                expected[:, 1],
                color="#3182bd",
                linewidth=1,
                linestyle="--",
                label=say(lang, "legend_expected"),
            )
        observed = series.bands.get("augur_observed_value")
        if observed is not None and len(observed):
            ax.plot(
                _days(observed[:, 0]),
                observed[:, 1],
                color="#222222",
                linewidth=1.2,
                label=say(lang, "legend_observed"),
            )
        for i, stretch in enumerate(series.stretches):
            ax.axvspan(
                float(_days(stretch.start)),
                float(_days(stretch.end if stretch.end is not None else end)),
                color="#e6550d",
                alpha=0.2,
                linewidth=0,
                label=say(lang, "legend_anomalous") if i == 0 else None,
            )
        for i, incident in enumerate(series.incidents):
            ax.axvline(
                float(_days(incident.opened)),
                color="#a50f15",
                linewidth=1.5,
                label=say(lang, "legend_incident") if i == 0 else None,
            )
            if incident.closed is not None:
                ax.axvline(
                    float(_days(incident.closed)),
                    color="#a50f15",
                    linewidth=1,
                    linestyle=":",
                )
        ax.set_xlim(float(_days(start)), float(_days(end)))
        ax.set_title(series_name(series.labels), fontsize=9, loc="left")
        ax.xaxis.set_major_locator(MultipleLocator(_spacing(end - start)))
        ax.xaxis.set_major_formatter(_tick)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncols=5, frameon=False)
        out = io.BytesIO()
        fig.savefig(out, format="png")
    return out.getvalue()


def plots(series: list[Series], lang: str, start: float, end: float) -> list[bytes]:
    """The plots of `series`, in order (one thread: matplotlib's settings are global)."""
    return [plot(s, lang, start, end) for s in series]
