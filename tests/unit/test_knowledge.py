"""The knowledge base: its data file is sound, and its rules keep, remove and warn as they say, for the versions
they name, over small real site-packages trees laid out at test time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from tests.site_builder import install_dist, make_site
from venvprune import categories, knowledge
from venvprune.categories.package_extras import PackageExtras
from venvprune.knowledge import KnowledgeBase, KnowledgeError, Rule, RuleKind, parse, problems
from venvprune.plan import ActionKind, Plan, build_plan
from venvprune.scan import scan
from venvprune.target import resolve_target

TORCH_FILES: dict[str, str | bytes] = {
    "torch/__init__.py": "",
    "torch/bin/test_api": b"\x7fELF" + b"\x00" * 200,
    "torch/bin/TCPStoreTest": b"\x7fELF" + b"\x00" * 100,
    "torch/bin/torch_shm_manager": b"\x7fELF" + b"\x00" * 50,
    "torch/include/ATen/ATen.h": "#pragma once\n",
}


def rule(kind: RuleKind, paths: tuple[str, ...], versions: str = ">=2.0", distribution: str = "torch") -> Rule:
    return Rule(distribution, kind, SpecifierSet(versions), paths, f"{kind.value} because", "https://example.org/1")


def plan_with(site: Path, base: KnowledgeBase, only: tuple[str, ...], keep: tuple[str, ...] = ()) -> Plan:
    selected = [
        PackageExtras(base) if c.name == "package-extras" else c for c in categories.select(only=only, profile="max")
    ]
    return build_plan(scan(resolve_target(site), inspect_elf=False), selected, keep, knowledge=base)


def removed(plan: Plan) -> set[str]:
    return {plan.inventory.target.relative(a.path) for a in plan.actions if a.kind is ActionKind.REMOVE}


def kept(plan: Plan) -> dict[str, str]:
    return {plan.inventory.target.relative(k.path): k.reason for k in plan.kept}


def test_the_packaged_knowledge_base_is_sound() -> None:
    document = knowledge.read_document()
    assert problems(document) == []
    base = knowledge.load()
    assert base.rules, "the knowledge base is empty"
    for each in base.rules:
        assert each.evidence.startswith("https://"), each
        assert str(each.versions), f"{each.distribution}: a range, not every version ever made"
        SpecifierSet(str(each.versions))  # the range parses
        assert each.why and each.paths
    # Each kind of rule is used: the README promises all three.
    assert {r.kind for r in base.rules} == set(RuleKind)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {"Torch": {"remove": [{"versions": ">=2", "paths": ["x"], "why": "w", "evidence": "https://a"}]}},
            "canonical",
        ),
        ({"torch": {"remove": [{"versions": ">=two", "paths": ["x"], "why": "w", "evidence": "https://a"}]}}, "range"),
        ({"torch": {"remove": [{"versions": ">=2", "paths": ["x"], "why": "w", "evidence": "see #1"}]}}, "a link"),
        ({"torch": {"remove": [{"versions": ">=2", "paths": [], "why": "w", "evidence": "https://a"}]}}, "paths"),
        ({"torch": {"remove": [{"versions": ">=2", "paths": ["x"], "evidence": "https://a"}]}}, "missing why"),
        ({"torch": {"drop": [{"versions": ">=2", "paths": ["x"], "why": "w", "evidence": "https://a"}]}}, "kind"),
        (
            {
                "torch": {
                    "remove": [
                        {
                            "versions": ">=2",
                            "paths": ["torch-2.0.dist-info/RECORD"],
                            "why": "w",
                            "evidence": "https://a",
                        }
                    ]
                }
            },
            "metadata",
        ),
        (
            {"torch": {"remove": [{"versions": ">=2", "paths": ["../bin/x"], "why": "w", "evidence": "https://a"}]}},
            "'..'",
        ),
    ],
)
def test_a_malformed_rule_is_named(document: dict[str, Any], problem: str) -> None:
    found = problems(document)
    assert len(found) == 1 and problem in found[0], found
    with pytest.raises(KnowledgeError, match=problem.strip("'")):
        parse(document)


def test_rules_apply_to_the_versions_in_their_range() -> None:
    base = KnowledgeBase((rule(RuleKind.REMOVE, ("torch/bin/test_*",), ">=2.0,<3"),))
    assert base.applicable({"torch": "2.13.0+cpu"}, RuleKind.REMOVE)
    assert base.applicable({"torch": "2.14.0rc1"}, RuleKind.REMOVE)  # pre-releases of a covered version count
    assert not base.applicable({"torch": "1.13.1"}, RuleKind.REMOVE)
    assert not base.applicable({"torch": "not a version"}, RuleKind.REMOVE)
    assert not base.applicable({"numpy": "2.0"}, RuleKind.REMOVE)
    assert not base.applicable({"torch": "2.13.0"}, RuleKind.KEEP)


def test_package_extras_removes_what_a_rule_names_for_its_own_distribution_only(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "torch", TORCH_FILES, version="2.13.0+cpu")
    install_dist(site, "intruder", {"torch/bin/test_intruder": "not torch's"})  # another distribution's file
    base = KnowledgeBase((rule(RuleKind.REMOVE, ("torch/bin/test_*", "torch/bin/*Test")),))
    plan = plan_with(site, base, ("package-extras",))
    assert removed(plan) == {"torch/bin/test_api", "torch/bin/TCPStoreTest"}
    action = next(a for a in plan.actions if a.category == "package-extras")
    assert action.reason == "remove because (https://example.org/1)"
    assert action.distribution == "torch"
    # RECORD follows: the removed files are no longer listed.
    assert any(a.category == "record" for a in plan.actions)


def test_package_extras_leaves_versions_outside_the_range(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "torch", TORCH_FILES, version="1.13.1")
    base = KnowledgeBase((rule(RuleKind.REMOVE, ("torch/bin/test_*",)),))
    assert removed(plan_with(site, base, ("package-extras",))) == set()


def test_keep_option_wins_over_a_remove_rule(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "torch", TORCH_FILES, version="2.13.0")
    base = KnowledgeBase((rule(RuleKind.REMOVE, ("torch/bin/test_*",)),))
    plan = plan_with(site, base, ("package-extras",), keep=("torch/bin",))
    assert removed(plan) == set()
    assert kept(plan) == {"torch/bin/test_api": "--keep torch/bin"}


def test_a_keep_rule_protects_from_every_category(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "cffi", {"cffi/__init__.py": "", "cffi/_cffi_include.h": "#define X 1\n"}, version="1.17.1")
    base = KnowledgeBase((rule(RuleKind.KEEP, ("cffi/*.h",), ">=1.0", "cffi"),))
    plan = plan_with(site, base, ("build-files",))
    assert "cffi/_cffi_include.h" not in removed(plan)
    assert kept(plan)["cffi/_cffi_include.h"] == "keep because (https://example.org/1)"


def test_a_breaks_rule_says_what_a_removal_stops(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    install_dist(site, "torch", TORCH_FILES, version="2.13.0")
    base = KnowledgeBase((rule(RuleKind.BREAKS, ("torch/include",)),))
    plan = plan_with(site, base, ("build-files",))
    assert "torch/include" in removed(plan)
    [consequence] = plan.consequences
    assert (consequence.category, consequence.paths, consequence.what_breaks) == (
        "build-files",
        ("torch/include",),
        "breaks because",
    )
    assert consequence.files == 1 and consequence.bytes == len("#pragma once\n")
    # Nothing removed there, nothing said.
    assert plan_with(site, base, ("bytecode",)).consequences == ()
