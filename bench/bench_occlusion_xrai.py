"""Occlusion and XRAI: our time vs PAIR saliency 0.2.1 and (occlusion) vs the compute floor.

* Occlusion, ``size=15``, on 64x64 and 128x128 inputs. The floor is a bare
  batched forward pass (``session.run(y)`` in batches of the same
  ``batch_size``) over the same occluded copies, made beforehand (at 128x128
  the first chunks are cycled: forward time does not depend on the pixel
  values). PAIR runs one ``session.run`` per window.
* XRAI, full and fast, on a 224x224 textured image: end to end (Integrated
  Gradients with the two default baselines, Felzenszwalb segmentation, region
  merge); our segmentation cache is cleared before every timed call.

Every ratio is measured in one run, on the same graph and inputs; PAIR's slow
calls are timed once (after a warm-up of the graph). The model (``--model``)
is ``light`` (two stride-2 convs, as cheap per image as the per-call overhead
these methods are about) or ``relu_cnn`` (bench/common.py, 32/64/128 channels).
Run: ``python bench/bench_occlusion_xrai.py [--repeats 3] [--model light]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    MODELS,
    interleaved_medians,
    pair_available,
    print_table,
)

from saliency_tf1.datasets import make_shapes  # noqa: E402
from saliency_tf1.methods.occlusion import Occlusion, window_starts  # noqa: E402
from saliency_tf1.methods.xrai import XRAI, XRAIParameters  # noqa: E402


def timed_once(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def occluded_chunks(img: np.ndarray, size: int, batch_size: int, max_bytes: float = 4e8):
    """The occluded copies (plus the original, first) in chunks of ``batch_size`` rows."""
    starts = window_starts(img.shape[0], size, 1)
    total = len(starts) ** 2 + 1
    n_chunks = -(-total // batch_size)
    keep = max(1, min(n_chunks, int(max_bytes // (batch_size * img.nbytes))))
    chunks = []
    for c in range(keep):
        rows = []
        for k in range(c * batch_size, min((c + 1) * batch_size, total)):
            copy = img.copy()
            if k:
                r, q = divmod(k - 1, len(starts))
                copy[starts[r]:starts[r] + size, starts[q]:starts[q] + size] = 0
            rows.append(copy)
        chunks.append(np.stack(rows))
    sizes = [min(batch_size, total - c * batch_size) for c in range(n_chunks)]
    return [chunks[c % keep][: sizes[c]] for c in range(n_chunks)], total


def bench_occlusion(model_name: str, image_size: int, repeats: int, with_pair: bool):
    m = MODELS[model_name](image_size)
    img = np.random.default_rng(0).uniform(0, 1, (image_size, image_size, 3)).astype(np.float32)
    ours = Occlusion(m.graph, m.session, m.y, m.x)
    batch_size = ours.default_batch_size
    chunks, total = occluded_chunks(img, 15, batch_size)

    def floor():
        for chunk in chunks:
            m.session.run(m.y, {m.x: chunk})

    t = interleaved_medians(
        {"ours": lambda: ours.GetMask(img, size=15, progress=False), "floor": floor}, repeats)
    row = [f"{image_size}x{image_size}", total, t["floor"], t["ours"], t["ours"] / t["floor"]]
    if with_pair:
        import saliency.tf1 as pair

        theirs = pair.Occlusion(m.graph, m.session, m.y, m.x)
        pair_t, expected = timed_once(lambda: theirs.GetMask(img, feed_dict={}, size=15))
        diff = float(np.max(np.abs(ours.GetMask(img, size=15) - expected)))
        row += [pair_t, pair_t / t["ours"], f"{diff:.1e}"]
    else:
        row += [float("nan"), float("nan"), "-"]
    m.close()
    return row


def bench_xrai(model_name: str, repeats: int, with_pair: bool):
    m = MODELS[model_name](224)
    img = make_shapes(1, size=224, seed=3).images[0]
    ours = XRAI(m.graph, m.session, m.y, m.x)
    rows = []
    if with_pair:
        import saliency.tf1 as pair

        theirs = pair.XRAI(m.graph, m.session, m.y, m.x)
    for algorithm in ("full", "fast"):
        params = XRAIParameters(algorithm=algorithm, return_xrai_segments=True)

        def run_ours(params=params):
            ours._segments_cache.clear()  # time the segmentation too
            return ours.GetMaskWithDetails(img, extra_parameters=params, progress=False)

        t = interleaved_medians({"ours": run_ours}, repeats)["ours"]
        row = ["224x224", f"XRAI {algorithm}", t]
        if with_pair:
            pair_params = pair.XRAIParameters()
            pair_params.algorithm = algorithm
            pair_params.return_xrai_segments = True
            pair_t, expected = timed_once(
                lambda pp=pair_params: theirs.GetMaskWithDetails(  # noqa: B023 (called here)
                    img, feed_dict={}, extra_parameters=pp))
            got = run_ours()
            same = (np.array_equal(got.segments, expected.segments)
                    and np.allclose(got.attribution_mask, expected.attribution_mask,
                                    rtol=1e-4, atol=1e-6))
            row += [pair_t, pair_t / t, "yes" if same else "NO"]
        else:
            row += [float("nan"), float("nan"), "-"]
        rows.append(row)
    m.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=sorted(MODELS), default="light")
    parser.add_argument("--sizes", default="64,128", help="occlusion input sizes")
    parser.add_argument("--no-pair", action="store_true", help="skip PAIR (ours/floor only)")
    args = parser.parse_args()
    with_pair = pair_available() and not args.no_pair
    occ = [bench_occlusion(args.model, int(s), args.repeats, with_pair)
           for s in args.sizes.split(",")]
    print_table(
        f"Occlusion size=15 ({args.model} model): median s; targets ours/floor <= 1.15, "
        "PAIR/ours >= 4 at 64x64",
        ["input", "rows", "floor s", "ours s", "ours/floor", "PAIR s", "PAIR/ours",
         "max |diff|"],
        occ,
    )
    print_table(
        f"XRAI end to end ({args.model} model): median s; target PAIR/ours >= 5 (full)",
        ["input", "call", "ours s", "PAIR s", "PAIR/ours", "same output"],
        bench_xrai(args.model, args.repeats, with_pair),
    )


if __name__ == "__main__":
    main()
