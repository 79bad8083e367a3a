"""Vanilla gradient and SmoothGrad: our time vs the compute floor and vs PAIR saliency 0.2.1.

The floor is one bare ``session.run`` of the input gradient on the same stacked
batch (1 input, 32 inputs); for SmoothGrad it is that run on 25 noisy copies
*plus* drawing their noise the cheapest standard way NumPy has (one SFC64
generator, float32 ziggurat, ``x + s * z``), since any seeded SmoothGrad must
draw it; the gradient alone is printed beside it. Ratios are measured in one run,
round-robin, on the 32/64/128-channel ``relu_cnn`` and the ``light`` CNN of
bench/common.py. Run: ``python bench/bench_gradients.py [--runs light:64] [--repeats 7]``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    MODELS,
    interleaved_medians,
    pair_available,
    print_table,
    run_sizes,
    v1,
)

from saliency_tf1 import GradientSaliency  # noqa: E402


def bench_size(model: str, size: int, repeats: int) -> list[list]:
    m = MODELS[model](size)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    batch32 = rng.uniform(0, 1, (32, size, size, 3)).astype(np.float32)
    noisy25 = (img + rng.normal(0, 0.15, (25, size, size, 3))).astype(np.float32)
    cheapest = np.random.Generator(np.random.SFC64(0))
    stdev = np.float32(0.15 * (img.max() - img.min()))
    with m.graph.as_default():
        grad = v1.gradients(m.y, m.x)[0]
    ours = GradientSaliency(m.graph, m.session, m.y, m.x)

    def floor(batch):
        return lambda: m.session.run(grad, {m.x: batch})

    fns = {
        "GetMask floor": floor(img[None]),
        "GetMask ours": lambda: ours.GetMask(img),
        "SmoothGrad-25 gradient only": floor(noisy25),
        "SmoothGrad-25 floor": lambda: m.session.run(grad, {m.x: img + stdev * (
            cheapest.standard_normal((25, size, size, 3), dtype=np.float32))}),
        "SmoothGrad-25 ours": lambda: ours.GetSmoothedMask(img, nsamples=25, seed=0),
        "SmoothGrad-25 ours (global rng)": lambda: ours.GetSmoothedMask(img, nsamples=25),
        "GetMaskBatch(32) floor": floor(batch32),
        "GetMaskBatch(32) ours": lambda: ours.GetMaskBatch(batch32),
    }
    if pair_available():
        import saliency.tf1 as pair

        theirs = pair.GradientSaliency(m.graph, m.session, m.y, m.x)
        fns["GetMask PAIR"] = lambda: theirs.GetMask(img, feed_dict={})
        fns["SmoothGrad-25 PAIR"] = lambda: theirs.GetSmoothedMask(img, feed_dict={}, nsamples=25)
        fns["GetMaskBatch(32) PAIR"] = lambda: [theirs.GetMask(b, feed_dict={}) for b in batch32]
    t = interleaved_medians(fns, repeats)
    rows = []
    for task in ("GetMask", "SmoothGrad-25", "GetMaskBatch(32)"):
        floor_t, ours_t = t[f"{task} floor"], t[f"{task} ours"]
        pair_t = t.get(f"{task} PAIR", float("nan"))
        rows.append([model, f"{size}x{size}", task, floor_t * 1e3, ours_t * 1e3, ours_t / floor_t,
                     pair_t * 1e3, pair_t / ours_t])
        if task == "SmoothGrad-25":
            g = t["SmoothGrad-25 gradient only"]
            rows.append([model, f"{size}x{size}", "  (the floor's gradient alone)", floor_t * 1e3,
                         g * 1e3, g / floor_t, float("nan"), float("nan")])
            g = t["SmoothGrad-25 ours (global rng)"]
            rows.append([model, f"{size}x{size}", "SmoothGrad-25 (seed=None)", floor_t * 1e3,
                         g * 1e3, g / floor_t, pair_t * 1e3, pair_t / g])
    m.close()
    return rows


def main() -> None:
    rows = run_sizes(__doc__, "relu_cnn:64,relu_cnn:224,light:64", bench_size)
    print_table(
        "Gradient / SmoothGrad: median ms; ours/floor (target <= 1.15 for SmoothGrad); PAIR/ours",
        ["model", "input", "call", "floor ms", "ours ms", "ours/floor", "PAIR ms", "PAIR/ours"],
        rows,
    )


if __name__ == "__main__":
    main()
