"""Copy a shell-less Python runtime out of a Debian root file system: the stand-in for a distroless final image.

Run inside the Debian image (start-engine.sh does: ``docker run ... venvprune-final:bookworm python3 THIS OUT``).
It copies the files that dpkg lists for Debian's ``python3`` and everything it depends on, plus the C/C++ runtime
that gcr.io/distroless/python3-debian12 also carries (libgcc-s1, libstdc++6) and tzdata, into OUT. Essential
packages (dash, bash, coreutils, dpkg, perl-base...) are never followed: every package depends on them implicitly,
and they are exactly what a distroless image leaves out. The result has Debian's Python 3.11 at /usr/bin/python3
and no shell, no pip, no apt. Standard library only.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

ROOTS = ["python3", "libgcc-s1", "libstdc++6", "tzdata"]
# Configuration tooling a runtime never calls (tzdata asks its questions through debconf at install time).
NOT_FOLLOWED = {"debconf"}
DPKG_INFO = Path("/var/lib/dpkg/info")
# Merged /usr (bookworm): these are symlinks into /usr, and the files dpkg lists under them live in /usr.
MERGED = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
# Files no package lists, made by maintainer scripts, that a runtime reads.
GENERATED = ["etc/ld.so.cache", "etc/ld.so.conf", "etc/ld.so.conf.d", "etc/localtime", "etc/timezone"]
SHELLS = ["bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash"]


def installed_packages() -> dict[str, dict[str, str]]:
    """Package name -> its stanza fields, for every installed package (from dpkg's status file)."""
    packages: dict[str, dict[str, str]] = {}
    for stanza in Path("/var/lib/dpkg/status").read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            packages[fields["Package"]] = fields
    return packages


def closure(packages: dict[str, dict[str, str]]) -> list[str]:
    """ROOTS and what they depend on (first installed alternative of each), without Essential packages."""
    wanted: list[str] = []
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted or name in NOT_FOLLOWED or name not in packages:
            continue
        fields = packages[name]
        if fields.get("Essential") == "yes":
            continue
        wanted.append(name)
        for relation in ("Pre-Depends", "Depends"):
            for clause in filter(None, (c.strip() for c in fields.get(relation, "").split(","))):
                alternatives = [re.split(r"[\s(:]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")]
                todo.append(next((alt for alt in alternatives if alt in packages), alternatives[0]))
    return sorted(wanted)


def listed_files(package: str) -> list[str]:
    for name in (f"{package}.list", f"{package}:amd64.list"):
        path = DPKG_INFO / name
        if path.exists():
            return [line for line in path.read_text(encoding="utf-8").splitlines() if line not in ("", "/.")]
    raise SystemExit(f"make-distroless: no file list for installed package {package} in {DPKG_INFO}")


def canonical(path: str) -> str:
    """PATH relative to /, with a merged-/usr directory in front replaced by its target in /usr."""
    relative = path.lstrip("/")
    head, _, rest = relative.partition("/")
    if head in MERGED:
        return f"{MERGED[head]}/{rest}" if rest else MERGED[head]
    return relative


def copy(relative: str, out: Path) -> None:
    source = Path("/") / relative
    destination = out / relative
    info = os.lstat(source)
    if stat.S_ISDIR(info.st_mode):
        destination.mkdir(parents=True, exist_ok=True)
        os.chmod(destination, stat.S_IMODE(info.st_mode))
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.is_symlink() or destination.exists():
        destination.unlink()
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), destination)
    else:
        shutil.copy2(source, destination)


def main() -> int:
    out = Path(sys.argv[1])
    packages = installed_packages()
    chosen = closure(packages)
    for name, target in MERGED.items():
        (out / target).mkdir(parents=True, exist_ok=True)
        os.symlink(target, out / name)
    for package in chosen:
        for path in listed_files(package):
            relative = canonical(path)
            if os.path.lexists(Path("/") / relative):  # dpkg lists diverted and since-removed paths too
                copy(relative, out)
    for relative in GENERATED:
        if os.path.isdir(Path("/") / relative):
            shutil.copytree(Path("/") / relative, out / relative, symlinks=True, dirs_exist_ok=True)
        elif os.path.lexists(Path("/") / relative):
            copy(relative, out)
    # Users and a writable /tmp, as distroless has them (root and nonroot, uid 65532).
    (out / "etc").mkdir(exist_ok=True)
    (out / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"
    )
    (out / "etc/group").write_text("root:x:0:\nnonroot:x:65532:\n")
    for directory, mode in (("tmp", 0o1777), ("root", 0o700), ("home/nonroot", 0o700)):
        (out / directory).mkdir(parents=True, exist_ok=True)
        os.chmod(out / directory, mode)
    present = [shell for shell in SHELLS if os.path.lexists(out / shell)]
    if present:
        raise SystemExit(f"make-distroless: a shell was copied ({', '.join(present)}): a package pulls one in")
    if not os.access(out / "usr/bin/python3", os.F_OK):
        raise SystemExit("make-distroless: /usr/bin/python3 is missing from the copy")
    print(f"make-distroless: {len(chosen)} packages: {' '.join(chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
