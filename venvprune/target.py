"""What is being pruned: a venv, a Python prefix, or a site-packages directory.

The target interpreter is asked for its own ``sys.path`` (its Python may differ from ours); only when there is no
interpreter (``pip install --target``) is the layout on disk used instead.
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from venvprune.errors import TargetError

STAGING_DIR_NAME = ".venvprune-staging"
MANIFEST_DIR_NAME = ".venvprune"  # the final-stage checker and its manifest live here, in the target root
UNRESTORED_DIR_NAME = ".venvprune-unrestored"  # originals a recovery could not put back, kept for the user
OWN_DIR_NAMES = (STAGING_DIR_NAME, MANIFEST_DIR_NAME, UNRESTORED_DIR_NAME)  # never scanned, never pruned
SITE_DIR_NAMES = ("site-packages", "dist-packages")
OLDEST_PYTHON = (3, 8)
NEWEST_TESTED = "3.14"

# Asked of the target interpreter with -I (no user site, no PYTHON* variables). Python 3.8+ syntax only. The answer
# goes to a file of its own (the descriptor in argv[1]): a .pth file may print at start-up, on stdout or stderr.
_QUERY = (
    "import json, os, sys; os.write(int(sys.argv[1]), json.dumps({'version': '%d.%d.%d' % sys.version_info[:3],"
    " 'prefix': sys.prefix, 'path': sys.path}).encode())"
)


class TargetKind(enum.Enum):
    VENV = "venv"
    PREFIX = "prefix"
    SITE_PACKAGES = "site-packages"


@dataclass(frozen=True)
class Target:
    root: Path
    kind: TargetKind
    site_packages: tuple[Path, ...]
    interpreter: Path | None
    python_version: str | None

    @property
    def staging_dir(self) -> Path:
        return self.root / STAGING_DIR_NAME

    def contains(self, path: Path) -> bool:
        """True when *path* (not resolved: symlinks are never followed) lies inside a site-packages directory."""
        return any(_is_within(path, sp) for sp in self.site_packages)

    def relative(self, path: Path) -> str:
        """*path* as a POSIX path relative to the site-packages directory holding it (``--keep`` globs match this)."""
        for sp in self.site_packages:
            if _is_within(path, sp):
                return path.relative_to(sp).as_posix()
        return path.as_posix()


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
    except ValueError:
        return False
    return True


def _refused_roots() -> set[Path]:
    refused = {Path("/"), Path("/usr"), Path("/root"), Path("/home")}
    home = os.environ.get("HOME")
    if home:
        refused.add(Path(home).resolve())
    return refused


def resolve_target(given: Path | None, environ: dict[str, str] | None = None, python: Path | None = None) -> Target:
    """Classify *given* (or ``$VIRTUAL_ENV``) and find its site-packages, or raise :class:`TargetError`.

    *python* (``--python``) is the interpreter to use instead of the target's own: the one a ``pip install
    --target`` folder is run with.
    """
    env = os.environ if environ is None else environ
    if given is None:
        venv = env.get("VIRTUAL_ENV")
        if not venv:
            raise TargetError("no target given and VIRTUAL_ENV is not set: name the venv, e.g. `venvprune /opt/venv`")
        given = Path(venv)
    if not given.exists() and not given.is_symlink():
        raise TargetError(f"{given}: no such file or directory; name an existing venv or site-packages directory")
    # The path the user named may itself be a symlink (/opt/venv -> /opt/venv-3.11); inside it nothing is followed.
    root = given.resolve()
    if not root.is_dir():
        raise TargetError(
            f"{given}: is a file, not a directory; name a venv, a Python prefix or a site-packages directory"
        )
    if root in _refused_roots() or root.parent == Path("/home"):
        raise TargetError(f"{root}: refusing to prune a system or home directory; name the venv inside it")

    if python is not None:
        python = _named_interpreter(python)
    if (root / "pyvenv.cfg").is_file():
        kind = TargetKind.VENV
    elif root.name in SITE_DIR_NAMES or any(root.glob("*.dist-info")):
        return _site_packages_target(root, python)
    elif _layout_site_packages(root):
        kind = TargetKind.PREFIX
    else:
        raise TargetError(
            f"{root}: not a venv (no pyvenv.cfg), a Python prefix (no lib/pythonX.Y/site-packages) "
            "or a site-packages directory (no *.dist-info); name one of those"
        )

    interpreter = python or _find_interpreter(root / "bin")
    if interpreter is None:
        if kind is TargetKind.VENV:
            raise TargetError(f"{root}: venv has no bin/python; recreate the venv or name its site-packages directory")
        return Target(root, kind, _layout_site_packages(root), None, None)
    version, site_packages = _ask_interpreter(interpreter, root)
    if not site_packages:
        site_packages = _layout_site_packages(root)
    if not site_packages:
        raise TargetError(f"{root}: {interpreter} reports no site-packages inside the target; nothing to prune")
    return Target(root, kind, site_packages, interpreter, version)


def _site_packages_target(root: Path, python: Path | None) -> Target:
    # lib/pythonX.Y/site-packages -> ../../../bin/pythonX.Y, when the layout is a prefix's.
    interpreter = python
    version = None
    if interpreter is None and root.parent.name.startswith("python"):
        interpreter = _find_interpreter(root.parent.parent.parent / "bin", root.parent.name)
    if interpreter is not None:
        version, _ = _ask_interpreter(interpreter, root)
    return Target(root, TargetKind.SITE_PACKAGES, (root,), interpreter, version)


def _named_interpreter(python: Path) -> Path:
    if not python.is_file() or not os.access(python, os.X_OK):
        raise TargetError(f"{python}: no such interpreter (--python); name an executable Python 3.8 or newer")
    return python.absolute()


def _find_interpreter(bin_dir: Path, preferred: str = "python") -> Path | None:
    for name in (preferred, "python3", "python"):
        candidate = bin_dir / name
        try:
            if candidate.exists():
                return candidate
        except PermissionError as exc:  # it links into a folder this user may not enter (root's pyenv)
            raise TargetError(
                f"{candidate}: the target's interpreter cannot be reached ({exc.strerror}); run venvprune as a user "
                "who may run it, or name the site-packages directory"
            ) from exc
    return None


def _ask_interpreter(interpreter: Path, root: Path) -> tuple[str, tuple[Path, ...]]:
    # The answer goes to a file of its own, not a pipe: a pipe would fill (a sys.path of 64 kB: hundreds of .pth
    # entries) while we wait for the interpreter to exit.
    with tempfile.TemporaryFile() as answer:
        try:
            process = subprocess.Popen(
                # -B: site imports .pth hooks (_distutils_hack), which would write the bytecode we are about to remove.
                [str(interpreter), "-I", "-B", "-c", _QUERY, str(answer.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(answer.fileno(),),
                cwd=str(root),
            )
        except OSError as exc:
            raise TargetError(
                f"{interpreter}: the target's interpreter does not run ({exc.strerror}); repair or recreate the venv"
            ) from exc
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise TargetError(
                f"{interpreter}: the target's interpreter did not answer in 60 s; repair or recreate the venv"
            ) from exc
        answer.seek(0)
        raw = answer.read()
    if process.returncode != 0:
        last = (stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        raise TargetError(f"{interpreter}: the target's interpreter fails ({last}); repair or recreate the venv")
    try:
        reply = json.loads(raw)
        version = str(reply["version"])
        entries = [Path(p) for p in reply["path"] if p]
    except (ValueError, KeyError, TypeError) as exc:
        raise TargetError(f"{interpreter}: unexpected answer to the sys.path query; is it a CPython 3.8+?") from exc
    if tuple(int(part) for part in version.split(".")[:2]) < OLDEST_PYTHON:
        # The checks need importlib.metadata (3.8); anything older would pass a dry run and fail the real one.
        oldest = ".".join(map(str, OLDEST_PYTHON))
        raise TargetError(
            f"{interpreter}: Python {version} is not supported; venvprune works on venvs of Python {oldest} "
            f"to {NEWEST_TESTED}. Recreate the venv with a newer Python"
        )
    return version, _unique_dirs(p for p in entries if p.name in SITE_DIR_NAMES and _inside(p, root))


def _inside(path: Path, root: Path) -> bool:
    # A site-packages that is a symlink out of the target is not ours to prune.
    return _is_within(Path(os.path.realpath(path)), root) and path.is_dir()


def _layout_site_packages(root: Path) -> tuple[Path, ...]:
    found = sorted(root.glob("lib*/python3*/site-packages")) + sorted(root.glob("lib*/python3*/dist-packages"))
    return _unique_dirs(p for p in found if p.is_dir() and _inside(p, root))


def _unique_dirs(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Drop aliases of one directory (``lib64 -> lib``), keeping the first spelling seen."""
    seen: set[tuple[int, int]] = set()
    unique: list[Path] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            unique.append(Path(os.path.realpath(path)))
    return tuple(unique)
