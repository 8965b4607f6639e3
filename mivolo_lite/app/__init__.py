"""Gradio web demo: ``mivolo-lite demo`` or ``python demo/app.py``.

Photos (upload, webcam or clipboard) give an annotated image and a table with one row per person
(age, calibrated interval, gender, score); the age-check mode adds P(age >= threshold) and an
over / under / uncertain decision. An uploaded video gives an annotated video (VP8 WebM written
by OpenCV's bundled FFmpeg, which every current browser plays; no ffmpeg binary needed) and one
row per tracked person.

Offline by design: Gradio analytics off, no share links, models load from local folders only
(``local_files_only``) and detectors from local files only. Gradio is imported only inside
functions, so ``import mivolo_lite`` (and even ``import mivolo_lite.app``) stays light.

Which models and detectors the UI offers:

- models: the default model shipped in the package, the folders passed to :func:`build_app`
  (``--model`` on the command line) and those in ``$MIVOLO_DEMO_MODELS`` (``os.pathsep``
  separated), each a second time on its int8 graphs when its folder ships them (the default
  ``mobile`` does: faster, ages a little less exact);
- detectors: ``centernet`` (built in, the library's default, first), ``centernet-accurate`` (the
  same networks at three input sizes: more people, about five times slower), ``opencv`` (built
  in) and the YOLO ``.pt`` files passed as ``yolo_weights`` (``--yolo-weights``) or in ``$MIVOLO_DEMO_YOLO_WEIGHTS``.

Modules: :mod:`.pool` (available models/detectors, shared predictors), :mod:`.uploads` (reading
uploads), :mod:`.render` (tables, annotated images, summaries), :mod:`.callbacks` (what events
do), :mod:`.layout` (the page, :func:`build_app`) and :mod:`.serving` (:func:`serve`, :func:`launch`).
"""

from __future__ import annotations

from typing import Sequence

from .layout import (DEFAULT_CONCURRENCY, DEFAULT_MAX_UPLOAD_MB, DEFAULT_MAX_VIDEO_FRAMES, DEFAULT_QUEUE_SIZE,
                     DEFAULT_TIME_LIMIT_S, TITLE, VIDEO_FRAME_CAP, build_app)
from .pool import (CENTERNET_ACCURATE_LABEL, CENTERNET_LABEL, DEFAULT_MODEL_LABEL, ENV_MODELS, ENV_YOLO_WEIGHTS,
                   OPENCV_LABEL, ModelChoice, PredictorPool, available_detectors, available_models)
from .render import DECISION_COLORS, annotate, browser_video, persons_table
from .serving import launch, serve

__all__: Sequence[str] = ["build_app", "serve", "launch", "available_models", "available_detectors",
                          "ModelChoice", "PredictorPool", "persons_table", "annotate", "browser_video"]
