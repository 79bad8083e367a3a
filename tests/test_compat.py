"""compat: the core API in both directions.

* TF1 -> core: ``create_tf1_call_model_function`` drives our core classes and
  PAIR's ``saliency.core`` alike;
* core -> ours: the core classes run the TF1 methods' kernels over
  ``CallModelBackend``; over a plain NumPy model they give analytic answers;
* the function's answers are checked (missing keys, non-arrays, wrong shapes);
* ``CoreAdapter`` puts a TF1 method where a core method is expected.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from saliency_tf1.compat import core
from saliency_tf1.compat.call_model import CallModelBackend, check_call_model_output

from saliency_tf1 import ClassTarget, PerExample
from saliency_tf1.engine import backend as spine

v1 = tf.compat.v1

IOG = core.INPUT_OUTPUT_GRADIENTS
OLV = core.OUTPUT_LAYER_VALUES
CLV = core.CONVOLUTION_LAYER_VALUES
COG = core.CONVOLUTION_OUTPUT_GRADIENTS


def assert_close(actual, expected, rtol=1e-5):
    """Elementwise close, relative to the largest magnitude of ``expected``."""
    expected = np.asarray(expected, np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol,
                               atol=rtol * max(scale, 1e-12))


# ---------------------------------------------------------------------------
# The methods, each run three ways. Add a method by adding a Case.


@dataclass(frozen=True)
class Case:
    name: str
    tf1: str                    # "module:Class" of our TF1 method
    core: str                   # class name in compat.core (and PAIR's saliency.core)
    call: str = "GetMask"
    kwargs: dict[str, Any] | Any = field(default_factory=dict)  # or f(pair: bool) -> dict
    conv: bool = False          # the TF1 constructor takes conv_layer
    rtol: float = 1e-5
    in_pair: bool = True        # PAIR's saliency.core has the class

    def pair_class(self):
        return getattr(pytest.importorskip("saliency.core"), self.core)

    def tf1_class(self):
        module, _, attr = self.tf1.partition(":")
        return getattr(importlib.import_module(module), attr)

    def run(self, method, x, *args, pair=False):
        # kwargs may be a function of which library runs (XRAI's parameter class).
        kwargs = self.kwargs(pair) if callable(self.kwargs) else self.kwargs
        # SmoothGrad's noise comes from NumPy's global state (seed=None): PAIR's stream.
        np.random.seed(5)
        return getattr(method, self.call)(x, *args, **kwargs)


CASES = [
    Case("gradient", "saliency_tf1.methods.gradient:GradientSaliency", "GradientSaliency"),
    Case("smoothgrad", "saliency_tf1.methods.gradient:GradientSaliency", "GradientSaliency",
         call="GetSmoothedMask", kwargs={"nsamples": 4, "stdev_spread": 0.1}),
    Case("ig", "saliency_tf1.methods.integrated_gradients:IntegratedGradients",
         "IntegratedGradients", kwargs={"x_steps": 8}),
    Case("smooth_ig", "saliency_tf1.methods.integrated_gradients:IntegratedGradients",
         "IntegratedGradients", call="GetSmoothedMask",
         kwargs={"nsamples": 3, "magnitude": False, "x_steps": 5}),
    Case("occlusion", "saliency_tf1.methods.occlusion:Occlusion", "Occlusion",
         kwargs={"size": 5, "value": 0.5}),
    Case("blurig", "saliency_tf1.methods.blur_ig:BlurIG", "BlurIG",
         kwargs={"max_sigma": 4, "steps": 12}),
    Case("blurig_sqrt", "saliency_tf1.methods.blur_ig:BlurIG", "BlurIG",
         kwargs={"max_sigma": 6, "steps": 8, "sqrt": True}),
    Case("guidedig", "saliency_tf1.methods.guided_ig:GuidedIG", "GuidedIG",
         kwargs={"x_steps": 10, "fraction": 0.3, "max_dist": 0.1}),
    Case("gradcam", "saliency_tf1.methods.grad_cam:GradCam", "GradCam", conv=True),
    Case("gradcam_raw", "saliency_tf1.methods.grad_cam:GradCam", "GradCam", conv=True,
         kwargs={"should_resize": False, "three_dims": False}),
    Case("gradcam_plus_plus", "saliency_tf1.methods.grad_cam:GradCamPlusPlus", "GradCamPlusPlus",
         conv=True, in_pair=False),
    Case("xrai", "saliency_tf1.methods.xrai:XRAI", "XRAI", kwargs=lambda pair: {
        "extra_parameters": xrai_parameters(pair, steps=6)}),
    Case("xrai_details", "saliency_tf1.methods.xrai:XRAI", "XRAI", call="GetMaskWithDetails",
         kwargs=lambda pair: {"extra_parameters": xrai_parameters(
             pair, steps=5, return_xrai_segments=True, algorithm="fast")}),
]


def xrai_parameters(pair: bool, **values):
    """XRAIParameters of PAIR's core package or ours, with ``values`` set."""
    params = (pytest.importorskip("saliency.core") if pair else core).XRAIParameters()
    for name, value in values.items():
        setattr(params, name, value)
    return params

IDS = [case.name for case in CASES]
PAIR_CASES = [case for case in CASES if case.in_pair]


def mask_of(result):
    """The mask of a result; XRAI's details: the mask and the ranked segments, stacked."""
    if hasattr(result, "attribution_mask"):
        return np.stack([result.attribution_mask, np.asarray(result.segments, np.float64)])
    return result


def tf1_method(case, model):
    cls = case.tf1_class()
    if case.conv:
        return cls(model.graph, model.session, model.y, model.x, model.conv)
    return cls(model.graph, model.session, model.y, model.x)


# ---------------------------------------------------------------------------
# Models


def numpy_cnn(size=12, channels=3, features=6, classes=4, seed=0):
    """A NumPy model with every core key: 1x1 conv + ReLU, global mean, dense.

    ``A = relu(x @ W1 + b1)`` per pixel (the "conv layer", ``[n, h, w, f]``),
    ``logits = mean_hw(A) @ Wd``, ``y = logits[:, call_model_args["class"]]``.
    Gradients by hand: ``dy/dA = Wd[:, k] / (h w)`` at every pixel and
    ``dy/dx = (dy/dA * [pre > 0]) @ W1.T``.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.7, (channels, features))
    b1 = rng.normal(0, 0.2, features)
    wd = rng.normal(0, 1.0, (features, classes))

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        args = call_model_args or {}
        k = np.asarray(args.get("class", 0))
        x = np.asarray(x_value_batch, np.float64)
        pre = x @ w1 + b1
        conv = np.maximum(pre, 0.0)
        logits = conv.mean(axis=(1, 2)) @ wd
        n, h, w = x.shape[:3]
        wk = wd[:, k].T if k.ndim else np.broadcast_to(wd[:, k], (n, features))
        dconv = np.broadcast_to(wk[:, None, None, :] / (h * w), conv.shape)
        out = {
            OLV: np.take_along_axis(logits, np.broadcast_to(k, (n,))[:, None], 1)[:, 0],
            CLV: conv,
            COG: np.array(dconv),
            IOG: (dconv * (pre > 0)) @ w1.T,
        }
        return {key: out[key] for key in expected_keys}

    return call_model_function


def linear_image_model(w):
    """``y = sum(w * x)`` per image; its "conv layer" is the input itself."""

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        x = np.asarray(x_value_batch, np.float64)
        grads = np.broadcast_to(w, x.shape).copy()
        out = {IOG: grads, OLV: (x * w).sum(axis=(1, 2, 3)), CLV: x, COG: grads}
        return {key: out[key] for key in expected_keys}

    return call_model_function


def analytic_function(x_value_batch, call_model_args=None, expected_keys=None):
    """``f(x) = 5 x0 + x1^2 + sin(x2)``, gradient ``[5, 2 x1, cos x2]``; no TensorFlow."""
    x = np.asarray(x_value_batch, np.float64)
    out = {
        OLV: 5 * x[:, 0] + x[:, 1] ** 2 + np.sin(x[:, 2]),
        IOG: np.stack([np.full(len(x), 5.0), 2 * x[:, 1], np.cos(x[:, 2])], axis=1),
    }
    return {key: out[key] for key in expected_keys}


@pytest.fixture
def pair_on_numpy2(monkeypatch):
    """PAIR 0.2.1's core GuidedIG calls np.quantile(..., interpolation=), which NumPy 2.4
    no longer takes: give its module a NumPy whose quantile maps it to method=."""
    try:
        from saliency.core import guided_ig
    except ImportError:
        return

    class NumpyShim:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def quantile(a, q, interpolation=None, **kwargs):
            return np.quantile(a, q, method=interpolation, **kwargs)

    monkeypatch.setattr(guided_ig, "np", NumpyShim())


@pytest.fixture
def selector_cnn():
    """The conftest ReLU CNN with the explained class fed through a placeholder."""
    from conftest import make_relu_cnn

    model = make_relu_cnn()
    with model.graph.as_default():
        k = v1.placeholder(tf.int32, [], name="k")
        model.y = tf.gather(model.logits, k, axis=1)
    model.extra = {"k": k}
    yield model
    model.session.close()


# ---------------------------------------------------------------------------
# Constants


def test_constants_are_the_spines_and_the_core_api_strings():
    for name in ("INPUT_OUTPUT_GRADIENTS", "OUTPUT_LAYER_VALUES", "CONVOLUTION_LAYER_VALUES",
                 "CONVOLUTION_OUTPUT_GRADIENTS"):
        assert getattr(core, name) == name
        assert getattr(core, name) is getattr(spine, name)


@pytest.mark.oracle
def test_constants_equal_pairs():
    pair = pytest.importorskip("saliency.core")
    for name in ("INPUT_OUTPUT_GRADIENTS", "OUTPUT_LAYER_VALUES", "CONVOLUTION_LAYER_VALUES",
                 "CONVOLUTION_OUTPUT_GRADIENTS"):
        assert getattr(core, name) == getattr(pair, name)


# ---------------------------------------------------------------------------
# Three ways on one TF1 CNN


@pytest.mark.oracle
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_three_ways_give_the_same_mask(case, relu_cnn, rng, pair_on_numpy2):
    """TF1 class == our core class over create_tf1_call_model_function == PAIR's saliency.core."""
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    function = core.create_tf1_call_model_function(
        relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, relu_cnn.conv)
    ours_tf1 = mask_of(case.run(tf1_method(case, relu_cnn), x))
    ours_core = mask_of(case.run(getattr(core, case.core)(), x, function))
    assert ours_tf1.shape == ours_core.shape
    assert np.max(np.abs(ours_tf1)) > 0
    assert_close(ours_core, ours_tf1, case.rtol)
    if case.in_pair:
        theirs = mask_of(case.run(case.pair_class()(), x, function, pair=True))
        assert_close(ours_core, theirs, case.rtol)


@pytest.mark.oracle
@pytest.mark.parametrize("case", PAIR_CASES, ids=[case.name for case in PAIR_CASES])
def test_core_classes_match_pair_over_a_numpy_model(case, pair_on_numpy2):
    """Our core class and PAIR's over one NumPy call_model_function (no TensorFlow)."""
    pair_class = case.pair_class()
    function = numpy_cnn()
    x = np.random.default_rng(3).uniform(0, 1, (12, 12, 3))
    args = {"class": 2}
    ours = mask_of(case.run(getattr(core, case.core)(), x, function, args))
    theirs = mask_of(case.run(pair_class(), x, function, args, pair=True))
    assert np.max(np.abs(theirs)) > 0
    assert_close(ours, theirs, case.rtol)


# ---------------------------------------------------------------------------
# TF1 -> core: create_tf1_call_model_function


def test_tf1_call_model_function_returns_the_core_keys(relu_cnn, rng):
    f = core.create_tf1_call_model_function(
        relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, relu_cnn.conv)
    xs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    out = f(xs, expected_keys=[IOG, OLV, CLV, COG])
    with relu_cnn.graph.as_default():
        grads = tf.gradients(relu_cnn.y, [relu_cnn.x, relu_cnn.conv])
    want = relu_cnn.session.run([grads[0], relu_cnn.y, relu_cnn.conv, grads[1]],
                                {relu_cnn.x: xs})
    for key, expected in zip([IOG, OLV, CLV, COG], want):
        assert out[key].shape == expected.shape
        assert_close(out[key], expected)
    assert sorted(f(xs)) == sorted(out)  # expected_keys=None: every key the model has
    assert list(f(xs, None, [OLV])) == [OLV]


def test_tf1_call_model_function_builds_ops_once_and_keeps_args(selector_cnn, rng):
    m = selector_cnn
    before = m.op_count()
    f = core.create_tf1_call_model_function(m.graph, m.session, m.y, m.x)
    built = m.op_count()
    assert built > before
    core.create_tf1_call_model_function(m.graph, m.session, m.y, m.x)
    args = {m.extra["k"]: 3}
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    out = f(xs, args, [OLV])
    assert args == {m.extra["k"]: 3}  # PAIR's writes x into it; ours never does
    assert m.op_count() == built
    assert_close(out[OLV], m.session.run(m.logits, {m.x: xs})[:, 3])


def test_tf1_call_model_function_with_scalar_y_takes_any_batch(rng):
    """PAIR's y = logits[0, k] (shape ()) works for batches: one session.run per row."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        y = tf.reduce_sum(x[0] ** 2)
    with v1.Session(graph=graph) as session:
        f = core.create_tf1_call_model_function(graph, session, y, x)
        xs = rng.normal(size=(4, 3)).astype(np.float32)
        out = f(xs, expected_keys=[IOG, OLV])
    assert_close(out[IOG], 2 * xs)
    assert_close(out[OLV], (xs**2).sum(axis=1))


def test_tf1_call_model_function_errors(relu_cnn, rng):
    f = core.create_tf1_call_model_function(relu_cnn.graph, relu_cnn.session, relu_cnn.y,
                                            relu_cnn.x)
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="CONVOLUTION_LAYER_VALUES.*conv_layer"):
        f(xs, expected_keys=[CLV])
    with pytest.raises(ValueError, match="NOT_A_KEY"):
        f(xs, expected_keys=["NOT_A_KEY"])
    with pytest.raises(TypeError, match="expected_keys"):
        f(xs, expected_keys=IOG)
    with pytest.raises(ValueError, match=r"x_value_batch.*\(2, 8, 8, 3\)"):
        f(xs[:, :8, :8], expected_keys=[IOG])
    with pytest.raises(ValueError, match="y"):
        core.create_tf1_call_model_function(relu_cnn.graph, relu_cnn.session, relu_cnn.logits,
                                            relu_cnn.x)


@pytest.mark.oracle
def test_core_classes_accept_pairs_tf1_call_model_function(selector_cnn, rng):
    """A call_model_function written for PAIR (its own TF1 helper) drives our core classes."""
    pair_tf1 = pytest.importorskip("saliency.tf1")
    from saliency_tf1.methods.integrated_gradients import IntegratedGradients

    m = selector_cnn
    k = m.extra["k"]
    theirs = pair_tf1.create_tf1_call_model_function(m.graph, m.session, m.y, m.x)
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    args = {k: 2}
    mask = core.IntegratedGradients().GetMask(x, theirs, args, x_steps=10)
    assert args == {k: 2}  # PAIR's function adds x to the dict it gets: a copy
    expected = IntegratedGradients(m.graph, m.session, m.y, m.x).GetMask(x, {k: 2}, x_steps=10)
    assert_close(mask, expected)


def test_call_model_args_select_the_class(selector_cnn, rng):
    from saliency_tf1.methods.gradient import GradientSaliency

    m = selector_cnn
    k = m.extra["k"]
    f = core.create_tf1_call_model_function(m.graph, m.session, m.y, m.x)
    xs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    tf1 = GradientSaliency(m.graph, m.session, m.y, m.x)
    for cls in (0, 4):
        assert_close(core.GradientSaliency().GetMask(xs[0], f, {k: cls}),
                     tf1.GetMask(xs[0], {k: cls}))
    # One class per input: ClassTarget's PerExample feed as call_model_args.
    target = ClassTarget(m.logits)
    g = core.create_tf1_call_model_function(m.graph, m.session, target.y, m.x)
    classes = [4, 1, 0]
    batch = core.GradientSaliency().GetMaskBatch(xs, g, target.feed(classes))
    assert_close(batch, np.stack([tf1.GetMask(x, {k: c}) for x, c in zip(xs, classes)]))
    assert not np.allclose(batch[0], tf1.GetMask(xs[0], {k: 1}))


# ---------------------------------------------------------------------------
# core -> ours: a NumPy model, analytic answers


def test_numpy_model_gradient_and_integrated_gradients_are_analytic():
    point = np.array([0.7, -1.3, 2.1])
    gradient = core.GradientSaliency().GetMask(point, analytic_function)
    assert_close(gradient, [5.0, 2 * point[1], np.cos(point[2])], 1e-12)
    # IG from a zero baseline: [5 x0, x1^2, sin x2] (each term integrates exactly);
    # Gauss-Legendre with 12 nodes is exact for the polynomial terms, ~1e-15 for sin.
    ig = core.IntegratedGradients().GetMask(point, analytic_function, x_steps=12,
                                            rule="gauss_legendre")
    assert_close(ig, [5 * point[0], point[1] ** 2, np.sin(point[2])], 1e-10)
    # PAIR's rule on f: [5 x0, x1^2 * 2 mean(alpha) = x1^2, x2 * mean cos(alpha x2)].
    alphas = np.linspace(0, 1, 25)
    pair_rule = core.IntegratedGradients().GetMask(point, analytic_function)
    assert_close(pair_rule, [5 * point[0], point[1] ** 2,
                             point[2] * np.mean(np.cos(alphas * point[2]))], 1e-10)
    batch = core.GradientSaliency().GetMaskBatch(np.stack([point, -point]), analytic_function)
    assert_close(batch[1], [5.0, -2 * point[1], np.cos(point[2])], 1e-12)


def test_numpy_image_model_occlusion_gradcam_smoothgrad_are_analytic():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 7, 2))
    x = rng.uniform(0, 1, size=(6, 7, 2))
    f = linear_image_model(w)
    # Occlusion of y = sum(w x) by a 3x3 window of `value`: the drop is
    # sum_window w (x - value); each pixel sums the drops of the windows covering it.
    value = 0.25
    drops = np.zeros((4, 5))
    for r in range(4):
        for c in range(5):
            drops[r, c] = (w * (x - value))[r:r + 3, c:c + 3].sum()
    expected = np.zeros((6, 7))
    for r in range(4):
        for c in range(5):
            expected[r:r + 3, c:c + 3] += drops[r, c]
    mask = core.Occlusion().GetMask(x, f, size=3, value=value)
    assert_close(mask, np.repeat(expected[..., None], 2, axis=2), 1e-10)
    # SmoothGrad of a linear model: the gradient w whatever the noise.
    assert_close(core.GradientSaliency().GetSmoothedMask(x, f, magnitude=False, seed=1), w, 1e-10)
    assert_close(core.GradientSaliency().GetSmoothedMask(x, f, seed=1), w**2, 1e-10)
    # IG of a linear model from a zero baseline: w x exactly (PAIR's weights sum to 1).
    assert_close(core.IntegratedGradients().GetMask(x, f, x_steps=7), w * x, 1e-10)
    # Guided IG sums (x_{t+1} - x_t) * w along a path from 0 to x: w x, whatever the path.
    assert_close(core.GuidedIG().GetMask(x, f, x_steps=9, max_dist=0.3), w * x, 1e-9)
    # Grad-CAM with the input as the "conv layer" and dy/dA = w:
    # relu(sum_c mean_hw(w[..., c]) x[..., c]).
    cam = np.maximum((x * w.mean(axis=(0, 1))).sum(axis=-1), 0)
    raw = core.GradCam().GetMask(x, f, should_resize=False, three_dims=False)
    assert cam.max() > 0
    assert_close(raw, cam, 1e-6)
    resized = core.GradCam().GetMask(x, f)  # same size: only divided by its maximum
    assert_close(resized, np.repeat((cam / cam.max())[..., None], 3, axis=2), 1e-6)


def test_numpy_model_gradients_agree_with_finite_differences():
    """The hand-written gradients of numpy_cnn (used as the oracle model) are right."""
    f = numpy_cnn(size=5)
    x = np.random.default_rng(2).uniform(0, 1, (5, 5, 3))
    args = {"class": 1}
    grad = core.GradientSaliency().GetMask(x, f, args)
    eps = 1e-6
    flat = x.reshape(-1)
    numeric = np.empty_like(flat)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += eps
        down[i] -= eps
        ys = f(np.stack([up.reshape(x.shape), down.reshape(x.shape)]), args, [OLV])[OLV]
        numeric[i] = (ys[0] - ys[1]) / (2 * eps)
    assert_close(grad, numeric.reshape(x.shape), 1e-6)


def test_batching_over_the_call_model_function():
    """IG's path points go to the function in batches of at most batch_size."""
    calls = []

    def counted(x_value_batch, call_model_args=None, expected_keys=None):
        calls.append((len(x_value_batch), list(expected_keys), x_value_batch.dtype))
        return analytic_function(x_value_batch, call_model_args, expected_keys)

    point = np.array([0.5, 1.5, -0.5], np.float32)
    reference = core.IntegratedGradients().GetMask(point, analytic_function, x_steps=25)
    mask = core.IntegratedGradients().GetMask(point, counted, x_steps=25)
    assert [c[0] for c in calls] == [25]  # PAIR's default would be 25 calls of one row
    assert calls[0][1] == [IOG] and calls[0][2] == np.float32
    calls.clear()
    chunked = core.IntegratedGradients().GetMask(point, counted, x_steps=25, batch_size=4)
    assert [c[0] for c in calls] == [4] * 6 + [1]
    assert_close(mask, reference)
    assert_close(chunked, reference)
    calls.clear()
    core.GradientSaliency().GetSmoothedMask(point, counted, nsamples=10, batch_size=4, seed=0)
    assert [c[0] for c in calls] == [4, 4, 2]


def test_function_that_writes_into_its_input_cannot_corrupt_the_mask():
    """Each call gets its own copy of the rows (occlusion reuses one buffer of copies)."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, 5, 1))
    x = rng.uniform(size=(5, 5, 1))
    clean = linear_image_model(w)

    def vandal(x_value_batch, call_model_args=None, expected_keys=None):
        out = clean(x_value_batch, call_model_args, expected_keys)
        x_value_batch[...] = np.nan
        return out

    x_before = x.copy()
    assert_close(core.Occlusion().GetMask(x, vandal, size=2, batch_size=3),
                 core.Occlusion().GetMask(x, clean, size=2), 1e-12)
    np.testing.assert_array_equal(x, x_before)


# ---------------------------------------------------------------------------
# Bad answers from the function: clear errors


def _answering(output):
    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        return output(len(x_value_batch)) if callable(output) else output

    return call_model_function


BAD_ANSWERS = [
    # (method, output for a batch of n, error type, regex the message must match)
    ("gradient", lambda n: {OLV: np.zeros(n)}, ValueError,
     r"missing key\(s\) \['INPUT_OUTPUT_GRADIENTS'\].*returned keys \['OUTPUT_LAYER_VALUES'\]"),
    ("gradient", lambda n: {IOG: np.zeros((n, 4, 3))}, ValueError,
     r"INPUT_OUTPUT_GRADIENTS must have the shape of x_value_batch \[1, 4, 4\], "
     r"got shape \[1, 4, 3\]"),
    ("gradient", lambda n: {IOG: None}, TypeError,
     r"INPUT_OUTPUT_GRADIENTS must be a real numeric array, got NoneType"),
    ("gradient", lambda n: {IOG: "gradients"}, TypeError, r"INPUT_OUTPUT_GRADIENTS.*str"),
    ("gradient", lambda n: [np.zeros((n, 4, 4))], TypeError, r"expected a dict.*got list"),
    ("gradient", lambda n: {IOG: [[0.0], [0.0, 1.0]]}, TypeError, r"INPUT_OUTPUT_GRADIENTS"),
    ("occlusion", lambda n: {OLV: np.zeros((n, 3))}, ValueError,
     r"OUTPUT_LAYER_VALUES must hold one value per row, shape \[\d+\] or \[\d+, 1\], "
     r"got shape \[\d+, 3\]"),
    ("occlusion", lambda n: {OLV: np.zeros(n + 1)}, ValueError,
     r"OUTPUT_LAYER_VALUES must have outer dimension \d+ .*got shape \[\d+\]"),
    ("occlusion", lambda n: {OLV: 1.0}, ValueError,
     r"OUTPUT_LAYER_VALUES must have outer dimension.*got shape \[\]"),
]


@pytest.mark.parametrize("method, output, error, message", BAD_ANSWERS)
def test_bad_answers_raise_errors_naming_key_and_shape(method, output, error, message):
    cls = {"gradient": core.GradientSaliency, "occlusion": core.Occlusion}[method]
    kwargs = {"size": 2} if method == "occlusion" else {}
    with pytest.raises(error, match=message):
        cls().GetMask(np.ones((4, 4)), _answering(output), **kwargs)


def test_conv_keys_are_checked():
    def shape_error(clv, cog, n=2):
        with pytest.raises(ValueError) as info:
            check_call_model_output({CLV: np.zeros(clv), COG: np.zeros(cog)}, (n, 8, 8, 3),
                                    [CLV, COG])
        return str(info.value)

    assert "CONVOLUTION_LAYER_VALUES must have outer dimension 2" in shape_error(
        (3, 4, 4, 5), (2, 4, 4, 5))
    assert "[2, 4, 20]" in shape_error((2, 4, 20), (2, 4, 20))
    assert ("CONVOLUTION_OUTPUT_GRADIENTS must have the shape of CONVOLUTION_LAYER_VALUES "
            "[2, 4, 4, 5], got shape [2, 4, 4, 6]") in shape_error((2, 4, 4, 5), (2, 4, 4, 6))
    good = check_call_model_output({CLV: np.ones((2, 4, 4, 5)), COG: np.ones((2, 4, 4, 5)),
                                    OLV: [[1.0], [2.0]]}, (2, 8, 8, 3), [CLV, COG, OLV])
    assert good[OLV].shape == (2,)
    assert isinstance(good[CLV], np.ndarray)


def test_bad_arguments_are_rejected_before_any_call():
    calls = []

    def f(x_value_batch, call_model_args=None, expected_keys=None):
        calls.append(1)
        return analytic_function(x_value_batch, call_model_args, expected_keys)

    with pytest.raises(TypeError, match="call_model_function: expected a callable"):
        core.GradientSaliency().GetMask(np.ones(3), "not a function")
    with pytest.raises(TypeError, match="x_value"):
        core.GradientSaliency().GetMask(np.array(["a", "b"]), f)
    with pytest.raises(ValueError, match="x_value: contains NaN"):
        core.IntegratedGradients().GetMask(np.array([1.0, np.nan, 0.0]), f)
    with pytest.raises(ValueError, match="x_baseline"):
        core.IntegratedGradients().GetMask(np.ones(3), f, x_baseline=np.ones(4))
    with pytest.raises(ValueError, match="nsamples"):
        core.GradientSaliency().GetSmoothedMask(np.ones(3), f, nsamples=0)
    with pytest.raises(ValueError, match="PerExample has 1 entries, expected one per input"):
        core.GradientSaliency().GetMaskBatch(np.ones((2, 3)), f, {"c": PerExample([1])})
    assert calls == []


def test_backend_rejects_keys_it_cannot_ask_for():
    backend = CallModelBackend(analytic_function, keys=[IOG, OLV])
    with pytest.raises(ValueError, match=r"\['GUIDED'\] not available"):
        backend.evaluate(np.ones((1, 3)), ["GUIDED"])
    with pytest.raises(TypeError, match="input_dtype"):
        CallModelBackend(analytic_function, input_dtype=np.int32)
    assert_close(backend.evaluate(np.ones((2, 3)), [OLV])[OLV], np.full(2, 6 + np.sin(1)))


# ---------------------------------------------------------------------------
# CoreAdapter: a TF1 method where a core method is expected


def test_adapter_runs_the_tf1_method_with_args_as_feed(selector_cnn, rng):
    from saliency_tf1.methods.integrated_gradients import IntegratedGradients

    m = selector_cnn
    k = m.extra["k"]
    tf1 = IntegratedGradients(m.graph, m.session, m.y, m.x)
    adapted = core.as_core_method(tf1)
    f = core.create_tf1_call_model_function(m.graph, m.session, m.y, m.x)
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    baseline = np.full_like(x, 0.1)

    def explain(method, call_model_function, call_model_args):
        """Code written for core methods: positional arguments as PAIR's."""
        return method.GetMask(x, call_model_function, call_model_args, baseline, 10)

    expected = tf1.GetMask(x, {k: 3}, baseline, 10)
    assert_close(explain(adapted, f, {k: 3}), expected, 1e-6)
    assert_close(explain(core.IntegratedGradients(), f, {k: 3}), expected)
    # PAIR's TF1 function leaves x in call_model_args: ignored.
    assert_close(adapted.GetMask(x, None, {k: 3, m.x: x[None]}, baseline, 10), expected, 1e-6)
    batch = adapted.GetMaskBatch(np.stack([x, x[::-1]]), f, {k: 3}, x_steps=10,
                                 x_baseline=baseline)
    assert_close(batch[0], expected, 1e-6)
    np.random.seed(0)
    smooth = adapted.GetSmoothedMask(x, f, {k: 3}, 0.1, 3, True, x_steps=5)
    np.random.seed(0)
    assert_close(smooth, tf1.GetSmoothedMask(x, {k: 3}, 0.1, 3, True, x_steps=5), 1e-6)


def test_adapter_errors(selector_cnn, relu_cnn):
    from saliency_tf1.methods.gradient import GradientSaliency

    m = selector_cnn
    adapted = core.CoreAdapter(GradientSaliency(m.graph, m.session, m.y, m.x))
    other = core.create_tf1_call_model_function(relu_cnn.graph, relu_cnn.session, relu_cnn.y,
                                                relu_cnn.x)
    with pytest.raises(ValueError, match="another model"):
        adapted.GetMask(np.zeros((16, 16, 3)), other, {m.extra["k"]: 0})
    with pytest.raises(TypeError, match="TF1 saliency method"):
        core.CoreAdapter(core.GradientSaliency())
    with pytest.raises(ValueError, match="from_backend"):
        core.CoreAdapter(GradientSaliency.from_backend(CallModelBackend(analytic_function)))
    with pytest.raises(AttributeError, match="GetMaskWithDetails"):
        _ = adapted.GetMaskWithDetails


@pytest.mark.oracle
def test_adapter_stands_in_for_pairs_core_integrated_gradients_inside_pair_xrai(relu_cnn, rng):
    """PAIR's core XRAI calls its IG object the core way; our TF1 IG, adapted, fits there."""
    pair = pytest.importorskip("saliency.core")
    from saliency_tf1.methods.integrated_gradients import IntegratedGradients

    m = relu_cnn
    x = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
    f = core.create_tf1_call_model_function(m.graph, m.session, m.y, m.x)
    params = pair.XRAIParameters(steps=6)
    reference = pair.XRAI().GetMaskWithDetails(x, f, extra_parameters=params)
    xrai = pair.XRAI()
    xrai._integrated_gradients = core.as_core_method(
        IntegratedGradients(m.graph, m.session, m.y, m.x))
    adapted = xrai.GetMaskWithDetails(x, f, extra_parameters=params)
    assert_close(adapted.ig_attribution, reference.ig_attribution)
    assert_close(adapted.attribution_mask, reference.attribution_mask)


def test_every_catalogue_method_that_can_run_over_the_core_api_has_a_core_class():
    from saliency_tf1.catalogue import METHODS

    for spec in METHODS.values():
        cls = spec.cls
        if cls.graph_only:
            assert not hasattr(core, cls.__name__)
            continue
        core_cls = getattr(core, cls.__name__)
        assert core_cls.tf1_class() is cls and cls.__name__ in core.__all__
        assert sorted(core_cls.expected_keys) == sorted(cls.backend_keys), cls.__name__
