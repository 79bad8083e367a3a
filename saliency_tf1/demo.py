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


def demo_arguments(name: str, image: np.ndarray) -> dict[str, Any]:
    """Arguments the demo adds to the catalogue's for method ``name`` on a small image.

    XRAI's segment dilation (5 pixels, chosen by its authors for 224x224
    images) would make every segment cover a third of a 32x32 image; the demo
    dilates its Felzenszwalb segments by one pixel instead. Every other method
    runs with the catalogue's arguments (:data:`saliency_tf1.methods.METHODS`).
    """
    if name == "xrai":
        from .methods.xrai import felzenszwalb_labels, labels_to_masks

        return {"segments": labels_to_masks(felzenszwalb_labels(image), dilation_radius=1)}
    return {}


def save_demo_figure(
    images: np.ndarray,
    rows: list[dict[str, np.ndarray]],
    regions: np.ndarray,
    path: str,
    *,
    row_titles: list[str],
    row_correct: list[bool],
    column_notes: dict[str, str] | None = None,
    per_band: int = 7,
    title: str | None = None,
) -> str:
    """Writes the demo's PNG: one row per image, input then one panel per method.

    Methods are laid out in bands of ``per_band`` columns (each band repeats
    the input), so the figure stays readable at page width. Each mask panel
    outlines the scored region; the input's title is the predicted and the
    true class (red when they differ); ``column_notes`` go under the method
    titles.
    """
    from .visualization import display_mask, normalize_image, pyplot

    plt = pyplot()
    names = list(rows[0])
    bands = [names[i:i + per_band] for i in range(0, len(names), per_band)]
    n_rows, n_cols = len(rows), max(len(b) for b in bands) + 1
    band_height, title_height = 1.75 * n_rows + 0.55, 0.45
    fig = plt.figure(figsize=(1.75 * n_cols, band_height * len(bands) + title_height))
    # A strip of its own for the title, so it never runs over the first band's titles.
    parts = np.atleast_1d(fig.subfigures(len(bands) + 1, 1, height_ratios=[title_height] + [
        band_height] * len(bands)))
    title_strip, subfigs = parts[0], parts[1:]
    for subfig, band in zip(subfigs, bands):
        axes = subfig.subplots(n_rows, n_cols, squeeze=False)
        for r, (image, masks) in enumerate(zip(images, rows)):
            ax = axes[r, 0]
            ax.imshow(normalize_image(image))
            ax.set_title(row_titles[r], fontsize=9,
                         color="black" if row_correct[r] else "tab:red")
            for c, name in enumerate(band, start=1):
                ax = axes[r, c]
                ax.imshow(display_mask(masks[name]), cmap="inferno", vmin=0, vmax=1)
                ax.contour(regions[r], levels=[0.5], colors="cyan", linewidths=0.7)
                if r == 0:
                    note = f"\n{column_notes[name]}" if column_notes else ""
                    ax.set_title(f"{name}{note}", fontsize=9)
        for ax in axes.ravel():
            ax.axis("off")
        subfig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88,
                               wspace=0.06, hspace=0.3)
    if title:
        title_strip.suptitle(title, fontsize=11, y=0.5, va="center")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pick_shown(labels: np.ndarray, n_show: int, n_classes: int) -> list[int]:
    """Indices of up to ``n_show`` images, one per class first (in class order), then the rest."""
    first = [int(np.flatnonzero(labels == k)[0]) for k in range(n_classes) if np.any(labels == k)]
    rest = [i for i in range(len(labels)) if i not in first]
    return (first + rest)[:n_show]


def format_table(scores: dict[str, dict[str, float]], *, chance: float | None = None,
                 markdown: bool = False) -> str:
    """The localisation table: one line per method (plain text, or a markdown table).

    ``chance``: the region's area, added as a last row (what a uniform mask
    scores, and the pointing game's expected score for a random maximum).
    """
    from .catalogue import METHODS

    rows = [(METHODS[n].title, f"{s['energy_inside']:.3f}", f"{s['pointing_game']:.2f}",
             f"{s['seconds_per_image']:.3f}") for n, s in scores.items()]
    if chance is not None:
        rows.append(("chance (region area)", f"{chance:.3f}", f"{chance:.2f}", ""))
    if markdown:
        lines = ["| method | energy inside | pointing game | s / image |",
                 "|---|---:|---:|---:|"]
        return "\n".join(lines + [f"| {' | '.join(r)} |" for r in rows])
    lines = [f"{'method':<22}{'energy inside':>14}{'pointing':>10}{'s / image':>11}"]
    lines += [f"{a:<22}{b:>14}{c:>10}{d:>11}".rstrip() for a, b, c, d in rows]
    return "\n".join(lines)


def run_demo(
    out_dir: str = "out/demo",
    *,
    seed: int = 0,
    n_train: int = 2000,
    n_explain: int = 16,
    n_show: int = 4,
    steps: int = 300,
    methods: list[str] | None = None,
    margin: int = 1,
    log: Any = print,
    progress: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Trains the demo CNN, explains held-out images with every method, scores and draws them.

    Generates :func:`~saliency_tf1.datasets.make_shapes` data from ``seed``,
    trains :func:`train_demo_model` for ``steps`` steps, explains the first
    ``n_explain`` held-out images for their predicted class with each method
    of ``methods`` (default: every available one) and scores each mask
    against the shape grown by ``margin`` pixels
    (:meth:`~saliency_tf1.datasets.ShapesDataset.informative`):
    ``energy_inside`` (share of the mask's mass there; chance is its area) and
    ``pointing_game`` (share of images whose mask maximum lies there). Logs the
    accuracy and the table, and writes to ``out_dir``:

    * ``demo_masks.png``: ``n_show`` images (one per class first) and their masks;
    * ``demo_masks.npz``: images, labels, predictions, regions and every mask;
    * ``demo_table.md``: the table in markdown;
    * with ``report``: the run layout of ``saliency-tf1 explain --manifest``
      (``manifest.jsonl``, ``masks/<name>.npz``; each image's localisation
      scores as its metrics) and its HTML report ``report/index.html``
      (:func:`saliency_tf1.visualization.report.write_report`).

    The scores and masks are the same for the same seed on one machine; the
    times are not. Returns ``{"accuracy", "chance", "scores", "figure",
    "table", "masks", "report"}`` (``scores[name]``: ``energy_inside``,
    ``pointing_game``, ``seconds_per_image``; ``report``: the report's path
    or None).
    """
    from tqdm.auto import tqdm

    from .catalogue import METHODS, available_methods, get_method
    from .metrics import energy_inside, pointing_game

    names = list(methods) if methods else available_methods()
    for name in names:
        get_method(name)
    if n_explain < 1 or n_show < 0 or steps < 0 or n_train < 1:
        raise ValueError(f"run_demo: expected n_explain >= 1, n_show >= 0, steps >= 0 and "
                         f"n_train >= 1, got {n_explain}, {n_show}, {steps}, {n_train}")
    t0 = time.perf_counter()
    n_test = max(200, n_explain)
    data = make_shapes(n_train + n_test, seed=seed)
    train, test = data.subset(slice(0, n_train)), data.subset(slice(n_train, None))
    model = train_demo_model(train, test, steps=steps, seed=seed)
    log(f"trained the demo CNN in {time.perf_counter() - t0:.1f} s: "
        f"held-out accuracy {model.accuracy:.1%} on {len(test)} images")

    explained = test.subset(slice(0, n_explain))
    informative = explained.informative(margin)
    predicted = predict(model, explained.images)
    logits = model.session.run(model.logits, {model.x: explained.images}).astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    masks: dict[str, list[np.ndarray]] = {}
    scores: dict[str, dict[str, float]] = {}
    per_image: dict[str, dict[str, list[float]]] = {}
    try:
        for name in tqdm(names, desc="methods", disable=not progress, leave=False):
            spec = METHODS[name]
            method = spec.build(model.graph, model.session, model.target.y, model.x, model.conv)
            masks[name], energies, hits, times = [], [], [], []
            for i, image in enumerate(explained.images):
                t1 = time.perf_counter()
                mask = spec.explain(method, image, model.target.feed(int(predicted[i])),
                                    **demo_arguments(name, image))
                times.append(time.perf_counter() - t1)
                masks[name].append(mask)
                energies.append(energy_inside(mask, informative[i]))
                hits.append(pointing_game(mask, informative[i]))
            scores[name] = {"energy_inside": float(np.mean(energies)),
                            "pointing_game": float(np.mean(hits)),
                            "seconds_per_image": sum(times) / n_explain}
            per_image[name] = {"energy_inside": energies, "pointing_game": hits,
                               "seconds": times}
    finally:
        model.close()

    chance = float(informative.mean())
    summary = [f"localisation on {n_explain} held-out images, each explained for its "
               "predicted class",
               f"region: the shape grown by {margin} px; chance: the region's area",
               "energy inside: share of the mask's mass in the region; pointing: share of "
               "images whose mask maximum is in it"]
    log("\n" + "\n".join(summary) + "\n" + format_table(scores, chance=chance))

    os.makedirs(out_dir, exist_ok=True)
    table = os.path.join(out_dir, "demo_table.md")
    with open(table, "w", encoding="utf-8") as f:
        f.write(f"Demo (seed {seed}, {steps} training steps, held-out accuracy "
                f"{model.accuracy:.1%}): {'; '.join(summary)}.\n\n"
                f"{format_table(scores, chance=chance, markdown=True)}\n")
    npz = os.path.join(out_dir, "demo_masks.npz")
    np.savez_compressed(npz, images=explained.images, labels=explained.labels,
                        predicted=predicted, regions=explained.regions,
                        informative=informative,
                        **{name: np.stack(m) for name, m in masks.items()})
    figure = None
    if n_show:
        shown = _pick_shown(explained.labels, n_show, len(explained.class_names))
        cls = explained.class_names
        figure = save_demo_figure(
            explained.images[shown],
            [{METHODS[n].title: masks[n][i] for n in names} for i in shown],
            informative[shown], os.path.join(out_dir, "demo_masks.png"),
            row_titles=[f"pred {cls[int(predicted[i])]}\ntrue {cls[int(explained.labels[i])]}"
                        for i in shown],
            row_correct=[bool(predicted[i] == explained.labels[i]) for i in shown],
            column_notes={METHODS[n].title: f"inside {scores[n]['energy_inside']:.2f}"
                          for n in names},
            title=f"saliency_tf1 demo: {len(names)} methods. Cyan: the shape (+{margin} px); "
                  f"inside: mean share of the mask in it over {n_explain} images",
        )
    index = None
    if report:
        index = _write_demo_run(out_dir, explained, predicted, probabilities, masks, per_image)
    log(f"\nwrote {', '.join(p for p in (figure, npz, table, index) if p)} "
        f"({time.perf_counter() - t0:.1f} s in all)")
    return {"accuracy": model.accuracy, "chance": chance, "scores": scores, "figure": figure,
            "table": table, "masks": npz, "report": index}


def _write_demo_run(out_dir: str, data: ShapesDataset, predicted: np.ndarray,
                    probabilities: np.ndarray, masks: dict[str, list[np.ndarray]],
                    per_image: dict[str, dict[str, list[float]]]) -> str:
    """Writes the demo's images as a run (manifest, one .npz each) and its HTML report."""
    from .streaming import Explanation, RunWriter
    from .visualization.report import write_report

    writer = RunWriter(out_dir)
    for i, image in enumerate(data.images):
        k = int(predicted[i])
        writer.write(Explanation(
            key=f"shapes-{i:03d} ({data.class_names[int(data.labels[i])]})", source=None,
            prediction=k, score=float(probabilities[i, k]), explained_class=k,
            explained_score=float(probabilities[i, k]),
            masks={name: m[i] for name, m in masks.items()},
            seconds={name: float(s["seconds"][i]) for name, s in per_image.items()},
            metrics={name: {"energy_inside": float(s["energy_inside"][i]),
                            "pointing_game": float(s["pointing_game"][i])}
                     for name, s in per_image.items()},
            image=np.round(np.clip(image, 0, 1) * 255).astype(np.uint8),
            label=data.class_names[k]))
    writer.write_manifest()
    return write_report(out_dir, title="saliency_tf1 demo: shapes, every method", progress=False)
