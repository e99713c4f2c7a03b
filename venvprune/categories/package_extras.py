"""``package-extras``: files the knowledge base names as safe to remove, per distribution and version range.

torch's wheels ship C++ test executables and a protobuf compiler in ``torch/bin`` that nothing runs
(pytorch/pytorch#23776), fontTools ships the C that Cython generated beside the compiled modules, pip and setuptools
ship Windows launchers. Each rule of :mod:`venvprune.knowledge` says why and links the evidence; a rule only ever
removes files its own distribution installed. ``--keep`` and the settings win (``--exclude package-extras``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from venvprune import knowledge
from venvprune.knowledge import KnowledgeBase, RuleKind
from venvprune.plan import Action, ActionKind, CategoryResult, ancestors
from venvprune.scan import Inventory


class PackageExtras:
    name = "package-extras"
    default = True
    summary = "extra files the knowledge base names as safe to remove, per package and version (torch's tests, ...)"

    def __init__(self, base: KnowledgeBase | None = None) -> None:
        self._base = base  # None: venvprune's own knowledge base

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        base = self._base if self._base is not None else knowledge.load()
        installed = {d.name: d.version for d in inventory.distributions}
        rules = base.applicable(installed, RuleKind.REMOVE)
        if not rules:
            return CategoryResult()
        actions: list[Action] = []
        for rule in rules:
            match = re.compile("|".join(f"(?:{fnmatch.translate(path)})" for path in rule.paths)).match
            prefixes = tuple({path.split("/")[0] for path in rule.paths})
            for entry in inventory.files:
                if not entry.rel.startswith(prefixes) or not any(match(p) for p in (entry.rel, *ancestors(entry.rel))):
                    continue
                if inventory.owner_of(entry.path) != rule.distribution:
                    continue  # another distribution's file: a rule speaks for its own distribution only
                actions.append(
                    Action(
                        path=entry.path,
                        kind=ActionKind.REMOVE,
                        category=self.name,
                        reason=rule.reason,
                        bytes_saved=entry.size,
                        files=1,
                        distribution=rule.distribution,
                    )
                )
        return CategoryResult(tuple(actions))


CATEGORY = PackageExtras()
