"""Train a MiVOLO-lite model.

    accelerate launch tools/train.py --config configs/lite.yaml [--resume] [--max-minutes 60]

The same command runs on one CPU, one GPU, several GPUs or machines (configure with
``accelerate config`` or flags such as ``--num_processes``/``--cpu``/``--mixed_precision``).
"""

import argparse

from mivolo_lite.training import load_config
from mivolo_lite.training.trainer import train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/lite.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument("--max-minutes", type=float, default=None, help="checkpoint and stop after this long")
    parser.add_argument("--max-steps", type=int, default=None, help="checkpoint and stop after this many steps")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config entries, e.g. optim.epochs=5 output_dir=runs/x")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    final = train(cfg, resume=args.resume, max_minutes=args.max_minutes, max_steps=args.max_steps)
    if final is not None:
        print(f"model saved to {final}")


if __name__ == "__main__":
    main()
