"""Rows built in the graph (saliency_tf1.methods.ingraph) against the host path.

Each method runs once with its rows built next to the model (``in_graph``, the
default on a TF1 session) and once with them built in NumPy and fed
(``in_graph = False``): deterministic methods must give the same masks, seeded
SmoothGrad the same masks for the same seed whatever the batch size, and every
``session.run`` of the in-graph path is fed at most about one input and its
baseline.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from saliency_tf1.compat import core

import saliency_tf1 as saliency
from saliency_tf1 import PerExample

v1 = tf.compat.v1


class FeedLog:
    """Wraps a real session; records the bytes fed to each ``run`` (the session computes)."""

    def __init__(self, session: Any) -> None:
        self.session, self.graph = session, session.graph
        self.fed: list[int] = []
        self.lock = threading.Lock()

    def run(self, fetches: Any, feed_dict: dict | None = None, **kwargs: Any) -> Any:
        with self.lock:
            self.fed.append(sum(np.asarray(v).nbytes for v in (feed_dict or {}).values()))
        return self.session.run(fetches, feed_dict=feed_dict, **kwargs)


def _both(method: Any, call: Any) -> tuple[Any, Any]:
    """``call(method)`` with rows built in the graph, then on the host."""
    assert method.in_graph_unavailable == {}
    method.in_graph = True
    graph_result = call(method)
    method.in_graph = False
    try:
        return graph_result, call(method)
    finally:
        method.in_graph = True


@pytest.fixture
def cnn(relu_cnn):
    relu_cnn.log = FeedLog(relu_cnn.session)
    return relu_cnn


def _make(cls: Any, model: Any, **kwargs: Any) -> Any:
    method = cls(model.graph, model.log, model.y, model.x, **kwargs)
    assert method.in_graph is False  # the default on a CPU-only session: the host path
    method.in_graph = True
    return method


# -- Integrated Gradients --------------------------------------------------------------


@pytest.mark.parametrize("rule", ["pair", "trapezoid", "gauss_legendre"])
def test_ig_in_graph_equals_host(cnn, rng, rule):
    ig = _make(saliency.IntegratedGradients, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    base = rng.normal(size=(16, 16, 3)).astype(np.float32)
    (mask, err), (host, host_err) = _both(ig, lambda m: m.GetMask(
        image, x_baseline=base, x_steps=20, rule=rule, batch_size=7, return_error=True))
    np.testing.assert_allclose(mask, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())
    assert err == pytest.approx(host_err, rel=1e-3, abs=1e-5)


def test_ig_in_graph_feeds_one_input_and_baseline(cnn, rng):
    ig = _make(saliency.IntegratedGradients, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    cnn.log.fed.clear()
    ig.GetMask(image, x_steps=25)  # one run of 25 rows
    assert len(cnn.log.fed) == 1
    assert cnn.log.fed[0] <= 2 * image.nbytes + 1024  # x, baseline, nodes, weights, indices
    ig.in_graph = False
    cnn.log.fed.clear()
    ig.GetMask(image, x_steps=25)
    assert cnn.log.fed[0] >= 25 * image.nbytes  # the host path feeds every path point


def test_ig_batch_in_graph_per_input_baselines_and_per_example_feeds(rng):
    """GetMaskBatch mixes inputs in a run: each row reads its input, baseline and class."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 6])
        label = v1.placeholder(tf.int32, [None])
        w = tf.constant(rng.normal(size=(6, 4)), tf.float32)
        logits = tf.matmul(tf.tanh(x), w)
        y = tf.gather(logits, label, batch_dims=1)
    with v1.Session(graph=graph) as session:
        ig = saliency.IntegratedGradients(graph, session, y, x)
        xs = rng.normal(size=(5, 6)).astype(np.float32)
        bases = rng.normal(size=(5, 6)).astype(np.float32)
        feed = {label: PerExample([0, 3, 1, 2, 3])}
        (masks, errors), (host, host_errors) = _both(ig, lambda m: m.GetMaskBatch(
            xs, feed, x_baseline=bases, x_steps=30, rule="trapezoid", batch_size=8,
            return_error=True))
        np.testing.assert_allclose(masks, host, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(errors, host_errors, atol=1e-5)
        # Completeness against an independent forward pass: the errors reported are the
        # trapezoid rule's, small at 30 nodes.
        ends = session.run(y, {x: np.concatenate([xs, bases]), label: [0, 3, 1, 2, 3] * 2})
        np.testing.assert_allclose(masks.sum(axis=1) - (ends[:5] - ends[5:]), errors, atol=1e-4)
        assert np.abs(errors).max() < 0.01


def test_ig_in_graph_batch_size_independent(cnn, rng):
    ig = _make(saliency.IntegratedGradients, cnn)
    xs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    ref = ig.GetMaskBatch(xs, x_steps=10, batch_size=1)
    for batch_size in (4, 7, 30, 100):
        np.testing.assert_allclose(ig.GetMaskBatch(xs, x_steps=10, batch_size=batch_size), ref,
                                   rtol=1e-5, atol=1e-6 * np.abs(ref).max())


# -- Occlusion ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"size": 4},
    {"size": 5, "stride": 3, "value": 0.7, "normalize": True},
    {"size": 3, "window_height": 2, "window_width": 6, "stride": 2},
])
def test_occlusion_in_graph_equals_host_bit_for_bit(cnn, rng, kwargs):
    occ = _make(saliency.Occlusion, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    mask, host = _both(occ, lambda m: m.GetMask(image, batch_size=9, **kwargs))
    np.testing.assert_array_equal(mask, host)


def test_occlusion_in_graph_baselines_and_batches(cnn, rng):
    occ = _make(saliency.Occlusion, cnn)
    xs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    fills = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    masks, host = _both(occ, lambda m: m.GetMaskBatch(xs, size=4, stride=3, baseline=fills,
                                                      batch_size=10))
    np.testing.assert_array_equal(masks, host)
    one, host_one = _both(occ, lambda m: m.GetMask(xs[1], size=4, stride=3, baseline=fills[1]))
    np.testing.assert_array_equal(one, host_one)
    np.testing.assert_array_equal(one, masks[1])
    # SmoothGrad over occlusion: noisy copies (host) occluded in the graph.
    smooth, host_smooth = _both(occ, lambda m: m.GetSmoothedMask(
        xs[0], nsamples=3, seed=1, size=6, stride=5, baseline=fills[0]))
    np.testing.assert_array_equal(smooth, host_smooth)


def test_occlusion_in_graph_feeds_one_input_per_run(cnn, rng):
    occ = _make(saliency.Occlusion, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    cnn.log.fed.clear()
    occ.GetMask(image, size=4, stride=2, batch_size=64)  # 49 windows + the input: one run
    assert cnn.log.fed == [pytest.approx(image.nbytes, abs=2048)]


def test_occlusion_of_a_rank_2_input_and_a_model_that_is_not_differentiable(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8])
        score = tf.reduce_sum(x[:, 2:5, 3:7], axis=[1, 2])
        y = tf.cast(tf.cast(score * 10, tf.int32), tf.float32)  # no gradient
    with v1.Session(graph=graph) as session:
        occ = saliency.Occlusion(graph, session, y, x)
        image = rng.uniform(0.5, 1, (8, 8)).astype(np.float32)
        mask, host = _both(occ, lambda m: m.GetMask(image, size=2))
        np.testing.assert_array_equal(mask, host)
        assert mask[0, 0] == 0 and mask[3, 4] > 0  # only the read region matters


# -- SmoothGrad --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [saliency.GradientSaliency, saliency.GradientXInput])
@pytest.mark.parametrize("statistic", ["mean", "square", "variance"])
def test_smoothgrad_in_graph_reproducible_and_batch_size_independent(cnn, rng, cls, statistic):
    method = _make(cls, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    ref = method.GetSmoothedMask(image, nsamples=12, seed=5, statistic=statistic)
    for batch_size in (1, 5, 12, 64):
        np.testing.assert_allclose(
            method.GetSmoothedMask(image, nsamples=12, seed=5, statistic=statistic,
                                   batch_size=batch_size),
            ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    other = method.GetSmoothedMask(image, nsamples=12, seed=6, statistic=statistic)
    assert not np.allclose(other, ref)
    assert ref.shape == image.shape and ref.dtype == np.float32


def test_smoothgrad_in_graph_statistics_on_an_analytic_model(analytic):
    """y = 5 x0 + x1^2 + sin x2: E[grad] = [5, 2 x1, cos(x2) e^(-s^2/2)],
    E[grad^2] = [25, 4 (x1^2 + s^2), (1 + cos(2 x2) e^(-2 s^2)) / 2], over e ~ N(0, s^2)."""
    method = saliency.GradientSaliency(analytic.graph, analytic.session, analytic.y, analytic.x)
    method.in_graph = True
    point = np.array([0.5, -1.0, 2.0], np.float32)
    s = 0.3 * 3.0
    n = 20000
    mean = method.GetSmoothedMask(point, stdev_spread=0.3, nsamples=n, magnitude=False, seed=1,
                                  batch_size=4096)
    square = method.GetSmoothedMask(point, stdev_spread=0.3, nsamples=n, seed=1,
                                    batch_size=3000)
    var = method.GetSmoothedMask(point, stdev_spread=0.3, nsamples=n, statistic="variance",
                                 seed=1, batch_size=5000)
    x1, x2 = point[1], point[2]
    exp_mean = np.array([5.0, 2 * x1, np.cos(x2) * np.exp(-s * s / 2)])
    exp_square = np.array([25.0, 4 * (x1 * x1 + s * s),
                           (1 + np.cos(2 * x2) * np.exp(-2 * s * s)) / 2])
    # Standard errors at n = 20000: about 0.013 (x1), 0.005 (x2) for the mean.
    np.testing.assert_allclose(mean, exp_mean, atol=0.05)
    np.testing.assert_allclose(square, exp_square, rtol=0.03, atol=0.01)
    np.testing.assert_allclose(var, exp_square - exp_mean**2, rtol=0.05, atol=0.01)


def test_smoothgrad_in_graph_feeds_one_input(cnn, rng):
    method = _make(saliency.GradientSaliency, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    cnn.log.fed.clear()
    method.GetSmoothedMask(image, seed=0, nsamples=25, batch_size=25)
    assert len(cnn.log.fed) == 1 and cnn.log.fed[0] <= image.nbytes + 256
    # seed=None keeps PAIR's NumPy stream on the host: 25 noisy copies fed.
    cnn.log.fed.clear()
    np.random.seed(0)
    a = method.GetSmoothedMask(image, nsamples=25, batch_size=25)
    assert cnn.log.fed[0] >= 25 * image.nbytes
    np.random.seed(0)
    method.in_graph = False
    np.testing.assert_array_equal(method.GetSmoothedMask(image, nsamples=25, batch_size=25), a)


def test_smoothgrad_over_ig_builds_its_paths_in_the_graph(cnn, rng):
    """Noisy copies on the host, each one's path in the graph: one input fed per path."""
    ig = _make(saliency.IntegratedGradients, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    smooth, host = _both(ig, lambda m: m.GetSmoothedMask(image, nsamples=4, seed=2, x_steps=8,
                                                         batch_size=16))
    np.testing.assert_allclose(smooth, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())


# -- Shared rules ------------------------------------------------------------------------


def test_builders_are_built_once_in_the_constructor(cnn, rng):
    before = cnn.op_count()
    methods = [_make(cls, cnn) for cls in (saliency.GradientSaliency, saliency.IntegratedGradients,
                                           saliency.Occlusion, saliency.GradientXInput)]
    built = cnn.op_count()
    assert built > before
    again = [_make(cls, cnn) for cls in (saliency.GradientSaliency,
                                         saliency.IntegratedGradients, saliency.Occlusion)]
    assert cnn.op_count() == built
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    for method in methods + again:
        method.GetSmoothedMask(image, nsamples=3, seed=0)
        method.GetMask(image)
    assert cnn.op_count() == built


def test_in_graph_follows_the_live_variables(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4])
        w = v1.Variable(rng.normal(size=(4, 3)).astype(np.float32))
        y = tf.reduce_sum(tf.nn.relu(tf.matmul(x, w)), axis=1)
        init = v1.global_variables_initializer()
        new_w = v1.placeholder(tf.float32, [4, 3])
        assign = w.assign(new_w)
    with v1.Session(graph=graph) as session:
        session.run(init)
        ig = saliency.IntegratedGradients(graph, session, y, x)
        point = rng.normal(size=4).astype(np.float32)
        first = ig.GetMask(point, x_steps=30)
        session.run(assign, {new_w: -session.run(w)})
        second, host = _both(ig, lambda m: m.GetMask(point, x_steps=30))
        np.testing.assert_allclose(second, host, rtol=1e-5, atol=1e-7)
        assert not np.allclose(first, second)


def test_several_inputs_in_graph(rng):
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, [None, 4, 4, 2])
        meta = v1.placeholder(tf.float32, [None, 3])
        w = tf.constant(rng.normal(size=(32,)), tf.float32)
        u = tf.constant(rng.normal(size=(3,)), tf.float32)
        y = tf.tanh(tf.reduce_sum(tf.reshape(image, [-1, 32]) * w, 1)) * tf.reduce_sum(meta * u, 1)
    with v1.Session(graph=graph) as session:
        value = [rng.normal(size=(4, 4, 2)).astype(np.float32),
                 rng.normal(size=3).astype(np.float32)]
        ig = saliency.IntegratedGradients(graph, session, y, [image, meta])
        masks, host = _both(ig, lambda m: m.GetMask(value, x_steps=40, rule="trapezoid"))
        for a, b in zip(masks, host):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        grad = saliency.GradientSaliency(graph, session, y, [image, meta])
        assert grad.in_graph_unavailable == {}
        grad.in_graph = True
        smooth = grad.GetSmoothedMask(value, nsamples=6, seed=3)
        again = grad.GetSmoothedMask(value, nsamples=6, seed=3, batch_size=4)
        for a, b in zip(smooth, again):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_models_without_builders_use_the_host_path(rng):
    """A fixed batch dimension, a scalar y (one row per run), a core-API backend."""
    graph = tf.Graph()
    with graph.as_default():
        fixed = v1.placeholder(tf.float32, [4, 3])
        y_fixed = tf.reduce_sum(tf.sin(fixed), 1)
        x = v1.placeholder(tf.float32, [None, 3])
        y_scalar = tf.reduce_sum(tf.sin(x))
    with v1.Session(graph=graph) as session:
        point = rng.normal(size=3).astype(np.float32)
        for y, xt in ((y_fixed, fixed), (y_scalar, x)):
            ig = saliency.IntegratedGradients(graph, session, y, xt)
            assert "fixed number of rows" in ig.in_graph_unavailable["paths"]
            mask, err = ig.GetMask(point, x_steps=200, rule="trapezoid", return_error=True)
            assert abs(err) < 1e-3
            np.testing.assert_allclose(mask.sum(), np.sin(point).sum(), atol=1e-3)
        cmf = core.create_tf1_call_model_function(graph, session, y_fixed, fixed)
        grad = saliency.GradientSaliency.from_backend(
            core.CallModelBackend(cmf, input_shape=(3,)))
        assert "noise" in grad.in_graph_unavailable
        assert grad.GetSmoothedMask(point, nsamples=3, seed=0).shape == (3,)


class _Device:
    def __init__(self, device_type: str) -> None:
        self.device_type = device_type


class _WithDevices:
    """A real session that reports other devices (only ``list_devices`` differs)."""

    def __init__(self, session: Any, types: list[str]) -> None:
        self.session, self.graph, self.types = session, session.graph, types

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.session.run(*args, **kwargs)

    def list_devices(self) -> list[_Device]:
        return [_Device(t) for t in self.types]


def test_in_graph_is_on_by_default_where_the_session_has_a_gpu(relu_cnn):
    m = relu_cnn
    gpu = _WithDevices(m.session, ["CPU", "GPU"])
    assert saliency.IntegratedGradients(m.graph, gpu, m.y, m.x).in_graph is True
    assert saliency.Occlusion(m.graph, gpu, m.y, m.x).in_graph is True
    cpu = _WithDevices(m.session, ["CPU"])
    assert saliency.IntegratedGradients(m.graph, cpu, m.y, m.x).in_graph is False
    assert saliency.IntegratedGradients(m.graph, m.session, m.y, m.x).in_graph is False
    # A method with no builder (Grad-CAM, guided backprop) has nothing to switch on.
    assert saliency.GuidedBackprop(m.graph, gpu, m.y, m.x).in_graph is False


@pytest.mark.parametrize("task", ["smoothgrad", "ig", "occlusion"])
def test_a_call_of_several_runs_feeds_its_input_once_and_frees_it(cnn, rng, task):
    """Several runs: the input is stored in the session once, each run is fed its handle,
    and the stored tensors are deleted when the call ends."""
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    cls, call, runs = {
        "smoothgrad": (saliency.GradientSaliency,
                       lambda m: m.GetSmoothedMask(image, nsamples=25, seed=1, batch_size=7), 4),
        "ig": (saliency.IntegratedGradients,
               lambda m: m.GetMask(image, x_steps=25, batch_size=7), 4),
        "occlusion": (saliency.Occlusion,
                      lambda m: m.GetMask(image, size=4, stride=2, batch_size=16), 4),
    }[task]
    method = _make(cls, cnn)
    handles: list[Any] = []
    original = cnn.log.run

    def run(fetches: Any, feed_dict: dict | None = None, **kwargs: Any) -> Any:
        handles.extend(v for v in (feed_dict or {}).values() if isinstance(v, (str, bytes)))
        return original(fetches, feed_dict=feed_dict, **kwargs)

    cnn.log.run = run
    cnn.log.fed.clear()
    graph_result = call(method)
    assert len(cnn.log.fed) == runs + 2  # store, the runs, delete
    assert sum(cnn.log.fed) <= 2 * image.nbytes + (runs + 2) * 1024  # + handles, nodes
    # The same masks as one run (one call feeds it all directly).
    np.testing.assert_allclose(graph_result, call_one_run(method, task, image), rtol=1e-5,
                               atol=1e-6 * np.abs(graph_result).max())
    builder = next(iter(method._builders.values()))
    stash = builder.ops["inputs" if task != "smoothgrad" else "x"]
    assert handles
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in the session store"):
        cnn.session.run(stash.value, {stash.handle: handles[0]})


def call_one_run(method: Any, task: str, image: np.ndarray) -> Any:
    if task == "smoothgrad":
        return method.GetSmoothedMask(image, nsamples=25, seed=1, batch_size=25)
    if task == "ig":
        return method.GetMask(image, x_steps=25, batch_size=25)
    return method.GetMask(image, size=4, stride=2, batch_size=64)


def test_in_graph_calls_from_several_threads(cnn, rng):
    """Each call stores its own input and runs its own handles: threads do not mix them."""
    ig = _make(saliency.IntegratedGradients, cnn)
    images = rng.normal(size=(6, 16, 16, 3)).astype(np.float32)
    expected = [ig.GetMask(image, x_steps=12, batch_size=5) for image in images]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = ig.GetMask(images[i], x_steps=12, batch_size=5)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, mask in enumerate(expected):
        np.testing.assert_array_equal(results[i], mask)


@pytest.mark.parametrize("cls", [saliency.GradientSaliency, saliency.IntegratedGradients,
                                 saliency.Occlusion])
def test_in_graph_refuses_a_y_that_is_not_one_value_per_row(cnn, rng, cls):
    with cnn.graph.as_default():
        doubled = tf.concat([cnn.y, cnn.y], 0)
    method = cls(cnn.graph, cnn.log, doubled, cnn.x)
    method.in_graph = True
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    before = cnn.op_count()
    call = {saliency.GradientSaliency: lambda: method.GetSmoothedMask(image, seed=0,
                                                                       batch_size=7),
            saliency.IntegratedGradients: lambda: method.GetMask(image, batch_size=7),
            saliency.Occlusion: lambda: method.GetMask(image, size=8, batch_size=7)}[cls]
    with pytest.raises(ValueError, match=r"y: expected one value per row built \(7 rows\), "
                                         r"the run returned 14 values"):
        call()
    assert cnn.op_count() == before


@pytest.mark.parametrize("kwargs", [{"steps": 20, "max_sigma": 8}, {"steps": 9, "sqrt": True}])
def test_blur_ig_in_graph_equals_host(cnn, rng, kwargs):
    blur = _make(saliency.BlurIG, cnn)
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    masks, host = _both(blur, lambda m: m.GetMaskBatch(xs, batch_size=7, **kwargs))
    np.testing.assert_allclose(masks, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())
    one, host_one = _both(blur, lambda m: m.GetMask(xs[1], batch_size=32, **kwargs))
    np.testing.assert_allclose(one, host_one, rtol=1e-5, atol=1e-6 * np.abs(host).max())
    np.testing.assert_allclose(one, masks[1], rtol=1e-5, atol=1e-6 * np.abs(host).max())


def test_blur_ig_in_graph_feeds_the_image_and_taps_once(cnn, rng):
    blur = _make(saliency.BlurIG, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    cnn.log.fed.clear()
    blur.GetMask(image, steps=100, batch_size=32)  # 4 runs, plus storing and freeing
    assert len(cnn.log.fed) == 6
    taps = 2 * 100 * 16 * 8 * 2  # float64 taps of 200 levels, along H and W
    assert sum(cnn.log.fed) <= image.nbytes + taps + 6 * 2048  # + handles, levels


@pytest.mark.parametrize("kwargs", [{"cell_size": 4, "baseline": 0.0},
                                    {"cell_size": 5, "p": 0.3, "baseline": 0.5}])
def test_rise_in_graph_equals_host(cnn, rng, kwargs):
    rise = _make(saliency.RISE, cnn)
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    maps, host = _both(rise, lambda m: m.GetMaskBatch(xs, n_masks=150, seed=3, batch_size=64,
                                                      **kwargs))
    np.testing.assert_allclose(maps, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())
    fills = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    maps, host = _both(rise, lambda m: m.GetMaskBatch(xs, n_masks=40, seed=4, baseline=fills,
                                                      batch_size=16))
    np.testing.assert_allclose(maps, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())


def test_rise_in_graph_feeds_grid_bits_not_copies(cnn, rng):
    rise = _make(saliency.RISE, cnn)
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    cnn.log.fed.clear()
    rise.GetMask(image, n_masks=256, seed=0, batch_size=64)  # 4 runs
    assert len(cnn.log.fed) == 6
    # The image, two small interpolation matrices, and per mask 9 bytes of bits and 8 of
    # shifts: far less than one copy of the image per mask.
    assert sum(cnn.log.fed) < image.nbytes + 256 * 64


@pytest.mark.parametrize("cls", [saliency.Lime, saliency.KernelShap])
def test_lime_and_kernel_shap_in_graph_equal_host(cnn, rng, cls):
    method = _make(cls, cnn)
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    segments = np.stack([np.arange(256).reshape(16, 16) // 37,
                         (np.arange(256).reshape(16, 16) % 16) // 3])
    fills = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    masks, host = _both(method, lambda m: m.GetMaskBatch(
        xs, segments=segments, n_samples=120, seed=2, baseline=fills, batch_size=50))
    np.testing.assert_allclose(masks, host, rtol=1e-6, atol=1e-7 * np.abs(host).max())
    one, host_one = _both(method, lambda m: m.GetMask(xs[0], segments=segments[0],
                                                      n_samples=60, seed=1))
    np.testing.assert_allclose(one, host_one, rtol=1e-6, atol=1e-7 * np.abs(host_one).max())
    cnn.log.fed.clear()
    method.GetMask(xs[0], segments=segments[0], n_samples=200, seed=1, batch_size=64)
    assert sum(cnn.log.fed) < 2 * xs[0].nbytes + 8 * 1024  # input, segment map, bits


@pytest.mark.parametrize("dtype", [tf.float16, tf.float64])
def test_in_graph_equals_host_for_half_and_double_models(rng, dtype):
    """Rows built in the model's precision as the host path builds them (float16 products in
    float32 and rounded, float64 kept)."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(dtype, [None, 12, 12, 3])
        w = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 4)), dtype)
        y = tf.cast(tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), [1, 2, 3]),
                    tf.float32)
    image = rng.random((12, 12, 3)).astype(np.float32)
    segments = np.arange(144).reshape(12, 12) // 20
    calls = [(saliency.IntegratedGradients, lambda m: m.GetMask(image, x_steps=10)),
             (saliency.Occlusion, lambda m: m.GetMask(image, size=3)),
             (saliency.RISE, lambda m: m.GetMask(image, n_masks=50, seed=0, cell_size=3)),
             (saliency.Lime, lambda m: m.GetMask(image, n_samples=50, seed=0,
                                                 segments=segments))]
    with v1.Session(graph=graph) as session:
        for cls, call in calls:
            mask, host = _both(cls(graph, session, y, x), call)
            np.testing.assert_allclose(mask, host, rtol=1e-6, atol=1e-6 * np.abs(host).max(),
                                       err_msg=cls.__name__)
