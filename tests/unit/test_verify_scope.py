"""Which checks a change can affect (--verify affected): over a small site laid out at test time."""

from __future__ import annotations

from pathlib import Path

from tests.site_builder import install_dist, make_site
from venvprune.plan import Action, ActionKind
from venvprune.scan import Inventory, scan
from venvprune.target import resolve_target
from venvprune.verify.checks import Check, Discovery, Result
from venvprune.verify.scope import affected_checks

# distribution -> (its module, what its Requires-Dist names)
DISTRIBUTIONS = {
    "core": ("core", ()),
    "needs-core": ("needs_core", ("core",)),
    "imports-core": ("imports_core", ()),  # no Requires-Dist: seen importing core at baseline
    "chain": ("chain", ("imports-core",)),  # depends on a dependant
    "bystander": ("bystander", ()),
}


def check(kind: str, dist: str, **fields: object) -> Check:
    module, requires = DISTRIBUTIONS[dist]
    name = dist if kind == "metadata" else module
    task = {"id": f"{kind} {name}", "kind": kind, "distributions": [dist], **fields}
    if kind == "metadata":
        task.update(dist=dist, version="1.0", requires=list(requires))
    else:
        task.setdefault("name", module)
    return Check.from_task(task)


def inventory_of(tmp_path: Path) -> Inventory:
    site = make_site(tmp_path)
    for dist, (module, _) in DISTRIBUTIONS.items():
        install_dist(site, dist, {f"{module}/__init__.py": "", f"{module}/tests/__init__.py": ""})
    (site / "__pycache__").mkdir()
    (site / "__pycache__" / "orphan.cpython-311.pyc").write_bytes(b"\0")  # owned by no distribution
    return scan(resolve_target(site), inspect_elf=False)


def test_a_change_affects_its_distribution_and_what_depends_on_it(tmp_path: Path) -> None:
    inventory = inventory_of(tmp_path)
    site = inventory.target.site_packages[0]
    checks = [check("metadata", d) for d in DISTRIBUTIONS] + [check("import", d) for d in DISTRIBUTIONS]
    checks.append(check("import", "bystander", id="import bystander.own", name="bystander.own", explicit=True))
    owners = {module: (dist,) for dist, (module, _) in DISTRIBUTIONS.items()}
    discovery = Discovery("3.11.7", None, tuple(checks), owners)
    baseline = {
        "import imports_core": Result(True, uses=("imports_core", "core")),
        "import bystander": Result(True, uses=("bystander",)),
    }
    core_tests = Action(site / "core" / "tests", ActionKind.REMOVE, "tests", "why", 1, 1, "core", is_directory=True)
    selected = affected_checks(checks, baseline, discovery, [core_tests], inventory)
    assert selected == {
        *(f"metadata {d}" for d in DISTRIBUTIONS),  # one cheap pass over every distribution
        "import core",
        "import needs_core",
        "import imports_core",
        "import chain",
        "import bystander.own",  # the user's own check: always
    }
    orphan = Action(site / "__pycache__", ActionKind.REMOVE, "bytecode", "why", 1, 1, None, is_directory=True)
    assert affected_checks(checks, baseline, discovery, [orphan], inventory) == {c.id for c in checks}
