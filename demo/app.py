"""mivolo-lite web demo (Gradio), served locally; nothing is sent anywhere.

    python demo/app.py                                  # shipped default model, OpenCV detector
    python demo/app.py --model runs/lite/best --yolo-weights yolov8n-face.pt --port 7860

Open http://127.0.0.1:7860 and upload a photo, take one with the webcam, or upload a video.
Same as ``mivolo-lite demo``, with a few more options.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def main(argv=None) -> int:
    from mivolo_lite.app import DEFAULT_CONCURRENCY, DEFAULT_MAX_UPLOAD_MB, DEFAULT_QUEUE_SIZE, DEFAULT_TIME_LIMIT_S
    from mivolo_lite._image_io import MAX_IMAGE_PIXELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None,
                        help="local model folder to offer besides the shipped default (repeatable; the first is "
                             "selected). Also read from $MIVOLO_DEMO_MODELS")
    parser.add_argument("--yolo-weights", action="append", default=None,
                        help="local YOLO .pt file to offer as a detector besides OpenCV (repeatable). Also read "
                             "from $MIVOLO_DEMO_YOLO_WEIGHTS")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve on the local network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="photos processed at once; further requests wait in the queue")
    parser.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE)
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB)
    parser.add_argument("--max-megapixels", type=float, default=MAX_IMAGE_PIXELS / 1e6,
                        help="largest image accepted; bigger ones are refused before decoding")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S,
                        help="seconds a request may run (0: no limit); videos stop there with partial results")
    args = parser.parse_args(argv)

    from mivolo_lite.app import build_app, serve

    demo = build_app(models=args.model, yolo_weights=args.yolo_weights, device=args.device,
                     concurrency=args.concurrency, queue_size=args.queue_size, max_upload_mb=args.max_upload_mb,
                     max_pixels=int(args.max_megapixels * 1e6), time_limit_s=args.time_limit or None)
    print(f"mivolo-lite demo on http://{args.host}:{args.port} (Ctrl+C to stop)")
    serve(demo, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
