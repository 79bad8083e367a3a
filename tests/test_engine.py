"""engine: the session runner's checks, one construction path, and plans made before work."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

import saliency_tf1 as saliency
from saliency_tf1.catalogue import METHODS
from saliency_tf1.engine.backend import TF1Backend, differentiable_path
from saliency_tf1.engine.session import SessionRunner

v1 = tf.compat.v1


def test_session_wrapper_is_accepted_and_counts_runs(analytic):
    """A MagicMock(wraps=session) (PAIR's tests, many users' tests) is a session."""
    spy = mock.MagicMock(wraps=analytic.session)
    method = saliency.GradientSaliency(analytic.graph, spy, analytic.y, analytic.x)
    x = np.array([1.0, 2.0, 0.5], np.float32)
    np.testing.assert_allclose(method.GetMask(x), [5.0, 4.0, np.cos(0.5)], rtol=1e-6)
    assert spy.run.call_count == 1


def test_session_of_another_graph_is_refused(analytic):
    other = tf.Graph()
    with v1.Session(graph=other) as session, pytest.raises(
            ValueError, match="session: the session runs another tf.Graph"):
        saliency.GradientSaliency(analytic.graph, session, analytic.y, analytic.x)


@pytest.mark.parametrize("name", list(METHODS))
def test_y_with_more_values_than_rows_is_an_error_not_a_doubled_mask(relu_cnn, name):
    """y of shape [None] whose values do not line up with the rows fed (it used to give
    silently doubled masks): every method refuses it at its first run."""
    m = relu_cnn
    with m.graph.as_default():
        doubled = tf.concat([m.y, m.y], 0)
    spec = METHODS[name]
    method = spec.build(m.graph, m.session, doubled, m.x, m.conv)
    image = np.random.default_rng(0).uniform(size=(16, 16, 3)).astype(np.float32)
    before = m.op_count()
    with pytest.raises(ValueError, match=r"y: expected one value per row fed \(\d+ rows\), "
                                         r"the run returned \d+ values"):
        spec.explain(method, image, **({"size": 8} if name == "occlusion" else {}))
    assert m.op_count() == before


@pytest.mark.parametrize("make_y, error, message", [
    (lambda x, y: tf.stop_gradient(y), ValueError, "not differentiable with respect to x"),
    (lambda x, y: tf.cast(tf.round(y), tf.int32), TypeError, "y: expected a floating-point"),
    (lambda x, y: tf.cast(tf.cast(y, tf.int32), tf.float32), ValueError,
     "passes a stop_gradient or a non-float tensor"),
])
def test_constructor_that_fails_leaves_no_ops(relu_cnn, make_y, error, message):
    m = relu_cnn
    with m.graph.as_default():
        y = make_y(m.x, m.y)
    before = m.op_count()
    for spec in METHODS.values():
        if error is ValueError and getattr(spec.cls, "forward_only", False):
            # Needs no gradient: it builds (with the copy its graph path runs, if any).
            spec.build(m.graph, m.session, y, m.x, m.conv)
            before = m.op_count()
        else:
            with pytest.raises(error, match=message):
                spec.build(m.graph, m.session, y, m.x, m.conv)
        assert m.op_count() == before, spec.name


def test_conv_layer_not_between_x_and_y_leaves_no_ops(relu_cnn):
    with relu_cnn.graph.as_default():
        stray = tf.zeros([1, 4, 4, 2]) + 1.0
    before = relu_cnn.op_count()
    for cls in (saliency.GradCam, saliency.GradCamPlusPlus, saliency.GuidedGradCam):
        with pytest.raises(ValueError, match="conv_layer: tensor .* is not between x"):
            cls(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, stray)
        assert relu_cnn.op_count() == before


def test_differentiable_path_walk(analytic):
    x, y = analytic.x, analytic.y
    with analytic.graph.as_default():
        through_int = tf.cast(tf.cast(x, tf.int32), tf.float32)
        mixed = y + tf.reduce_sum(through_int, 1)
    assert differentiable_path(y, x)
    assert differentiable_path(mixed, x)  # one float path is enough
    assert not differentiable_path(tf.reduce_sum(through_int, 1), x)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), ("a", TypeError), (1.5, TypeError),
                                         (True, TypeError)])
def test_bad_seed_is_named(analytic, seed, error):
    method = saliency.GradientSaliency(analytic.graph, analytic.session, analytic.y, analytic.x)
    with pytest.raises(error, match="seed: expected"):
        method.GetSmoothedMask(np.ones(3, np.float32), seed=seed)


def test_feed_values_are_checked_against_their_placeholder():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        k = v1.placeholder(tf.int32, [], name="k")
        scale = v1.placeholder(tf.float32, [], name="scale")
        logits = tf.stack([x[:, 0], x[:, 1]], 1) * scale
        y = tf.gather(logits, k, axis=1)
    with v1.Session(graph=graph) as session:
        method = saliency.GradientSaliency(graph, session, y, x)
        good = np.ones(2, np.float32)
        with pytest.raises(TypeError, match=r"feed_dict\['scale:0'\]: expected a value castable "
                                            r"to float32 .* got dtype <U3"):
            method.GetMask(good, {scale: "two", k: 0})
        with pytest.raises(ValueError, match=r"feed_dict\['k:0'\]: expected whole numbers"):
            method.GetMask(good, {scale: 1.0, k: 1.5})
        # Whole floats for an integer placeholder, ints for a float one: fine.
        np.testing.assert_allclose(method.GetMask(good, {scale: 2, k: 1.0}), [0.0, 2.0])


def test_runner_pads_a_fixed_outer_dimension():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [4, 3], name="x")
        y = tf.reduce_sum(x * x, 1)
    with v1.Session(graph=graph) as session:
        runner = SessionRunner(graph, session, x, {"y": y}, y_key="y")
        assert (runner.rows_per_run, runner.pad_to) == (4, 4)
        rows = np.arange(18, dtype=np.float32).reshape(6, 3)
        np.testing.assert_allclose(runner.run(rows, ["y"])["y"], (rows**2).sum(1))


def test_one_construction_path(relu_cnn):
    """from_backend is cls(backend=...): per-instance state exists on both paths."""
    m = relu_cnn
    backend = TF1Backend(m.graph, m.session, m.y, m.x, m.conv)
    image = np.random.default_rng(0).uniform(size=(16, 16, 3)).astype(np.float32)
    for spec in METHODS.values():
        method = (spec.cls(backend=backend, **spec.init) if spec.init
                  else spec.cls.from_backend(backend))
        # A gated method builds its own gradients on the backend's model.
        assert (method.backend is backend) != spec.cls.graph_only and method.graph is None
        built = spec.build(m.graph, m.session, m.y, m.x, m.conv)
        np.testing.assert_allclose(spec.explain(method, image), spec.explain(built, image),
                                   rtol=1e-5, atol=1e-6, err_msg=spec.name)
    with pytest.raises(TypeError, match="pass either"):
        saliency.GradientSaliency(m.graph, m.session, m.y, m.x, backend=backend)


def test_plan_is_checked_before_any_run(analytic, counting):
    session = counting(analytic.session)
    method = saliency.IntegratedGradients(analytic.graph, session, analytic.y, analytic.x)
    plan = method.plan(np.ones(3, np.float32), "GetSmoothedMask", x_steps=7, nsamples=3)
    assert plan.rows_per_input == 7
    for kwargs, error in [({"x_steps": 0}, ValueError), ({"rule": "simpson"}, ValueError),
                          ({"return_error": True}, TypeError), ({"nsamples": 0}, ValueError)]:
        with pytest.raises(error):
            method.GetSmoothedMask(np.ones(3, np.float32), **kwargs)
    assert session.run.call_count == 0
