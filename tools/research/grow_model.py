"""Grow a trained model before training it further (mivolo_lite.models.growth):

- deeper without changing its predictions: new transformer blocks, each an identity until
  trained, are spread between the trunk's last-stage blocks (checked on the spot);
- to larger crops: every weight kept, the position embeddings resampled to the new token grid
  (predictions change: fine-tune at the new size).

Train the result with ``model.init_from: <output>`` to use the added capacity or pixels.

    python tools/research/grow_model.py mivolo_lite/pretrained/mivolo-lite-cpu --extra-trunk-blocks 2 --output runs/grown16_6
    python tools/research/grow_model.py mivolo_lite/pretrained/mivolo-lite-cpu --image-size 128 --output runs/lite26_128
"""

import argparse
from pathlib import Path

import torch

from mivolo_lite.hub import save_model
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel
from mivolo_lite.models.growth import deepen_trunk, resize_input


def _deepen_checked(model, extra_blocks: int):
    """deepen_trunk, with its promise (same outputs) checked on random inputs."""
    grown = deepen_trunk(model, extra_blocks).eval()
    size = model.config.image_size
    face, body = torch.randn(4, 3, size, size), torch.randn(4, 3, size, size)
    with torch.no_grad():
        before, after = model(face, body), grown(face, body)
    drift = max((before.age - after.age).abs().max().item(), (before.gender_prob - after.gender_prob).abs().max().item())
    if drift > 1e-4:
        raise SystemExit(f"deepened model disagrees with the original by {drift:g}; not saved")
    return grown, drift


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder (safetensors weights and config)")
    parser.add_argument("--extra-trunk-blocks", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=None, help="new crop size in pixels")
    parser.add_argument("--output", "-o", required=True)
    args = parser.parse_args(argv)
    if not args.extra_trunk_blocks and args.image_size is None:
        parser.error("nothing to do: give --extra-trunk-blocks and/or --image-size")
    model = MiVOLOLiteModel.from_pretrained(args.model, use_safetensors=True, dtype=torch.float32).eval()
    grown, done = model, []
    if args.extra_trunk_blocks:
        grown, drift = _deepen_checked(grown, args.extra_trunk_blocks)
        done.append(f"trunk {model.config.stage_depths} -> {grown.config.stage_depths} blocks, "
                    f"outputs unchanged (max drift {drift:.1e})")
    if args.image_size is not None:
        old_size = grown.config.image_size
        grown = resize_input(grown, args.image_size).eval()
        done.append(f"crops {old_size} -> {args.image_size} px (position embeddings resampled; fine-tune at this size)")

    out = Path(args.output)
    processor = MiVOLOLiteImageProcessor.from_pretrained(args.model)
    processor.size = grown.config.image_size  # crops as large as the model now expects
    save_model(grown, processor, out)
    n_old = sum(p.numel() for p in model.parameters())
    n_new = sum(p.numel() for p in grown.parameters())
    print(f"{'; '.join(done)}; {n_old / 1e6:.2f} M -> {n_new / 1e6:.2f} M parameters; saved to {out}")


if __name__ == "__main__":
    main()
