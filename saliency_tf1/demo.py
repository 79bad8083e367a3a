"""The embedded default: a small CNN trained on the fly on the shapes dataset, explained.

``saliency-tf1 demo`` (the README's first command) runs :func:`run_demo`. The
model and data builders are public so that tests, notebooks and benchmarks
reuse the same model.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .datasets import ShapesDataset, make_shapes


@dataclass
class DemoModel:
    """A trained graph-mode CNN and the tensors to explain it with.

    Attributes:
      graph, session: the model's graph and a session holding its weights.
      x: input placeholder ``[None, size, size, 3]``.
      logits: ``[None, classes]``.
      conv: the last convolution's activations ``[None, h, w, c]`` (Grad-CAM).
      target: a :class:`~saliency_tf1.ClassTarget` over ``logits``.
      labels: label placeholder used for training.
      train_op, loss: the training ops.
      accuracy: held-out accuracy after training.
    """

    graph: Any
    session: Any
    x: Any
    logits: Any
    conv: Any
    target: Any
    labels: Any
    train_op: Any
    loss: Any
    accuracy: float = float("nan")

    def close(self) -> None:
        self.session.close()


def build_cnn(x: Any, num_classes: int, seed: int = 0, widths=(16, 32, 64)) -> dict[str, Any]:
    """A small ReLU CNN in plain TF1 ops: 3x (conv 3x3 + ReLU [+ 2x2 max-pool]), GAP, dense.

    Returns ``{"logits": ..., "conv": last conv activations, "variables": [...]}``.
    Call inside the graph of ``x``.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    init = v1.initializers.he_normal(seed=seed)
    h, variables = x, []
    in_ch = x.shape.as_list()[-1]
    for i, width in enumerate(widths):
        with v1.variable_scope(f"conv{i}"):
            w = v1.get_variable("w", [3, 3, in_ch, width], initializer=init)
            b = v1.get_variable("b", [width], initializer=v1.zeros_initializer())
            variables += [w, b]
            h = tf.nn.relu(tf.nn.conv2d(h, w, strides=1, padding="SAME") + b)
            if i < len(widths) - 1:
                h = tf.nn.max_pool2d(h, 2, 2, padding="SAME")
            in_ch = width
    conv = h
    pooled = tf.reduce_mean(conv, axis=[1, 2])
    with v1.variable_scope("dense"):
        w = v1.get_variable("w", [in_ch, num_classes],
                            initializer=v1.initializers.glorot_uniform(seed=seed + 1))
        b = v1.get_variable("b", [num_classes], initializer=v1.zeros_initializer())
        variables += [w, b]
    logits = tf.matmul(pooled, w) + b
    return {"logits": logits, "conv": conv, "variables": variables}


def train_demo_model(
    train: ShapesDataset,
    test: ShapesDataset | None = None,
    *,
    steps: int = 300,
    batch: int = 64,
    seed: int = 0,
    learning_rate: float = 3e-3,
) -> DemoModel:
    """Builds :func:`build_cnn` in a new graph and trains it with Adam for ``steps`` steps.

    Deterministic for a seed on one machine (op-level seeds, one thread pool).
    """
    import tensorflow as tf

    from .target import ClassTarget

    v1 = tf.compat.v1
    size = train.images.shape[1]
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        x = v1.placeholder(tf.float32, [None, size, size, 3], name="x")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        net = build_cnn(x, len(train.class_names), seed=seed)
        logits = tf.identity(net["logits"], name="logits")
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train_op = v1.train.AdamOptimizer(learning_rate).minimize(loss)
        init = v1.global_variables_initializer()
        target = ClassTarget(logits)
    session = v1.Session(graph=graph)
    session.run(init)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(train), batch)
        session.run(train_op, {x: train.images[idx], labels: train.labels[idx]})
    model = DemoModel(graph, session, x, logits, net["conv"], target, labels, train_op, loss)
    if test is not None:
        model.accuracy = float(np.mean(predict(model, test.images) == test.labels))
    return model


def predict(model: DemoModel, images: np.ndarray) -> np.ndarray:
    """The model's predicted classes for a batch of images."""
    return model.session.run(model.target.predictions, {model.x: images})


def run_demo(
    out_dir: str = "out/demo",
    *,
    seed: int = 0,
    n_train: int = 2000,
    n_explain: int = 4,
    steps: int = 300,
    methods: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Trains the demo CNN, explains held-out images with every method, writes figures.

    Prints the model's accuracy and, per method, the localisation score (mean
    fraction of the mask's mass on the shape; chance is the shape's area) and
    the time per image. Returns the numbers as a dict.
    """
    from .methods import METHODS, available_methods
    from .metrics import energy_inside, pointing_game
    from .visualization import save_grid

    t0 = time.perf_counter()
    data = make_shapes(n_train + 200, seed=seed)
    train, test = data.subset(slice(0, n_train)), data.subset(slice(n_train, None))
    model = train_demo_model(train, test, steps=steps, seed=seed)
    log(f"trained the demo CNN in {time.perf_counter() - t0:.1f} s: "
        f"held-out accuracy {model.accuracy:.1%} on {len(test)} images")

    names = methods or available_methods()
    shown = test.subset(slice(0, n_explain))
    predicted = predict(model, shown.images)
    rows: list[dict[str, np.ndarray]] = [{} for _ in range(n_explain)]
    scores: dict[str, dict[str, float]] = {}
    for name in names:
        spec = METHODS[name]
        method = spec.build(model.graph, model.session, model.target.y, model.x, model.conv)
        energies, hits, t1 = [], [], time.perf_counter()
        for i in range(n_explain):
            feed = model.target.feed(int(predicted[i]))
            mask = spec.explain(method, shown.images[i], feed)
            rows[i][spec.title] = mask
            energies.append(energy_inside(mask, shown.regions[i]))
            hits.append(pointing_game(mask, shown.regions[i]))
        per_image = (time.perf_counter() - t1) / n_explain
        scores[name] = {"energy_inside": float(np.mean(energies)),
                        "pointing_game": float(np.mean(hits)), "seconds_per_image": per_image}

    chance = float(shown.regions.mean())
    log(f"\nlocalisation on {n_explain} held-out images (chance = shape area = {chance:.2f})")
    log(f"{'method':<22}{'energy inside':>14}{'pointing':>10}{'s / image':>11}")
    for name, s in scores.items():
        log(f"{METHODS[name].title:<22}{s['energy_inside']:>14.3f}{s['pointing_game']:>10.2f}"
            f"{s['seconds_per_image']:>11.3f}")
    titles = [f"{shown.class_names[int(p)]} (true {shown.class_names[int(t)]})"
              for p, t in zip(predicted, shown.labels)]
    figure = save_grid(shown.images, rows, os.path.join(out_dir, "demo_masks.png"),
                       row_titles=titles, title="saliency_tf1 demo")
    np.savez_compressed(os.path.join(out_dir, "demo_masks.npz"),
                        images=shown.images, regions=shown.regions,
                        **{f"{name}": np.stack([r[METHODS[name].title] for r in rows])
                           for name in names})
    log(f"\nwrote {figure} ({time.perf_counter() - t0:.1f} s in all)")
    model.close()
    return {"accuracy": model.accuracy, "chance": chance, "scores": scores, "figure": figure}
