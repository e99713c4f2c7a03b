"""The knowledge base: what venvprune knows about particular distributions, kept as data in ``packages.toml``.

Each rule names a distribution (canonical name), a range of its versions (``packaging.specifiers``), globs relative
to site-packages, why, and a link to the evidence. Its kind says what it does:

- ``keep``: never removed by any category, in any profile (:mod:`venvprune.plan` applies it as ``--keep``);
- ``remove``: extra files that are safe to remove (the ``package-extras`` category, on by default);
- ``breaks``: what stops working when a category removes these paths (the report says so beside the removal).

Only rules of installed distributions whose version is in the range apply. ``--keep`` and the settings always win
over a ``remove`` rule (they drop the action); a ``keep`` rule wins over every category.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from venvprune import _tomllib

DATA_FILE = "packages.toml"
RULE_FIELDS = frozenset({"versions", "paths", "why", "evidence"})


class RuleKind(enum.Enum):
    KEEP = "keep"
    REMOVE = "remove"
    BREAKS = "breaks"


@dataclass(frozen=True)
class Rule:
    distribution: str  # canonical name
    kind: RuleKind
    versions: SpecifierSet
    paths: tuple[str, ...]  # globs relative to site-packages; each matches a path and everything under it
    why: str
    evidence: str  # a link to the upstream source line or issue

    def applies_to(self, version: str) -> bool:
        try:
            parsed = Version(version)
        except InvalidVersion:
            return False  # a version no range can be judged against: the rule is not known to hold
        return self.versions.contains(parsed, prereleases=True)

    @property
    def reason(self) -> str:
        """Why, with the evidence, as the report shows it."""
        return f"{self.why} ({self.evidence})"


class KnowledgeError(ValueError):
    """The knowledge base is malformed: a bug in venvprune's own data, caught by its tests."""


@dataclass(frozen=True)
class KnowledgeBase:
    rules: tuple[Rule, ...] = ()

    def applicable(self, installed: Mapping[str, str], kind: RuleKind | None = None) -> tuple[Rule, ...]:
        """The rules of *kind* (all kinds when None) that hold for *installed* (canonical name -> version)."""
        return tuple(
            rule
            for rule in self.rules
            if (kind is None or rule.kind is kind)
            and rule.distribution in installed
            and rule.applies_to(installed[rule.distribution])
        )


def problems(data: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a parsed knowledge-base document, one line each; empty when it is sound."""
    found: list[str] = []
    for name, table in data.items():
        if canonicalize_name(name) != name:
            found.append(f"{name}: not a canonical distribution name; write {canonicalize_name(name)!r}")
        if not isinstance(table, dict):
            found.append(f"{name}: must be a table of rule lists")
            continue
        for kind, rules in table.items():
            if kind not in {k.value for k in RuleKind}:
                found.append(f"{name}.{kind}: unknown kind of rule; use keep, remove or breaks")
                continue
            if not isinstance(rules, list) or not rules:
                found.append(f"{name}.{kind}: must be a non-empty list of rules ([[{name}.{kind}]])")
                continue
            for number, rule in enumerate(rules, 1):
                found += [f"{name}.{kind} #{number}: {problem}" for problem in _rule_problems(rule)]
    return found


def _rule_problems(rule: Any) -> Iterable[str]:
    if not isinstance(rule, dict):
        yield "must be a table"
        return
    missing = RULE_FIELDS - set(rule)
    if missing:
        yield f"missing {', '.join(sorted(missing))}"
    unknown = set(rule) - RULE_FIELDS
    if unknown:
        yield f"unknown field {', '.join(sorted(unknown))}"
    versions = rule.get("versions")
    if "versions" not in rule:
        pass
    elif not isinstance(versions, str):
        yield "versions must be a string such as '>=2.0'"
    else:
        try:
            SpecifierSet(versions)
        except InvalidSpecifier:
            yield f"versions {versions!r} is not a version range (packaging.specifiers)"
    paths = rule.get("paths")
    if "paths" not in rule:
        pass
    elif not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        yield "paths must be a non-empty list of globs"
    else:
        for path in paths:
            if path.startswith("/") or ".." in path.split("/"):
                yield f"path {path!r} must be relative to site-packages, without '..'"
            elif path.split("/")[0].endswith((".dist-info", ".egg-info")):
                yield f"path {path!r} is package metadata, which no rule may name"
    for text_field in ("why", "evidence"):
        if text_field in rule and (not isinstance(rule[text_field], str) or not rule[text_field].strip()):
            yield f"{text_field} must be a non-empty string"
    evidence = rule.get("evidence")
    if isinstance(evidence, str) and not evidence.startswith("https://"):
        yield f"evidence {evidence!r} must be a link (https://...) to the upstream source line or issue"


def parse(data: Mapping[str, Any]) -> KnowledgeBase:
    """The knowledge base of a parsed document; :class:`KnowledgeError` naming every problem when it is unsound."""
    found = problems(data)
    if found:
        raise KnowledgeError("; ".join(found))
    return KnowledgeBase(
        tuple(
            Rule(
                distribution=name,
                kind=RuleKind(kind),
                versions=SpecifierSet(rule["versions"]),
                paths=tuple(rule["paths"]),
                why=" ".join(rule["why"].split()),
                evidence=rule["evidence"],
            )
            for name, table in data.items()
            for kind, rules in table.items()
            for rule in rules
        )
    )


def read_document() -> dict[str, Any]:
    """The packaged ``packages.toml``, parsed."""
    return _tomllib.loads(resources.files(__name__).joinpath(DATA_FILE).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def load() -> KnowledgeBase:
    """venvprune's own knowledge base (read once)."""
    return parse(read_document())
