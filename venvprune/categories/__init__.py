"""The categories of things venvprune may remove. Each module holds one; this registry orders them.

A category is a small object with a ``name``, a ``default`` flag, a one-line ``summary`` and
``plan(inventory, planned) -> CategoryResult``. To add one, write a module and list it here.
"""

from __future__ import annotations

from collections.abc import Iterable

from venvprune.categories import (
    build_files,
    bytecode,
    debug_symbols,
    docs,
    installers,
    package_extras,
    record,
    stubs,
    tests,
)
from venvprune.errors import UsageError
from venvprune.plan import Category

# The order of the report. Two categories that remove one path: the first in this order has it; a removal of a folder
# covers the removals inside it, whatever the order (installers' pip/ covers the bytecode in it).
ALL: tuple[Category, ...] = (
    bytecode.CATEGORY,
    tests.CATEGORY,
    package_extras.CATEGORY,
    debug_symbols.CATEGORY,
    build_files.CATEGORY,
    stubs.CATEGORY,
    docs.CATEGORY,
    installers.CATEGORY,
    record.CATEGORY,
)
NAMES = tuple(c.name for c in ALL)
# Planned from the other categories' actions, whatever the selection: a RECORD that lists removed files makes pip
# and SBOM tools report a damaged install. Naming one in --only or --include changes nothing.
FOLLOWERS = tuple(c.name for c in ALL if getattr(c, "derived", False))


SAFE, MAX = "safe", "max"
# safe: the default categories; max: every category, relying on the guards, the knowledge base and verification.
PROFILES = (SAFE, MAX)


def select(
    only: Iterable[str] = (), include: Iterable[str] = (), exclude: Iterable[str] = (), profile: str = SAFE
) -> tuple[Category, ...]:
    """The categories to run: ``only`` (or else the profile's), plus ``include``, minus ``exclude``.

    The categories that follow the others' removals (``record``) always run when anything else does.
    """
    only, include, exclude = list(only), list(include), list(exclude)
    for name in [*only, *include, *exclude]:
        if name not in NAMES:
            raise UsageError(f"unknown category {name!r}; choose from {', '.join(NAMES)}")
    for name in exclude:
        if name in FOLLOWERS:
            raise UsageError(
                f"{name} cannot be excluded: it keeps RECORD true for whatever the other categories remove"
            )
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    by_profile = {c.name for c in ALL if c.default or profile == MAX}
    chosen = (set(only) if only else by_profile) | set(include)
    chosen -= set(exclude)
    chosen -= set(FOLLOWERS)
    if not chosen:
        raise UsageError(f"no category is left to run; choose from {', '.join(n for n in NAMES if n not in FOLLOWERS)}")
    return tuple(c for c in ALL if c.name in chosen or c.name in FOLLOWERS)
