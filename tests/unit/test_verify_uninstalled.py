"""Checks of a distribution the plan uninstalls whole are not repeated after pruning: its absence is the plan."""

from __future__ import annotations

from venvprune.verify.checks import Check, Result
from venvprune.verify.compare import checks_after


def check(check_id: str, *distributions: str) -> Check:
    return Check(check_id, "import", {"id": check_id}, distributions)


def test_checks_of_uninstalled_distributions_are_not_repeated() -> None:
    checks = [check("import pip", "pip"), check("metadata pip", "pip"), check("import app", "app"), check("smoke")]
    shared = [check("import shared", "pip", "app")]  # a module two distributions own stays checked
    baseline = {c.id: Result(ok=True) for c in checks + shared}
    after = checks_after(checks + shared, baseline, removed=(), uninstalled=("pip",))
    assert [c.id for c in after] == ["import app", "smoke", "import shared"]
    assert [c.id for c in checks_after(checks, baseline, removed=())] == [c.id for c in checks]
