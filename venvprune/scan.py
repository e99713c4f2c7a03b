"""Read the target into an :class:`Inventory`: one walk, no symlink followed, each file stat-ed once.

Nothing here changes the disk. File ownership comes from each distribution's RECORD, falling back to the
top-level directory a distribution's RECORD names.
"""

from __future__ import annotations

import bisect
import functools
import os
import stat
import sys
from collections.abc import Iterable, Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PathDistribution
from pathlib import Path

from packaging.utils import canonicalize_name

from venvprune import elf, records
from venvprune.elf import DynamicLinks
from venvprune.target import OWN_DIR_NAMES, Target

ELF_MAGIC = b"\x7fELF"
# One entry per file of the venv: without a __dict__ each takes half the memory (Python 3.10 and later).
_SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclass(frozen=True, **_SLOTS)
class FileEntry:
    """A regular file or a symlink (never followed) inside a site-packages directory.

    Only the path relative to site-packages is kept: a Path per file held 90 MB of a 200,000-file venv's 190 MB,
    and a full path string 29 MB more. Code that runs for every file reads :attr:`rel`; :attr:`path` makes a Path
    for the files a category acts on.
    """

    rel: str  # POSIX path relative to its site-packages directory
    site_packages: Path
    size: int
    is_symlink: bool = False
    elf: elf.ElfFacts | None = None  # set for ELF files when debug symbols are inspected
    links: DynamicLinks | None = None  # set for dynamically linked ELF files: what the loader needs for them

    @property
    def path_str(self) -> str:
        return f"{self.site_packages}/{self.rel}"

    @property
    def path(self) -> Path:
        return Path(self.path_str)

    @property
    def name(self) -> str:
        return self.rel.rpartition("/")[2]

    @property
    def suffix(self) -> str:
        """``Path.suffix`` of the name, without making a Path."""
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.rel.split("/"))


@dataclass(frozen=True)
class Distribution:
    name: str  # canonical (PEP 503) name
    version: str
    metadata_dir: Path  # the *.dist-info or *.egg-info directory
    site_packages: Path
    record: Path | None  # RECORD file, when there is one
    record_line_bytes: Mapping[str, int] = field(repr=False, compare=False)  # RECORD bytes per listed path
    top_level: frozenset[str]  # first path components of its files (packages and modules)
    # Files its RECORD lists outside site-packages but inside the target (bin/pip, bin/wheel): they go only with the
    # whole distribution (the installers category).
    scripts: tuple[Path, ...] = ()

    @property
    def files(self) -> KeysView[str]:
        """Paths listed in RECORD, relative to site-packages, normalised (the keys of :attr:`record_line_bytes`)."""
        return self.record_line_bytes.keys()


@dataclass(frozen=True)
class Owners:
    """File path -> the canonical name of the distribution whose RECORD lists it.

    Keyed by the RECORD's own normalised paths, per site-packages directory, so that no string is made per file
    (a 200,000-file venv held 28 MB of full paths for this alone).
    """

    by_site: Mapping[str, Mapping[str, str]]  # "<site-packages>/" -> path relative to it -> name
    elsewhere: Mapping[str, str]  # rows outside every site-packages directory (``../../bin/x``): full path -> name
    # "<site-packages>/" -> a top-level name (package, module, metadata folder) -> the first distribution naming it
    top_level: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, distributions: Iterable[Distribution]) -> Owners:
        distributions = tuple(distributions)
        by_site: dict[str, dict[str, str]] = {_prefix(d.site_packages): {} for d in distributions}
        elsewhere: dict[str, str] = {}
        for dist in distributions:
            table = by_site[_prefix(dist.site_packages)]
            for rel in dist.files:
                if rel.startswith(("/", "../")) or rel == "..":
                    full = _joined(str(dist.site_packages), rel)
                    inside = next((p for p in by_site if full.startswith(p)), None)
                    if inside is not None:
                        by_site[inside][full[len(inside) :]] = dist.name
                    else:
                        elsewhere[full] = dist.name
                else:
                    table[rel] = dist.name
        top_level: dict[str, dict[str, str]] = {prefix: {} for prefix in by_site}
        for dist in distributions:
            names = top_level[_prefix(dist.site_packages)]
            for name in (*sorted(dist.top_level), dist.metadata_dir.name):
                names.setdefault(name, dist.name)
        return cls(by_site, elsewhere, top_level)

    def of_entry(self, entry: FileEntry) -> str | None:
        """:meth:`get` for a scanned file, without making its full path."""
        table = self.by_site.get(_prefix(entry.site_packages))
        return table.get(entry.rel) if table is not None else self.get(entry.path_str)

    def get(self, path: Path | str) -> str | None:
        text = str(path)
        for prefix, table in self.by_site.items():
            if text.startswith(prefix):
                return table.get(text[len(prefix) :])
        return self.elsewhere.get(text)

    def by_top_level(self, path: Path | str) -> str | None:
        """The first distribution (in scan order) whose top-level names hold *path*'s first component."""
        text = str(path)
        for prefix, names in self.top_level.items():
            if text.startswith(prefix):
                return names.get(text[len(prefix) :].split("/", 1)[0])
        return None


@dataclass(frozen=True)
class Inventory:
    target: Target
    files: tuple[FileEntry, ...]
    directories: tuple[Path, ...]
    distributions: tuple[Distribution, ...]
    owners: Owners = field(repr=False)
    bytes_outside: int = 0  # the target's files outside site-packages: interpreter, standard library, headers

    @property
    def total_bytes(self) -> int:
        """What is pruned and measured: the files in site-packages."""
        return sum(f.size for f in self.files)

    @property
    def target_bytes(self) -> int:
        """The whole target, for scale (a prefix holds far more than its site-packages)."""
        return self.total_bytes + self.bytes_outside

    def owner_of(self, path: Path | str) -> str | None:
        """The distribution that installed *path*: from RECORD, else by its top-level package directory."""
        owner = self.owners.get(path)
        return owner if owner is not None else self.owners.by_top_level(path)

    def owner_of_entry(self, entry: FileEntry) -> str | None:
        """:meth:`owner_of` for a scanned file, without making its full path (this runs for every file)."""
        owner = self.owners.of_entry(entry)
        return owner if owner is not None else self.owners.by_top_level(entry.path_str)

    def distribution(self, name: str) -> Distribution | None:
        return next((d for d in self.distributions if d.name == name), None)

    @functools.cached_property
    def index(self) -> FileIndex:
        """The files sorted by path, made once for the plan and every category."""
        return FileIndex(self.files)


class FileIndex:
    """Files of an inventory sorted by path, for 'which files lie under this directory' in O(log n).

    Per site-packages directory, sorted by the relative paths the entries hold: no full path is made per file.
    """

    def __init__(self, files: Iterable[FileEntry]) -> None:
        by_site: dict[str, list[FileEntry]] = {}
        for entry in files:
            by_site.setdefault(_prefix(entry.site_packages), []).append(entry)
        self._sites: dict[str, tuple[list[FileEntry], list[str]]] = {}
        for prefix in sorted(by_site):
            entries = sorted(by_site[prefix], key=lambda f: f.rel)
            self._sites[prefix] = (entries, [f.rel for f in entries])

    def exact(self, path: Path) -> list[FileEntry]:
        """The entry of *path* itself, when the inventory has one."""
        text = str(path)
        for prefix, (entries, keys) in self._sites.items():
            if text.startswith(prefix):
                rel = text[len(prefix) :]
                position = bisect.bisect_left(keys, rel)
                return entries[position : position + 1] if keys[position : position + 1] == [rel] else []
        return []

    def under(self, directory: Path) -> list[FileEntry]:
        text = str(directory).rstrip("/") + "/"
        found: list[FileEntry] = []
        for prefix, (entries, keys) in self._sites.items():
            if prefix.startswith(text):  # the directory holds the whole site-packages directory
                found.extend(entries)
            elif text.startswith(prefix):
                rel = text[len(prefix) :]
                found.extend(entries[bisect.bisect_left(keys, rel) : bisect.bisect_left(keys, rel + "\U0010ffff")])
        return found


def scan(target: Target, *, inspect_elf: bool = True) -> Inventory:
    files: list[FileEntry] = []
    directories: list[Path] = []
    for site_packages in target.site_packages:
        for entry_path, rel, st in _walk(site_packages, directories):
            if stat.S_ISLNK(st.st_mode):
                files.append(FileEntry(rel, site_packages, st.st_size, is_symlink=True))
                continue
            facts = links = None
            if st.st_size >= elf.MIN_HEADER_SIZE and _has_elf_magic(entry_path):
                # The libraries a file needs are read always: the advice for the final image is made of them.
                path = Path(entry_path)
                links = elf.dynamic_links(path)
                facts = elf.inspect(path) if inspect_elf else None
            files.append(FileEntry(rel, site_packages, st.st_size, elf=facts, links=links))
    # RECORD lists the same relative paths the walk found: its rows reuse those strings (17 MB at 200,000 files).
    walked = {entry.rel: entry.rel for entry in files}
    distributions = tuple(d for sp in target.site_packages for d in _read_distributions(sp, target.root, walked))
    del walked
    owners = Owners.of(distributions)
    return Inventory(target, tuple(files), tuple(directories), distributions, owners, _bytes_outside(target))


def _prefix(folder: Path) -> str:
    return str(folder).rstrip("/") + "/"


def _joined(folder: str, rel: str) -> str:
    """``str(Path(folder) / rel)``, without making a Path where *rel* is already clean (nearly always)."""
    if rel and not rel.startswith("/") and "//" not in rel and "." not in rel.split("/") and not rel.endswith("/"):
        return f"{folder.rstrip('/')}/{rel}" if folder != "/" else f"/{rel}"
    return str(Path(folder) / rel)


def _bytes_outside(target: Target) -> int:
    """Bytes of the files below the target's root but outside its site-packages; symlinks are not followed."""
    skip = {str(sp) for sp in target.site_packages} | {str(target.staging_dir)}
    if str(target.root) in skip:
        return 0
    total = 0
    stack = [str(target.root)]
    while stack:
        # Unreadable or vanished entries are passed over: the figure is for scale, nothing is decided on it.
        try:
            with os.scandir(stack.pop()) as scanned:
                entries = [entry for entry in scanned if entry.path not in skip]
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            else:
                total += st.st_size
    return total


def _walk(top: Path, directories: list[Path]) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield every non-directory below *top* as (path, path relative to *top* in POSIX form, lstat); directories are
    appended to *directories*. Strings, not Paths: one Path per file is made by the caller, none here."""
    top_text = str(top)
    prefix = top_text.rstrip("/") + "/"
    stack = [top_text]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                children = sorted(entries, key=lambda e: e.name)
        except OSError:
            continue  # unreadable directory: nothing in it is planned, so nothing in it is touched
        at_top = current == top_text
        for child in children:
            if at_top and child.name in OWN_DIR_NAMES:
                continue
            try:
                st = child.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while we looked
            if stat.S_ISDIR(st.st_mode):
                directories.append(Path(child.path))
                stack.append(child.path)
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                yield child.path, child.path[len(prefix) :], st


def _has_elf_magic(path: str) -> bool:
    """The first four bytes, read with one open and one read (no file object): this runs for nearly every file.

    Not following a symlink, and not waiting on a FIFO, either of which may have replaced the file since its lstat.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.read(fd, 4) == ELF_MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def _read_distributions(site_packages: Path, root: Path, walked: Mapping[str, str]) -> Iterator[Distribution]:
    for metadata_dir in sorted(site_packages.glob("*.dist-info")) + sorted(site_packages.glob("*.egg-info")):
        if not metadata_dir.is_dir() or metadata_dir.is_symlink():
            continue
        dist = PathDistribution(metadata_dir)
        metadata = dist.metadata  # parsed once: dist.version would parse the file again
        name = metadata["Name"] or metadata_dir.name.split("-")[0]
        record = metadata_dir / "RECORD"
        line_bytes = _record_line_bytes(record, walked) if record.is_file() else {}
        top_level = {p.split("/")[0] for p in line_bytes if not p.startswith("..")}
        top_level_txt = dist.read_text("top_level.txt")
        if top_level_txt:
            top_level.update(line.strip() for line in top_level_txt.splitlines() if line.strip())
        yield Distribution(
            name=canonicalize_name(name),
            version=metadata["Version"] or "",
            metadata_dir=metadata_dir,
            site_packages=site_packages,
            record=record if record.is_file() else None,
            record_line_bytes=line_bytes,
            top_level=frozenset(top_level),
            scripts=tuple(_scripts(line_bytes, site_packages, root)),
        )


def _scripts(files: Iterable[str], site_packages: Path, root: Path) -> Iterator[Path]:
    """The RECORD's files outside *site_packages* and inside the target *root*, as they are now (never followed)."""
    for rel in sorted(f for f in files if f.startswith("../")):
        path = Path(os.path.normpath(site_packages / rel))
        try:
            inside = path.relative_to(root)
        except ValueError:
            continue  # outside the target: never ours
        if not inside.parts or inside.parts[0] in OWN_DIR_NAMES or site_packages in path.parents:
            continue
        if os.path.realpath(path.parent) != str(path.parent):
            continue  # reached through a symlinked folder: not the target's own file
        try:
            st = path.lstat()
        except OSError:
            continue  # listed, but not there
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            yield path


def _record_line_bytes(record: Path, walked: Mapping[str, str]) -> dict[str, int]:
    """Bytes of RECORD per listed path (normalised; the walk's own string where it found the file): what dropping
    its row saves."""
    try:
        data = record.read_bytes()
        rows = records.parse(data)
    except (OSError, ValueError):
        return {}  # unreadable or malformed: it lists no file, so no removal makes it rewritten
    sizes = records.row_sizes(rows, records.line_ending(data))
    line_bytes: dict[str, int] = {}
    for row, size in zip(rows, sizes):
        if row.path:
            path = row.normalised_path
            line_bytes[walked.get(path, path)] = size
    return line_bytes
