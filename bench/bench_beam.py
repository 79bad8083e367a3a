"""Images per second of a run over image files: in this process vs Apache Beam's DirectRunner.

The same inputs (N generated PNGs), the same model (bench/common.py's ReLU CNN,
frozen) and the same methods, end to end (model load, reading the images,
the masks, writing one .npz per image and the manifest), each way:

* per-image loop: one ``GetMask`` per image and method, as a script would write it;
* in-process run: :func:`saliency_tf1.streaming.explain_to_dir` (batched, no Beam);
* DirectRunner, in memory: :func:`saliency_tf1.beam.explain_with_beam`, one worker;
* DirectRunner, multi_processing with W workers (each loads the model in ``setup``).

Each is timed ``--repeats`` times round-robin into fresh folders, on all the
images and on one (its start-up: model load, pipeline, worker processes); the
table gives the median images per second, the ratio to the in-process run,
the start-up time and the rate after it. Run: ``python bench/bench_beam.py
[--images 200] [--size 64] [--model relu_cnn|light] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import MODELS, print_table, v1  # noqa: E402

from saliency_tf1.catalogue import METHODS as CATALOGUE  # noqa: E402
from saliency_tf1.streaming import (  # noqa: E402
    ModelSpec,
    RunWriter,
    explain_to_dir,
    load_image,
    to_model_input,
)


def export(root: str, model: str, size: int) -> str:
    m = MODELS[model](size)
    frozen = v1.graph_util.convert_variables_to_constants(
        m.session, m.graph.as_graph_def(), [m.logits.op.name])
    m.close()
    path = os.path.join(root, "model.pb")
    with open(path, "wb") as f:
        f.write(frozen.SerializeToString())
    return path


def write_images(root: str, n: int, size: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "images"))
    paths = []
    for i in range(n):
        path = os.path.join(root, "images", f"img{i:04d}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def per_image_loop(spec: ModelSpec, methods: dict, paths: list[str], out: str) -> None:
    """What a script without batching does: one GetMask per image and method."""
    loaded = spec.load()
    try:
        built = {n: CATALOGUE[n].build(loaded.model.graph, loaded.model.session,
                                       loaded.target.y, loaded.x, loaded.conv)
                 for n in methods}
        os.makedirs(out, exist_ok=True)
        h, w, c = loaded.shape
        for path in paths:
            x = to_model_input(load_image(path, (h, w), c), dtype=loaded.dtype)
            cls = int(np.argmax(loaded.probabilities(x[None])[0]))
            masks = {n: CATALOGUE[n].explain(built[n], x, loaded.target.feed(cls), **args)
                     for n, args in methods.items()}
            name = os.path.splitext(os.path.basename(path))[0]
            np.savez(os.path.join(out, f"{name}.npz"), **masks)
    finally:
        loaded.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", choices=sorted(MODELS), default="relu_cnn")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        from saliency_tf1.beam import explain_with_beam
    except ImportError as err:
        sys.exit(f"bench_beam: {err}")
    import logging

    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    root = tempfile.mkdtemp(prefix="bench_beam-")
    try:
        model = export(root, args.model, args.size)
        paths = write_images(root, args.images, args.size)
        spec = ModelSpec(model, "x", "logits")
        methods = {"gradient": {}, "ig": {"x_steps": 16}}
        ways = {
            "per-image loop (GetMask)": lambda ps, out: per_image_loop(spec, methods, ps, out),
            "in-process run (batched)": lambda ps, out: explain_to_dir(
                ps, spec, methods, out, batch_size=args.batch_size, progress=False),
            "DirectRunner, in memory": lambda ps, out: explain_with_beam(
                ps, spec, methods, out, batch_size=args.batch_size),
            f"DirectRunner, multi_processing x{args.workers}": lambda ps, out: explain_with_beam(
                ps, spec, methods, out, batch_size=args.batch_size,
                options=[f"--direct_num_workers={args.workers}",
                         "--direct_running_mode=multi_processing"]),
        }
        # Each way on all the images and on one (its start-up: model load, pipeline, workers).
        times: dict[tuple[str, int], list[float]] = {}
        for r in range(args.repeats):
            for name, run in ways.items():
                for subset in (paths, paths[:1]):
                    out = os.path.join(root, f"out-{len(times)}-{r}-{len(subset)}")
                    start = time.perf_counter()
                    run(subset, out)
                    times.setdefault((name, len(subset)), []).append(time.perf_counter() - start)
                    if name != "per-image loop (GetMask)":
                        assert len(RunWriter(out).records()) == len(subset), name
                    shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    medians = {key: statistics.median(t) for key, t in times.items()}
    n = len(paths)
    base = medians[("in-process run (batched)", n)]
    rows = []
    for name in ways:
        total, one = medians[(name, n)], medians[(name, 1)]
        rows.append([name, total, n / total, base / total, one,
                     (n - 1) / max(total - one, 1e-9)])
    print_table(
        f"{n} PNGs of {args.size}x{args.size}, {args.model} CNN, gradient + IG (16 steps), "
        f"batch {args.batch_size}, end to end (model load, read, explain, write .npz and "
        f"manifest); median of {args.repeats}; {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end",
        ["run", "seconds", "images / s", "vs in-process run", "start-up s (1 image)",
         "images / s after start-up"], rows)


if __name__ == "__main__":
    main()
