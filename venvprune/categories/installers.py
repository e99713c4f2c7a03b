"""``installers`` (opt-in): pip, setuptools and wheel, uninstalled whole, unless an installed distribution needs them.

An image that never installs anything at run time needs no installer. They are uninstalled as ``pip uninstall``
would: every file their RECORD lists, their packages' folders, their scripts in ``bin/`` and their metadata, so that
``importlib.metadata`` no longer reports them. One stays when a distribution that stays requires it, by a
``Requires-Dist`` whose marker holds for the target's Python (torch requires setuptools, which
``torch.utils.cpp_extension`` imports); for a requirement of an extra, when that extra's other requirements are all
installed (the extra was asked for). The report names the distribution that requires it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName, default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from venvprune.plan import Action, ActionKind, CategoryResult, Kept
from venvprune.scan import Distribution, FileEntry, FileIndex, Inventory

INSTALLERS = ("pip", "setuptools", "wheel")
REASON = "installer: an image that installs nothing at run time does not need it"


class Installers:
    name = "installers"
    default = False
    summary = "pip, setuptools and wheel with their scripts, unless an installed distribution requires them"

    def plan(self, inventory: Inventory, planned: Sequence[Action]) -> CategoryResult:
        # By name, each with every dist-info folder it has: an interrupted upgrade can leave pip-23.2 beside pip-24.0.
        candidates: dict[str, list[Distribution]] = {}
        for dist in inventory.distributions:
            if dist.name in INSTALLERS:
                candidates.setdefault(dist.name, []).append(dist)
        if not candidates:
            return CategoryResult()
        environment = _environment(inventory.target.python_version)
        staying = [d for d in inventory.distributions if d.name not in candidates]
        needed: dict[str, str] = {}
        for dist in staying:
            for name, requirement in _requirements(dist, environment, {d.name for d in staying}):
                if name in candidates:
                    needed.setdefault(name, f"{dist.name} {dist.version} requires it ({requirement})")
        index = inventory.index
        actions: list[Action] = []
        kept: list[Kept] = []
        for name, dists in sorted(candidates.items()):
            for dist in dists:
                if name in needed:
                    kept.append(Kept(dist.metadata_dir, self.name, needed[name]))
                else:
                    actions.extend(self._uninstall(inventory, dist, index))
        return CategoryResult(tuple(actions), tuple(kept))

    def _uninstall(self, inventory: Inventory, dist: Distribution, index: FileIndex) -> Iterator[Action]:
        """The folders and files of *dist* in site-packages, its scripts outside, its metadata."""
        inside = [rel for rel in dist.files if not rel.startswith("../")]
        tops = sorted({rel.split("/")[0] for rel in inside if "/" in rel})
        directories = set(inventory.directories)
        owned_folders = []
        for top in tops:
            folder = dist.site_packages / top
            if folder == dist.metadata_dir or folder not in directories:
                continue
            contents = index.under(folder)
            # A folder shared with another distribution (a namespace package) loses only this one's files.
            if all(_is_own(inventory, f, dist) for f in contents):
                owned_folders.append(folder)
                yield self._action(folder, contents, dist, is_directory=True)
        for rel in sorted(inside):
            path = dist.site_packages / rel
            if path == dist.metadata_dir or dist.metadata_dir in path.parents:
                continue
            found = index.exact(path)
            if any(folder in path.parents for folder in owned_folders) or not found:
                continue
            yield self._action(path, found, dist)
        for script in dist.scripts:
            # Outside site-packages: removed, and not counted, since every figure is of site-packages.
            yield self._action(script, [], dist)
        yield self._action(dist.metadata_dir, index.under(dist.metadata_dir), dist, is_directory=True)

    def _action(
        self, path: Path, contents: Sequence[FileEntry], dist: Distribution, is_directory: bool = False
    ) -> Action:
        return Action(
            path=path,
            kind=ActionKind.REMOVE,
            category=self.name,
            reason=REASON,
            bytes_saved=sum(f.size for f in contents),
            files=len(contents),
            distribution=dist.name,
            is_directory=is_directory,
            uninstalls=dist.name,
        )


def _is_own(inventory: Inventory, entry: FileEntry, dist: Distribution) -> bool:
    """*entry* belongs to *dist*: its RECORD lists it, or it is bytecode the installer compiled beside it."""
    owner = inventory.owners.of_entry(entry)
    if owner is not None:
        return owner == dist.name
    return entry.parts[-2:-1] == ("__pycache__",) and inventory.owner_of_entry(entry) == dist.name


def _environment(python_version: str | None) -> dict[str, str]:
    """The marker environment of the target: this machine's, with the target interpreter's version."""
    environment: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    if python_version:
        environment["python_full_version"] = python_version
        environment["python_version"] = ".".join(python_version.split(".")[:2])
    return environment


def _requirements(dist: Distribution, environment: Mapping[str, str], installed: set[str]) -> Iterator[tuple[str, str]]:
    """(canonical name, requirement) of what *dist* needs here: its base requirements whose marker holds, and those
    of each extra whose other requirements are all installed."""
    requirements = []
    for line in _requires_dist(dist):
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement:
            continue  # an unreadable requirement requires nothing we can name
    by_extra: dict[str, list[Requirement]] = {}
    for requirement in requirements:
        if _holds(requirement.marker, environment, ""):
            yield canonicalize_name(requirement.name), str(requirement)
            continue
        for extra in _extras(requirement.marker):
            if _holds(requirement.marker, environment, extra):
                by_extra.setdefault(extra, []).append(requirement)
    for extra, wanted in by_extra.items():
        names = {canonicalize_name(r.name) for r in wanted}
        if (names - set(INSTALLERS)) <= installed:
            for requirement in wanted:
                yield canonicalize_name(requirement.name), f"{requirement} (extra {extra!r} is installed)"


def _requires_dist(dist: Distribution) -> list[str]:
    for name in ("METADATA", "PKG-INFO"):
        try:
            text = (dist.metadata_dir / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return HeaderParser().parsestr(text).get_all("Requires-Dist") or []
    return []


def _holds(marker: Marker | None, environment: Mapping[str, str], extra: str) -> bool:
    if marker is None:
        return True
    try:
        return marker.evaluate({**environment, "extra": extra})
    except (UndefinedComparison, UndefinedEnvironmentName):  # count it: keeping the installer is the safe side
        return True


def _extras(marker: Marker | None) -> list[str]:
    """The extras a marker names (``extra == "test"``)."""
    if marker is None:
        return []
    found = []
    text = str(marker)
    for quote in ('"', "'"):
        parts = text.split(f"extra == {quote}")
        found += [part.split(quote)[0] for part in parts[1:]]
    return [canonicalize_name(extra) for extra in found]


CATEGORY = Installers()
