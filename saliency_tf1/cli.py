"""The ``saliency-tf1`` command."""

from __future__ import annotations

import argparse
import os
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    methods = args.methods.split(",") if args.methods else None
    run_demo(args.out, seed=args.seed, n_explain=args.images, steps=args.steps, methods=methods)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency-tf1", description="Saliency maps for TensorFlow models in TF1 graph style."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small CNN on generated shapes and explain it")
    demo.add_argument("--out", default="out/demo", help="folder for the figures (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--images", type=int, default=4, help="held-out images to explain")
    demo.add_argument("--steps", type=int, default=300, help="training steps")
    demo.add_argument("--methods", default="", help="comma-separated method names (default: all)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
