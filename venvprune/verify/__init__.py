"""Verification: prove that what worked before pruning still works after it, and heal what broke.

The pipeline calls :func:`take_baseline` before any change (every check, in the target's own interpreter; it may
refuse: :mod:`.baseline`), :func:`verify_and_heal` after the plan's actions ran (:mod:`.after`), and
:func:`list_for_manifest` when it does not verify; ``venvprune check`` calls :func:`run_check` (:mod:`.standalone`).

The checks themselves, their verdicts and the final-stage checker are the probe's (:mod:`.probe`, standard library
only, run in the target's interpreter): every importable top-level module of every distribution is imported;
``importlib.metadata`` answers each distribution's version and maps its import names; every entry point loads
(never runs); every extension module dlopens with the bundled libraries the loader brings in for it; plus
``--check-module`` and ``--smoke``, the user's own assertions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from venvprune.verify.after import verify_and_heal
from venvprune.verify.baseline import Baseline, refused_outcome, take_baseline
from venvprune.verify.checks import VerifyError
from venvprune.verify.manifest import restored_before as _restored_before
from venvprune.verify.outcome import SCOPES, Healed, UnusedLibrary, VerifyOptions, VerifyOutcome
from venvprune.verify.standalone import list_for_manifest, run_check

if TYPE_CHECKING:
    from venvprune.scan import Inventory
    from venvprune.target import Target


def restored_before(target: Target, inventory: Inventory) -> dict[Path, str]:
    """What an earlier prune's verification restored and the plan must keep (its distribution unchanged)."""
    return _restored_before(target, {d.name: d.version for d in inventory.distributions})


__all__ = [
    "SCOPES",
    "Baseline",
    "Healed",
    "UnusedLibrary",
    "VerifyError",
    "VerifyOptions",
    "VerifyOutcome",
    "list_for_manifest",
    "refused_outcome",
    "restored_before",
    "run_check",
    "take_baseline",
    "verify_and_heal",
]
