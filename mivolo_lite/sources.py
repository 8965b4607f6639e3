"""Expanding what a user passes (paths, folders, globs, arrays, PIL images) into items."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._image_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES


def is_video(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in VIDEO_SUFFIXES


def expand_sources(source, skipped: list | None = None) -> list:
    """One flat list of inputs: folders become their image and video files (recursive, sorted);
    other items (files, arrays, PIL images, missing paths) pass through so that a bad one gets
    its own error record rather than vanishing. Files in folders whose extension is not an image
    or video one are left out and, when ``skipped`` is a list, appended to it (so that a caller
    can say so)."""
    if isinstance(source, (str, os.PathLike, np.ndarray)) or hasattr(source, "convert"):
        items = [source]
    else:
        items = list(source)
    out = []
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            files = sorted(p for p in Path(item).rglob("*") if p.is_file() and not p.name.startswith("."))
            known = IMAGE_SUFFIXES | VIDEO_SUFFIXES
            out.extend(str(p) for p in files if p.suffix.lower() in known)
            if skipped is not None:
                skipped.extend(str(p) for p in files if p.suffix.lower() not in known)
        else:
            out.append(str(item) if isinstance(item, os.PathLike) else item)
    return out


def source_name(item, index: int) -> str:
    if isinstance(item, str):
        return item
    return f"<input {index}>"
