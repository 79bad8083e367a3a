"""Gradient × Input, Expected Gradients / GradientSHAP, DeepLIFT, LRP, layer conductance (and
guided backprop): our time vs the floor of the same number of gradient rows.

The floor of ``R`` rows is one bare ``session.run`` of ``tf.gradients(y, x)`` on a stacked
batch of ``R`` rows. Each method is one stream of such rows: Gradient × Input and LRP one
row per input, DeepLIFT two (the input and its reference, in the same run), Expected
Gradients ``nsamples`` per input, conductance ``x_steps`` per input. Ratios are measured in
one run, round-robin, on the ``relu_cnn`` (3 conv blocks with max pooling) and the
``light`` CNN of bench/common.py.
Run: ``python bench/bench_propagation.py [--runs relu_cnn:64,light:64] [--repeats 7]``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import MODELS, interleaved_medians, print_table, run_sizes, v1  # noqa: E402

from saliency_tf1.methods.deeplift import DeepLift  # noqa: E402
from saliency_tf1.methods.expected_gradients import ExpectedGradients  # noqa: E402
from saliency_tf1.methods.gradient_x_input import GradientXInput  # noqa: E402
from saliency_tf1.methods.guided_backprop import GuidedBackprop  # noqa: E402
from saliency_tf1.methods.layer_conductance import LayerConductance  # noqa: E402
from saliency_tf1.methods.lrp import LRP  # noqa: E402

ROWS = 32


def bench_size(model: str, size: int, repeats: int) -> list[list]:
    m = MODELS[model](size)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    batch = rng.uniform(0, 1, (ROWS, size, size, 3)).astype(np.float32)
    refs = rng.uniform(0, 1, (64, size, size, 3)).astype(np.float32)
    with m.graph.as_default():
        grad = v1.gradients(m.y, m.x)[0]

    def floor(rows):
        return lambda: m.session.run(grad, {m.x: rows})

    g, s, y, x = m.graph, m.session, m.y, m.x
    gxi = GradientXInput(g, s, y, x)
    eg = ExpectedGradients(g, s, y, x)
    dl = DeepLift(g, s, y, x)
    lrp_eps = LRP(g, s, y, x, "epsilon", 1e-6)
    lrp_zplus = LRP(g, s, y, x, "z_plus")
    lrp_comp = LRP(g, s, y, x, "composite", first_layer="zB", bounds=(0.0, 1.0))
    cond = LayerConductance(g, s, y, x, m.conv)
    guided = GuidedBackprop(g, s, y, x)
    # (task, rows, our call): every call runs exactly `rows` gradient rows in one session.run.
    tasks = [
        ("GradientXInput batch(32)", ROWS, lambda: gxi.GetMaskBatch(batch)),
        ("ExpectedGradients 1 x 32 samples", ROWS,
         lambda: eg.GetMask(img, references=refs, nsamples=ROWS, seed=0)),
        ("GradientSHAP 1 x 32 samples", ROWS,
         lambda: eg.GetMask(img, references=refs, nsamples=ROWS, stdev=0.1, seed=0)),
        ("DeepLift batch(16) = 32 rows", ROWS,
         lambda: dl.GetMaskBatch(batch[:ROWS // 2])),
        ("DeepLift 1 input = 2 rows", 2, lambda: dl.GetMask(img)),
        ("LRP-epsilon batch(32)", ROWS, lambda: lrp_eps.GetMaskBatch(batch)),
        ("LRP-z+ batch(32)", ROWS, lambda: lrp_zplus.GetMaskBatch(batch)),
        ("LRP composite batch(32)", ROWS, lambda: lrp_comp.GetMaskBatch(batch)),
        ("LayerConductance 1 x 32 steps", ROWS, lambda: cond.GetMask(img, x_steps=ROWS)),
        ("GuidedBackprop batch(32)", ROWS, lambda: guided.GetMaskBatch(batch)),
    ]
    fns = {f"{rows} floor": floor(batch[:rows]) for rows in {r for _, r, _ in tasks}}
    fns.update({task: fn for task, _, fn in tasks})
    t = interleaved_medians(fns, repeats)
    rows_out = []
    for task, rows, _ in tasks:
        floor_t, ours_t = t[f"{rows} floor"], t[task]
        rows_out.append([model, f"{size}x{size}", task, rows, floor_t * 1e3, ours_t * 1e3,
                         ours_t / floor_t])
    m.close()
    return rows_out


def main() -> None:
    rows = run_sizes(__doc__, "relu_cnn:64,light:64", bench_size)
    print_table(
        "Propagation methods: median ms; ours / floor of the same gradient rows "
        "(target <= 1.15)",
        ["model", "input", "call", "rows", "floor ms", "ours ms", "ours/floor"],
        rows,
    )


if __name__ == "__main__":
    main()
