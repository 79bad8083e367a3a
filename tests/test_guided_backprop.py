"""GuidedBackprop and Deconvnet: hand-derived gradients, live weights, no files, PAIR's numbers."""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_relu_cnn

from saliency_tf1 import ClassTarget, GradientSaliency
from saliency_tf1.methods.guided_backprop import (
    Deconvnet,
    GuidedBackprop,
    gated_gradients,
    path_ops,
)

v1 = tf.compat.v1

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# f, f' for each gated op type (f' as TF defines it at the kink).
ACTIVATIONS = {
    "Relu": (tf.nn.relu, lambda z: (z > 0).astype(float)),
    "Relu6": (tf.nn.relu6, lambda z: ((z > 0) & (z < 6)).astype(float)),
    "LeakyRelu": (lambda t: tf.nn.leaky_relu(t, alpha=0.2), lambda z: np.where(z > 0, 1.0, 0.2)),
    "Elu": (tf.nn.elu, lambda z: np.where(z > 0, 1.0, np.exp(z))),
    "Selu": (tf.nn.selu, lambda z: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(z))),
}


def one_layer(W, b, u, act=tf.nn.relu, variables=None):
    """y = u . f(x W + b) on x of shape [None, d]; W a variable if ``variables`` says so."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, W.shape[0]], name="x")
        if variables is None:
            w = tf.constant(W, tf.float32)
        else:
            w = v1.Variable(W.astype(np.float32), use_resource=variables == "resource", name="w")
        y = tf.reduce_sum(act(tf.matmul(x, w) + b) * u, axis=1, name="y")
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    return graph, session, x, y, w


def test_guided_and_deconvnet_equal_hand_derived_two_layer_relu(rng):
    W1, b1 = rng.normal(size=(4, 7)), rng.normal(size=7)
    W2, b2 = rng.normal(size=(7, 5)), rng.normal(size=5)
    u = rng.normal(size=5)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4])
        h1 = tf.nn.relu(tf.matmul(x, tf.constant(W1, tf.float32)) + b1.astype(np.float32))
        h2 = tf.nn.relu(tf.matmul(h1, tf.constant(W2, tf.float32)) + b2.astype(np.float32))
        y = tf.reduce_sum(h2 * u.astype(np.float32), axis=1)
    with v1.Session(graph=graph) as session:
        guided = GuidedBackprop(graph, session, y, x)
        deconv = Deconvnet(graph, session, y, x)
        xs = rng.normal(size=(9, 4)).astype(np.float32)
        got_g, got_d = guided.GetMaskBatch(xs), deconv.GetMaskBatch(xs)
    for i, point in enumerate(xs.astype(np.float64)):
        z1 = point @ W1 + b1
        z2 = np.maximum(z1, 0) @ W2 + b2
        # Guided: gate on forward activation > 0 and incoming gradient > 0.
        g2 = (z2 > 0) * np.maximum(u, 0)
        g1 = (z1 > 0) * np.maximum(W2 @ g2, 0)
        np.testing.assert_allclose(got_g[i], W1 @ g1, rtol=1e-5, atol=1e-5)
        # Deconvnet: gate on the incoming gradient only.
        d1 = np.maximum(W2 @ np.maximum(u, 0), 0)
        np.testing.assert_allclose(got_d[i], W1 @ d1, rtol=1e-5, atol=1e-5)


def test_differs_from_vanilla_exactly_where_the_gates_close(rng):
    W, b = rng.normal(size=(5, 8)), rng.normal(size=8)
    u = np.abs(rng.normal(size=8)) + 0.1
    xs = rng.normal(size=(6, 5)).astype(np.float32)

    def masks(u):
        graph, session, x, y, _ = one_layer(W, b, u.astype(np.float32))
        with session:
            return (GuidedBackprop(graph, session, y, x).GetMaskBatch(xs),
                    GradientSaliency(graph, session, y, x).GetMaskBatch(xs))

    # All incoming gradients positive: every gate the guided rule adds is open.
    guided, vanilla = masks(u)
    np.testing.assert_allclose(guided, vanilla, rtol=1e-6, atol=1e-6)
    # Units 2 and 5 get negative incoming gradients: guided drops exactly their
    # contribution u_j W_j on the inputs where the unit is active.
    u[[2, 5]] *= -1
    guided, vanilla = masks(u)
    z = xs @ W + b
    closed = (z > 0) * (u < 0) * u
    np.testing.assert_allclose(vanilla - guided, closed @ W.T, rtol=1e-5, atol=1e-5)
    assert np.abs(closed).sum() > 0  # the example does close some gates


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_each_relu_like_op_gets_its_rule(name, rng):
    act, deriv = ACTIVATIONS[name]
    W, b, u = 3 * rng.normal(size=(4, 10)), rng.normal(size=10), rng.normal(size=10)
    graph, session, x, y, _ = one_layer(W, b.astype(np.float32), u.astype(np.float32), act)
    xs = rng.normal(size=(8, 4)).astype(np.float32)
    with session:
        assert name in {op.type for op in graph.get_operations()}
        guided = GuidedBackprop(graph, session, y, x).GetMaskBatch(xs)
        deconv = Deconvnet(graph, session, y, x).GetMaskBatch(xs)
    z = xs.astype(np.float64) @ W + b
    if name == "Relu6":
        assert (z > 6).any() and ((z > 0) & (z < 6)).any()
    np.testing.assert_allclose(guided, (deriv(z) * np.maximum(u, 0)) @ W.T, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(deconv, np.tile(np.maximum(u, 0) @ W.T, (8, 1)), rtol=1e-5,
                               atol=1e-5)


def test_ops_are_built_once(relu_cnn, rng):
    g, s = relu_cnn.graph, relu_cnn.session
    before = relu_cnn.op_count()
    guided = GuidedBackprop(g, s, relu_cnn.y, relu_cnn.x)
    built = relu_cnn.op_count()
    assert built > before
    img = rng.normal(size=(16, 16, 3)).astype(np.float32)
    guided.GetMask(img)
    guided.GetMask(img, None)
    guided.GetMaskBatch(np.stack([img] * 3), batch_size=2)
    guided.GetSmoothedMask(img, nsamples=3, seed=0)
    GuidedBackprop(g, s, relu_cnn.y, relu_cnn.x).GetMask(img)  # a second instance: shared ops
    assert relu_cnn.op_count() == built
    # The original path is untouched: only ops under the package's scope were added.
    added = [op.name for op in g.get_operations()[before:]]
    assert all(name.startswith("saliency_tf1/") for name in added)
    assert not any(op.node_def.attr["_gradient_op_type"].s for op in g.get_operations()[:before])


def test_writes_no_file_and_makes_no_checkpoint_or_session(tmp_path, monkeypatch, rng):
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    system_tmp = "/tmp"
    before = set(os.listdir(system_tmp))
    graph, session, x, y, _ = one_layer(rng.normal(size=(3, 4)), np.zeros(4, np.float32),
                                        np.ones(4, np.float32), variables="ref")
    forbid = AssertionError("saliency_tf1 must not make a Saver or a Session")
    with session, mock.patch.object(v1.train.Saver, "__init__", side_effect=forbid), \
            mock.patch.object(v1.Session, "__init__", side_effect=forbid):
        guided = GuidedBackprop(graph, session, y, x)
        guided.GetMask(np.ones(3, np.float32))
        guided.GetSmoothedMask(np.ones(3, np.float32), nsamples=2, seed=0)
    assert list(work.iterdir()) == [] and list(temp.iterdir()) == []
    new = set(os.listdir(system_tmp)) - before
    # Other processes may use /tmp meanwhile; no checkpoint-like entry may appear.
    assert not [n for n in new if "ckpt" in n or "guided" in n or "checkpoint" in n]


def reference_masks(size_seed, ys, xs, mode="guided"):
    """Masks from a fresh graph holding only one method (the independent reference)."""
    model = make_relu_cnn(seed=size_seed)
    with model.session, model.graph.as_default():
        y = model.logits[:, {"y0": 0, "y1": 1}[ys]]
        cls = GuidedBackprop if mode == "guided" else Deconvnet
        return cls(model.graph, model.session, y, model.x).GetMaskBatch(xs)


def test_instances_in_one_graph_do_not_interfere(relu_cnn, rng):
    g, s, x, logits = relu_cnn.graph, relu_cnn.session, relu_cnn.x, relu_cnn.logits
    xs = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
    with g.as_default():
        vanilla_before = tf.gradients(logits[:, 0], x)[0]
        y0, y1 = logits[:, 0], logits[:, 1]
    guided0 = GuidedBackprop(g, s, y0, x)
    guided1 = GuidedBackprop(g, s, y1, x)
    deconv0 = Deconvnet(g, s, y0, x)
    vanilla_after = GradientSaliency(g, s, y0, x)
    np.testing.assert_allclose(guided0.GetMaskBatch(xs), reference_masks(0, "y0", xs), atol=1e-6)
    np.testing.assert_allclose(guided1.GetMaskBatch(xs), reference_masks(0, "y1", xs), atol=1e-6)
    np.testing.assert_allclose(deconv0.GetMaskBatch(xs), reference_masks(0, "y0", xs, "deconv"),
                               atol=1e-6)
    # Plain gradients built after the guided copies stay plain.
    np.testing.assert_allclose(vanilla_after.GetMaskBatch(xs), s.run(vanilla_before, {x: xs}),
                               atol=1e-6)
    assert not np.allclose(guided0.GetMaskBatch(xs), vanilla_after.GetMaskBatch(xs), atol=1e-4)


def test_two_threads_build_and_run_at_once(relu_cnn, rng):
    g, s, x, logits = relu_cnn.graph, relu_cnn.session, relu_cnn.x, relu_cnn.logits
    xs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def work(name, y):
        try:
            barrier.wait()
            method = GuidedBackprop(g, s, y, x)
            barrier.wait()
            results[name] = [method.GetMaskBatch(xs, batch_size=2) for _ in range(4)]
        except Exception as err:  # reported below
            errors.append(err)

    with g.as_default():
        y0, y1 = logits[:, 0], logits[:, 1]
    threads = [threading.Thread(target=work, args=("y0", y0)),
               threading.Thread(target=work, args=("y1", y1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name in ("y0", "y1"):
        expected = reference_masks(0, name, xs)
        for got in results[name]:
            np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("variables", ["ref", "resource"])
def test_assigned_weights_are_used_without_rebuild(variables, rng):
    W, b, u = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=6)
    graph, session, x, y, w = one_layer(W, b.astype(np.float32), u.astype(np.float32),
                                        variables=variables)
    xs = rng.normal(size=(5, 4)).astype(np.float32)
    W_new = rng.normal(size=(4, 6))
    with graph.as_default():
        assign = w.assign(W_new.astype(np.float32))
    with session:
        guided = GuidedBackprop(graph, session, y, x)
        count = len(graph.get_operations())
        first = guided.GetMaskBatch(xs)
        session.run(assign)
        second = guided.GetMaskBatch(xs)
        assert len(graph.get_operations()) == count  # no rebuild
    fresh_graph, fresh_session, fx, fy, _ = one_layer(W_new, b.astype(np.float32),
                                                      u.astype(np.float32))
    with fresh_session:
        fresh = GuidedBackprop(fresh_graph, fresh_session, fy, fx).GetMaskBatch(xs)
    np.testing.assert_allclose(second, fresh, rtol=1e-6, atol=1e-6)
    z = xs.astype(np.float64) @ W_new + b
    np.testing.assert_allclose(second, ((z > 0) * np.maximum(u, 0)) @ W_new.T, rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(first, second)


def variable_cnn():
    """A small CNN with variables and a class placeholder: PAIR's GuidedBackprop can run on it."""
    rng = np.random.default_rng(5)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 12, 12, 3], name="x")
        w1 = v1.Variable(rng.normal(0, 0.4, (3, 3, 3, 6)).astype(np.float32), name="w1")
        w2 = v1.Variable(rng.normal(0, 0.3, (3, 3, 6, 8)).astype(np.float32), name="w2")
        wd = v1.Variable(rng.normal(0, 0.5, (8, 4)).astype(np.float32), name="wd")
        h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + 0.05)
        h = tf.nn.max_pool2d(h, 2, 2, "SAME")
        h = tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME") - 0.02)
        logits = tf.matmul(tf.reduce_mean(h, [1, 2]), wd, name="logits")
        target = ClassTarget(logits)
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    return graph, session, x, logits, target


@pytest.mark.oracle
def test_same_numbers_as_pair_and_on_the_frozen_graph(tmp_path, rng):
    pair = pytest.importorskip("saliency.tf1")
    graph, session, x, logits, target = variable_cnn()
    xs = rng.uniform(-1, 1, (3, 12, 12, 3)).astype(np.float32)
    with session:
        ours = GuidedBackprop(graph, session, target.y, x)
        # PAIR writes a checkpoint and copies the graph into a second session.
        theirs = pair.GuidedBackprop(graph, session, target.y, x,
                                     tmp_ckpt_path=str(tmp_path / "pair_ckpt"))
        for cls in (0, 2):
            feed = target.feed(cls)
            expected = np.stack([theirs.GetMask(img, feed_dict=feed) for img in xs])
            np.testing.assert_allclose(ours.GetMaskBatch(xs, feed), expected, rtol=1e-5,
                                       atol=1e-6)
        # One class per input in one batch.
        per_input = ours.GetMaskBatch(xs, target.feed([1, 3, 0]))
        for img, cls, got in zip(xs, [1, 3, 0], per_input):
            np.testing.assert_allclose(got, theirs.GetMask(img, feed_dict=target.feed(cls)),
                                       rtol=1e-5, atol=1e-6)
        expected = ours.GetMaskBatch(xs, target.feed(2))
        frozen_def = v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), [logits.op.name])
        theirs.guided_sess.close()
    frozen = tf.Graph()
    with frozen.as_default():
        v1.import_graph_def(frozen_def, name="")
        fx = frozen.get_tensor_by_name("x:0")
        fy = frozen.get_tensor_by_name("logits:0")[:, 2]
    assert not [op for op in frozen.get_operations() if "Variable" in op.type]
    with v1.Session(graph=frozen) as fs:
        got = GuidedBackprop(frozen, fs, fy, fx).GetMaskBatch(xs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def fuse(graph_def, conv_name, bias_name, relu_name, kind):
    """Rewrites conv/matmul -> BiasAdd -> Relu nodes into one grappler-style fused node."""
    nodes = {n.name: n for n in graph_def.node}
    conv, bias, relu = nodes[conv_name], nodes[bias_name], nodes[relu_name]
    fused = v1.NodeDef(name=relu.name, op=kind)
    fused.input.extend([conv.input[0], conv.input[1], bias.input[1]])
    for key, value in conv.attr.items():
        if key in ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings",
                   "use_cudnn_on_gpu", "transpose_a", "transpose_b"):
            fused.attr[key].CopyFrom(value)
    fused.attr["num_args"].i = 1
    fused.attr["fused_ops"].list.s.extend([b"BiasAdd", b"Relu"])
    if kind == "_FusedConv2D":
        fused.attr["TArgs"].list.type.append(conv.attr["T"].type)
    out = v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    for n in graph_def.node:
        if n.name == relu_name:
            out.node.append(fused)
        elif n.name not in (conv_name, bias_name):
            out.node.append(n)
    return out


def test_fused_conv_and_matmul_relus_are_gated(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 2], name="x")
        w = tf.constant(rng.normal(0, 0.5, (3, 3, 2, 4)), tf.float32)
        h = tf.nn.conv2d(x, w, 1, "SAME", name="conv")
        h = tf.nn.bias_add(h, tf.constant(rng.normal(0, 0.1, 4), tf.float32), name="bias")
        h = tf.nn.relu(h, name="relu")
        flat = tf.reshape(h, [-1, 256])
        d = tf.matmul(flat, tf.constant(rng.normal(0, 0.2, (256, 5)), tf.float32), name="dense")
        d = tf.nn.bias_add(d, tf.constant(rng.normal(0, 0.1, 5), tf.float32), name="dbias")
        d = tf.nn.relu(d, name="drelu")
        tf.reduce_sum(d * tf.constant([1.0, -1.0, 0.5, -0.3, 0.8]), axis=1, name="y")
    graph_def = graph.as_graph_def()
    graph_def = fuse(graph_def, "conv", "bias", "relu", "_FusedConv2D")
    graph_def = fuse(graph_def, "dense", "dbias", "drelu", "_FusedMatMul")
    fused = tf.Graph()
    with fused.as_default():
        v1.import_graph_def(graph_def, name="")
    assert {"_FusedConv2D", "_FusedMatMul"} <= {op.type for op in fused.get_operations()}
    xs = rng.normal(size=(3, 8, 8, 2)).astype(np.float32)
    with v1.Session(graph=graph) as s, v1.Session(graph=fused) as fs:
        fy, fx = fused.get_tensor_by_name("y:0"), fused.get_tensor_by_name("x:0")
        np.testing.assert_allclose(  # the fused graph computes the same y
            fs.run(fy, {fx: xs}), s.run(graph.get_tensor_by_name("y:0"), {x: xs}), rtol=1e-5)
        for cls in (GuidedBackprop, Deconvnet):
            expected = cls(graph, s, graph.get_tensor_by_name("y:0"), x).GetMaskBatch(xs)
            got = cls(fused, fs, fy, fx).GetMaskBatch(xs)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_unsplittable_fused_op_is_a_clear_error(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        d = tf.matmul(x, tf.constant(rng.normal(size=(4, 3)), tf.float32), name="dense")
        d = tf.nn.bias_add(d, tf.zeros([3]), name="dbias")
        d = tf.nn.relu(d, name="drelu")
        tf.reduce_sum(d, axis=1, name="y")
    graph_def = fuse(graph.as_graph_def(), "dense", "dbias", "drelu", "_FusedMatMul")
    node = next(n for n in graph_def.node if n.op == "_FusedMatMul")
    node.attr["fused_ops"].list.s[1] = b"GeluExact"
    fused = tf.Graph()
    with fused.as_default():
        v1.import_graph_def(graph_def, name="")
    with v1.Session(graph=fused) as fs, pytest.raises(ValueError, match="drelu.*GeluExact"):
        GuidedBackprop(fused, fs, fused.get_tensor_by_name("y:0"),
                       fused.get_tensor_by_name("x:0"))


def test_control_dependencies_from_outside_the_path_still_run():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        counter = v1.Variable(0, name="counter", use_resource=True)
        bump = tf.group(counter.assign_add(1), name="bump")  # a NoOp: no outputs
        with tf.control_dependencies([bump]):
            h = tf.nn.relu(x * 2.0)
        y = tf.reduce_sum(h, axis=1)
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph) as s:
        s.run(init)
        guided = GuidedBackprop(graph, s, y, x)
        mask = guided.GetMask(np.array([1.0, -1.0], np.float32))
        np.testing.assert_allclose(mask, [2.0, 0.0])
        assert s.run(counter.read_value()) == 1


def test_functional_control_flow_on_the_path_warns():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        h = tf.matmul(x, tf.ones([3, 2]))
        y = tf.reduce_sum(v1.cond(tf.constant(True), lambda: tf.nn.relu(h), lambda: h), 1)
    with v1.Session(graph=graph) as s, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guided = GuidedBackprop(graph, s, y, x)
        np.testing.assert_allclose(guided.GetMask(np.array([1.0, 1.0, 0.5], np.float32)),
                                   [2.0, 2.0, 2.0])
    assert any("not gated" in str(w.message) for w in caught)


def test_bad_inputs_name_the_tensor(relu_cnn):
    g, s, x = relu_cnn.graph, relu_cnn.session, relu_cnn.x
    with g.as_default():
        other = v1.placeholder(tf.float32, [None], name="other")
        not_from_x = other * 2.0
        no_gradient = tf.cast(tf.argmax(relu_cnn.logits, axis=1), tf.float32, name="argmax_y")
    before = relu_cnn.op_count()
    with pytest.raises(ValueError, match=r"y: tensor 'mul.*' does not depend on x"):
        GuidedBackprop(g, s, not_from_x, x)
    assert relu_cnn.op_count() == before  # a failed constructor adds nothing
    with pytest.raises(ValueError, match="argmax_y"):
        GuidedBackprop(g, s, no_gradient, x)
    with pytest.raises(ValueError, match="mode"):
        gated_gradients(g, relu_cnn.y, x, mode="backwards")


def test_path_ops_are_exactly_the_ops_between_x_and_y():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        k = v1.placeholder(tf.float32, [], name="k")
        scale = tf.multiply(k, 3.0, name="scale")          # feeds y, not from x
        a = tf.nn.relu(x * scale, name="a")
        tf.identity(a, name="side")                          # from x, not feeding y
        y = tf.reduce_sum(a, axis=1, name="y")
    assert [op.name for op in path_ops(y, x)] == ["mul", "a", "y"]


def test_v1_control_flow_cond_is_gated_and_while_loop_is_refused():
    was_v2 = v1.control_flow_v2_enabled()
    v1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(tf.float32, [None, 3], name="x")
            h = tf.matmul(x, tf.constant([[1.0, -1.0], [2.0, 1.0], [-1.0, 1.0]]))
            branch = v1.cond(tf.constant(True), lambda: tf.nn.relu(h), lambda: h)
            y = tf.reduce_sum(branch * tf.constant([1.0, -1.0]), 1)
            _, looped = v1.while_loop(lambda i, t: i < 2, lambda i, t: (i + 1, tf.nn.relu(t)),
                                      [0, x])
            y_loop = tf.reduce_sum(looped, 1, name="y_loop")
    finally:
        if was_v2:
            v1.enable_control_flow_v2()
    assert {"Switch", "Merge", "Enter"} <= {op.type for op in graph.get_operations()}
    with v1.Session(graph=graph) as s:
        point = np.array([1.0, 3.0, 0.5], np.float32)  # both units active
        np.testing.assert_allclose(GradientSaliency(graph, s, y, x).GetMask(point), [2, 1, -2])
        # The ReLU inside the v1 cond is gated: unit 2's gradient is -1 < 0.
        np.testing.assert_allclose(GuidedBackprop(graph, s, y, x).GetMask(point), [1, 2, -1])
        with pytest.raises(ValueError, match="while loop.*while/Enter"):
            GuidedBackprop(graph, s, y_loop, x)


@pytest.mark.parametrize("cls_name", ["GuidedBackprop", "Deconvnet", "GuidedGradCam"])
def test_gated_methods_refuse_non_graph_backends(cls_name):
    """Their gated gradients exist only as graph ops: another backend would silently un-gate."""
    from saliency_tf1.compat.call_model import CallModelBackend

    import saliency_tf1

    backend = CallModelBackend(lambda x_batch, call_model_args=None, expected_keys=None: {})
    with pytest.raises(TypeError, match=f"{cls_name}: its gated gradients exist only in a TF1"):
        getattr(saliency_tf1, cls_name).from_backend(backend)
