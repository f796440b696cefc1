"""How numbers and tables are written in report.md: "–" for a missing value, mean ± std, a paired
lift with its 95 % interval, and a markdown table."""

from __future__ import annotations


def fmt(value, digits: int = 4) -> str:
    """`value` with `digits` decimals; "–" when it is missing."""
    return "–" if value is None else f"{value:.{digits}f}"


def mean_std(mean, std) -> str:
    """Mean ± std over seeds, e.g. "0.8123 ± 0.0045"; the mean alone when there is no std (one run)."""
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def interval(mean, low, high, n) -> str:
    """A signed paired lift with its 95 % interval; one pair has no interval."""
    if mean is None:
        return "–"
    if n == 1:
        return f"{mean:+.4f} (1 pair)"
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
