"""Grow a trained model deeper without changing its predictions: new transformer blocks, each an
identity until trained (mivolo_lite.models.growth), are spread between the trunk's last-stage
blocks. Train the result with ``model.init_from: <output>`` to use the added capacity.

    python tools/grow_model.py mivolo_lite/pretrained/mivolo-lite-cpu --extra-trunk-blocks 2 --output runs/grown16_6
"""

import argparse
from pathlib import Path

import torch

from mivolo_lite.hub import save_model
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel
from mivolo_lite.models.growth import deepen_trunk


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder (safetensors weights and config)")
    parser.add_argument("--extra-trunk-blocks", type=int, required=True)
    parser.add_argument("--output", "-o", required=True)
    args = parser.parse_args(argv)
    model = MiVOLOLiteModel.from_pretrained(args.model, use_safetensors=True).eval()
    grown = deepen_trunk(model, args.extra_trunk_blocks).eval()

    # The promise of the operation, checked on the spot: same outputs for random inputs.
    size = model.config.image_size
    face, body = torch.randn(4, 3, size, size), torch.randn(4, 3, size, size)
    with torch.no_grad():
        before, after = model(face, body), grown(face, body)
    drift = max((before.age - after.age).abs().max().item(), (before.gender_prob - after.gender_prob).abs().max().item())
    if drift > 1e-4:
        raise SystemExit(f"grown model disagrees with {args.model} by {drift:g}; not saved")

    out = Path(args.output)
    save_model(grown, MiVOLOLiteImageProcessor.from_pretrained(args.model), out)
    n_old = sum(p.numel() for p in model.parameters())
    n_new = sum(p.numel() for p in grown.parameters())
    print(f"trunk {model.config.stage_depths} -> {grown.config.stage_depths} blocks, "
          f"{n_old / 1e6:.2f} M -> {n_new / 1e6:.2f} M parameters, outputs unchanged (max drift {drift:.1e}); saved to {out}")


if __name__ == "__main__":
    main()
