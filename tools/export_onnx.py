"""Export the estimator to ONNX: inputs ``face_pixel_values`` (B, 3, S, S, normalised as the image
processor does), ``face_mask`` (B,, bool), ``body_pixel_values``, ``body_mask`` (zeros and False
for a missing crop); outputs ``age_probs`` (B, num_age_bins) and ``gender_prob`` (B,, P(male)).
The batch axis is dynamic. Flip TTA is not in the graph: run the mirrored inputs too and average
the probabilities (``mivolo_lite.export.OnnxEstimator`` does). ``--inputs face`` exports a
face-only graph (no body encoder; cheaper when there are never bodies).

    python tools/export_onnx.py -o mivolo_lite.onnx                  # the shipped model
    python tools/export_onnx.py --model path/to/model_folder -o model.onnx --opset 17

Checks the graph against torch in onnxruntime (random inputs, mixed presence masks) and prints
the largest age difference. ``AgePredictor(..., backend="onnx")`` does not need this file: it
exports on first use into a cache.
"""

import argparse

import torch

from mivolo_lite.export import BOTH, DEFAULT_OPSET, OnnxEstimator, export_onnx, input_names
from mivolo_lite.hub import load_model_and_processor


def largest_age_difference(model, onnx_path, batch: int = 5) -> float:
    """max |age_torch - age_onnx| in years on random inputs with every face/body presence pattern."""
    size = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    face, body = (torch.randn(batch, 3, size, size, generator=generator) for _ in range(2))
    face_mask = torch.tensor([True, False, True, True, False][:batch])
    body_mask = torch.tensor([True, True, False, True, True][:batch])
    estimator = OnnxEstimator(model, onnx_path)
    worst = 0.0
    for flip_tta in (False, True):
        ours = model.predict(face, body, face_mask, body_mask, flip_tta=flip_tta)
        theirs = estimator.predict(face, body, face_mask, body_mask, flip_tta=flip_tta)
        worst = max(worst, float((ours.age - theirs.age).abs().max()))
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder or Hub repo id (default: the shipped model)")
    parser.add_argument("-o", "--output", default="mivolo_lite.onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--inputs", nargs="+", default=list(BOTH), choices=BOTH, help="the graph's inputs")
    args = parser.parse_args(argv)
    model, _ = load_model_and_processor(args.model)
    model.eval().fuse_for_inference()
    branches = tuple(b for b in BOTH if b in args.inputs)
    path = export_onnx(model, args.output, opset=args.opset, branches=branches)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, opset {args.opset}, preset {model.config.preset}, "
          f"inputs {', '.join(input_names(branches))})")
    if branches == BOTH:
        print(f"largest age difference to torch: {largest_age_difference(model, path):.2e} years")


if __name__ == "__main__":
    main()
