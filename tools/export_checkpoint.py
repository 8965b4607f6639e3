"""Export the EMA weights of a training checkpoint as a model folder (safetensors + config +
processor), e.g. to ship or evaluate a run that was stopped before its final epoch.

    python tools/export_checkpoint.py --config configs/lite.yaml --checkpoint runs/lite/checkpoints/step_900 -o out/
"""

import argparse
import json
from pathlib import Path

import torch

from mivolo_lite.hub import save_model
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel
from mivolo_lite.training import load_config
from mivolo_lite.training.trainer import latest_checkpoint, run_model_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: newest of the run)")
    parser.add_argument("--output", "-o", required=True)
    parser.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    ckpt = Path(args.checkpoint) if args.checkpoint else latest_checkpoint(cfg.output_dir)
    if ckpt is None:
        raise SystemExit(f"no checkpoint under {cfg.output_dir}/checkpoints")
    model_cfg = run_model_config(cfg)
    model = MiVOLOLiteModel(model_cfg)
    if args.raw:
        from safetensors.torch import load_file

        state = load_file(ckpt / "model.safetensors")
    else:
        # accelerate stores registered objects (here: the EMA, then the step counters) with
        # torch.save; these are our own files, and weights_only=True refuses anything but tensors.
        state = torch.load(ckpt / "custom_checkpoint_0.pkl", map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"checkpoint does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out = Path(args.output)
    save_model(model, MiVOLOLiteImageProcessor(size=model_cfg.image_size), out)
    counters = torch.load(ckpt / "custom_checkpoint_1.pkl", map_location="cpu", weights_only=True)
    (out / "training_summary.json").write_text(json.dumps({"checkpoint": ckpt.name, **counters}, indent=2))
    print(f"exported {'raw' if args.raw else 'EMA'} weights of {ckpt} to {out}")


if __name__ == "__main__":
    main()
