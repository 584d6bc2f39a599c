"""How the tables write numbers (percentages, points, thousands, durations) and a markdown
table."""
from __future__ import annotations


def pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}%"


def pts(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}"


def signed(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:+.2f}"


def thousands(x: float) -> str:
    return f"{x:,.0f}"


def pct_range(values: list[float]) -> str:
    return f"{100 * min(values):.2f}-{100 * max(values):.2f}%"


def duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m} min" if h else f"{m} min {s} s" if m else f"{s} s"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])
