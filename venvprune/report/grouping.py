"""What the human renderings share: actions by category, kept items grouped by reason, the top distributions, and
what verification found."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from venvprune.report.model import ActionRow, DistributionRow, KeptRow, Report

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


def actions_by_category(report: Report) -> list[tuple[str, list[ActionRow]]]:
    """Every path the run removes or rewrites, under its category, in the table's order."""
    by_category: dict[str, list[ActionRow]] = {row.name: [] for row in report.categories}
    for action in report.actions:
        by_category.setdefault(action.category, []).append(action)
    return [(name, actions) for name, actions in by_category.items() if actions]
