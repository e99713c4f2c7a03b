"""What the human renderings share: kept items grouped by reason, and the top distributions."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from venvprune.report.model import DistributionRow, KeptRow, Report

TOP_DISTRIBUTIONS = 10
PATHS_PER_REASON = 5


@dataclass(frozen=True)
class KeptGroup:
    category: str
    reason: str
    count: int
    bytes: int
    examples: tuple[str, ...]


def kept_groups(report: Report) -> list[KeptGroup]:
    groups: dict[tuple[str, str], list[KeptRow]] = defaultdict(list)
    for row in report.kept:
        groups[(row.category, row.reason)].append(row)
    result = [
        KeptGroup(
            category, reason, len(rows), sum(r.bytes for r in rows), tuple(r.path for r in rows[:PATHS_PER_REASON])
        )
        for (category, reason), rows in groups.items()
    ]
    return sorted(result, key=lambda g: (g.category, -g.bytes, g.reason))


def top_distributions(report: Report) -> tuple[DistributionRow, ...]:
    return report.distributions[:TOP_DISTRIBUTIONS]
