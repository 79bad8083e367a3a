"""Batches built in the graph vs on the host: bytes fed and time per call (TF1 path).

For SmoothGrad-25 (``seed=0``), IG-25 (``GetMask``, zero baseline), Blur IG
(100 steps, 4 runs), RISE and LIME (1000 masks or samples, 16 runs) and
Occlusion (32-px windows, stride 16 at 224, scaled at other sizes), on the
compute-heavy and the light CNN: each method runs once with its rows built in
the graph (the default, ``method.in_graph = True``) and once with them built in
NumPy and fed (``method.in_graph = False``, the path every call took before).
A session wrapper adds up the bytes of every value fed to ``session.run`` in
a call; times are medians of interleaved runs in the same process.

    python bench/bench_in_graph.py [--runs relu_cnn:224,light:64,light:224] [--repeats 7]
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from common import MODELS, interleaved_medians, print_table, run_sizes  # noqa: E402

import saliency_tf1 as saliency  # noqa: E402


class FeedCounter:
    """A session wrapper adding up the bytes fed to ``run`` (the session computes)."""

    def __init__(self, session: Any) -> None:
        self.session, self.graph, self.fed = session, session.graph, 0

    def run(self, fetches: Any, feed_dict: dict | None = None, **kwargs: Any) -> Any:
        self.fed += sum(np.asarray(v).nbytes for v in (feed_dict or {}).values())
        return self.session.run(fetches, feed_dict=feed_dict, **kwargs)


def bench_size(model: str, size: int, repeats: int) -> list[list[Any]]:
    m = MODELS[model](size)
    counter = FeedCounter(m.session)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    window, stride = max(2, size // 7), max(1, size // 14)
    tasks = {
        "SmoothGrad-25": (saliency.GradientSaliency,
                          lambda meth: meth.GetSmoothedMask(image, seed=0, batch_size=25)),
        "IG-25": (saliency.IntegratedGradients,
                  lambda meth: meth.GetMask(image, x_steps=25, batch_size=25)),
        "BlurIG-100": (saliency.BlurIG,
                       lambda meth: meth.GetMask(image, steps=100, batch_size=32)),
        "RISE-1000": (saliency.RISE,
                      lambda meth: meth.GetMask(image, n_masks=1000, seed=0, batch_size=64)),
        "LIME-1000": (saliency.Lime,
                      lambda meth: meth.GetMask(image, n_samples=1000, seed=0, batch_size=64)),
        f"Occlusion {window}px/{stride}": (
            saliency.Occlusion,
            lambda meth: meth.GetMask(image, size=window, stride=stride, batch_size=64)),
    }
    rows = []
    for task, (cls, call) in tasks.items():
        method = cls(m.graph, counter, m.y, m.x)
        assert not method.in_graph_unavailable, method.in_graph_unavailable

        def run(in_graph: bool, method: Any = method, call: Any = call) -> Any:
            method.in_graph = in_graph
            return call(method)

        fed = {}
        for in_graph in (True, False):
            counter.fed = 0
            run(in_graph)
            fed[in_graph] = counter.fed
        times = interleaved_medians({"graph": lambda: run(True), "host": lambda: run(False)},
                                    repeats)
        if not task.startswith("SmoothGrad"):
            same = float(np.abs(run(True) - run(False)).max() / (np.abs(run(False)).max() + 1e-30))
        else:
            same = float("nan")  # different noise streams: compared in the tests by seed
        rows.append([model, f"{size}x{size}", task, fed[False] / image.nbytes,
                     fed[True] / image.nbytes, times["host"] * 1e3, times["graph"] * 1e3,
                     times["graph"] / times["host"], same])
    m.close()
    return rows


def main() -> None:
    rows = run_sizes(__doc__, "relu_cnn:224,light:64,light:224", bench_size)
    print_table(
        "Rows built in the graph vs on the host (medians; fed = bytes fed per call / one input)",
        ["model", "input", "call", "fed host", "fed graph", "host ms", "graph ms",
         "graph/host", "max rel diff"], rows)


if __name__ == "__main__":
    main()
