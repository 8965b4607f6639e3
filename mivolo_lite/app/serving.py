"""Serving the demo locally: no share link, the upload size limit, errors shown in the page."""

from __future__ import annotations

from ._gradio import import_gradio
from .layout import DEFAULT_MAX_UPLOAD_MB, build_app


def serve(demo, host: str = "127.0.0.1", port: int | None = 7860, max_upload_mb: float | None = None,
          prevent_thread_lock: bool = False, quiet: bool = False):
    """Launch ``demo`` (from :func:`build_app`) locally: no share link, upload size limit, errors
    shown in the page. Returns what ``gr.Blocks.launch`` returns."""
    import_gradio()
    mb = getattr(demo, "mivolo_max_upload_mb", DEFAULT_MAX_UPLOAD_MB) if max_upload_mb is None else max_upload_mb
    return demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                       max_file_size=int(mb * 1024 * 1024) if mb else None, prevent_thread_lock=prevent_thread_lock,
                       quiet=quiet, ssr_mode=False, mcp_server=False, enable_monitoring=False, pwa=False)


def launch(model=None, host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """``mivolo-lite demo``: build the demo around ``model`` (default: the shipped model) and
    serve it until interrupted. YOLO weights come from ``$MIVOLO_DEMO_YOLO_WEIGHTS``."""
    if share:
        raise ValueError("share links are disabled in the mivolo_lite demo: it serves locally only")
    demo = build_app(models=[model] if model else None)
    print(f"mivolo-lite demo on http://{host}:{port} (Ctrl+C to stop)")
    serve(demo, host=host, port=port)
