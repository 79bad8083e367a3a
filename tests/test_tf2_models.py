"""TF2 artifacts and Keras models through ``load_model``: masks equal to eager TensorFlow's.

One small CNN -- conv + ReLU, batch norm, depthwise conv + ReLU (the Grad-CAM
layer, ``"dw"``), a ``tf.cond`` and a ``tf.while_loop``, global average
pooling, dense logits -- with fixed weights is written as every artifact kind
a user meets:

* a TF2 SavedModel of a ``tf.Module`` (``tf.saved_model.save``);
* that module's concrete function frozen (``convert_variables_to_constants_v2``)
  with functional control flow, and with it lowered to TF1 ``Enter``/``Exit``
  frames (whose while contexts the loader rebuilds);
* a Keras 3 model: ``model.export()`` directory, ``.keras`` file and the object;
* a tf-keras (Keras 2) model: ``.h5``, ``.keras``, ``model.save`` SavedModel,
  ``tf.saved_model.save``, the functional object and a subclassed object.

Each is loaded with :func:`saliency_tf1.models.load_model` -- no hand work --
and explained; the masks must equal independent computations:

* gradient and Integrated Gradients: ``tf.GradientTape`` on *the same
  artifact in eager mode* (``tf.saved_model.load``, the Keras file loaded by
  Keras, the object itself), IG with the same quadrature nodes, and the
  completeness axiom;
* guided backprop: the eager reference network with ReLU's gradient
  overridden by the guided rule (``tf.custom_gradient``);
* Grad-CAM with the conv layer given by its Keras layer name: the eager
  reference network's layer activations and gradients;
* occlusion: the same method on a TF1 graph built directly from the weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.catalogue import METHODS
from saliency_tf1.engine.paths import quadrature
from saliency_tf1.methods.grad_cam import GradCam, cam_maps, normalize_and_resize
from saliency_tf1.methods.gradient import GradientSaliency
from saliency_tf1.methods.guided_backprop import GuidedBackprop
from saliency_tf1.methods.integrated_gradients import IntegratedGradients
from saliency_tf1.methods.occlusion import Occlusion
from saliency_tf1.models import UnsafeGraphError, load_model
from saliency_tf1.target import ClassTarget

v1 = tf.compat.v1
SIZE, CLASSES, CLASS = 8, 3, 1
EPS = 1e-3  # Keras's batch-norm epsilon
STEPS = 32

# The guided copy warns that If/While bodies are differentiated normally (they hold no ReLU).
pytestmark = pytest.mark.filterwarnings("ignore:saliency_tf1 .*call functions:UserWarning")


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    f = np.float32
    return {
        "conv_k": rng.normal(0, 0.5, (3, 3, 3, 4)).astype(f),
        "conv_b": rng.normal(0, 0.1, 4).astype(f),
        "gamma": rng.uniform(0.5, 1.5, 4).astype(f),
        "beta": rng.normal(0, 0.1, 4).astype(f),
        "mean": rng.normal(0, 0.1, 4).astype(f),
        "var": rng.uniform(0.5, 1.5, 4).astype(f),
        "dw_k": rng.normal(0, 0.5, (3, 3, 4, 1)).astype(f),
        "dw_b": rng.normal(0, 0.1, 4).astype(f),
        "dense_k": rng.normal(0, 0.7, (4, CLASSES)).astype(f),
        "dense_b": rng.normal(0, 0.1, CLASSES).astype(f),
    }


def cond_loop(h):
    """A data-dependent ``tf.cond`` and a two-step ``tf.while_loop`` (no ReLU inside)."""
    h = tf.cond(tf.reduce_mean(h) > 0.2, lambda: h * 1.5, lambda: h * 0.75)
    _, h = tf.while_loop(lambda i, a: i < 2,
                         lambda i, a: (i + 1, 0.5 * a + 0.25 * tf.sin(a)), (tf.constant(0), h))
    return h


def forward(w, x, relu=tf.nn.relu, with_conv=False):
    """The reference network (any of the artifacts computes it)."""
    with tf.name_scope("conv"):
        h = relu(tf.nn.conv2d(x, w["conv_k"], 1, "SAME") + w["conv_b"])
    with tf.name_scope("bn"):
        h = tf.nn.batch_normalization(h, w["mean"], w["var"], w["beta"], w["gamma"], EPS)
    with tf.name_scope("dw"):
        conv = relu(tf.nn.depthwise_conv2d(h, w["dw_k"], [1, 1, 1, 1], "SAME") + w["dw_b"])
    with tf.name_scope("condloop"):
        h = cond_loop(conv)
    with tf.name_scope("logits"):
        logits = tf.matmul(tf.reduce_mean(h, [1, 2]), w["dense_k"]) + w["dense_b"]
    return (logits, conv) if with_conv else logits


class Net(tf.Module):
    """The reference network as a ``tf.Module`` with variables (TF2 SavedModel)."""

    def __init__(self, w):
        super().__init__()
        self.w = {k: tf.Variable(v, name=k) for k, v in w.items()}

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, x):
        return forward(self.w, x)


def keras_model(keras, w, cond_layer):
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
    bn = keras.layers.BatchNormalization(epsilon=EPS, name="bn")
    dw = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")
    dense = keras.layers.Dense(CLASSES, name="logits")
    h = dw(bn(conv(inp)))
    out = dense(keras.layers.GlobalAveragePooling2D(name="gap")(cond_layer(name="condloop")(h)))
    model = keras.Model(inp, out)
    conv.set_weights([w["conv_k"], w["conv_b"]])
    bn.set_weights([w["gamma"], w["beta"], w["mean"], w["var"]])
    dw.set_weights([w["dw_k"], w["dw_b"]])
    dense.set_weights([w["dense_k"], w["dense_b"]])
    return model


def _cond_layers():
    import keras
    import tf_keras

    @keras.saving.register_keras_serializable(package="saliency_tf1_tests", name="CondLoop3")
    class CondLoop3(keras.layers.Layer):
        def call(self, h):
            return cond_loop(h)

    @tf_keras.utils.register_keras_serializable(package="saliency_tf1_tests", name="CondLoop2")
    class CondLoop2(tf_keras.layers.Layer):
        def call(self, h):
            return cond_loop(h)

    return CondLoop3, CondLoop2


def _subclassed(tf_keras, w):
    class Subclassed(tf_keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.conv = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                               name="conv")
            self.bn = tf_keras.layers.BatchNormalization(epsilon=EPS, name="bn")
            self.dw = tf_keras.layers.DepthwiseConv2D(3, padding="same", activation="relu",
                                                      name="dw")
            self.dense = tf_keras.layers.Dense(CLASSES, name="logits")

        def call(self, x, training=False):
            h = self.dw(self.bn(self.conv(x), training=training))
            return self.dense(tf.reduce_mean(cond_loop(h), [1, 2]))

    model = Subclassed()
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))
    model.conv.set_weights([w["conv_k"], w["conv_b"]])
    model.bn.set_weights([w["gamma"], w["beta"], w["mean"], w["var"]])
    model.dw.set_weights([w["dw_k"], w["dw_b"]])
    model.dense.set_weights([w["dense_k"], w["dense_b"]])
    return model


class Artifacts:
    """Every artifact (a path or an object to load) and its eager twin (x -> logits)."""

    def __init__(self, root):
        import keras
        import tf_keras
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        self.w = _weights()
        self.keep: list[object] = []  # loaded SavedModels whose functions are used
        self.load: dict[str, object] = {}
        self.eager: dict[str, object] = {}
        net = Net(self.w)
        path = str(root / "tf_module")
        tf.saved_model.save(net, path)
        self.load["tf_module"] = path
        self.eager["tf_module"] = self._signature(path)
        concrete = net.__call__.get_concrete_function()
        for kind, lower in (("frozen_functional", False), ("frozen_lowered", True)):
            frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=lower)
            path = str(root / f"{kind}.pb")
            with open(path, "wb") as f:
                f.write(frozen.graph.as_graph_def().SerializeToString())
            self.load[kind] = path
            self.eager[kind] = net
            self.frozen_names = (frozen.inputs[0].name, frozen.outputs[0].name)

        cond3, cond2 = _cond_layers()
        k3 = keras_model(keras, self.w, cond3)
        path = str(root / "keras3_export")
        k3.export(path, verbose=False)
        self.load["keras3_export"] = path
        exported = tf.saved_model.load(path)
        self.keep.append(exported)
        self.eager["keras3_export"] = exported.serve
        path = str(root / "keras3.keras")
        k3.save(path)
        self.load["keras3_file"] = path
        self.eager["keras3_file"] = keras.models.load_model(path)
        self.load["keras3_object"] = self.eager["keras3_object"] = k3

        k2 = keras_model(tf_keras, self.w, cond2)
        for kind, name in (("tf_keras_h5", "model.h5"), ("tf_keras_file", "model.keras")):
            path = str(root / name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "HDF5 is legacy"
                k2.save(path)
            self.load[kind] = path
            self.eager[kind] = tf_keras.models.load_model(path)
        path = str(root / "tf_keras_savedmodel")
        k2.save(path, save_format="tf")
        self.load["tf_keras_savedmodel"] = path
        self.eager["tf_keras_savedmodel"] = self._signature(path)
        path = str(root / "tf_keras_tf_saved")
        tf.saved_model.save(k2, path)
        self.load["tf_keras_tf_saved"] = path
        self.eager["tf_keras_tf_saved"] = self._signature(path)
        self.load["tf_keras_object"] = self.eager["tf_keras_object"] = k2
        sub = _subclassed(tf_keras, self.w)
        self.load["tf_keras_subclassed"] = self.eager["tf_keras_subclassed"] = sub

    def _signature(self, path):
        loaded = tf.saved_model.load(path)
        self.keep.append(loaded)
        function = loaded.signatures["serving_default"]
        (key,) = function.structured_input_signature[1]

        def call(x):
            out = function(**{key: tf.convert_to_tensor(x)})
            return next(iter(out.values()))

        return call


KINDS = ["tf_module", "frozen_functional", "frozen_lowered", "keras3_export", "keras3_file",
         "keras3_object", "tf_keras_h5", "tf_keras_file", "tf_keras_savedmodel",
         "tf_keras_tf_saved", "tf_keras_object", "tf_keras_subclassed"]
EXPECTED_KIND = {"tf_module": "saved_model", "frozen_functional": "frozen",
                 "frozen_lowered": "frozen", "keras3_export": "saved_model",
                 "tf_keras_savedmodel": "saved_model", "tf_keras_tf_saved": "saved_model"}


@pytest.fixture(scope="module", autouse=True)
def no_autograph_leftovers():
    """Removes the modules autograph writes to the temp dir while tracing (saving a model,
    loading one: TensorFlow deletes them only at interpreter exit)."""
    import glob
    import os
    import tempfile

    pattern = os.path.join(tempfile.gettempdir(), "__autograph_generated_file*.py")
    before = set(glob.glob(pattern))
    yield
    for path in set(glob.glob(pattern)) - before:
        os.remove(path)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return Artifacts(tmp_path_factory.mktemp("tf2_artifacts"))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).random((SIZE, SIZE, 3)).astype(np.float32)


def _call(fn, x):
    out = fn(tf.convert_to_tensor(x))
    return out if isinstance(out, tf.Tensor) else tf.convert_to_tensor(out)


def _eager_gradient(fn, x):
    xt = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = _call(fn, xt)[:, CLASS]
    return tape.gradient(y, xt).numpy()


def _eager_ig(fn, x, baseline):
    alphas, weights = quadrature("trapezoid", STEPS)
    path = baseline[None] + alphas[:, None, None, None].astype(np.float32) * (x - baseline)[None]
    grads = _eager_gradient(fn, path.astype(np.float32))
    return np.tensordot(weights, grads, axes=1) * (x - baseline)


def _guided_relu():
    @tf.custom_gradient
    def relu(t):
        out = tf.nn.relu(t)

        def grad(g):
            return g * tf.cast(t > 0, g.dtype) * tf.cast(g > 0, g.dtype)

        return out, grad

    return relu


def _oracles(w, x):
    """Guided backprop and Grad-CAM of the eager reference network."""
    xt = tf.convert_to_tensor(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = forward(w, xt, relu=_guided_relu())[:, CLASS]
    guided = tape.gradient(y, xt).numpy()[0]
    with tf.GradientTape() as tape:
        tape.watch(xt)
        logits, conv = forward(w, xt, with_conv=True)
        y = logits[:, CLASS]
    grads = tape.gradient(y, conv).numpy()
    cam = normalize_and_resize(cam_maps(conv.numpy(), grads), (SIZE, SIZE))[0]
    return guided, np.repeat(cam[..., None], 3, axis=-1)


def _reference_occlusion(w, x):
    graph = tf.Graph()
    with graph.as_default():
        xp = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3])
        target = ClassTarget(forward(w, xp))
        with v1.Session(graph=graph) as session:
            return Occlusion(graph, session, target.y, xp).GetMask(x, target.feed(CLASS), size=3)


def _loaded_io(model, artifacts, kind):
    if kind.startswith("frozen"):
        x_name, y_name = artifacts.frozen_names
        return model.tensor(x_name, role="input"), model.tensor(y_name, role="output")
    (x,) = model.inputs.values()
    (y,) = model.outputs.values()
    return x, y


def _close(actual, expected, what, rtol=1e-5):
    scale = max(float(np.abs(expected).max()), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_artifact_gives_eager_tensorflows_masks(artifacts, image, kind):
    eager = artifacts.eager[kind]
    batch = np.stack([image, image[::-1]])
    with load_model(artifacts.load[kind]) as model:
        assert model.kind == EXPECTED_KIND.get(kind, "keras")
        assert model.gradient_error is None
        x, logits = _loaded_io(model, artifacts, kind)
        np.testing.assert_allclose(model.session.run(logits, {x: batch}),
                                   _call(eager, batch).numpy(), rtol=1e-5, atol=1e-6)
        target = ClassTarget(logits)
        feed = target.feed(CLASS)
        conv = model.tensor("dw", role="conv")  # the Keras layer's name
        gradient = GradientSaliency(model.graph, model.session, target.y, x).GetMask(image, feed)
        ig_method = IntegratedGradients(model.graph, model.session, target.y, x)
        baseline = np.zeros_like(image)
        ig, error = ig_method.GetMask(image, feed, x_baseline=baseline, x_steps=STEPS,
                                      rule="trapezoid", return_error=True)
        if kind == "frozen_lowered":  # TF1 frames: the guided copy of the path cannot hold them
            assert "guided" not in model.methods and "TF1 while loop" in model.unsupported["guided"]
            with pytest.raises(ValueError, match="TF1 while loop"):
                GuidedBackprop(model.graph, model.session, target.y, x)
            guided = None
        else:
            assert "guided" in model.methods
            guided = GuidedBackprop(model.graph, model.session, target.y, x).GetMask(image, feed)
        cam = GradCam(model.graph, model.session, target.y, x, conv).GetMask(image, feed)
        occlusion = Occlusion(model.graph, model.session, target.y, x).GetMask(image, feed,
                                                                                 size=3)
    _close(gradient, _eager_gradient(eager, image[None])[0], f"{kind}: gradient")
    eager_ig = _eager_ig(eager, image, baseline)
    _close(ig, eager_ig, f"{kind}: IG")
    # Completeness: the masks sum to f(x) - f(baseline) up to the same quadrature error.
    gap = float(_call(eager, image[None])[0, CLASS] - _call(eager, baseline[None])[0, CLASS])
    assert abs(float(ig.sum()) - gap - error) < 1e-4 * max(1.0, abs(gap))
    assert abs(float(eager_ig.sum()) - gap - error) < 1e-4 * max(1.0, abs(gap))
    assert abs(error) < 0.05 * abs(gap)
    guided_oracle, cam_oracle = _oracles(artifacts.w, image)
    assert np.abs(guided_oracle).max() > 0 and np.abs(cam_oracle).max() > 0
    if guided is not None:
        _close(guided, guided_oracle, f"{kind}: guided backprop")
    _close(cam, cam_oracle, f"{kind}: Grad-CAM by layer name")
    _close(occlusion, _reference_occlusion(artifacts.w, image), f"{kind}: occlusion")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tf_module", "keras3_export", "tf_keras_subclassed"])
def test_every_catalogue_method_runs_on_tf2_artifacts(artifacts, image, kind):
    from method_cases import grid_segments, method_args

    with load_model(artifacts.load[kind]) as model:
        x, logits = _loaded_io(model, artifacts, kind)
        target = ClassTarget(logits)
        conv = model.tensor("dw", role="conv")
        rule_based = {"deeplift", "lrp", "lrpcomposite"}  # no rule for If/While
        assert set(model.unsupported) == rule_based & set(METHODS)
        assert model.methods == [m for m in METHODS if METHODS[m].available()
                                 and m not in rule_based]
        for name in model.methods:
            spec = METHODS[name]
            args = method_args(name)
            if name == "xrai":
                from saliency_tf1.methods.xrai import XRAIParameters

                args = {"extra_parameters": XRAIParameters(
                    steps=4, experimental_params={"min_pixel_diff": 0}),
                        "segments": grid_segments(SIZE, 2)}
            if name == "occlusion":
                args = {**args, "size": 3}
            method = spec.build(model.graph, model.session, target.y, x, conv)
            out = getattr(method, spec.call)(image, target.feed(CLASS), **args)
            mask = np.asarray(getattr(out, "attribution_mask", out))
            assert mask.shape[:2] == (SIZE, SIZE), name
            assert np.isfinite(mask).all(), name


def test_predict_first_then_explain_a_model_with_while_loops(artifacts, image):
    """Gradients added after the first run rewrite the functional While: the session the
    model hands out stays valid (a fresh one behind it), weights changed in it are kept."""
    batch = image[None]
    eager = artifacts.eager["tf_module"]
    with load_model(artifacts.load["tf_module"]) as model:
        x, logits = _loaded_io(model, artifacts, "tf_module")
        before = model.session.run(logits, {x: batch})  # predict first
        np.testing.assert_allclose(before, eager(batch).numpy(), rtol=1e-5, atol=1e-6)
        target = ClassTarget(logits)
        grad = GradientSaliency(model.graph, model.session, target.y, x)
        _close(grad.GetMask(image, target.feed(CLASS)), _eager_gradient(eager, batch)[0],
               "gradient after a prediction")
        assert model.session.refreshes >= 1
        np.testing.assert_allclose(model.session.run(logits, {x: batch}), before, rtol=1e-6)
        # A weight changed in the session survives the next fresh session.
        bias = next(op for op in model.graph.get_operations() if op.type == "VarHandleOp"
                    and op.name.startswith("dense_b"))
        with model.graph.as_default():
            shift = tf.raw_ops.AssignAddVariableOp(
                resource=bias.outputs[0], value=tf.ones([CLASSES], tf.float32))
        model.session.run(shift)
        shifted = model.session.run(logits, {x: batch})
        np.testing.assert_allclose(shifted, before + 1, rtol=1e-5, atol=1e-5)
        refreshes = model.session.refreshes
        cam = GradCam(model.graph, model.session, target.y, x, model.tensor("dw"))
        cam.GetMask(image, target.feed(CLASS))  # a new gradient through the loop
        assert model.session.refreshes > refreshes
        np.testing.assert_allclose(model.session.run(logits, {x: batch}), shifted, rtol=1e-6)


def test_a_plain_session_breaks_where_the_model_session_does_not(artifacts, image):
    """The failure the model's session prevents (so the test above tests something)."""
    with load_model(artifacts.load["tf_module"]) as model:
        x, logits = _loaded_io(model, artifacts, "tf_module")
        raw = model.session.session  # the tf.compat.v1.Session behind it
        raw.run(logits, {x: image[None]})
        with model.graph.as_default():
            grad = tf.gradients(logits[:, CLASS], x)[0]
        with pytest.raises(tf.errors.InvalidArgumentError, match="invalid output"):
            raw.run(grad, {x: image[None]})


def _v1_control_flow_graph():
    """A TF1 graph (control flow v1): a tf.cond, then a while loop holding a nested loop."""
    from tensorflow.python.ops import control_flow_util

    rng = np.random.default_rng(2)
    old = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(tf.float32, [None, 4], name="x")
            w = tf.constant(rng.normal(size=(4, 4)).astype(np.float32), name="w")
            h = tf.nn.relu(tf.matmul(x, w))
            h = tf.cond(tf.reduce_mean(h) > 0.1, lambda: h * 2.0, lambda: h * 0.5)

            def body(i, h):
                _, inner = v1.while_loop(lambda j, a: j < 2,
                                         lambda j, a: (j + 1, tf.tanh(a * w[1] + h)), (0, h))
                return i + 1, 0.5 * inner + 0.25 * tf.sin(h * w[0])

            _, h = v1.while_loop(lambda i, h: i < 3, body, (0, h))
            y = tf.identity(tf.reduce_sum(h, 1), name="y")
            assert any(op.type == "Exit" for op in graph.get_operations())
            grad = tf.gradients(y, x)[0]
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = old
    return graph, x, y, grad


def test_frozen_tf1_while_loops_get_their_contexts_back(tmp_path):
    graph, x, y, grad = _v1_control_flow_graph()
    xs = np.random.default_rng(4).random((3, 4)).astype(np.float32)
    with v1.Session(graph=graph) as session:
        live = session.run(grad, {x: xs})
    path = tmp_path / "v1_loops.pb"
    graph_def = graph.as_graph_def()
    keep = {n.name for n in graph_def.node if not n.name.startswith("gradients")}
    pruned = v1.graph_util.extract_sub_graph(graph_def, ["y"])
    assert {n.name for n in pruned.node} <= keep
    path.write_bytes(pruned.SerializeToString())
    # Imported plainly, TF cannot differentiate it: the contexts are not in a GraphDef.
    plain = tf.Graph()
    with plain.as_default():
        v1.import_graph_def(pruned, name="")
        with pytest.raises(AttributeError, match="outer_context"):
            tf.gradients(plain.get_tensor_by_name("y:0"), plain.get_tensor_by_name("x:0"))
    with load_model(path) as model:
        assert model.gradient_error is None
        mx, my = model.tensor("x", role="input"), model.tensor("y", role="output")
        with model.graph.as_default():
            loaded_grad = tf.gradients(my, mx)[0]
        np.testing.assert_allclose(model.session.run(loaded_grad, {mx: xs}), live,
                                   rtol=1e-5, atol=1e-6)


def _forward_only_occlusion(model, target, x):
    """Occlusion over a backend that builds no gradient (what a model that cannot be
    differentiated allows)."""
    from saliency_tf1.engine.backend import ForwardBackend

    return Occlusion.from_backend(ForwardBackend(model.graph, model.session, target.y, x))


def _check_forward_only_methods_work(model, target, x, conv, image):
    """``model.methods`` are the perturbation methods, and each explains the model."""
    from method_cases import method_args

    from saliency_tf1.engine.backend import ForwardBackend

    assert "occlusion" in model.methods and "gradient" not in model.methods
    assert set(model.unsupported) == {m for m in METHODS if METHODS[m].available()} - set(
        model.methods)
    backend = ForwardBackend(model.graph, model.session, target.y, x, conv)
    for name in model.methods:
        spec = METHODS[name]
        assert getattr(spec.cls, "forward_only", name == "occlusion"), name
        method = spec.cls.from_backend(backend)
        args = {**method_args(name), **({"size": 3} if name == "occlusion" else {})}
        out = getattr(method, spec.call)(image, target.feed(0), **args)
        mask = np.asarray(getattr(out, "attribution_mask", out))
        assert mask.shape[:2] == image.shape[:2] and np.isfinite(mask).all(), name


def test_cond_inside_a_tf1_loop_says_which_methods_work(tmp_path):
    from tensorflow.python.ops import control_flow_util

    old = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
            _, h = v1.while_loop(
                lambda i, h: i < 2,
                lambda i, h: (i + 1, tf.cond(tf.reduce_mean(h) > 0, lambda: h * 0.5,
                                             lambda: h + 1.0)), (0, x))
            h = tf.reshape(h, [-1, SIZE, SIZE, 3], name="features")
            tf.reshape(tf.reduce_mean(h, [1, 2]), [-1, 3], name="y")
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = old
    path = tmp_path / "cond_in_loop.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.warns(UserWarning, match=r"conditional .* inside loop.*occlusion") as record:
        model = load_model(path)
    assert record[0].filename == __file__  # the warning points at the caller
    with model:
        assert "CondContext" in model.gradient_error
        assert "CondContext" in model.unsupported["gradient"]
        x, y = model.tensor("x", role="input"), model.tensor("y", role="output")
        target = ClassTarget(y)
        image = np.random.default_rng(0).random((SIZE, SIZE, 3)).astype(np.float32)
        mask = _forward_only_occlusion(model, target, x).GetMask(image, target.feed(0), size=3)
        assert mask.shape == image.shape and np.isfinite(mask).all()
        assert np.abs(mask).max() > 0
        _check_forward_only_methods_work(model, target, x, model.tensor("features"), image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path, gradients=False).close()


def test_frozen_graph_without_its_function_library_is_a_load_error(artifacts, tmp_path):
    from tensorflow.core.framework import graph_pb2

    graph_def = graph_pb2.GraphDef()
    with open(artifacts.load["frozen_functional"], "rb") as f:
        graph_def.ParseFromString(f.read())
    assert any(n.op in ("StatelessIf", "StatelessWhile", "If", "While") for n in graph_def.node)
    graph_def.ClearField("library")
    path = tmp_path / "no_library.pb"
    path.write_bytes(graph_def.SerializeToString())
    with pytest.raises(ValueError, match=r"calls function '.*', which is not in the graph's "
                                         r"function library"):
        load_model(path)


def test_uninitialised_variable_is_a_load_error(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        w1 = v1.get_variable("w1", initializer=np.ones((3, 2), np.float32))
        w2 = v1.get_variable("w2", initializer=np.ones((2,), np.float32))
        y = tf.identity(tf.matmul(x, w1) + w2, name="y")
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(tmp_path / "partial"))
            builder.add_meta_graph_and_variables(
                session, ["serve"], saver=v1.train.Saver([w1]),  # w2 is not saved
                signature_def_map={"serving_default": v1.saved_model.predict_signature_def(
                    {"x": x}, {"y": y})})
            builder.save()
    with pytest.raises(ValueError, match=r"read 1 variable\(s\) that loading left "
                                         r"uninitialised \(w2\)"):
        load_model(tmp_path / "partial")


def test_gradient_that_cannot_be_built_is_a_load_error(tmp_path, image):
    class Area(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
        def __call__(self, x):
            small = tf.image.resize(x, [4, 4], method="area")  # ResizeArea: no gradient
            return tf.reduce_mean(small, [1, 2])

    path = str(tmp_path / "area")
    tf.saved_model.save(Area(), path)
    with pytest.raises(ValueError, match=r"gradients cannot be built from its inputs to its "
                                         r"outputs: op .*\(ResizeArea\) has no registered "
                                         r"gradient.*occlusion.*gradients=False"):
        load_model(path)
    with load_model(path, gradients=False) as model:
        assert "ResizeArea" in model.gradient_error
        (x,), (y,) = model.inputs.values(), model.outputs.values()
        target = ClassTarget(y)
        mask = _forward_only_occlusion(model, target, x).GetMask(image, target.feed(0), size=3)
        assert np.isfinite(mask).all() and np.abs(mask).max() > 0
        conv = model.tensor("PartitionedCall/PartitionedCall/resize/ResizeArea")
        _check_forward_only_methods_work(model, target, x, conv, image)


def test_unsafe_ops_inside_a_tf2_function_are_refused_before_import(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("42")

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            data = tf.strings.to_number(tf.io.read_file(str(secret)))
            return x * data

    path = str(tmp_path / "reader")
    tf.saved_model.save(Reader(), path)
    with pytest.raises(UnsafeGraphError, match="ReadFile") as err:
        load_model(path)
    assert "in function" in str(err.value)


def test_tensor_names_layers_suggestions_and_logits(artifacts):
    with load_model(artifacts.load["keras3_export"]) as model:
        # Keras 3 runs layer "dw" under the scope dw_1: found through its variables.
        assert model.tensor("dw").op.type == "Relu"
        assert model.tensor("logits").op.type == "BiasAdd"
        with pytest.raises(ValueError) as err:
            model.tensor("logit", role="output")
        text = str(err.value)
        assert "did you mean" in text and "ReadVariableOp" not in text.split("did you mean")[1]
    import tf_keras

    inp = tf_keras.Input((4,), name="features")
    hidden = tf_keras.layers.Dense(3, activation="relu", name="dense_1")(inp)
    probs = tf_keras.layers.Dense(2, activation="softmax", name="dense_2")(hidden)
    with load_model(tf_keras.Model(inp, probs)) as model:
        assert model.tensor("dense_2") is model.outputs["dense_2"]
        assert model.logits().op.type == "BiasAdd"
        assert model.tensor("dense_2/BiasAdd").name.endswith("dense_2/BiasAdd:0")
        assert model.is_probability("dense_2") and not model.is_probability(model.logits())
        with pytest.raises(ValueError) as err:
            model.tensor("dense_3", role="output")
        text = str(err.value)
        assert "is a softmax; its logits (pre-softmax) are" in text
        assert "dense_2" in text.split("did you mean")[1]


def test_subclassed_tf_keras_model_matches_and_stays_usable(artifacts, image):
    model = artifacts.eager["tf_keras_subclassed"]
    weights = [w.copy() for w in model.get_weights()]
    batch = image[None]
    expected = model(batch).numpy()
    with load_model(model) as loaded:
        x, logits = _loaded_io(loaded, artifacts, "tf_keras_subclassed")
        np.testing.assert_allclose(loaded.session.run(logits, {x: batch}), expected,
                                   rtol=1e-6, atol=1e-8)
        assert loaded.tensor("conv").op.type == "Relu"
    # The caller's eager model is untouched: same weights, same outputs, still trainable.
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    np.testing.assert_array_equal(model(batch).numpy(), expected)


def test_untraceable_model_is_a_type_error_and_is_left_working(image):
    import tf_keras

    class NeedsEager(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(2)

        def call(self, x):
            scale = float(tf.reduce_max(x).numpy())  # Python needs an eager value
            return self.dense(tf.reshape(x, [-1, SIZE * SIZE * 3])) * scale

    model = NeedsEager()
    batch = image[None]
    expected = model(batch).numpy()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(TypeError, match="cannot be traced in graph mode.*not changed"):
        load_model(model)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    np.testing.assert_array_equal(model(batch).numpy(), expected)


def test_python_control_flow_in_a_call_is_traced_with_autograph(image):
    import tf_keras

    class Branchy(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(2)

        def call(self, x):
            h = self.dense(tf.reshape(x, [-1, SIZE * SIZE * 3]))
            if tf.reduce_mean(x) > 0.5:  # a Python `if` on a tensor: needs autograph
                h = h * 2.0
            return h

    model = Branchy()
    batch = np.stack([image, np.ones_like(image)])
    expected = np.concatenate([model(batch[:1]).numpy(), model(batch[1:]).numpy()])
    with load_model(model) as loaded:
        (x,), (y,) = loaded.inputs.values(), loaded.outputs.values()
        assert any(op.type in ("If", "StatelessIf") for op in loaded.graph.get_operations())
        got = np.concatenate([loaded.session.run(y, {x: batch[i:i + 1]}) for i in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_objects_without_an_input_shape_ask_for_one():
    class Plain(tf.Module):
        def __call__(self, x):
            return x * 2.0

    with pytest.raises(TypeError, match="input_signature"):
        load_model(Plain())
    with load_model(Plain(), input_signature=tf.TensorSpec([None, 3], tf.float32)) as model:
        (x,), (y,) = model.inputs.values(), model.outputs.values()
        assert model.kind == "module"
        np.testing.assert_array_equal(model.session.run(y, {x: np.ones((1, 3))}), [[2, 2, 2]])
    with pytest.raises(TypeError, match="expected a path to a model"):
        load_model(object())


@pytest.mark.parametrize("kind", ["tf_module", "keras3_export"])
def test_command_line_explains_tf2_artifacts(artifacts, image, kind, tmp_path, capsys):
    """saliency-tf1 explain on a TF2 SavedModel and a Keras-3 export: the saved masks equal
    the same methods run on the loaded model (gradient equal to GradientTape's above)."""
    from PIL import Image

    from saliency_tf1.cli import main
    from saliency_tf1.target import ClassTarget

    path = artifacts.load[kind]
    with load_model(path) as model:
        (x_name,) = model.inputs
        (y_name,) = model.outputs
    pixels = np.round(image * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    out = tmp_path / "out"
    code = main(["explain", path, "--input-tensor", x_name, "--output-tensor", y_name,
                 "--method", "gradient,ig,occlusion", "-q", str(tmp_path / "in.png"),
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "predicted class" in printed, printed
    x_value = pixels.astype(np.float32) / 255
    with load_model(path) as model:
        x, y = model.tensor(x_name, role="input"), model.tensor(y_name, role="output")
        with model.graph.as_default():
            target = ClassTarget(y)
        cls = int(model.session.run(target.predictions, {x: x_value[None]})[0])
        grad = METHODS["gradient"].build(model.graph, model.session, target.y, x)
        expected = grad.GetMask(x_value, target.feed(cls))
    _close(np.load(out / "in_gradient.npy"), expected, f"{kind}: CLI gradient")
    assert np.load(out / "in_ig.npy").shape == image.shape
    assert (out / "in.png").exists()
