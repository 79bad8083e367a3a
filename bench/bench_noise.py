"""SmoothGrad noise: which seeded Gaussian source, and what it adds to the gradient.

Table 1 times drawing the noisy copies ``x + stdev * z`` (25 samples of one
input) with every option tried for saliency_tf1/engine/noise.py. "chunk-indep"
says whether sample ``k``'s noise is a function of ``(seed, k)`` only, so that
drawing the samples in pieces gives the same rows as drawing them at once.
The options:

* ``spawn`` (the pre-noise.py ``base.noisy_copies``): one ``rng.spawn`` child
  per sample, ziggurat ``standard_normal``, on up to 4 threads.
* one-generator ziggurat (PCG64 / PCG64DXSM / SFC64): NumPy's fastest plain
  draw. Not chunk-independent, because the ziggurat takes a variable number of
  words per value.
* per-sample SFC64 ziggurat on 1 or 2 threads.
* TF ``StatelessRandomNormalV2`` (Philox, counter = first sample's block
  offset) in a private graph and session: the op alone, the fetch to NumPy,
  ``+ x`` in NumPy, or ``x + stdev * z`` in TF.
* noise.py: Box-Muller over ``PCG64DXSM.random_raw`` words with SIMD ufuncs
  (float32), and per-sample SFC64 ziggurat (float64).

Table 2 is the whole SmoothGrad-25 step on a bench model: noise, one
``session.run`` of the input gradient, then the mean of squared gradients. It
is compared with the floor, which is that gradient plus the cheapest
*standard* draw (NumPy ``Generator.standard_normal(float32)`` with one
generator, or TF's stateless normal fetched to NumPy). All times are medians
measured round-robin in one run.

Run: ``python bench/bench_noise.py [--runs light:64] [--sizes 64,224] [--repeats 21]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import MODELS, interleaved_medians, print_table, tf, v1  # noqa: E402

from saliency_tf1.engine.noise import noise_key, noisy_copies  # noqa: E402

NSAMPLES = 25
STDEV = 0.15

# --- the pre-noise.py SmoothGrad noise (base.noisy_copies with a Generator) ---------
_POOL = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)))
_WORKERS = max(1, min(4, os.cpu_count() or 1))


def spawn_noisy(x: np.ndarray, stdev: float, count: int, rng: np.random.Generator) -> np.ndarray:
    dtype = np.result_type(x.dtype, np.float32)
    noisy = np.empty((count, *x.shape), dtype)
    children = rng.spawn(count)

    def fill(ks: range) -> None:
        for k in ks:
            children[k].standard_normal(out=noisy[k], dtype=dtype)

    if noisy.size >= 1 << 17 and count > 1:
        bounds = np.linspace(0, count, min(count, _WORKERS) + 1).astype(int)
        list(_POOL.map(fill, [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    else:
        fill(range(count))
    noisy *= dtype.type(stdev)
    noisy += x
    return noisy


def per_sample_ziggurat(x, stdev, first, count, key, threads=1):
    dtype = np.result_type(x.dtype, np.float32)
    out = np.empty((count, *x.shape), dtype)

    def fill(ks):
        for k in ks:
            seq = np.random.SeedSequence(key, spawn_key=(first + k,))
            np.random.Generator(np.random.SFC64(seq)).standard_normal(out=out[k], dtype=dtype)
        out[ks.start:ks.stop] *= dtype.type(stdev)
        out[ks.start:ks.stop] += x

    if threads == 1:
        fill(range(count))
    else:
        bounds = np.linspace(0, count, threads + 1).astype(int)
        list(_POOL.map(fill, [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    return out


# --- TF counter-based Philox in a private graph/session -----------------------------
class TFPhilox:
    """``StatelessRandomNormalV2(alg=Philox)`` in its own finalized CPU graph.

    Output element ``i`` comes from Philox block ``i // 4`` (float32) or
    ``i // 2`` (float64), so sample ``k`` of a per-sample size padded to that
    multiple starts at counter ``k * padded / per_block``.
    """

    def __init__(self) -> None:
        self.graph = tf.Graph()
        with self.graph.as_default(), tf.device("/device:CPU:0"):
            # [count, padded size, key, counter_lo, counter_hi] as int64, one feed.
            self.params = v1.placeholder(tf.int64, [5])
            self.size = v1.placeholder(tf.int64, [])
            self.x = v1.placeholder(tf.float32, None)
            self.stdev = v1.placeholder(tf.float32, [])
            key = tf.bitcast(self.params[2:3], tf.uint64)
            counter = tf.bitcast(self.params[3:5], tf.uint64)
            z = tf.raw_ops.StatelessRandomNormalV2(
                shape=self.params[0:2], key=key, counter=counter, alg=1, dtype=tf.float32)
            self.z = tf.slice(z, tf.zeros([2], tf.int64),
                              tf.stack([tf.constant(-1, tf.int64), self.size]))
            shape = tf.concat([[-1], tf.shape(self.x, out_type=tf.int64)], 0)
            self.noisy = tf.reshape(self.z * self.stdev, shape) + self.x
        # One thread each: the fastest setting measured here on 2 cores (no contention
        # with the model session's own pools).
        config = v1.ConfigProto(device_count={"GPU": 0}, intra_op_parallelism_threads=1,
                                inter_op_parallelism_threads=1)
        self.session = v1.Session(graph=self.graph, config=config)
        self.graph.finalize()

    def _feed(self, x, first, count, key):
        size = x.size
        padded = -(-size // 4) * 4
        params = np.array([count, padded, key, first * padded // 4, 0], np.int64)
        return {self.params: params, self.size: size}

    def op_only(self, x, first, count, key):
        self.session.run(self.z.op, self._feed(x, first, count, key))

    def fetch(self, x, first, count, key):
        return self.session.run(self.z, self._feed(x, first, count, key))

    def noisy_numpy(self, x, stdev, first, count, key):
        z = self.fetch(x, first, count, key).reshape(count, *x.shape)
        z *= np.float32(stdev)
        z += x
        return z

    def noisy_tf(self, x, stdev, first, count, key):
        feed = self._feed(x, first, count, key)
        feed.update({self.x: x, self.stdev: stdev})
        return self.session.run(self.noisy, feed)


def philox_layout() -> dict[str, int | None]:
    """Values per Philox block of ``StatelessRandomNormalV2``, found by experiment per dtype.

    ``per`` is right when a draw at counter ``c`` equals elements ``c*per ...``
    of one draw from counter 0, at several offsets, counts and sizes (the big
    ones run on several threads). Also checks the carry into the counter's
    high word.
    """
    graph = tf.Graph()
    with graph.as_default(), tf.device("/device:CPU:0"):
        shape = v1.placeholder(tf.int64, [None])
        key = v1.placeholder(tf.uint64, [1])
        counter = v1.placeholder(tf.uint64, [2])
        ops = {dt.name: tf.raw_ops.StatelessRandomNormalV2(
            shape=shape, key=key, counter=counter, alg=1, dtype=dt)
            for dt in (tf.float32, tf.float64)}
    found: dict[str, int | None] = {}
    k = np.array([12345], np.uint64)
    with v1.Session(graph=graph) as session:
        for name, op in ops.items():
            big = session.run(op, {shape: [400_000], key: k, counter: np.zeros(2, np.uint64)})
            found[name] = None
            for per in (1, 2, 4, 8):
                if all(np.array_equal(
                        session.run(op, {shape: [n], key: k,
                                         counter: np.array([off // per, 0], np.uint64)}),
                        big[off:off + n])
                        for off in (per, 3 * per, 1001 * per, 50_000 * per) for n in (5, 100_000)):
                    found[name] = per
                    break
        a = session.run(ops["float32"], {shape: [16], key: k,
                                         counter: np.array([2**64 - 2, 0], np.uint64)})
        b = session.run(ops["float32"], {shape: [8], key: k, counter: np.array([0, 1], np.uint64)})
        found["carry into high counter word"] = int(np.array_equal(a[8:], b))
    return found


def check_chunking(fn, x) -> bool:
    whole = fn(x, 0, NSAMPLES)
    parts = np.concatenate([fn(x, 0, 7), fn(x, 7, 7), fn(x, 14, NSAMPLES - 14)])
    return bool(np.array_equal(whole, parts))


def draw_options(tfp: TFPhilox, size: int) -> dict[str, tuple[str, Callable[[], object]]]:
    """Option name -> (chunk-independent, function drawing 25 noisy copies)."""
    x32 = np.random.default_rng(1).uniform(0, 1, (size, size, 3)).astype(np.float32)
    x64 = x32.astype(np.float64)
    key = noise_key(0)
    shape = (NSAMPLES, *x32.shape)
    out = np.empty(shape, np.float32)
    # The "yes" of noise.py and of TF's Philox is checked here, not just claimed.
    assert check_chunking(lambda x, a, n: noisy_copies(x, STDEV, a, n, key), x32)
    assert check_chunking(lambda x, a, n: noisy_copies(x, STDEV, a, n, key), x64)
    assert check_chunking(lambda x, a, n: tfp.fetch(x, a, n, key), x32)
    assert check_chunking(lambda x, a, n: per_sample_ziggurat(x, STDEV, a, n, key), x32)
    options = {
        "spawn children (pre-noise.py)": (
            "yes", lambda: spawn_noisy(x32, STDEV, NSAMPLES, np.random.default_rng(0))),
        "per-sample SFC64 ziggurat": (
            "yes", lambda: per_sample_ziggurat(x32, STDEV, 0, NSAMPLES, key)),
        "per-sample SFC64 ziggurat, 2 threads": (
            "yes", lambda: per_sample_ziggurat(x32, STDEV, 0, NSAMPLES, key, 2)),
        "TF Philox: op only, no fetch": ("yes", lambda: tfp.op_only(x32, 0, NSAMPLES, key)),
        "TF Philox: z fetched to numpy": ("yes", lambda: tfp.fetch(x32, 0, NSAMPLES, key)),
        "TF Philox: z, then x + s*z in numpy": (
            "yes", lambda: tfp.noisy_numpy(x32, STDEV, 0, NSAMPLES, key)),
        "TF Philox: x + s*z in TF": ("yes", lambda: tfp.noisy_tf(x32, STDEV, 0, NSAMPLES, key)),
        "noise.py float32 (Box-Muller, PCG64DXSM)": (
            "yes", lambda: noisy_copies(x32, STDEV, 0, NSAMPLES, key)),
        "noise.py float64 (per-sample ziggurat)": (
            "yes", lambda: noisy_copies(x64, STDEV, 0, NSAMPLES, key)),
    }
    for name, bits in (("PCG64", np.random.PCG64), ("PCG64DXSM", np.random.PCG64DXSM),
                       ("SFC64", np.random.SFC64)):
        gen = np.random.Generator(bits(0))
        options[f"NumPy f32 ziggurat, 1 generator {name}"] = (
            "no", lambda gen=gen: gen.standard_normal(out=out, dtype=np.float32))
    gen64 = np.random.default_rng(0)
    options["NumPy f64 ziggurat, 1 generator PCG64"] = (
        "no", lambda: gen64.standard_normal(shape))
    return options


def draw_table(sizes: list[int], repeats: int) -> list[list]:
    tfp = TFPhilox()
    rows = []
    for size in sizes:
        options = draw_options(tfp, size)
        t = interleaved_medians({k: fn for k, (_, fn) in options.items()}, repeats)
        standard = min(v for k, v in t.items() if k.startswith("NumPy f32") or "fetched" in k)
        for name, (indep, _) in options.items():
            rows.append([f"{size}x{size}x3", name, indep, t[name] * 1e3, t[name] / standard])
    tfp.session.close()
    return rows


def smoothgrad_table(model: str, size: int, repeats: int) -> list[list]:
    m = MODELS[model](size)
    with m.graph.as_default():
        grad = v1.gradients(m.y, m.x)[0]
    x = np.random.default_rng(1).uniform(0, 1, (size, size, 3)).astype(np.float32)
    noisy = noisy_copies(x, STDEV, 0, NSAMPLES, noise_key(0))
    tfp = TFPhilox()
    g32 = np.random.Generator(np.random.SFC64(0))
    out = np.empty((NSAMPLES, *x.shape), np.float32)

    def smoothgrad(make_noisy):
        def run():
            batch = make_noisy()
            g = m.session.run(grad, {m.x: batch})
            return np.sum(np.square(g), axis=0) / NSAMPLES
        return run

    fns = {
        "gradient only": lambda: m.session.run(grad, {m.x: noisy}),
        "draw: NumPy f32 ziggurat, 1 gen": lambda: g32.standard_normal(out=out, dtype=np.float32),
        "draw: TF Philox fetched": lambda: tfp.fetch(x, 0, NSAMPLES, 7),
        "spawn children (pre-noise.py)": smoothgrad(
            lambda: spawn_noisy(x, STDEV, NSAMPLES, np.random.default_rng(0))),
        "TF Philox private session": smoothgrad(
            lambda: tfp.noisy_numpy(x, STDEV, 0, NSAMPLES, 7)),
        "noise.py": smoothgrad(
            lambda: noisy_copies(x, STDEV, 0, NSAMPLES, noise_key(0))),
    }
    method = None
    try:  # the package's own SmoothGrad, whatever noise it is wired to today
        from saliency_tf1 import GradientSaliency

        method = GradientSaliency(m.graph, m.session, m.y, m.x)
        fns["GetSmoothedMask(seed=0) as wired"] = lambda: method.GetSmoothedMask(
            x, nsamples=NSAMPLES, seed=0)
    except Exception as err:  # the package may be mid-restructure
        print(f"(GetSmoothedMask not timed: {type(err).__name__}: {err})")
    t = interleaved_medians(fns, repeats)
    grad_t = t["gradient only"]
    floor = grad_t + min(t["draw: NumPy f32 ziggurat, 1 gen"], t["draw: TF Philox fetched"])
    where = [model, f"{size}x{size}"]
    rows = [where + [name, t[name] * 1e3, t[name] / floor, t[name] / grad_t]
            for name in ("gradient only", "draw: NumPy f32 ziggurat, 1 gen",
                         "draw: TF Philox fetched")]
    rows.append(where + ["floor = gradient + cheapest draw", floor * 1e3, 1.0, floor / grad_t])
    rows += [where + [name, t[name] * 1e3, t[name] / floor, t[name] / grad_t]
             for name in fns if name not in ("gradient only",) and not name.startswith("draw")]
    tfp.session.close()
    m.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default="light:64",
                        help=f"comma-separated MODEL:SIZE (models: {', '.join(MODELS)})")
    parser.add_argument("--sizes", default="64,224", help="input sizes for the draw table")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    print("StatelessRandomNormalV2 (Philox) values per counter block:", philox_layout())
    print_table(
        f"Noisy copies, {NSAMPLES} samples: median ms; x vs the fastest standard draw "
        "(NumPy 1-generator f32 ziggurat / TF stateless normal fetched)",
        ["input", "option", "chunk-indep", "ms", "x standard"],
        draw_table([int(s) for s in args.sizes.split(",")], args.repeats),
    )
    rows = []
    for run in args.runs.split(","):
        model, size = run.split(":")
        rows += smoothgrad_table(model, int(size), args.repeats)
    print_table(
        f"SmoothGrad-{NSAMPLES} step (noise + gradient run + mean of squares): median ms; "
        "/floor (target <= 1.15); /gradient",
        ["model", "input", "step", "ms", "/floor", "/gradient"],
        rows,
    )


if __name__ == "__main__":
    main()
