"""Coverage-guided fuzzing (atheris, libFuzzer) of what an untrusted input passes through: decoding
of arbitrary bytes, the offline detector on what decodes, box checks, face-body pairing and cropping
with boxes drawn from the same bytes.

The property: the only failures are the named ones (ImageLoadError for the bytes,
InvalidBoxesError for the boxes); anything else is a crash that libFuzzer reports with the input
that caused it. Run by ``tests/test_fuzz.py`` with a bounded number of runs; by hand, for longer:

    python tests/atheris_image_pipeline.py -max_total_time=600 corpus_dir

An input is image bytes followed by BOX_BYTES bytes from which the caller's boxes are drawn. An
empty corpus folder named on the command line is first filled with small valid images in the
formats and modes users send (seeds, so that the fuzzer starts inside the decoders).
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["mivolo_lite"]):
    import numpy as np
    import torch

    from mivolo_lite._image_io import ImageLoadError, load_image
    from mivolo_lite.detection import Detections, InvalidBoxesError
    from mivolo_lite.detection.opencv_detector import OpenCVDetector
    from mivolo_lite.detection.pairing import crop_persons, match_faces_to_bodies

from test_fuzz import assert_inside, assert_rgb  # noqa: E402 - the property suite's own checks

warnings.simplefilter("ignore")  # decoders warn about the corrupt data they are fed here
DETECTOR = OpenCVDetector(face_max_side=160, body_max_side=160)  # small: many runs per second
MAX_PIXELS = 4_000_000  # a fuzzed header may declare a huge image: the pixel limit must refuse it
BOX_BYTES = 40


def boxes_from(data: atheris.FuzzedDataProvider) -> torch.Tensor:
    n = data.ConsumeIntInRange(0, 4)
    return torch.tensor([[data.ConsumeFloat() for _ in range(4)] for _ in range(n)], dtype=torch.float32).reshape(n, 4)


def test_one_input(raw: bytes) -> None:
    image_bytes, box_bytes = (raw[:-BOX_BYTES], raw[-BOX_BYTES:]) if len(raw) > BOX_BYTES else (raw, raw)
    data = atheris.FuzzedDataProvider(box_bytes)
    faces, bodies = boxes_from(data), boxes_from(data)
    try:
        image = load_image(image_bytes, max_pixels=MAX_PIXELS)
    except ImageLoadError:
        image = np.zeros((1 + len(faces) * 7, 1 + len(bodies) * 11, 3), np.uint8)
    else:
        assert_rgb(image)
        found = DETECTOR.detect(image)
        for boxes in (found.face_boxes, found.person_boxes):
            assert_inside(boxes, image.shape[1], image.shape[0])
    try:
        given = Detections(bodies, torch.ones(len(bodies)), faces, torch.ones(len(faces))).checked()
    except InvalidBoxesError:
        return
    given = given.clipped(image.shape[1], image.shape[0])
    pairs = match_faces_to_bodies(given.face_boxes, given.person_boxes)
    persons = crop_persons(image, given.face_boxes, given.person_boxes, pairs)
    assert len(persons) == len(pairs)


def write_seed_corpus(folder: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    for mode in ("RGB", "L", "P", "RGBA", "CMYK", "I;16"):
        for fmt in ("PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP"):
            image = Image.fromarray(pixels).convert(mode if mode != "I;16" else "I").convert(mode)
            buffer = io.BytesIO()
            try:
                image.save(buffer, fmt)
            except (OSError, ValueError, KeyError):
                continue  # not every format stores every mode
            tail = rng.integers(0, 256, BOX_BYTES, dtype=np.uint8).tobytes()
            (folder / f"{mode.replace(';', '_')}.{fmt.lower()}").write_bytes(buffer.getvalue() + tail)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        if not arg.startswith("-") and Path(arg).is_dir() and not any(Path(arg).iterdir()):
            write_seed_corpus(Path(arg))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
