"""``python ARCHIVE discover OUT SITE_DIR...``, ``python ARCHIVE worker ...``, or the final-stage checker."""

from __future__ import annotations

import json
from typing import List

from .checker import check_main
from .discovery import discover
from .worker import worker


def main(argv: List[str]) -> int:
    if argv[:1] == ["worker"]:
        worker(argv[1:])
        return 0
    if argv[:1] == ["discover"]:
        found = discover(argv[2:])
        with open(argv[1], "w", encoding="utf-8") as handle:
            json.dump(found, handle)
        return 0
    return check_main(argv)
