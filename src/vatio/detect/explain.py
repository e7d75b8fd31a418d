"""Explanations in plain numbers: detector, expected band, observed, since when."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from vatio.detect.base import SeriesScores

_WHAT = {
    "level_high": "consumption above its usual level for this hour of the week",
    "sustained_high": "consumption over the last 24 h above the usual daily level",
    "level_low": "consumption over the last 24 h below the usual daily level",
    "baseload_increase": "always-on (baseload) consumption above usual",
    "gap": "readings missing",
    "clock_skew": "timestamps out of order or off the meter's time grid",
    "counter_reset": "energy counter went backwards or jumped (reset or replacement)",
    "stuck_meter": "the meter repeats the same value (stuck)",
    "spike": "a value far above anything seen before",
    "left_on": "the lowest power of the last 2 h above usual for this time of day (something left on)",
    "baseload_drift": "the lowest power of the last 6 h above usual for this time of day",
    "night_use": "use in hours when this home is usually near its floor",
    "vacancy": "the highest power of the last 12 h has fallen to what the home draws when empty",
    "tamper": "the lowest power of the last 24 h has fallen below what the home draws when empty "
    "(meter under-reading?)",
    "peak_demand": "power above the configured demand limit",
    "above_record": "power held for 2 h above anything the home drew at this time of day "
    "in the past 28 days (something left on, or use at an unusual hour)",
    "step_record": "the lowest power of the last 2 h held for an hour above its highest at this time of day "
    "in the past 56 days (something switched on and left on)",
    "floor_record": "the lowest power of the last 24 h above its highest in the past 28 days (the always-on load rose)",
}


def explain(scores: SeriesScores, i: int) -> str:
    r"""One sentence for row ``i``, e.g. ``baseload … 310 W vs usual 120 W (band 60–180 W) since …``.

    >>> import numpy as np
    >>> s = SeriesScores.empty(1, "baseload_increase")
    >>> s.score[0], s.observed_w[0], s.expected_w[0], s.low_w[0], s.high_w[0] = 2.5, 310, 120, 60, 180
    >>> s.since[0] = 1795514400
    >>> print(explain(s, 0).replace(": ", ":\n"))
    baseload_increase:
    always-on (baseload) consumption above usual:
    observed 310 W vs expected 120 W (band 60–180 W) since 2026-11-24 10:00 UTC; score 2.50
    """
    kind = str(scores.kind[i])
    text = f"{kind}: {_WHAT.get(kind, kind)}"
    observed, expected = scores.observed_w[i], scores.expected_w[i]
    if not np.isnan(observed):
        text += f": observed {observed:.0f} W"
    if not np.isnan(expected):
        low, high = max(scores.low_w[i], 0.0), scores.high_w[i]
        text += f" vs expected {expected:.0f} W (band {low:.0f}–{high:.0f} W)"
    if scores.since[i] > 0:
        since = datetime.fromtimestamp(int(scores.since[i]), tz=UTC)
        text += f" since {since:%Y-%m-%d %H:%M} UTC"
    return f"{text}; score {scores.score[i]:.2f}"
