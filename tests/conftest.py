"""Shared fixtures: small real TF1 graphs and sessions.

* ``analytic``: ``f(x) = 5*x0 + x1**2 + sin(x2)`` per example (known gradient and integral).
* ``relu_cnn``: a small random ReLU CNN on 16x16x3 inputs, fixed seed, conv layer exposed.
* ``demo_model``: the demo CNN trained for a few seconds on the shapes dataset (session scope).
* ``counting``: wraps a real session to count ``session.run`` calls.

Each graph is private to its test (``tf.Graph()`` + ``tf.compat.v1.Session``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1


@dataclass
class Model:
    graph: Any
    session: Any
    x: Any
    y: Any
    logits: Any = None
    conv: Any = None
    extra: dict | None = None

    def op_count(self) -> int:
        return len(self.graph.get_operations())


@pytest.fixture
def analytic():
    """``y = 5*x0 + x1**2 + sin(x2)`` for x of shape [None, 3]; gradient ``[5, 2 x1, cos x2]``."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        y = 5 * x[:, 0] + x[:, 1] ** 2 + tf.sin(x[:, 2])
    with v1.Session(graph=graph) as session:
        yield Model(graph, session, x, y)


def make_relu_cnn(size: int = 16, channels: int = 3, classes: int = 5, seed: int = 0) -> Model:
    """A random ReLU CNN (conv-relu-conv-relu-GAP-dense) with y = logits[:, 0]."""
    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, size, size, channels], name="x")
        w1 = tf.constant(rng.normal(0, 0.4, (3, 3, channels, 8)), tf.float32)
        w2 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 8)), tf.float32)
        wd = tf.constant(rng.normal(0, 0.5, (8, classes)), tf.float32)
        h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + 0.05)
        conv = tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME") - 0.02)
        logits = tf.matmul(tf.reduce_mean(conv, [1, 2]), wd, name="logits")
        y = logits[:, 0]
    session = v1.Session(graph=graph)
    return Model(graph, session, x, y, logits=logits, conv=conv)


@pytest.fixture
def relu_cnn():
    model = make_relu_cnn()
    yield model
    model.session.close()


@pytest.fixture(scope="session")
def demo_model():
    """The demo CNN (saliency_tf1.demo) trained briefly; shared, treat as read-only."""
    from saliency_tf1.datasets import make_shapes
    from saliency_tf1.demo import train_demo_model

    data = make_shapes(1200, seed=1)
    model = train_demo_model(data.subset(slice(0, 1000)), data.subset(slice(1000, None)),
                             steps=200, seed=1)
    model.data = data.subset(slice(1000, None))
    yield model
    model.close()


@pytest.fixture
def counting():
    """``counting(session)`` returns a mock that wraps the real session and counts ``run``."""

    def wrap(session):
        spy = mock.MagicMock(wraps=session)
        spy.graph = session.graph
        return spy

    return wrap


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
