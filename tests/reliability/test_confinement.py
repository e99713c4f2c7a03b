"""Confinement: nothing outside the target changes, ever, and recovery never gets stuck (issue 8).

Each test is a case that was seen to break: a journal that names paths outside the target (a copied venv, a
hand-made journal), a directory swapped for a symlink between the plan and the change, a symlink where venvprune
writes its own folders, a recovery that meets what pip installed since, a stray file named like the staging
folder, two runs through two spellings of one target, a run in another PID namespace, and a ``.pth`` file that
prints. Each ends with the folder outside the target byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    PHASE_LINE,
    Guard,
    assert_demo_works,
    assert_no_traceback,
    assert_one_line_error,
    prune_command,
    report_of,
    reset,
    run_venvprune,
    site_packages,
    staging_left,
    tool_env,
)
from tests.site_builder import install_dist, make_site, tree_digest
from venvprune import categories
from venvprune.apply import Transaction, recover
from venvprune.plan import build_plan
from venvprune.scan import scan
from venvprune.target import MANIFEST_DIR_NAME, resolve_target

pytestmark = pytest.mark.integration

STAGING = ".venvprune-staging"
UNRESTORED = ".venvprune-unrestored"


@contextmanager
def running(venv: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """A prune in the background, in its own process group; killed (with its workers) if still running at the end."""
    process = subprocess.Popen(
        prune_command(*args, str(venv)),
        cwd=venv.parent,
        env=env or tool_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def wait_for_phase(process: subprocess.Popen[str], phase: str) -> list[str]:
    """Read the phase lines on stderr until *phase* has ended; the lines read."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        match = PHASE_LINE.match(line)
        if match and match.group(1) == phase:
            return lines
    raise AssertionError(f"the prune ended before its {phase} phase did:\n{''.join(lines)}")


def kill_during_verification(venv: Path) -> None:
    """SIGKILL a prune of *venv* (and its workers) while it verifies: every change made, nothing committed."""
    demo_tests = site_packages(venv) / "demo" / "tests"
    # Passes at once before the changes (the tests folder is there), then sleeps until killed.
    smoke = f"test -d {demo_tests} || sleep 60"
    with running(venv, "--smoke", smoke) as process:
        wait_for_phase(process, "apply")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert staging_left(venv)
    assert not demo_tests.exists()


def wait_for_scratch(folder: Path) -> list[str]:
    """The scratch folders a run has made in *folder* (its TMPDIR), once there is one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = sorted(p.name for p in folder.iterdir() if p.name.startswith("venvprune-"))
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no scratch folder appeared in {folder}")


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every target, with what a prune would remove or rewrite."""
    where = tmp_path / "elsewhere"
    (where / "tests").mkdir(parents=True)
    (where / "tests" / "test_outside.py").write_text("def test():\n    pass\n")
    (where / "__pycache__").mkdir()
    (where / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00" * 32)
    (where / "file").write_text("outside\n")
    (where / "manifest.json").write_text('{"mine": true}\n')
    return where


def demo_venv(demo_archive: Path, path: Path, guard: Guard) -> Path:
    """The demo venv at *path* (its name must be ``venv``, as archived), with symlinks to the guard's sentinel."""
    venv = reset(demo_archive, path)
    guard.plant(site_packages(venv))
    return venv


# -- 1. recovery trusts no path in the journal -------------------------------------------------------------------


def test_a_venv_copied_in_the_middle_of_a_prune_is_recovered_in_the_copy_only(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    """``cp -a A B`` of a venv killed during verification (a Docker layer, a CI cache): B is B's to recover."""
    reference = demo_venv(demo_archive, tmp_path / "b" / "venv", guard)
    assert run_venvprune("-q", str(reference), cwd=tmp_path).returncode == 0
    pruned_b = tree_digest(reference)
    shutil.rmtree(reference)

    a = demo_venv(demo_archive, tmp_path / "a" / "venv", guard)
    kill_during_verification(a)
    b = tmp_path / "b" / "venv"
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    a_during = tree_digest(a)

    result = run_venvprune("--json", "-", str(b), cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "restored" in report_of(result)["recovery"]
    assert tree_digest(a) == a_during, "recovering the copy changed the original"
    assert tree_digest(b) == pruned_b
    assert_demo_works(b)

    again = run_venvprune("-q", str(a), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert_demo_works(a)
    guard.check()


def test_a_journal_naming_paths_outside_the_target_is_refused_entry_by_entry(
    demo_archive: Path, tmp_path: Path, guard: Guard, outside: Path
) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    site = site_packages(venv)
    (site / "through_link").symlink_to(outside, target_is_directory=True)
    staging = venv / STAGING
    staging.mkdir()
    entries = [
        ("remove", str(outside / "file")),  # absolute, outside
        ("rewrite", "../elsewhere/file"),  # relative, climbing out
        ("remove", f"{site.relative_to(venv)}/through_link/tests"),  # through a symlink inside the target
        ("create", str(outside / "manifest.json")),  # recovery deletes what a "create" made
        ("remove", str(site / "demo" / "core.py")),  # an absolute path inside: an old journal, still honoured
    ]
    lines: list[dict[str, object]] = [{"venvprune": "0.1.0", "target": "/somewhere/else"}]
    for op, (kind, path) in enumerate(entries):
        lines.append({"op": op, "kind": kind, "path": path})
        if kind != "create":
            (staging / str(op)).write_text(f"staged original {op}\n")
    (site / "demo" / "core.py").rename(staging / "4")  # what a prune killed after moving it would have left
    (staging / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    before_outside = tree_digest(outside)

    result = run_venvprune("--json", "-", str(venv), cwd=tmp_path)
    assert_no_traceback(result)
    report = report_of(result)
    assert result.returncode == 3, result.stderr
    assert tree_digest(outside) == before_outside
    assert not staging_left(venv)
    refused = {line["path"]: line["message"] for line in report["recovery_problems"]}
    for _, path in entries[:4]:
        assert any(path in key for key in refused), (path, refused)
    assert all("outside the target" in m or "symlink" in m for m in refused.values()), refused
    # What could not be put back was not thrown away either.
    # Paths outside the target go to refused/<op>; a path inside it to its own place in the folder.
    left = sorted(p.relative_to(venv / UNRESTORED).as_posix() for p in (venv / UNRESTORED).rglob("*") if p.is_file())
    assert left == [f"{site.relative_to(venv).as_posix()}/through_link/tests", "refused/0", "refused/1"], left
    assert (site / "demo" / "core.py").is_file(), "the entry inside the target was restored"
    assert_demo_works(venv)
    guard.check()


# -- 2. a directory swapped for a symlink is never followed --------------------------------------------------------


def swap_for_link(directory: Path, replacement: Path) -> None:
    """``mv DIR DIR.moved && ln -s REPLACEMENT DIR``."""
    directory.rename(directory.with_name(directory.name + ".moved"))
    directory.symlink_to(replacement, target_is_directory=True)


def test_a_directory_swapped_for_a_symlink_after_the_plan_is_skipped_not_followed(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    site = site_packages(venv)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(site / "demo", elsewhere / "demo", symlinks=True)
    (elsewhere / "demo" / "tests" / "never_planned.py").write_text("x = 1\n")
    shutil.copytree(site / "demo-1.0.dist-info", elsewhere / "demo-1.0.dist-info")
    before_outside = tree_digest(elsewhere)

    with running(venv, "--json", "-", "--smoke", "sleep 4") as process:
        wait_for_phase(process, "plan")
        swap_for_link(site / "demo", elsewhere / "demo")
        swap_for_link(site / "demo-1.0.dist-info", elsewhere / "demo-1.0.dist-info")
        code, out, err = finish(process)
    assert "Traceback" not in err
    assert code == 3, err
    assert tree_digest(elsewhere) == before_outside, "a change was made through the symlink"
    report = json.loads(out)
    skipped = {error["path"]: error["message"] for error in report["errors"]}
    for rel in ("demo/tests", "demo/__pycache__", "demo-1.0.dist-info/RECORD"):
        assert "changed since the plan" in skipped.get(rel, ""), (rel, skipped)
    guard.check()


def test_a_restore_into_a_folder_swapped_for_a_symlink_leaves_the_original_aside(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    """Verification fails after the change, and the folder to restore into is a symlink out by then."""
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    site = site_packages(venv)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(site / "demo", elsewhere / "demo", symlinks=True)
    before_outside = tree_digest(elsewhere)
    demo = site / "demo"
    # Passes before the change; after it, swaps demo for a symlink out and fails, so everything is restored.
    smoke = f"test -d {demo}/tests && exit 0; mv {demo} {demo}.moved && ln -s {elsewhere}/demo {demo}; exit 1"
    result = run_venvprune("--json", "-", "--smoke", smoke, str(venv), cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 1, result.stderr
    assert tree_digest(elsewhere) == before_outside, "a restore went through the symlink"
    assert not staging_left(venv)
    left = {p.relative_to(venv / UNRESTORED).as_posix() for p in (venv / UNRESTORED).rglob("*")}
    assert f"{site.relative_to(venv).as_posix()}/demo/tests/test_core.py" in left, left
    guard.check()


@pytest.mark.parametrize("swap", ["an entry", "the folder"])
def test_deleting_the_staging_folder_never_follows_a_symlink(
    demo_archive: Path, tmp_path: Path, guard: Guard, outside: Path, swap: str
) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    staging = venv / STAGING
    before_outside = tree_digest(outside)
    if swap == "an entry":  # while verifying, a staged original becomes a symlink out
        smoke = f"test -d {staging} || exit 0; rm -rf {staging}/0 && ln -s {outside} {staging}/0"
    else:  # the staging folder itself
        smoke = f"test -d {staging} || exit 0; mv {staging} {staging}.moved && ln -s {outside} {staging}"
    result = run_venvprune("--json", "-", "--smoke", smoke, str(venv), cwd=tmp_path)
    assert_no_traceback(result)
    assert tree_digest(outside) == before_outside
    assert result.returncode in (0, 3), result.stderr
    guard.check()


# -- 3. venvprune's own folders are never written through a symlink -----------------------------------------------


@pytest.mark.parametrize("folder", [MANIFEST_DIR_NAME, STAGING, UNRESTORED])
def test_a_symlink_where_venvprune_writes_its_own_folder_is_refused(
    demo_archive: Path, tmp_path: Path, guard: Guard, outside: Path, folder: str
) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    (venv / folder).symlink_to(outside, target_is_directory=True)
    before = tree_digest(venv)
    before_outside = tree_digest(outside)
    result = run_venvprune(str(venv), cwd=tmp_path)
    if folder == UNRESTORED:  # only written when recovery leaves something aside: refused then, not before
        assert result.returncode == 0, result.stderr
    else:
        assert_one_line_error(result, 4, f"{venv / folder}", "symlink")
        assert tree_digest(venv) == before
    assert tree_digest(outside) == before_outside
    guard.check()


# -- 4, 5. recovery always makes progress --------------------------------------------------------------------------


def test_a_stray_file_named_like_the_staging_folder_gets_one_line(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    (venv / STAGING).write_text("not ours\n")
    before = tree_digest(venv)
    for args in ([str(venv)], ["--dry-run", str(venv)], ["check", str(venv)]):
        result = subprocess.run(
            [sys.executable, "-m", "venvprune", *args], cwd=tmp_path, env=tool_env(), capture_output=True, text=True
        )
        assert_one_line_error(result, 4, f"{venv / STAGING}", "not a staging folder", "move it away")
    assert tree_digest(venv) == before
    guard.check()


def test_recovery_after_pip_replaced_a_package_leaves_the_old_files_aside_and_goes_on(tmp_path: Path) -> None:
    """Killed while verifying; then pip installs another version (a new dist-info, new bytecode); then venvprune."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "markupsafe==2.1.5"], check=True, timeout=600)
    site = site_packages(venv)
    cache = site / "markupsafe" / "__pycache__"
    with running(venv, "--smoke", f"test -d {cache} || sleep 60") as process:
        wait_for_phase(process, "apply")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert staging_left(venv) and not cache.exists()
    subprocess.run([*pip, "markupsafe==3.0.2"], check=True, timeout=600)
    new_cache = sorted(p.name for p in cache.iterdir())

    result = run_venvprune("--json", "-", str(venv), cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 3, result.stderr
    report = report_of(result)
    problems = {line["path"]: line["message"] for line in report["recovery_problems"]}
    assert any("markupsafe-2.1.5.dist-info" in path.lower() for path in problems), problems
    assert not staging_left(venv)
    assert not cache.exists() or sorted(p.name for p in cache.iterdir()) == new_cache, "old bytecode merged in"
    asked = "import markupsafe, importlib.metadata as m; print(m.version('markupsafe'))"
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", asked],
        capture_output=True,
        text=True,
    )
    assert version.stdout.strip() == "3.0.2", version.stderr
    for args in (["check", str(venv)], ["--dry-run", str(venv)], [str(venv)]):
        again = subprocess.run(
            [sys.executable, "-m", "venvprune", *args], cwd=tmp_path, env=tool_env(), capture_output=True, text=True
        )
        assert again.returncode == 0, (args, again.stderr)


# -- 6, 7. two runs at once -------------------------------------------------------------------------------------------


def test_two_spellings_of_one_target_share_one_lock(demo_archive: Path, tmp_path: Path, guard: Guard) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    site = site_packages(venv)
    with running(venv, "--smoke", "sleep 3") as first:
        wait_for_phase(first, "plan")
        for args in ([str(site)], ["--dry-run", str(site)]):
            second = run_venvprune(*args, cwd=tmp_path)
            assert_one_line_error(second, 5, "another venvprune is working on it")
        assert first.poll() is None, "the first ended before the second was refused: nothing was proven"
        code, _, err = finish(first)
    assert code == 0, err
    assert not (site / STAGING).exists()
    assert_demo_works(venv)
    guard.check()


def test_a_prune_pending_under_another_spelling_is_named(demo_archive: Path, tmp_path: Path, guard: Guard) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    site = site_packages(venv)
    kill_during_verification(venv)
    result = run_venvprune(str(site), cwd=tmp_path)
    assert_one_line_error(result, 4, f"{venv / STAGING}", f"venvprune {venv}")
    assert not (site / STAGING).exists()
    assert run_venvprune(str(venv), cwd=tmp_path).returncode == 0
    assert_demo_works(venv)
    guard.check()


def test_a_run_in_another_pid_namespace_leaves_live_scratch_folders_alone(
    demo_archive: Path, tmp_path: Path, guard: Guard
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("unshare(1) is needed (util-linux)")
    first_venv = demo_venv(demo_archive, tmp_path / "first" / "venv", guard)
    second_venv = reset(demo_archive, tmp_path / "second" / "venv")
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = tool_env({"TMPDIR": str(scratch_root)})
    # The smoke check keeps the first run in its baseline (and its scratch folders in use) while the second runs.
    with running(first_venv, "--smoke", "sleep 8", env=env) as first:
        wait_for_phase(first, "plan")
        live = wait_for_scratch(scratch_root)
        in_a_new_pid_namespace = ["unshare", "--pid", "--fork", "--mount-proc"]
        inside = subprocess.run(
            [*in_a_new_pid_namespace, sys.executable, "-m", "venvprune", "check", str(second_venv)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert inside.returncode == 0, inside.stdout + inside.stderr
        still = sorted(p.name for p in scratch_root.iterdir() if p.name.startswith("venvprune-"))
        assert set(live) <= set(still), "a live run's scratch folder was deleted"
        code, _, err = finish(first)
    assert code == 0, err
    guard.check()


def test_scratch_folders_of_a_killed_run_are_swept(demo_archive: Path, tmp_path: Path, guard: Guard) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = tool_env({"TMPDIR": str(scratch_root)})
    with running(venv, "--smoke", "sleep 60", env=env) as first:
        wait_for_phase(first, "plan")
        wait_for_scratch(scratch_root)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    left = list(scratch_root.iterdir())
    for folder in left:
        os.utime(folder, (0, 0))  # a minute later: a folder younger than that may be a run's that has yet to lock it
    result = subprocess.run(
        [sys.executable, "-m", "venvprune", "check", str(venv)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert not [p for p in left if p.exists()], "stale scratch folders stayed"


# -- 8. what the target's interpreter prints is not its answer -------------------------------------------------------


def test_a_pth_file_that_prints_changes_nothing(demo_archive: Path, tmp_path: Path, guard: Guard) -> None:
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    (site_packages(venv) / "zz.pth").write_text(
        "import sys; print('hi'); sys.stderr.write('a warning at start-up\\n')\n"
    )
    for args in (["--dry-run", str(venv)], [str(venv)], ["check", str(venv)]):
        result = subprocess.run(
            [sys.executable, "-m", "venvprune", *args], cwd=tmp_path, env=tool_env(), capture_output=True, text=True
        )
        assert_no_traceback(result)
        assert result.returncode == 0, (args, result.stderr)
    (site_packages(venv) / "zz.pth").unlink()
    assert_demo_works(venv)
    guard.check()


# -- found by attacking the change: the staging folder and the journal are not trusted either -----------------------


def test_a_symlink_planted_in_the_staging_folder_is_never_written_through(tmp_path: Path, outside: Path) -> None:
    """A new file is created beside its original with O_EXCL|O_NOFOLLOW, and its mode set on its descriptor."""
    site = make_site(tmp_path / "prefix")
    install_dist(site, "pkg", {"pkg/__init__.py": "x = 1\n", "pkg/tests/test_x.py": "", "pkg/data.txt": "hello\n"})
    target = resolve_target(site)
    plan = build_plan(scan(target, inspect_elf=False), categories.select(only=("tests",)))
    victims = []
    for index in range(4):
        victim = outside / f"victim-{index}"
        victim.write_text("secret\n")
        victim.chmod(0o600)
        victims.append(victim)
    before_outside = tree_digest(outside)
    modes = [v.stat().st_mode for v in victims]
    transaction = Transaction.begin(target)
    for op, victim in enumerate(victims):
        (target.staging_dir / f"{op}.new").symlink_to(victim)
    errors = transaction.execute(plan.actions)
    assert errors, "a planted symlink was written through without an error"
    transaction.rollback()
    assert tree_digest(outside) == before_outside
    assert [v.stat().st_mode for v in victims] == modes


BAD_JOURNALS = {
    "an op that is not a number": '{"op": 1e400, "kind": "remove", "path": "pkg/tests"}\n',
    "no path": '{"op": 0, "kind": "remove"}\n',
    "a NUL in the path": '{"op": 0, "kind": "remove", "path": "pkg/te\\u0000sts"}\n',
    "stamps of the wrong type": '{"op": 0, "kind": "rewrite", "path": "pkg/data.txt", "was": 5}\n{"op": 0, "new": 7}\n',
    "nesting too deep to parse": "[" * 100_000 + "\n",
    "an unknown kind": '{"op": 0, "kind": "chmod", "path": "pkg/tests"}\n',
}


@pytest.mark.parametrize("content", BAD_JOURNALS.values(), ids=BAD_JOURNALS.keys())
def test_a_journal_that_cannot_be_read_never_leaves_the_target_stuck(tmp_path: Path, content: str) -> None:
    site = make_site(tmp_path / "prefix")
    install_dist(site, "pkg", {"pkg/__init__.py": "x = 1\n", "pkg/tests/test_x.py": "", "pkg/data.txt": "hello\n"})
    target = resolve_target(site)
    staging = target.staging_dir
    staging.mkdir()
    (site / "pkg" / "tests").rename(staging / "0")
    (staging / "journal.jsonl").write_text(content)
    recovery = recover(target)
    assert recovery is not None and recovery.errors == ()
    [left] = recovery.left_aside  # where it came from is not known for sure: kept for the user, never deleted
    assert left.kept_at is not None and (left.kept_at / "test_x.py").is_file()
    assert (site / "pkg" / "data.txt").read_text() == "hello\n"
    assert not staging.exists()
    assert recover(target) is None


@pytest.mark.parametrize("kind", ["fifo", "folder", "symlink"])
def test_a_journal_that_is_not_a_file_is_not_read_and_does_not_hang(
    tmp_path: Path, demo_archive: Path, kind: str
) -> None:
    venv = reset(demo_archive, tmp_path / "venv")
    staging = venv / STAGING
    staging.mkdir()
    journal = staging / "journal.jsonl"
    if kind == "fifo":
        os.mkfifo(journal)  # opening it to read would block until a writer comes
    elif kind == "folder":
        journal.mkdir()
    else:
        journal.symlink_to(tmp_path / "elsewhere.jsonl")
    (site_packages(venv) / "demo" / "data.txt").rename(staging / "0")
    result = run_venvprune("--json", "-", str(venv), cwd=tmp_path, timeout=120)
    assert_no_traceback(result)
    assert result.returncode == 3, result.stderr
    assert (venv / UNRESTORED / "refused" / "0").read_text() == "payload\n"
    assert not staging_left(venv)


def test_a_long_sys_path_is_answered(demo_archive: Path, tmp_path: Path, guard: Guard) -> None:
    """1,200 folders from a .pth file: an answer of over 64 kB, which a pipe read after the exit never took."""
    venv = demo_venv(demo_archive, tmp_path / "venv", guard)
    extra = tmp_path / "extra-paths-with-a-long-name-each"
    folders = [extra / f"entry-{index:04d}-padding-to-make-each-line-longer" for index in range(1200)]
    for folder in folders:
        folder.mkdir(parents=True)
    (site_packages(venv) / "many.pth").write_text("".join(f"{folder}\n" for folder in folders))
    result = run_venvprune("--dry-run", str(venv), cwd=tmp_path, timeout=120)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    guard.check()
