"""Gradio, imported only when the demo is built or served (so that ``import mivolo_lite.app``
stays light), with everything that would reach the network switched off first; and the error
that shows a message in the page."""

from __future__ import annotations

import html
import os


def _offline_env() -> None:
    """Environment for a demo that sends nothing anywhere; set before gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # ultralytics (tracker, examples, YOLO): no connectivity probe, no pip installs at run time
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")


def import_gradio():
    _offline_env()
    import gradio as gr

    return gr


def esc(text) -> str:
    """Error messages are rendered as HTML in the page: neutralise markup from file names etc."""
    return html.escape(str(text), quote=False)


def user_error(message: str, title: str = "Error"):
    """A ``gr.Error`` for bad user input: shown in the page, no traceback in the server log."""
    return import_gradio().Error(message, title=title, print_exception=False)
