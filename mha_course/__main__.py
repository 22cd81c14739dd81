"""Command line: `python -m mha_course COMMAND` (see `python -m mha_course --help`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _train_toy(args: argparse.Namespace) -> int:
    from mha_course import toy_model

    config = toy_model.ToyConfig() if args.steps is None else toy_model.ToyConfig(steps=args.steps)
    _, report = toy_model.train(config, seed=args.seed, out_dir=args.out, seconds=args.seconds,
                                progress=not args.quiet)
    best = {role: f"L{b['layer']}H{b['head']} {b['score']:.2f}" for role, b in report["best"].items()}
    print(json.dumps({"out": str(args.out), "seconds": round(report["seconds"], 1),
                      "steps": report["steps"], "best_heads": best,
                      "accuracy": {k: round(v, 3) for k, v in report["accuracy"].items()}}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mha_course", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train-toy", help="train the toy Transformer on the planted-relation "
                                "language and write model.safetensors, config.json, heads.json")
    train.add_argument("--seed", type=int, default=0, help="seed for data, corruption and weights")
    train.add_argument("--out", type=Path, required=True, help="folder to write the checkpoint to")
    train.add_argument("--steps", type=int, default=None, help="training steps (default: ToyConfig)")
    train.add_argument("--seconds", type=float, default=None,
                       help="stop early after this many seconds (then no longer deterministic)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train_toy)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
