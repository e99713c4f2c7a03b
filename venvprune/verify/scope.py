"""What a change can affect: the checks worth repeating after pruning (``--verify affected``, the default).

A distribution is affected when the prune changed one of its files, or when it depends on an affected one: it
names it in ``Requires-Dist`` (any marker: a superset is safe), or one of its checks imported a module of it at
baseline (the ``uses`` the workers record: pandas' plotting entry point imports matplotlib, which pandas does not
require; the ``uses`` are what the check actually loaded, whatever the mechanism -- an import statement,
``importlib.import_module``, ``EntryPoint.load()`` -- and the files of the modules it loaded count by the
distribution that installed them). A check is repeated when it belongs to an affected distribution, loaded an
affected module at baseline, or loads an affected library; the user's own checks and the metadata checks (one cheap
pass over every distribution) always are. Any other check could not see the change: its baseline result stands. A
changed file no distribution owns makes everything affected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from venvprune.plan import Action
from venvprune.scan import Inventory
from venvprune.verify.checks import Check, Discovery, Result


def affected_checks(
    checks: Sequence[Check],
    baseline: Mapping[str, Result],
    discovery: Discovery,
    executed: Iterable[Action],
    inventory: Inventory,
) -> set[str]:
    """The ids of the *checks* the *executed* actions can affect."""
    changed = _changed_distributions(executed, inventory)
    if changed is None:
        return {c.id for c in checks}
    owners = discovery.module_owners
    depends: dict[str, set[str]] = {name: set(required) for name, required in discovery.requires.items()}
    used: dict[str, set[str]] = {}  # check id -> the distributions whose modules it loaded
    for check in checks:
        result = baseline.get(check.id)
        if result is None:
            continue
        used[check.id] = {d for name in result.uses for d in owners.get(name, ())}
        used[check.id].update(filter(None, (inventory.owner_of(Path(source)) for source in result.sources)))
        for dist in check.distributions:
            depends.setdefault(dist, set()).update(used[check.id] - {dist})
    affected = _dependants(changed, depends)
    selected = set()
    for check in checks:
        if (
            check.explicit
            or check.kind == "metadata"
            or not check.distributions
            or affected.intersection(check.distributions)
            or affected.intersection(used.get(check.id, ()))
            or any(inventory.owner_of(library) in affected for library in check.needs)
        ):
            selected.add(check.id)
    return selected


def _changed_distributions(executed: Iterable[Action], inventory: Inventory) -> set[str] | None:
    """The distributions whose files the actions changed; None when a changed file belongs to none."""
    changed: set[str] = set()
    for action in executed:
        if not action.is_directory:
            owner = action.distribution or inventory.owner_of(action.path)
            if owner is None:
                return None
            changed.add(owner)
            continue
        # A directory (site-packages/__pycache__) may hold many owners.
        owners = {inventory.owner_of_entry(f) for f in inventory.index.under(action.path)}
        for owner in owners or {action.distribution}:
            if owner is None:
                return None
            changed.add(owner)
    return changed


def _dependants(changed: set[str], depends: Mapping[str, set[str]]) -> set[str]:
    """*changed* and every distribution that depends on one of them, directly or not."""
    dependants: dict[str, set[str]] = {}
    for dist, needs in depends.items():
        for need in needs:
            dependants.setdefault(need, set()).add(dist)
    affected = set(changed)
    pending = list(changed)
    while pending:
        for dist in dependants.get(pending.pop(), ()):
            if dist not in affected:
                affected.add(dist)
                pending.append(dist)
    return affected
