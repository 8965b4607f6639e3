"""Importing ultralytics safely: it must never download (weights, fonts), pip-install (lap,
pi-heif) or probe the network at run time, nor print on the first import. Call
:func:`ultralytics_offline` before the first import of anything from ultralytics."""

from __future__ import annotations

import logging
import os
import sys


class _OnlyWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def ultralytics_offline() -> None:
    # setdefault: a user who wants ultralytics online can still say so in the environment
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    if "ultralytics.utils" not in sys.modules:
        # On a machine where it never ran, ultralytics announces on stdout that it created its
        # settings file (three lines, even under `predict --quiet`): its INFO messages are dropped
        # for this first import only (its logger keeps its level and handlers afterwards).
        logger, quiet = logging.getLogger("ultralytics"), _OnlyWarnings()
        logger.addFilter(quiet)
        try:
            import ultralytics.utils  # noqa: F401
        finally:
            logger.removeFilter(quiet)
