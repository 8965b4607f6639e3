"""The page: its components, and which callback each event runs."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Iterable

from ._gradio import import_gradio
from .callbacks import DemoCallbacks
from .pool import CENTERNET_LABEL, PredictorPool, available_detectors, available_models
from .render import persons_table, tracks_table

DEFAULT_MAX_UPLOAD_MB = 25.0
DEFAULT_CONCURRENCY = 2
DEFAULT_QUEUE_SIZE = 32
DEFAULT_MAX_VIDEO_FRAMES = 90
DEFAULT_TIME_LIMIT_S = 120.0  # per request; photos take a second or two, videos up to VIDEO_FRAME_CAP frames
VIDEO_FRAME_CAP = 900  # the slider's top: 30 s at 30 fps
TITLE = "mivolo-lite: age & gender estimation"


def _example_images() -> list[str]:
    from .._ultralytics import ultralytics_offline

    try:
        ultralytics_offline()
        from ultralytics.utils import ASSETS
    except Exception:  # noqa: BLE001 - examples are optional
        return []
    return [str(Path(ASSETS) / n) for n in ("bus.jpg", "zidane.jpg") if (Path(ASSETS) / n).is_file()]


def _first_model(models, model_choices: dict) -> str:
    """The label of the first model given (the shipped default when none was)."""
    first = next(iter(model_choices))
    given = [] if models is None else [models] if isinstance(models, (str, Path)) else list(models)
    if given:
        wanted = str(Path(given[0]).expanduser().resolve())
        first = next((k for k, v in model_choices.items() if v.spec == wanted), first)
    return first


def build_app(models: Iterable[str | Path] | str | Path | None = None,
              yolo_weights: Iterable[str | Path] | str | Path | None = None, device: str = "cpu",
              concurrency: int = DEFAULT_CONCURRENCY, queue_size: int = DEFAULT_QUEUE_SIZE,
              max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pixels: int | None = None,
              preload: bool = True, time_limit_s: float | None = DEFAULT_TIME_LIMIT_S):
    """The demo as a ``gr.Blocks`` (queue configured; launch it with :func:`serve`).

    ``models``: local model folders offered besides the shipped default (the first given is
    selected); ``yolo_weights``: local YOLO ``.pt`` files offered besides OpenCV;
    ``concurrency``: photo requests processed at once (videos: one at a time), others wait in a
    queue of ``queue_size`` (more are refused: "queue is full"); ``max_upload_mb``: shown in the
    page and applied by :func:`serve`; ``max_pixels``: the largest image accepted (default
    :data:`~mivolo_lite._image_io.MAX_IMAGE_PIXELS`); ``time_limit_s``: the longest a request may
    run: a photo is refused when reading or detection has used it up, a video stops there and
    shows the frames analysed so far;
    ``preload``: load the selected model and detector now rather than on the first request."""
    gr = import_gradio()
    from .._image_io import MAX_IMAGE_PIXELS

    model_choices = available_models(models)
    detector_choices = available_detectors(yolo_weights)
    first_model = _first_model(models, model_choices)
    pool = PredictorPool(model_choices, detector_choices, device=device, max_pixels=max_pixels)
    if preload:
        pool.get(first_model, CENTERNET_LABEL)
    pixel_limit = max_pixels or MAX_IMAGE_PIXELS
    work_dir = Path(tempfile.mkdtemp(prefix="mivolo_demo_"))  # annotated photos and videos before Gradio caches them
    callbacks = DemoCallbacks(pool, max_pixels, max_upload_mb, time_limit_s, work_dir)

    def analyze_video(video_path, model_label, detector_label, stride, max_frames,
                      progress=gr.Progress(track_tqdm=True)):  # Gradio finds the progress bar by this default
        return callbacks.analyze_video(video_path, model_label, detector_label, stride, max_frames)

    limit_text = f"{max_upload_mb:g} MB" if max_upload_mb else "no limit"
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\nAge and gender of every person in a photo or video. Runs entirely on this "
                    f"machine: nothing is uploaded anywhere else. Uploads up to {limit_text} and "
                    f"{pixel_limit / 1e6:g} megapixels" + (f"; each request may run for up to {time_limit_s:g} s."
                                                            if time_limit_s else "."))
        with gr.Row():
            model_dd = gr.Dropdown(list(model_choices), value=first_model, label="Model", elem_id="model")
            detector_dd = gr.Dropdown(list(detector_choices), value=CENTERNET_LABEL, label="Detector",
                                      elem_id="detector")
        with gr.Tab("Photo", elem_id="photo-tab"):
            with gr.Row():
                with gr.Column():
                    image_in = gr.Image(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                        label="Photo", elem_id="input-image")
                    age_check = gr.Checkbox(False, label="Age check: is each person at least the threshold age?",
                                            elem_id="age-check")
                    with gr.Row():
                        threshold = gr.Slider(1, 80, value=18, step=1, label="Age threshold (years)",
                                              elem_id="threshold")
                        risk = gr.Slider(0.01, 0.25, value=0.05, step=0.01, label="Accepted risk",
                                         info="largest accepted chance of a wrong over/under decision",
                                         elem_id="risk")
                    run_btn = gr.Button("Estimate age & gender", variant="primary", elem_id="run-btn")
                    examples = _example_images()
                    if examples:
                        gr.Examples([[e] for e in examples], inputs=[image_in], label="Example photos",
                                    cache_examples=False, elem_id="examples")
                with gr.Column():
                    image_out = gr.Image(type="numpy", format="jpeg", label="Annotated", interactive=False,
                                         elem_id="output-image")
                    summary_out = gr.Markdown(elem_id="summary")
            # column names from the start ("1 2 3" otherwise)
            table_out = gr.Dataframe(persons_table(), label="Persons", interactive=False, elem_id="persons-table",
                                     wrap=True)
        with gr.Tab("Video", elem_id="video-tab"):
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(sources=["upload"], include_audio=True, label="Video", elem_id="input-video")
                    with gr.Row():
                        stride = gr.Slider(1, 10, value=1, step=1, label="Analyse every n-th frame", elem_id="stride")
                        max_frames = gr.Slider(1, VIDEO_FRAME_CAP, value=DEFAULT_MAX_VIDEO_FRAMES, step=1,
                                               label="Read at most this many frames", elem_id="max-frames")
                    video_btn = gr.Button("Annotate video", variant="primary", elem_id="video-btn")
                with gr.Column():
                    video_out = gr.Video(label="Annotated video", interactive=False, elem_id="output-video")
                    video_summary = gr.Markdown(elem_id="video-summary")
            tracks_out = gr.Dataframe(tracks_table(), label="Tracked persons (age averaged over frames)",
                                      interactive=False, elem_id="tracks-table")

        last = gr.State(None)  # per browser session: the last photo result, for live age-check changes
        photo_outputs = [image_out, table_out, summary_out]
        # preprocess=False: the photo reaches read_upload undecoded, for a clear message on every bad
        # upload and the pixel limit checked before decoding (see read_upload)
        run_btn.click(callbacks.analyze, [image_in, model_dd, detector_dd, age_check, threshold, risk],
                      [*photo_outputs, last], api_name="predict", concurrency_limit=concurrency,
                      concurrency_id="photo", preprocess=False)
        for control in (age_check, threshold, risk):
            control.change(callbacks.recheck, [last, age_check, threshold, risk], photo_outputs, api_name=False,
                           trigger_mode="always_last", show_progress="hidden", queue=False)
        # a new photo (or none) makes the shown result stale: clear it, so that an error for the new
        # upload is not shown next to the previous photo's persons
        image_in.change(lambda: (None, persons_table(), "", None), None, [*photo_outputs, last], api_name=False,
                        queue=False)
        video_btn.click(analyze_video, [video_in, model_dd, detector_dd, stride, max_frames],
                        [video_out, tracks_out, video_summary], api_name="predict_video", concurrency_limit=1,
                        concurrency_id="video")

    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    weakref.finalize(demo, shutil.rmtree, work_dir, ignore_errors=True)  # also runs at interpreter exit
    demo.mivolo_pool = pool  # for callers and tests
    demo.mivolo_max_upload_mb = max_upload_mb
    return demo
