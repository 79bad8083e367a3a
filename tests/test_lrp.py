"""LRP: each rule against its formula in NumPy, ε -> 0 = Gradient × Input, conservation,
z+ signs, αβ(1, 0) = z+, the composite preset, fused ops, refusals naming the op."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from test_guided_backprop import fuse

from saliency_tf1.methods.gradient_x_input import GradientXInput
from saliency_tf1.methods.lrp import LRP

v1 = tf.compat.v1


# ---------------------------------------------------------------------------
# A dense net and the rules in NumPy


class Dense:
    """y = (relu(x W1 + b1) W2 + b2)[:, k] as a TF graph, and its LRP in NumPy (float64)."""

    def __init__(self, rng, d=6, hidden=8, classes=3, k=1, bias=True):
        self.W1, self.W2 = rng.normal(size=(d, hidden)), rng.normal(size=(hidden, classes))
        self.b1 = rng.normal(0, 0.5, hidden) if bias else np.zeros(hidden)
        self.b2 = rng.normal(0, 0.5, classes) if bias else np.zeros(classes)
        self.k = k
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.x = v1.placeholder(tf.float32, [None, d], name="x")
            h = tf.matmul(self.x, tf.constant(self.W1, tf.float32))
            if bias:
                h = tf.nn.bias_add(h, tf.constant(self.b1, tf.float32))
            h = tf.nn.relu(h)
            logits = tf.matmul(h, tf.constant(self.W2, tf.float32))
            if bias:
                logits = logits + tf.constant(self.b2, tf.float32)
            self.y = logits[:, k]
        self.session = v1.Session(graph=self.graph)

    def lrp(self, xs, first, hidden):
        """Relevance of the inputs: ``hidden(a, W, z, R)`` for layer 2, ``first(...)`` layer 1."""
        out = []
        for x in xs.astype(np.float64):
            z1 = x @ self.W1 + self.b1
            a1 = np.maximum(z1, 0)
            z2 = a1 @ self.W2 + self.b2
            r2 = np.zeros_like(z2)
            r2[self.k] = z2[self.k]
            r1 = hidden(a1, self.W2, z2, r2)     # relevance passes the ReLU unchanged
            out.append(first(x, self.W1, z1, r1))
        return np.array(out)


def eps_rule(eps):
    def rule(a, W, z, r):
        return a * (W @ (r / (z + eps * np.where(z >= 0, 1.0, -1.0))))
    return rule


def alpha_beta_rule(alpha, beta):
    def rule(a, W, z, r):
        p = a[:, None] * W
        pos, neg = np.maximum(p, 0), np.minimum(p, 0)
        sp = np.divide(r, pos.sum(0), out=np.zeros_like(r), where=pos.sum(0) != 0)
        sn = np.divide(r, neg.sum(0), out=np.zeros_like(r), where=neg.sum(0) != 0)
        return alpha * pos @ sp - beta * neg @ sn
    return rule


def z_plus_rule(a, W, z, r):
    q = a[:, None] * np.maximum(W, 0)
    return q @ np.divide(r, q.sum(0), out=np.zeros_like(r), where=q.sum(0) != 0)


def flat_rule(a, W, z, r):
    return np.full(len(a), r.sum() / len(a))


def w2_rule(a, W, z, r):
    return (W ** 2) @ (r / (W ** 2).sum(0))


def zb_rule(low, high):
    def rule(a, W, z, r):
        q = a[:, None] * W - low * np.maximum(W, 0)[...] - high * np.minimum(W, 0)
        return q @ (r / q.sum(0))
    return rule


@pytest.fixture
def dense(rng):
    net = Dense(rng)
    yield net
    net.session.close()


@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 0.25])
def test_epsilon_rule_is_its_formula_with_biases(dense, rng, epsilon):
    xs = rng.normal(size=(5, 6)).astype(np.float32)
    got = LRP(dense.graph, dense.session, dense.y, dense.x, "epsilon", epsilon).GetMaskBatch(xs)
    expected = dense.lrp(xs, eps_rule(epsilon), eps_rule(epsilon))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("rule, alpha, beta, numpy_rule", [
    ("z_plus", 1.0, 0.0, z_plus_rule),
    ("alpha_beta", 1.0, 0.0, alpha_beta_rule(1.0, 0.0)),
    ("alpha_beta", 2.0, 1.0, alpha_beta_rule(2.0, 1.0)),
])
def test_z_plus_and_alpha_beta_are_their_formulas(dense, rng, rule, alpha, beta, numpy_rule):
    xs = rng.uniform(0, 1, size=(5, 6)).astype(np.float32)  # non-negative: z+ is defined
    got = LRP(dense.graph, dense.session, dense.y, dense.x, rule, alpha=alpha,
              beta=beta).GetMaskBatch(xs)
    np.testing.assert_allclose(got, dense.lrp(xs, numpy_rule, numpy_rule), rtol=2e-4,
                               atol=2e-5)


def test_alpha_beta_on_signed_inputs_splits_products_by_sign(dense, rng):
    xs = rng.normal(size=(5, 6)).astype(np.float32)
    got = LRP(dense.graph, dense.session, dense.y, dense.x, "alpha_beta", alpha=2.0,
              beta=1.0).GetMaskBatch(xs)
    rule = alpha_beta_rule(2.0, 1.0)
    np.testing.assert_allclose(got, dense.lrp(xs, rule, rule), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("first_layer, bounds, numpy_rule", [
    ("flat", None, flat_rule),
    ("w2", None, w2_rule),
    ("zB", (-3.0, 3.0), zb_rule(-3.0, 3.0)),
])
def test_first_layer_rules_are_their_formulas(dense, rng, first_layer, bounds, numpy_rule):
    xs = rng.uniform(-2, 2, size=(4, 6)).astype(np.float32)
    got = LRP(dense.graph, dense.session, dense.y, dense.x, "epsilon", 0.0,
              first_layer=first_layer, bounds=bounds).GetMaskBatch(xs)
    np.testing.assert_allclose(got, dense.lrp(xs, numpy_rule, eps_rule(0.0)), rtol=2e-4,
                               atol=2e-5)


def test_zb_without_bounds_uses_each_inputs_range(dense, rng):
    xs = rng.uniform(-2, 2, size=(3, 6)).astype(np.float32)
    got = LRP(dense.graph, dense.session, dense.y, dense.x, "epsilon", 0.0,
              first_layer="zB").GetMaskBatch(xs)
    for x, row in zip(xs, got):
        expected = dense.lrp(x[None], zb_rule(float(x.min()), float(x.max())), eps_rule(0.0))
        np.testing.assert_allclose(row, expected[0], rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------------------
# Conv nets: identities


def bias_free_cnn(rng, y_sign=1.0, dense=True, positive_head=True):
    """conv-relu-maxpool-conv-relu-avgpool[-dense-relu-dense], no biases; the last dense
    layer's weights positive (so y > 0 for y_sign 1) unless ``positive_head`` is False."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        c = lambda *s: tf.constant(rng.normal(0, 0.5, s), tf.float32)  # noqa: E731
        h = tf.nn.relu(tf.nn.conv2d(x, c(3, 3, 3, 6), 1, "SAME"))
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.nn.relu(tf.nn.conv2d(h, c(3, 3, 6, 6), 1, "SAME"))
        h = tf.nn.avg_pool2d(h, 2, 2, "VALID")
        if dense:
            h = tf.nn.relu(tf.reshape(h, [-1, 24]) @ c(24, 5))
            head = tf.abs(c(5, 1)) if positive_head else c(5, 1)
            y = y_sign * tf.reduce_sum(h @ head, 1)
        else:
            y = y_sign * tf.reduce_sum(h, [1, 2, 3])
    return graph, v1.Session(graph=graph), x, y


@pytest.mark.parametrize("epsilon", [0.0, 1e-9])
def test_epsilon_to_zero_is_gradient_times_input(rng, epsilon):
    """Ancona et al., 2018: ε-LRP with ε -> 0 on a ReLU network is Gradient × Input."""
    graph, session, x, y = bias_free_cnn(rng)
    xs = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    with session:
        lrp = LRP(graph, session, y, x, "epsilon", epsilon).GetMaskBatch(xs)
        gxi = GradientXInput(graph, session, y, x).GetMaskBatch(xs)
    np.testing.assert_allclose(lrp, gxi, rtol=1e-4, atol=1e-5 * np.abs(gxi).max())


@pytest.mark.parametrize("kwargs", [
    {"rule": "epsilon", "epsilon": 0.0},
    {"rule": "z_plus"},
    {"rule": "alpha_beta", "alpha": 2.0, "beta": 1.0},
    {"rule": "composite", "first_layer": "flat"},
    {"rule": "composite", "first_layer": "w2"},
    {"rule": "composite", "first_layer": "zB", "bounds": (0.0, 1.0)},
])
def test_relevance_is_conserved_on_bias_free_nets(rng, kwargs):
    """(αβ passes on α times the relevance of a unit with no negative contribution, such as a
    head whose ReLU inputs with negative weights are all 0: its net ends at the convolutions.)"""
    graph, session, x, y = bias_free_cnn(rng, positive_head=False,
                                         dense=kwargs["rule"] != "alpha_beta")
    xs = rng.uniform(0, 1, size=(4, 8, 8, 3)).astype(np.float32)
    with session:
        relevance = LRP(graph, session, y, x, **kwargs).GetMaskBatch(xs)
        outputs = session.run(y, {x: xs})
    np.testing.assert_allclose(relevance.reshape(4, -1).sum(1), outputs, rtol=1e-4)


@pytest.mark.parametrize("y_sign", [1.0, -1.0])
def test_z_plus_relevance_has_the_outputs_sign_and_alpha_one_beta_zero_equals_it(rng, y_sign):
    graph, session, x, y = bias_free_cnn(rng, y_sign)
    xs = rng.uniform(0, 1, size=(4, 8, 8, 3)).astype(np.float32)
    with session:
        z_plus = LRP(graph, session, y, x, "z_plus").GetMaskBatch(xs)
        ab = LRP(graph, session, y, x, "alpha_beta", alpha=1.0, beta=0.0).GetMaskBatch(xs)
        ab21 = LRP(graph, session, y, x, "alpha_beta", alpha=2.0, beta=1.0).GetMaskBatch(xs)
        outputs = session.run(y, {x: xs})
    assert np.all(np.sign(outputs) == y_sign)
    assert np.all(z_plus * y_sign >= -1e-7) and np.abs(z_plus).max() > 0
    np.testing.assert_allclose(ab, z_plus, rtol=1e-5, atol=1e-7)
    assert np.any(ab21 * y_sign < -1e-4)  # β > 0 does give negative relevance


def test_composite_is_alpha_beta_on_convolutions_and_epsilon_on_dense_layers(rng):
    conv_graph, conv_session, cx, cy = bias_free_cnn(rng, dense=False)
    dense = Dense(rng)
    xs = rng.uniform(0, 1, size=(3, 8, 8, 3)).astype(np.float32)
    ds = rng.normal(size=(3, 6)).astype(np.float32)
    with conv_session, dense.session:
        convs = [LRP(conv_graph, conv_session, cy, cx, rule, alpha=2.0, beta=1.0
                     ).GetMaskBatch(xs) for rule in ("composite", "alpha_beta")]
        denses = [LRP(dense.graph, dense.session, dense.y, dense.x, rule, 0.1).GetMaskBatch(ds)
                  for rule in ("composite", "epsilon")]
    np.testing.assert_allclose(convs[0], convs[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(denses[0], denses[1], rtol=1e-5, atol=1e-7)


def test_fused_ops_are_split_as_for_guided_backprop(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
        h = tf.nn.conv2d(x, tf.constant(rng.normal(0, .5, (3, 3, 2, 4)), tf.float32), 1,
                         "SAME", name="conv")
        h = tf.nn.bias_add(h, tf.constant(rng.normal(0, .1, 4), tf.float32), name="bias")
        h = tf.nn.relu(h, name="relu")
        d = tf.matmul(tf.reshape(h, [-1, 144]), tf.constant(rng.normal(0, .2, (144, 3)),
                                                            tf.float32), name="dense")
        d = tf.nn.bias_add(d, tf.constant(rng.normal(0, .1, 3), tf.float32), name="dbias")
        d = tf.nn.relu(d, name="drelu")
        tf.reduce_sum(d * tf.constant([1.0, 2.0, 0.5]), axis=1, name="y")
    graph_def = fuse(graph.as_graph_def(), "conv", "bias", "relu", "_FusedConv2D")
    graph_def = fuse(graph_def, "dense", "dbias", "drelu", "_FusedMatMul")
    fused = tf.Graph()
    with fused.as_default():
        v1.import_graph_def(graph_def, name="")
    xs = rng.uniform(0, 1, size=(3, 6, 6, 2)).astype(np.float32)
    with v1.Session(graph=graph) as s, v1.Session(graph=fused) as fs:
        for kwargs in ({"rule": "epsilon", "epsilon": 0.01}, {"rule": "composite"}):
            expected = LRP(graph, s, graph.get_tensor_by_name("y:0"), x,
                           **kwargs).GetMaskBatch(xs)
            got = LRP(fused, fs, fused.get_tensor_by_name("y:0"),
                      fused.get_tensor_by_name("x:0"), **kwargs).GetMaskBatch(xs)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_ops_are_built_once_and_live_weights_are_read(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4])
        w = v1.Variable(rng.normal(size=(4, 3)).astype(np.float32))
        y = tf.reduce_sum(tf.nn.relu(x @ w), 1)
        assign = w.assign(rng.normal(size=(4, 3)).astype(np.float32))
        init = v1.global_variables_initializer()
    xs = rng.uniform(0, 1, (5, 4)).astype(np.float32)
    with v1.Session(graph=graph) as session:
        session.run(init)
        lrp = LRP(graph, session, y, x, "z_plus")
        built = len(graph.get_operations())
        LRP(graph, session, y, x, "z_plus")  # a second instance shares the ops
        first = lrp.GetMaskBatch(xs)
        lrp.GetSmoothedMask(xs[0], nsamples=3, seed=0)
        session.run(assign)
        second = lrp.GetMaskBatch(xs)
        np.testing.assert_allclose(second.sum(1), session.run(y, {x: xs}), rtol=1e-5)
        assert not np.allclose(first, second)
        assert len(graph.get_operations()) == built


def _model(expr):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        y = expr(x)
    return graph, x, y


@pytest.mark.parametrize("expr, op", [
    (lambda x: tf.nn.softmax(x @ tf.ones([4, 3]))[:, 0], "Softmax"),
    (lambda x: tf.reduce_sum(tf.square(x), 1), "Square"),
    (lambda x: tf.reduce_sum(x * tf.nn.relu(x), 1), "mul"),
    (lambda x: tf.reduce_sum(tf.exp(x), 1), "Exp"),
])
def test_an_op_without_a_rule_is_an_error_naming_it(expr, op):
    graph, x, y = _model(expr)
    with v1.Session(graph=graph) as session:
        ops = len(graph.get_operations())
        with pytest.raises(ValueError, match=f"holds op '[^']*{op}[^']*' .*LRP has rules for"):
            LRP(graph, session, y, x)
        assert len(graph.get_operations()) == ops


@pytest.mark.parametrize("kwargs, name", [
    ({"rule": "gamma"}, "rule"),
    ({"epsilon": -1.0}, "epsilon"),
    ({"epsilon": float("nan")}, "epsilon"),
    ({"rule": "alpha_beta", "alpha": 2.0, "beta": 0.5}, "alpha, beta"),
    ({"rule": "epsilon", "alpha": 2.0, "beta": 1.0}, "alpha, beta"),
    ({"first_layer": "z_B"}, "first_layer"),
    ({"bounds": (0.0, 1.0)}, "bounds"),
    ({"first_layer": "zB", "bounds": (1.0, 0.0)}, "bounds"),
    ({"first_layer": "zB", "bounds": 3}, "bounds"),
])
def test_bad_rule_arguments_are_refused_by_name(kwargs, name):
    graph, x, y = _model(lambda x: tf.reduce_sum(tf.nn.relu(x), 1))
    with v1.Session(graph=graph) as session:
        ops = len(graph.get_operations())
        with pytest.raises((ValueError, TypeError), match=f"^{name}"):
            LRP(graph, session, y, x, **kwargs)
        assert len(graph.get_operations()) == ops
