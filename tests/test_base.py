"""Validation at the boundary (base.py / backend.py): clear errors, nothing changed after them."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1 import GradientSaliency
from saliency_tf1.engine.batching import chunk_bounds
from saliency_tf1.engine.checks import check_array, check_positive_int

v1 = tf.compat.v1


def test_chunk_bounds_cover_range_once():
    assert list(chunk_bounds(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(chunk_bounds(3, 10)) == [(0, 3)]
    assert list(chunk_bounds(0, 5)) == []


def test_check_array_messages():
    with pytest.raises(ValueError, match=r"x_value: expected one input \(not batched\) of shape "
                                         r"\[\?, 4\], got shape \(2, 3\)"):
        check_array("x_value", np.zeros((2, 3)), (None, 4), batched=False)
    with pytest.raises(ValueError, match="x_batch: expected a non-empty batch"):
        check_array("x_batch", np.zeros((0, 4)), (4,), batched=True)
    with pytest.raises(TypeError, match="expected a real numeric array.*complex"):
        check_array("x_value", np.zeros(4, complex), (4,), batched=False)
    with pytest.raises(TypeError, match="dtype <U1"):
        check_array("x_value", np.array(["a", "b"]), (2,), batched=False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_array("x_value", np.array([1.0, np.inf]), (2,), batched=False)
    with pytest.raises(TypeError, match="batch_size: expected a positive integer, got 2.5"):
        check_positive_int("batch_size", 2.5)
    with pytest.raises(ValueError, match="nsamples: expected a positive integer"):
        check_positive_int("nsamples", 0)
    values = np.ones((2, 4), np.float32)
    assert check_array("x_batch", values, (4,), batched=True) is values  # no copy


@pytest.fixture
def model():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        w = v1.get_variable("w", [4, 10], initializer=v1.ones_initializer())
        logits = tf.matmul(x, w, name="logits")
        y = logits[:, 0]
        other = v1.placeholder(tf.float32, [None, 4], name="other")
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    yield graph, session, x, logits, y, other
    session.close()


def test_constructor_errors_leave_graph_unchanged(model):
    graph, session, x, logits, y, other = model
    with tf.Graph().as_default():
        foreign = v1.placeholder(tf.float32, [None], name="foreign")
    cases = [
        ((graph, session, logits, x), ValueError, r"y: expected shape \[None\].*got \(None, 10\)"),
        ((graph, session, foreign, x), ValueError, "y: tensor 'foreign:0' belongs to another"),
        ((graph, session, y, other), ValueError, "does not depend on x"),
        ((graph, session, y, "x"), TypeError, "x: expected a graph tf.Tensor"),
        ((graph, v1.Session(graph=tf.Graph()), y, x), ValueError,
         "session: the session runs another tf.Graph"),
        (("graph", session, y, x), TypeError, "graph: expected a tf.Graph"),
    ]
    # Build the y candidates above first, then count: failures must add nothing.
    before = len(graph.get_operations())
    for args, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            GradientSaliency(*args)
        assert len(graph.get_operations()) == before


def test_call_errors_leave_everything_unchanged(model):
    graph, session, x, _, y, _ = model
    method = GradientSaliency(graph, session, y, x)
    before = len(graph.get_operations())
    good = np.ones(4, np.float32)
    bad_inputs = [
        (np.ones(5), ValueError, r"x_value: expected one input \(not batched\) of shape \[4\]"),
        (np.ones((1, 4)), ValueError, "got shape \\(1, 4\\)"),
        (np.array(1.0), ValueError, "got shape \\(\\)"),
        (np.array([1.0, np.nan, 0, 0]), ValueError, "NaN or Inf"),
        (np.array([True, False, True, True]), None, None),  # bools are numbers: accepted
    ]
    for value, error, pattern in bad_inputs:
        copy = value.copy()
        if error is None:
            method.GetMask(value)
        else:
            with pytest.raises(error, match=pattern):
                method.GetMask(value)
        np.testing.assert_array_equal(value, copy)
    for kwargs, pattern in [({"nsamples": 0}, "nsamples: expected a positive integer"),
                            ({"stdev_spread": -1.0}, "stdev_spread: expected a finite number"),
                            ({"stdev_spread": float("nan")}, "stdev_spread"),
                            ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=pattern):
            method.GetSmoothedMask(good, **kwargs)
    with pytest.raises(ValueError, match="x_batch: expected a non-empty batch"):
        method.GetMaskBatch(np.zeros((0, 4)))
    with pytest.raises(TypeError, match="feed_dict: expected a dict or None"):
        method.GetMask(good, [1, 2])
    with pytest.raises(TypeError, match=r"GradientSaliency.GetMask(Batch)?: unexpected arguments"):
        method.GetMaskBatch(good[None], x_steps=3)
    assert len(graph.get_operations()) == before


def test_feed_from_another_graph_is_refused(model):
    graph, session, x, _, y, _ = model
    method = GradientSaliency(graph, session, y, x)
    with tf.Graph().as_default():
        stranger = v1.placeholder(tf.float32, [], name="stranger")
    with pytest.raises(ValueError, match="key tensor 'stranger:0' belongs to another tf.Graph"):
        method.GetMask(np.ones(4), {stranger: 1.0})


def test_non_differentiable_y_is_refused():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        y = tf.cast(tf.argmax(x, axis=1), tf.float32)
    with v1.Session(graph=graph) as session, pytest.raises(ValueError, match="not differentiable"):
        GradientSaliency(graph, session, y, x)


def test_integer_input_placeholder_is_refused():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.int32, [None, 3])
        y = tf.cast(tf.reduce_sum(x, 1), tf.float32)
    session = v1.Session(graph=graph)
    with pytest.raises(TypeError, match="x: expected a floating"):
        GradientSaliency(graph, session, y, x)
    session.close()


def test_graphs_are_freed_after_use():
    """The op cache lives on the graph: explaining a model must not keep its graph alive."""
    import gc
    import weakref

    def explain_once():
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(tf.float32, [None, 3])
            y = tf.reduce_sum(x**2, axis=1)
        with v1.Session(graph=graph) as session:
            GradientSaliency(graph, session, y, x).GetMask(np.ones(3, np.float32))
        return weakref.ref(graph)

    ref = explain_once()
    gc.collect()
    assert ref() is None
