"""One venvprune changes a target at a time, and venvprune's own folders are refused where they are not folders."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from venvprune.apply.tree import DIRECTORY
from venvprune.errors import ApplyError, LockedError, UsageError
from venvprune.target import MANIFEST_DIR_NAME, Target


@contextlib.contextmanager
def target_lock(target: Target, *, shared: bool = False) -> Iterator[None]:
    """flock(2) on the target's folders, so no lock file is left behind and a killed holder releases it.

    The lock belongs to the folders themselves (their device and inode), not to how they were spelled: a prune of
    a venv and one of its site-packages directory lock each other out. A dry run and a check take it *shared*: any
    number of them at once, none while a prune works.
    """
    folders: dict[tuple[int, int], int] = {}
    try:
        for folder in (target.root, *target.site_packages):
            try:
                fd = os.open(folder, DIRECTORY)
            except OSError as exc:
                raise UsageError(f"{folder}: cannot open it ({exc.strerror}); check its permissions") from exc
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in folders:
                os.close(fd)
            else:
                folders[(st.st_dev, st.st_ino)] = fd
        for _, fd in sorted(folders.items()):
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as exc:
                raise LockedError(f"{target.root}: another venvprune is working on it; wait for it to finish") from exc
        yield
    finally:
        for fd in folders.values():
            os.close(fd)


def check_own_folders(target: Target) -> None:
    """Refuse, before anything changes, a symlink or a file where venvprune writes a folder of its own."""
    path = target.root / MANIFEST_DIR_NAME
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        what = "a symlink" if os.path.islink(path) else "a file"
        raise ApplyError(
            f"{path}: is {what}, not venvprune's folder; venvprune does not write through symlinks. "
            "Move it away and run venvprune again"
        )
