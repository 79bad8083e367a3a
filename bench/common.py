"""Shared pieces of the benchmarks: a ReLU CNN of a given size, timing, tables.

Benchmarks are plain scripts: every ratio they print is measured in the same
run, on the same graph and inputs, so the machine's speed cancels out.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import interleaved_medians, median_time, print_table  # noqa: E402, F401

v1 = tf.compat.v1


@dataclass
class BenchModel:
    graph: Any
    session: Any
    x: Any
    logits: Any
    y: Any
    conv: Any
    size: int

    def close(self) -> None:
        self.session.close()


def relu_cnn(
    size: int, seed: int = 0, classes: int = 10, with_variables: bool = True
) -> BenchModel:
    """A ReLU CNN (3 conv blocks of 32/64/128 channels, GAP, dense) on ``size`` x ``size`` x 3.

    ``y = logits[:, 0]``; ``conv`` is the last conv layer. Weights are variables
    (PAIR's GuidedBackprop needs some) unless ``with_variables`` is False.
    """
    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, size, size, 3], name="x")
        h, ch = x, 3
        for i, width in enumerate((32, 64, 128)):
            value = rng.normal(0, np.sqrt(2 / (9 * ch)), (3, 3, ch, width)).astype(np.float32)
            w = v1.Variable(value, name=f"w{i}") if with_variables else tf.constant(value)
            h = tf.nn.relu(tf.nn.conv2d(h, w, 1, "SAME"))
            conv = h
            if i < 2:
                h = tf.nn.max_pool2d(h, 2, 2, "SAME")
            ch = width
        wd = rng.normal(0, 0.1, (ch, classes)).astype(np.float32)
        wd = v1.Variable(wd, name="wd") if with_variables else tf.constant(wd)
        logits = tf.matmul(tf.reduce_mean(h, [1, 2]), wd, name="logits")
        y = logits[:, 0]
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    return BenchModel(graph, session, x, logits, y, conv, size)


def light_cnn(size: int, seed: int = 0, classes: int = 10) -> BenchModel:
    """conv 3x3/2 (8) - ReLU - conv 3x3/2 (16) - ReLU - GAP - dense; ``y = logits[:, 0]``."""
    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, size, size, 3], name="x")
        w1 = v1.Variable(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
        w2 = v1.Variable(rng.normal(0, 0.2, (3, 3, 8, 16)).astype(np.float32))
        wd = v1.Variable(rng.normal(0, 0.3, (16, classes)).astype(np.float32))
        h = tf.nn.relu(tf.nn.conv2d(x, w1, 2, "SAME"))
        conv = tf.nn.relu(tf.nn.conv2d(h, w2, 2, "SAME"))
        logits = tf.matmul(tf.reduce_mean(conv, [1, 2]), wd, name="logits")
        y = logits[:, 0]
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    return BenchModel(graph, session, x, logits, y, conv, size)


#: Bench models by name: ``relu_cnn`` is compute-heavy, ``light`` is as cheap per
#: image as the per-call overhead that batching removes.
MODELS = {"light": light_cnn, "relu_cnn": relu_cnn}


def pair_available() -> bool:
    try:
        import saliency.tf1  # noqa: F401
    except Exception:
        return False
    return True


def run_sizes(description: str, default_runs: str,
              bench_size: Callable[[str, int, int], list[list[Any]]]) -> list[list[Any]]:
    """Parses ``--runs MODEL:SIZE,...`` and ``--repeats``; the rows of ``bench_size`` for each."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", default=default_runs,
                        help=f"comma-separated MODEL:SIZE (models: {', '.join(MODELS)})")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows: list[list[Any]] = []
    for run in args.runs.split(","):
        model, size = run.split(":")
        rows += bench_size(model, int(size), args.repeats)
    return rows
