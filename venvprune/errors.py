"""Domain errors and the exit codes they map to.

Every error the user can cause derives from :class:`VenvpruneError` and carries its exit code, so that the CLI
translates errors in one place and the README's exit-code table has one source.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    CHECK_FAILED = 1  # a verification regression could not be healed (everything restored), or `check` failed
    USAGE = 2  # bad option, bad config, refused target
    PARTIAL = 3  # pruned, but some files could not be changed; they are listed
    FAILURE = 4  # nothing was changed: an error stopped the run and what was staged was restored
    LOCKED = 5  # another venvprune is working on this target
    INTERRUPTED = 130  # SIGINT or SIGTERM: what was staged was restored


class VenvpruneError(Exception):
    """Base of every error venvprune reports as a one-line message."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(VenvpruneError):
    exit_code = ExitCode.USAGE


class TargetError(UsageError):
    """The target is not something venvprune may prune."""


class ConfigError(UsageError):
    pass


class LockedError(VenvpruneError):
    exit_code = ExitCode.LOCKED


class ApplyError(VenvpruneError):
    """Applying the plan failed as a whole; what was staged has been restored."""

    exit_code = ExitCode.FAILURE


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run; raised from the signal handler so the transaction can restore.

    A BaseException like KeyboardInterrupt, not a VenvpruneError: raised wherever the signal lands, it must get
    through every ``except Exception`` on the way (pyelftools' construct turns any Exception in a field parse into
    its own error, which read as a corrupt ELF file and swallowed the signal).
    """

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
