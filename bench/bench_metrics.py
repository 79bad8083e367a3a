"""Every method of the catalogue, scored by every metric, on the demo model.

Trains the demo CNN on the shapes dataset (seconds), explains held-out images
the model classifies correctly with each method of
``saliency_tf1.methods.available_methods()``, and prints ONE table:

* SIC / AIC AUC: area under the median Softmax / Accuracy Information Curve
  (Kapishnikov et al., 2019), higher is better;
* deletion AUC (to black, lower is better) and insertion AUC (from a blurred
  copy, higher is better) of the class probability (Petsiuk et al., 2018);
* rand. sim.: mean Spearman rank correlation of |mask| before and after
  re-drawing every layer of the model (cascading randomisation, Adebayo et
  al., 2018): lower means the mask depends more on what the model learned;
* energy / pointing: fraction of |mask| on the shape and pointing-game hit
  rate (the shapes' area is the chance level of energy);
* s / image: seconds per mask (this run, this machine).

Two reference rows bracket the numbers: a uniform random mask and the true
shape region. Run: ``python bench/bench_metrics.py [--images 16]
[--rand-images 8] [--methods gradient,ig]``; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import print_table  # noqa: E402

from saliency_tf1.catalogue import METHODS, available_methods  # noqa: E402
from saliency_tf1.datasets import make_shapes  # noqa: E402
from saliency_tf1.demo import predict, train_demo_model  # noqa: E402
from saliency_tf1.metrics import (  # noqa: E402
    deletion,
    insertion,
    localization,
    pic_curves,
    randomization_check,
    tf1_model_function,
)

HEADER = ["method", "SIC AUC", "AIC AUC", "deletion AUC", "insertion AUC", "rand. sim.",
          "energy", "pointing", "s / image"]


def score(model_fn, images, masks, regions, args) -> list:
    """The metric columns (all but randomisation and time) for one set of masks."""
    pic = pic_curves(model_fn, images, masks, seed=args.seed, batch_size=args.batch_size,
                     progress=args.progress)
    aggregate = []
    for kind in ("sic", "aic"):
        try:
            aggregate.append(pic[kind].aggregate().auc)
        except ValueError:       # no image with a defined curve
            aggregate.append(float("nan"))
    d = deletion(model_fn, images, masks, steps=args.steps, baseline=0.0,
                 batch_size=args.batch_size, progress=args.progress)
    i = insertion(model_fn, images, masks, steps=args.steps, baseline="blur",
                  batch_size=args.batch_size, progress=args.progress)
    loc = localization(masks, regions)
    return [*aggregate, d.mean_auc, i.mean_auc, float(loc["energy_inside"].mean()),
            float(loc["pointing_game"].mean())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images scored per method")
    parser.add_argument("--rand-images", type=int, default=6,
                        help="images of the randomisation check")
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")
    parser.add_argument("--methods", default="", help="comma-separated names (default: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = make_shapes(2400, seed=args.seed)
    train, test = data.subset(slice(0, 2000)), data.subset(slice(2000, None))
    m = train_demo_model(train, test, steps=300, seed=args.seed)
    correct = np.flatnonzero(predict(m, test.images) == test.labels)[: args.images]
    shown = test.subset(correct)
    images, labels, regions = shown.images, shown.labels, shown.regions
    model_fn = tf1_model_function(m.graph, m.session, m.logits, m.x)
    print(f"demo CNN: held-out accuracy {m.accuracy:.1%}; scoring {len(images)} correctly "
          f"classified images (trained in {time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    rows = []
    rng = np.random.default_rng(args.seed)
    noise = rng.uniform(size=regions.shape)
    truth = regions + 1e-3 * noise           # the shape, ties broken at random
    for title, masks in (("(random mask)", noise), ("(true region)", truth)):
        cols = score(model_fn, images, masks, regions, args)
        rows.append([title, *cols[:4], "-", *cols[4:], "-"])

    names = [n for n in args.methods.split(",") if n] or available_methods()
    for name in names:
        spec = METHODS[name]
        t1 = time.perf_counter()
        method = spec.build(m.graph, m.session, m.target.y, m.x, m.conv)

        def explain(xs, ys, spec=spec, method=method):
            return np.stack([spec.explain(method, x, m.target.feed(int(y)))
                             for x, y in zip(xs, ys)])

        explain(images[:1], labels[:1])                       # warm-up, not timed
        start = time.perf_counter()
        masks = explain(images, labels)
        per_image = (time.perf_counter() - start) / len(images)
        cols = score(model_fn, images, masks, regions, args)
        k = args.rand_images
        rand = randomization_check(lambda xs, k=k: explain(xs, labels[:k]), images[:k],
                                   m.session, measures=("spearman_abs",), seed=args.seed,
                                   progress=args.progress)
        similarity = float(rand.mean("spearman_abs")[-1])
        rows.append([spec.title, *cols[:4], similarity, *cols[4:], per_image])
        print(f"  {name}: {time.perf_counter() - t1:.1f} s", file=sys.stderr)

    chance = float(regions.mean())
    print_table(
        f"Metrics on the demo model ({len(images)} images; {args.steps} deletion/insertion "
        f"steps; randomisation on {args.rand_images}; energy chance = shape area = "
        f"{chance:.2f}). Higher is better except deletion AUC and rand. sim.",
        HEADER, rows)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    m.close()


if __name__ == "__main__":
    main()
