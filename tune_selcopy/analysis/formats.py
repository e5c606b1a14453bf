"""How values print in the tables and sentences: the published tables' conventions."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np


class IntRange(NamedTuple):
    """An integer statistic whose seeds disagree (``model params`` of mixed models)."""

    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low:,}-{self.high:,}"


def missing(v: object) -> bool:
    """True for None and NaN: the values that print empty and sort last."""
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def display_value(v: object) -> str:
    """A config value as the published tables show it: lists stay comma-joined, True is T."""
    if missing(v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "T" if v else "F"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        return ",".join(display_value(x) for x in v)
    return str(v)


def fmt_float(v: object) -> str:
    """pandas-like default float repr with 6 significant digits; empty for NaN."""
    return "" if missing(v) else f"{v:.6g}"


def fmt_p(v: object) -> str:
    """A p-value or probability with 3 significant digits; empty for NaN."""
    return "" if missing(v) else f"{v:.3g}"


def fmt_sig(v: object, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, trailing zeros kept and no exponent, for the
    tables a reader compares down a column (``0.768``, ``1.17``, ``0.700``, ``45.2``,
    ``100``); whole numbers from ``10**digits`` up (``1,473``); an exponent below 1e-4
    (``3.20e-05``); empty for NaN."""
    if missing(v):
        return ""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if abs(v) >= 10**digits:
        return f"{v:,.0f}"
    if abs(v) < 1e-4:
        return f"{v:.{digits - 1}e}"
    rounded = float(f"{v:.{digits}g}")  # 0.995 -> 1.0: the decimals follow the rounded value
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"


class Unit(NamedTuple):
    """How a metric's numbers are labelled: a value (``0.77%``) and a difference of two
    values (``1.1 points``, since a difference of percentages is in percentage points)."""

    value: str
    difference: str


def unit(metric: str) -> Unit:
    """The unit of a log metric: % for the error rates, /s for throughput, s for train
    time, none for losses."""
    if metric.endswith("%"):
        return Unit("%", " points")
    return {"throughput": Unit("/s", "/s"), "train_time_s": Unit(" s", " s")}.get(metric, Unit("", ""))


def fmt_params(v: object) -> str:
    """A parameter count with thousands separators (``229,632``), or a range of them."""
    return "" if missing(v) else str(v) if isinstance(v, IntRange) else f"{int(v):,}"


def fmt_minutes(v: object) -> str:
    """Minutes as the published tables print them: 2 decimals, trailing zeros dropped
    (``1.51``, ``1.69``, ``1.9`` for 1.90, ``2`` for 2.00)."""
    return "" if missing(v) else f"{v:.2f}".rstrip("0").rstrip(".")


def fmt_throughput(v: object) -> str:
    """Training inputs per second as ``10,843/s``."""
    return "" if missing(v) else f"{v:,.0f}/s"


def sort_key(v: object) -> tuple:
    """A key that orders one column's values: numbers (and ranges, by their low end, then
    high end) numerically, before text; text naturally, digits as numbers (``0,0,4``
    before ``0,0,10``). Call only on values that are not ``missing``."""
    if isinstance(v, IntRange):
        return (0, float(v.low), float(v.high))
    if isinstance(v, (int, float, np.number)):
        return (0, float(v))
    text = str(v)
    try:
        return (0, float(text))
    except ValueError:
        parts = re.split(r"(\d+)", text)
        return (1, tuple(int(p) if i % 2 else p for i, p in enumerate(parts)))


def join_names(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(n: int, word: str) -> str:
    """``1 seed``, ``2 seeds``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
