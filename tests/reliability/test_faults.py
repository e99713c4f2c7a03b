"""Disk and file-system faults: a full disk, a read-only target, files without permission, a file that vanishes.

Each is reported with its path; nothing already staged is lost (every file ends as it was or as a clean prune
leaves it); the exit code says partial (3) or failure (4). The full disk is a small tmpfs and the read-only target
a read-only bind mount (both need root, as CI has); permissions are tested as another user through ``setpriv``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.elf_helpers import gcc
from tests.reliability.conftest import (
    PRUNE_FLAGS,
    REPO,
    Guard,
    assert_demo_works,
    assert_no_traceback,
    assert_one_line_error,
    make_writable,
    report_of,
    reset,
    run_venvprune,
    site_packages,
    spellings,
    staging_left,
    tool_env,
)
from tests.site_builder import install_dist, tree_digest
from venvprune import categories, records
from venvprune.apply import Transaction
from venvprune.plan import Phase, build_plan
from venvprune.scan import scan
from venvprune.target import MANIFEST_DIR_NAME, resolve_target

pytestmark = pytest.mark.integration

Digest = dict[str, tuple[str, str]]
PAGE = 4096

# A library whose loaded bytes are large (a 384 kB table in .rodata) and which has symbols and debug sections to
# strip: its stripped copy is the biggest thing a prune writes.
BIG_LIBRARY = r"""
const unsigned char vp_table[393216] = {1, 2, 3};
int vp_lookup(int i) { return vp_table[i % (int)sizeof vp_table]; }
"""


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(where: Path, leave: int) -> Path:
    """Leave *leave* bytes free on *where*'s file system (a tmpfs: space is counted in pages)."""
    filler = where / "filler"
    size = max(free_bytes(where) - leave, 0)
    with open(filler, "wb") as handle:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            handle.write(chunk[: min(size, len(chunk))])
            size -= min(size, len(chunk))
    assert abs(free_bytes(where) - leave) <= PAGE, (free_bytes(where), leave)
    return filler


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def record_is_true(site: Path) -> None:
    """Every RECORD parses, and each row with a hash matches the file on disk (or the file is gone from it)."""
    for record in site.glob("*.dist-info/RECORD"):
        for row in records.read(record):
            path = site / row.normalised_path
            if row.hash and path.is_file():
                assert row.hash == records.hash_file(path), f"{record}: {row.path} has a stale hash"


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path], demo_archive: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """The demo venv with a big strippable library, on a 24 MB tmpfs."""
    disk = tmpfs("24m")
    venv = reset(demo_archive, disk / "venv")
    big = gcc(tmp_path, BIG_LIBRARY, "libbig.so", "-shared", "-fPIC")
    shutil.copy2(big, site_packages(venv) / "demo" / "libbig.so")
    yield disk, venv


def test_full_disk_while_writing_a_stripped_file(small_disk: tuple[Path, Path], tmp_path: Path, guard: Guard) -> None:
    disk, venv = small_disk
    site = site_packages(venv)
    big = site / "demo" / "libbig.so"
    guard.plant(site)
    archive_copy = tmp_path / "venv-on-disk.tar"
    subprocess.run(["tar", "-C", str(disk), "-cf", str(archive_copy), "venv"], check=True)
    before = tree_digest(venv)

    # A clean prune with room to spare: the reference, and how much each write needs.
    clean = run_venvprune("--json", "-", str(venv), cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    pruned = tree_digest(venv)
    [big_action] = [a for a in report_of(clean)["actions"] if a["path"] in spellings(big, venv)]
    big_after = big.stat().st_size
    big_rel = str(big.relative_to(venv))
    assert big_action["category"] == "debug-symbols" and big_after > 256 * 1024
    written_elsewhere = sum(
        pages(p.stat().st_size)
        for p in [*site.glob("*.dist-info/RECORD"), *(venv / MANIFEST_DIR_NAME).iterdir()]
        + [p for p in site.rglob("*.so") if p != big and not p.is_symlink()]
    )

    # Again from the same bytes at the same path, with room for everything but the big library's stripped copy.
    shutil.rmtree(venv)
    subprocess.run(["tar", "-C", str(disk), "-xf", str(archive_copy)], check=True)
    assert tree_digest(venv) == before
    guard.twin(venv)
    fill(disk, written_elsewhere + 4 * PAGE + pages(big_after) // 2)
    result = run_venvprune("--json", "-", str(venv), cwd=tmp_path)
    assert_no_traceback(result)
    report = report_of(result)
    assert result.returncode == 3 and report["status"] == "partial", result.stderr
    [error] = report["errors"]
    assert error["path"] in spellings(big, venv) and error["message"] == "No space left on device"
    after = tree_digest(venv)
    assert after[big_rel] == before[big_rel], "the library that could not be written is not as it was"
    records = {k for k in after if k.endswith("/RECORD")}
    assert {k: v for k, v in after.items() if k != big_rel and k not in records} == {
        k: v for k, v in pruned.items() if k != big_rel and k not in records
    }
    record_is_true(site)
    assert not staging_left(venv)
    assert_demo_works(venv)
    guard.check()


def test_the_disk_fills_up_at_each_write(small_disk: tuple[Path, Path], tmp_path: Path, guard: Guard) -> None:
    """Free space from none to all that a prune writes, a page at a time where the writes are small: the journal,
    the stripped copies, the RECORD, the manifest, the checker and the COMMITTED marker each meet a full disk."""
    disk, venv = small_disk
    site = site_packages(venv)
    guard.plant(site)
    archive_copy = tmp_path / "venv-on-disk.tar"
    subprocess.run(["tar", "-C", str(disk), "-cf", str(archive_copy), "venv"], check=True)
    before = tree_digest(venv)
    clean = run_venvprune(str(venv), cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    pruned = tree_digest(venv)
    written = [*site.glob("*.dist-info/RECORD"), *(venv / MANIFEST_DIR_NAME).iterdir()]
    written += [p for p in site.rglob("*.so") if not p.is_symlink()]
    total = sum(pages(p.stat().st_size) for p in written) // PAGE + 2  # and the journal and the marker
    outcomes: dict[int, int] = {}
    for leave in sorted({*range(0, 6), *range(total - 14, total + 2)}):
        shutil.rmtree(venv)
        (disk / "filler").unlink(missing_ok=True)
        subprocess.run(["tar", "-C", str(disk), "-xf", str(archive_copy)], check=True)
        guard.twin(venv, disk)
        fill(disk, leave * PAGE)
        result = run_venvprune("--json", "-", str(venv), cwd=tmp_path)
        where = f"{leave} pages free: exit {result.returncode}\n{result.stderr}"
        assert_no_traceback(result)
        assert not staging_left(venv), where
        after = tree_digest(venv)
        outcomes[result.returncode] = outcomes.get(result.returncode, 0) + 1
        if result.returncode == 0:
            assert after == pruned, where
        elif result.returncode == 3:  # some stripped copies did not fit: those files are as they were
            errors = report_of(result)["errors"]
            assert errors and all(e["message"] == "No space left on device" for e in errors), where
            records = {k for k in after if k.endswith("/RECORD")}
            for key, value in after.items():
                assert key in records or value in (before.get(key), pruned.get(key)), f"{where}: {key}"
            assert set(after) - records <= set(before), where
            record_is_true(site)
        else:
            assert_one_line_error(result, 4, "No space left on device")
            assert after == before, where
        assert_demo_works(venv)
    print(f"\nfull disk, pages free 0..{total + 1}: outcomes by exit code {outcomes}")
    assert 4 in outcomes and 0 in outcomes, outcomes
    guard.check()


def test_no_space_at_all_fails_cleanly_and_changes_nothing(
    small_disk: tuple[Path, Path], tmp_path: Path, guard: Guard
) -> None:
    disk, venv = small_disk
    guard.plant(site_packages(venv))
    guard.twin(venv)
    before = tree_digest(venv)
    fill(disk, 0)
    result = run_venvprune(str(venv), cwd=tmp_path)
    line = assert_one_line_error(result, 4, str(venv))
    assert "No space left on device" in line or "no space" in line.lower(), line
    assert tree_digest(venv) == before
    assert not staging_left(venv)
    guard.check()


def test_read_only_target(demo_archive: Path, tmp_path: Path, guard: Guard) -> None:
    venv = reset(demo_archive, tmp_path / "venv")
    guard.plant(site_packages(venv))
    guard.twin(venv)
    before = tree_digest(venv)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    bound = subprocess.run(["mount", "--bind", str(venv), str(read_only)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root or CAP_SYS_ADMIN): {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(read_only)], check=True)
        result = run_venvprune(str(read_only), cwd=tmp_path)
        assert_one_line_error(
            result, 4, f"{read_only}/.venvprune-staging: cannot create the staging folder", "is the target writable?"
        )
        dry = run_venvprune("--dry-run", str(read_only), cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
    finally:
        subprocess.run(["umount", str(read_only)], check=True)
    assert tree_digest(venv) == before
    guard.check()


# -- a file that vanishes between the plan and the apply ------------------------------------------------------------


def test_files_that_vanish_between_plan_and_apply_library_route(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    """Through the pipeline's own pieces: scan, plan, then the disk changes, then the transaction runs."""
    venv = reset(demo_archive, tmp_path / "venv")
    site = site_packages(venv)
    guard.plant(site)
    guard.twin(venv)
    target = resolve_target(venv)
    plan = build_plan(scan(target), categories.select())
    extension = next(site.glob("demo/_vpext*.so"))
    cache = site / "demo" / "core.py"  # not planned: a file whose __pycache__ goes
    planned = {a.path for a in plan.actions}
    assert extension in planned and site / "demo" / "tests" in planned and site / "demo" / "__pycache__" in planned
    shutil.rmtree(site / "demo" / "__pycache__")  # a directory that goes away
    extension.unlink()  # a file due to be stripped goes away
    transaction = Transaction.begin(target)
    errors = transaction.execute(plan.by_phase(Phase.FILES))
    errors += transaction.execute(plan.by_phase(Phase.METADATA))
    assert transaction.commit() == []
    assert {e.path: e.message for e in errors} == {
        site / "demo" / "__pycache__": "vanished since the plan was made",
        extension: "vanished or changed since the plan was made",
    }
    assert not (site / "demo" / "tests").exists() and cache.is_file()
    assert not staging_left(venv)
    record_is_true(site)
    guard.check()


RACE_DRIVER = """
import shutil, sys
from pathlib import Path
from venvprune import cli, pipeline

victim = Path(sys.argv.pop(1))
real = pipeline.build_plan

def build_plan_then_lose_a_file(*args, **kwargs):
    plan = real(*args, **kwargs)
    assert any(a.path == victim for a in plan.actions), victim
    shutil.rmtree(victim) if victim.is_dir() else victim.unlink()  # between the plan and the apply
    return plan

pipeline.build_plan = build_plan_then_lose_a_file
sys.argv[0] = "venvprune"
cli.main()
"""


def test_a_file_that_vanishes_between_plan_and_apply_makes_a_partial_prune(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    """The command line, deterministically: a driver deletes a planned file right after the plan is made."""
    venv = reset(demo_archive, tmp_path / "venv")
    site = site_packages(venv)
    guard.plant(site)
    guard.twin(venv)
    victim = site / "demo" / "sub" / "tests"
    result = subprocess.run(
        [sys.executable, "-c", RACE_DRIVER, str(victim), "--json", "-", str(venv)],
        cwd=tmp_path,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    assert_no_traceback(result)
    report = report_of(result)
    assert result.returncode == 3 and report["status"] == "partial", result.stderr
    [error] = report["errors"]
    assert error["path"] in spellings(victim, venv) and error["message"] == "vanished since the plan was made"
    # The human report names it too, under the errors, with what happened to it.
    reset(demo_archive, venv)
    guard.plant(site)
    human = subprocess.run(
        [sys.executable, "-c", RACE_DRIVER, str(victim), str(venv)],
        cwd=tmp_path,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    assert_no_traceback(human)
    assert human.returncode == 3, human.stderr
    assert "errors (1): these files were left as they were" in human.stdout
    assert any(f"{shown}: vanished since the plan was made" in human.stdout for shown in spellings(victim, venv))
    assert not staging_left(venv)
    record_is_true(site)
    assert_demo_works(venv)
    guard.check()


# -- files and folders without permission, as a user who is not root --------------------------------------------

USER = 54321  # no passwd entry needed: setpriv sets the ids


def as_user(*command: str) -> list[str]:
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", *command]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's temporary folders are root's, mode 0700)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run venvprune as another user")
    path = Path(tempfile.mkdtemp(prefix="venvprune-perm-"))
    path.chmod(0o755)
    yield path
    make_writable(path)
    shutil.rmtree(path)


def user_python() -> str:
    """An interpreter the other user may run (a pyenv one under /root may not be)."""
    for candidate in (os.path.realpath(sys.executable), shutil.which("python3"), "/usr/bin/python3"):
        if not candidate or subprocess.run(as_user("test", "-x", candidate)).returncode != 0:
            continue
        check = subprocess.run(as_user(candidate, "-c", "import sys; assert sys.version_info >= (3, 9)"))
        if check.returncode == 0:
            return candidate
    pytest.skip("no Python 3.9+ that an unprivileged user can run")


def test_files_and_folders_without_permission(open_dir: Path, symbols_library: Path, guard: Guard) -> None:
    python = user_python()
    tool = open_dir / "tool"  # venvprune and its three dependencies, where the user can read them
    for module in (REPO / "venvprune", *(Path(m.__file__).parent for m in _dependencies())):
        shutil.copytree(module, tool / module.name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = open_dir / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = site_packages(venv)
    library = symbols_library.read_bytes()
    install_dist(
        site,
        "demo",
        {
            "demo/__init__.py": "",
            "demo/tests/test_a.py": "def test(): pass\n",
            "demo/__pycache__/__init__.cpython-311.pyc": b"\x00" * 16,
            "demo/libuser.so": library,
            "demo/libroot.so": library,  # owned by root, in the user's folder: linking it is refused, copying works
            "demo/locked/__init__.py": "",  # a folder of root's: nothing in it can be moved
            "demo/locked/tests/test_l.py": "def test(): pass\n",
            "demo/locked/__pycache__/__init__.cpython-311.pyc": b"\x00" * 16,
            "demo/secret/tests/test_s.py": "def test(): pass\n",  # a folder the user cannot even read
        },
    )
    guard.plant(site)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(venv)], check=True)
    for path in (site / "demo" / "libroot.so", site / "demo" / "locked", site / "demo" / "secret"):
        os.chown(path, 0, 0)
    (site / "demo" / "secret").chmod(0o700)
    guard.twin(venv, open_dir)
    before = tree_digest(venv)

    result = subprocess.run(
        as_user(python, "-m", "venvprune", *PRUNE_FLAGS, "--json", "-", str(venv)),
        cwd=open_dir,
        env=tool_env({"PYTHONPATH": str(tool), "HOME": str(open_dir)}),
        capture_output=True,
        text=True,
    )
    assert_no_traceback(result)
    report = report_of(result)
    assert result.returncode == 3 and report["status"] == "partial", result.stderr
    locked = site / "demo" / "locked"
    errors = sorted((e["path"], e["message"]) for e in report["errors"])
    assert len(errors) == 2 and all(message == "Permission denied" for _, message in errors), errors
    assert errors[0][0] in spellings(locked / "__pycache__", venv) and errors[1][0] in spellings(locked / "tests", venv)
    after = tree_digest(venv)
    for kept in (locked, site / "demo" / "secret"):
        rel = str(kept.relative_to(venv))
        assert {k: v for k, v in after.items() if k.startswith(rel)} == {
            k: v for k, v in before.items() if k.startswith(rel)
        }
    assert not (site / "demo" / "tests").exists() and not (site / "demo" / "__pycache__").exists()
    for name in ("libuser.so", "libroot.so"):
        assert (site / "demo" / name).stat().st_size < len(library), f"{name} was not stripped"
    assert not staging_left(venv)
    record_is_true(site)
    guard.check()


def _dependencies() -> list[Any]:
    import click
    import elftools
    import packaging

    return [click, elftools, packaging]


def test_a_venv_whose_interpreter_this_user_cannot_reach(open_dir: Path, guard: Guard) -> None:
    """A venv made with an interpreter in a folder the user may not enter (root's pyenv): one clear line, exit 2."""
    python = os.path.realpath(sys.executable)
    if subprocess.run(as_user("test", "-x", python)).returncode == 0:
        pytest.skip(f"{python} is reachable by other users here")
    user_python()  # the tool itself must run
    tool = open_dir / "tool"
    for module in (REPO / "venvprune", *(Path(m.__file__).parent for m in _dependencies())):
        shutil.copytree(module, tool / module.name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = open_dir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    guard.plant(site_packages(venv))
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(venv)], check=True)
    guard.twin(venv, open_dir)
    before = tree_digest(venv)
    result = subprocess.run(
        as_user(user_python(), "-m", "venvprune", *PRUNE_FLAGS, str(venv)),
        cwd=open_dir,
        env=tool_env({"PYTHONPATH": str(tool), "HOME": str(open_dir)}),
        capture_output=True,
        text=True,
    )
    assert_one_line_error(result, 2, f"{venv}/bin/python: the target's interpreter cannot be reached")
    assert tree_digest(venv) == before
    guard.check()
