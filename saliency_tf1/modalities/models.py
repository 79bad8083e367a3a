"""Small TF1 graph-style models for the generated data sets beyond images, trained in seconds.

Each ``train_*`` function builds its model in a new ``tf.Graph``, trains it
with Adam on a data set of :mod:`saliency_tf1.datasets` and returns the
graph, a session holding the weights, the tensors to explain and a
:class:`~saliency_tf1.ClassTarget` over the logits. They are written the way
legacy TF1 code is (placeholders, ``tf.compat.v1.get_variable``, plain ops),
so the notebook, the tests and the README explain the same models a user
would have:

* :func:`train_text_model`: a one-layer transformer encoder as BERT builds it
  (token + position embeddings, LayerNorm, masked multi-head self-attention,
  GELU feed-forward, the ``[CLS]`` output through a tanh pooler);
* :func:`train_tabular_model`: a two-layer ReLU MLP;
* :func:`train_signal_model`: a 1-D CNN over ``[time, channels]``;
* :func:`train_image_metadata_model`: a two-input model, a CNN on the image
  and the metadata row joined in a dense layer (smooth activations, so
  Integrated Gradients' quadrature converges fast).

Training is deterministic for a seed on one machine (op-level seeds, batches
from a seeded NumPy generator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..datasets import ImageMetadataDataset, SignalDataset, TabularDataset, TextDataset


@dataclass
class SmallModel:
    """A trained graph-mode model.

    Attributes:
      graph, session: the model's graph and a session holding its weights.
      logits: ``[None, classes]``.
      target: a :class:`~saliency_tf1.ClassTarget` over ``logits``
        (``target.y`` is the tensor to explain, its class fed per input).
      accuracy: accuracy on the held-out set given to the trainer (NaN if none).
    """

    graph: Any
    session: Any
    logits: Any
    target: Any
    accuracy: float

    def close(self) -> None:
        self.session.close()


@dataclass
class TextModel(SmallModel):
    """The transformer text classifier.

    Attributes:
      ids: ``[None, length]`` int32 token ids placeholder.
      mask: ``[None, length]`` int32 attention mask placeholder (1 = real token).
      token_embeddings: ``[None, length, dim]``, the word-embedding lookup
        (BERT's ``embedding_lookup`` output, before positions are added).
      embeddings: ``[None, length, dim]``, LayerNorm(token + position
        embeddings): the encoder's input (BERT's ``embedding_output``).
    """

    ids: Any = None
    mask: Any = None
    token_embeddings: Any = None
    embeddings: Any = None


@dataclass
class TabularModel(SmallModel):
    """The MLP; ``x``: ``[None, features]`` placeholder."""

    x: Any = None


@dataclass
class SignalModel(SmallModel):
    """The 1-D CNN; ``x``: ``[None, length, channels]``; ``conv``: the last conv
    layer's activations ``[None, length / 2, filters]`` (for Grad-CAM)."""

    x: Any = None
    conv: Any = None


@dataclass
class ImageMetadataModel(SmallModel):
    """The two-input model; ``x_image``: ``[None, size, size, 1]``, ``x_meta``:
    ``[None, M]``; ``conv``: the image branch's last conv layer."""

    x_image: Any = None
    x_meta: Any = None
    conv: Any = None


# ---------------------------------------------------------------------------
# Layers, in plain TF1 ops


def _v1() -> Any:
    import tensorflow as tf

    return tf, tf.compat.v1


def _dense(h: Any, units: int, name: str, seed: int, activation: Any = None) -> Any:
    """``h @ W + b`` over the last axis of ``h`` (any rank)."""
    tf, v1 = _v1()
    with v1.variable_scope(name):
        w = v1.get_variable("w", [h.shape.as_list()[-1], units],
                            initializer=v1.initializers.glorot_uniform(seed=seed))
        b = v1.get_variable("b", [units], initializer=v1.zeros_initializer())
    out = tf.tensordot(h, w, axes=[[h.shape.rank - 1], [0]]) + b if h.shape.rank > 2 else (
        tf.matmul(h, w) + b)
    return out if activation is None else activation(out)


def _layer_norm(h: Any, name: str, epsilon: float = 1e-6) -> Any:
    """LayerNorm over the last axis with a learned scale and shift (as BERT's)."""
    tf, v1 = _v1()
    dim = h.shape.as_list()[-1]
    with v1.variable_scope(name):
        gamma = v1.get_variable("gamma", [dim], initializer=v1.ones_initializer())
        beta = v1.get_variable("beta", [dim], initializer=v1.zeros_initializer())
    mean, var = tf.nn.moments(h, axes=[-1], keepdims=True)
    return (h - mean) * tf.math.rsqrt(var + epsilon) * gamma + beta


def _conv(h: Any, size: int, filters: int, name: str, seed: int, activation: Any) -> Any:
    """A 'SAME' convolution (1-D for ``[n, t, c]``, 2-D for ``[n, h, w, c]``) + bias."""
    tf, v1 = _v1()
    in_ch = h.shape.as_list()[-1]
    shape = ([size] if h.shape.rank == 3 else [size, size]) + [in_ch, filters]
    with v1.variable_scope(name):
        w = v1.get_variable("w", shape, initializer=v1.initializers.he_normal(seed=seed))
        b = v1.get_variable("b", [filters], initializer=v1.zeros_initializer())
    conv = tf.nn.conv1d if h.shape.rank == 3 else tf.nn.conv2d
    return activation(conv(h, w, 1, "SAME") + b)


def _fit(graph: Any, session: Any, loss: Any, batch_feed: Callable[[np.ndarray], dict],
         n: int, steps: int, batch: int, seed: int, learning_rate: float) -> None:
    """Adam on ``loss`` for ``steps`` steps of ``batch`` random rows (``batch_feed(idx)``)."""
    tf, v1 = _v1()
    with graph.as_default():
        train_op = v1.train.AdamOptimizer(learning_rate).minimize(loss)
        session.run(v1.global_variables_initializer())
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        session.run(train_op, batch_feed(rng.integers(0, n, batch)))


def _loss(logits: Any, labels: Any) -> Any:
    tf, _ = _v1()
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _accuracy(session: Any, predictions: Any, feed: dict, labels: np.ndarray | None) -> float:
    if labels is None:
        return float("nan")
    return float(np.mean(session.run(predictions, feed) == labels))


# ---------------------------------------------------------------------------
# The models


def build_text_encoder(ids: Any, mask: Any, vocab_size: int, num_classes: int, *,
                       dim: int = 32, heads: int = 2, ffn: int = 64,
                       seed: int = 0) -> dict[str, Any]:
    """A one-layer BERT-style encoder classifier; call inside the graph of ``ids``.

    ``ids``, ``mask``: ``[None, length]`` int tensors. Returns
    ``{"token_embeddings", "embeddings", "logits"}``.
    """
    tf, v1 = _v1()
    length = ids.shape.as_list()[1]
    init = v1.initializers.truncated_normal(stddev=0.1, seed=seed)
    with v1.variable_scope("embeddings"):
        word = v1.get_variable("word_embeddings", [vocab_size, dim], initializer=init)
        position = v1.get_variable("position_embeddings", [length, dim], initializer=init)
    token_embeddings = tf.gather(word, ids, name="token_embeddings")
    embeddings = tf.identity(_layer_norm(token_embeddings + position, "embeddings/LayerNorm"),
                             name="embedding_output")

    head = dim // heads
    q, k, v = (_dense(embeddings, dim, f"attention/{n}", seed + i)
               for i, n in enumerate(("query", "key", "value")))

    def split(t):  # [n, T, dim] -> [n, heads, T, head]
        return tf.transpose(tf.reshape(t, [-1, length, heads, head]), [0, 2, 1, 3])

    scores = tf.matmul(split(q), split(k), transpose_b=True) / np.sqrt(head)
    scores += (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * -10000.0
    context = tf.matmul(tf.nn.softmax(scores), split(v))
    context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, length, dim])
    h = _layer_norm(embeddings + _dense(context, dim, "attention/output", seed + 3),
                    "attention/LayerNorm")
    f = _dense(_dense(h, ffn, "intermediate", seed + 4, tf.nn.gelu), dim, "output", seed + 5)
    h = _layer_norm(h + f, "output/LayerNorm")
    pooled = _dense(h[:, 0], dim, "pooler", seed + 6, tf.tanh)
    logits = tf.identity(_dense(pooled, num_classes, "classifier", seed + 7), name="logits")
    return {"token_embeddings": token_embeddings, "embeddings": embeddings, "logits": logits}


def train_text_model(train: TextDataset, test: TextDataset | None = None, *,
                     steps: int = 250, batch: int = 64, seed: int = 0,
                     learning_rate: float = 3e-3) -> TextModel:
    """Builds :func:`build_text_encoder` in a new graph and trains it on ``train``."""
    tf, v1 = _v1()
    from ..target import ClassTarget

    graph = tf.Graph()
    length = train.ids.shape[1]
    with graph.as_default():
        v1.set_random_seed(seed)
        ids = v1.placeholder(tf.int32, [None, length], name="input_ids")
        mask = v1.placeholder(tf.int32, [None, length], name="input_mask")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        net = build_text_encoder(ids, mask, len(train.vocab), len(train.class_names),
                                 seed=seed)
        loss = _loss(net["logits"], labels)
        target = ClassTarget(net["logits"])
    session = v1.Session(graph=graph)
    _fit(graph, session, loss, lambda i: {ids: train.ids[i], mask: train.attention_mask[i],
                                          labels: train.labels[i]},
         len(train), steps, batch, seed, learning_rate)
    accuracy = _accuracy(session, target.predictions,
                         {} if test is None else {ids: test.ids, mask: test.attention_mask},
                         None if test is None else test.labels)
    return TextModel(graph, session, net["logits"], target, accuracy, ids, mask,
                     net["token_embeddings"], net["embeddings"])


def train_tabular_model(train: TabularDataset, test: TabularDataset | None = None, *,
                        steps: int = 300, batch: int = 64, seed: int = 0, hidden: int = 32,
                        learning_rate: float = 1e-2) -> TabularModel:
    """A ReLU MLP (``features -> hidden -> hidden -> classes``) trained on ``train``."""
    tf, v1 = _v1()
    from ..target import ClassTarget

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        x = v1.placeholder(tf.float32, [None, train.features.shape[1]], name="features")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        h = _dense(x, hidden, "dense0", seed, tf.nn.relu)
        h = _dense(h, hidden, "dense1", seed + 1, tf.nn.relu)
        logits = tf.identity(_dense(h, len(train.class_names), "logits", seed + 2),
                             name="logits")
        loss = _loss(logits, labels)
        target = ClassTarget(logits)
    session = v1.Session(graph=graph)
    _fit(graph, session, loss, lambda i: {x: train.features[i], labels: train.labels[i]},
         len(train), steps, batch, seed, learning_rate)
    accuracy = _accuracy(session, target.predictions,
                         {} if test is None else {x: test.features},
                         None if test is None else test.labels)
    return TabularModel(graph, session, logits, target, accuracy, x)


def train_signal_model(train: SignalDataset, test: SignalDataset | None = None, *,
                       steps: int = 300, batch: int = 64, seed: int = 0,
                       learning_rate: float = 3e-3) -> SignalModel:
    """A 1-D CNN: conv(7, 16) + ReLU, max-pool 2, conv(5, 32) + ReLU, mean over time, dense."""
    tf, v1 = _v1()
    from ..target import ClassTarget

    graph = tf.Graph()
    _, length, channels = train.signals.shape
    with graph.as_default():
        v1.set_random_seed(seed)
        x = v1.placeholder(tf.float32, [None, length, channels], name="signals")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        h = _conv(x, 7, 16, "conv0", seed, tf.nn.relu)
        h = tf.nn.max_pool1d(h, 2, 2, "SAME")
        conv = _conv(h, 5, 32, "conv1", seed + 1, tf.nn.relu)
        logits = tf.identity(_dense(tf.reduce_mean(conv, axis=1), len(train.class_names),
                                    "logits", seed + 2), name="logits")
        loss = _loss(logits, labels)
        target = ClassTarget(logits)
    session = v1.Session(graph=graph)
    _fit(graph, session, loss, lambda i: {x: train.signals[i], labels: train.labels[i]},
         len(train), steps, batch, seed, learning_rate)
    accuracy = _accuracy(session, target.predictions,
                         {} if test is None else {x: test.signals},
                         None if test is None else test.labels)
    return SignalModel(graph, session, logits, target, accuracy, x, conv)


def build_image_metadata_model(x_image: Any, x_meta: Any, num_classes: int, *,
                               seed: int = 0) -> dict[str, Any]:
    """The two-input network; call inside the graph of ``x_image``/``x_meta``.

    Image branch: two 3x3 convolutions (8 and 16 filters, softplus), mean over
    space. The 16 image features and the metadata row are joined in a dense
    softplus layer of 32 units, then a dense layer to the logits. Returns
    ``{"logits", "conv"}``.
    """
    tf, _ = _v1()
    h = _conv(x_image, 3, 8, "image/conv0", seed, tf.nn.softplus)
    conv = _conv(h, 3, 16, "image/conv1", seed + 1, tf.nn.softplus)
    joined = tf.concat([tf.reduce_mean(conv, axis=[1, 2]), x_meta], axis=1)
    h = _dense(joined, 32, "joint", seed + 2, tf.nn.softplus)
    logits = tf.identity(_dense(h, num_classes, "logits", seed + 3), name="logits")
    return {"logits": logits, "conv": conv}


def train_image_metadata_model(train: ImageMetadataDataset,
                               test: ImageMetadataDataset | None = None, *,
                               steps: int = 400, batch: int = 64, seed: int = 0,
                               learning_rate: float = 1e-2) -> ImageMetadataModel:
    """Builds :func:`build_image_metadata_model` in a new graph and trains it on ``train``."""
    tf, v1 = _v1()
    from ..target import ClassTarget

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        x_image = v1.placeholder(tf.float32, [None, *train.images.shape[1:]], name="image")
        x_meta = v1.placeholder(tf.float32, [None, train.metadata.shape[1]], name="metadata")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        net = build_image_metadata_model(x_image, x_meta, len(train.class_names), seed=seed)
        loss = _loss(net["logits"], labels)
        target = ClassTarget(net["logits"])
    session = v1.Session(graph=graph)
    _fit(graph, session, loss,
         lambda i: {x_image: train.images[i], x_meta: train.metadata[i], labels: train.labels[i]},
         len(train), steps, batch, seed, learning_rate)
    accuracy = _accuracy(session, target.predictions,
                         {} if test is None else {x_image: test.images, x_meta: test.metadata},
                         None if test is None else test.labels)
    return ImageMetadataModel(graph, session, net["logits"], target, accuracy, x_image, x_meta,
                              net["conv"])
