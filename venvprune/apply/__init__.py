"""The only package that changes the target: a journalled transaction, confined to the target.

- ``tree.py``: folders reached through descriptors opened with ``O_NOFOLLOW``; every change goes through it, so a
  folder that became a symlink since the plan is never followed.
- ``journal.py``: one line per change, written before it, with paths relative to the target.
- ``transaction.py``: the prune in progress; :func:`transaction` rolls it back unless it was committed.
- ``recovery.py``: undo or finish an interrupted prune; an original goes back only onto what the prune left.
- ``lock.py``: one venvprune per target, whatever its spelling.
"""

from venvprune.apply.journal import JOURNAL_NAME
from venvprune.apply.lock import check_own_folders, target_lock
from venvprune.apply.recovery import COMMITTED_NAME, FileError, LeftAside, Recovery, pending, recover
from venvprune.apply.transaction import Transaction, transaction

__all__ = [
    "COMMITTED_NAME",
    "JOURNAL_NAME",
    "FileError",
    "LeftAside",
    "Recovery",
    "Transaction",
    "check_own_folders",
    "pending",
    "recover",
    "target_lock",
    "transaction",
]
