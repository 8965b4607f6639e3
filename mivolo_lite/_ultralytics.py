"""Importing ultralytics safely: it must never download (weights, fonts), pip-install (lap,
pi-heif) or probe the network at run time. Call :func:`ultralytics_offline` before the first
import of anything from ultralytics."""

from __future__ import annotations

import os


def ultralytics_offline() -> None:
    # setdefault: a user who wants ultralytics online can still say so in the environment
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
