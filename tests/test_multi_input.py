"""Several input tensors explained jointly: x = [x_image, x_meta] (DESIGN.md section 7)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import saliency_tf1 as saliency
from saliency_tf1.catalogue import METHODS

v1 = tf.compat.v1

IMAGE, META = (6, 6, 2), (3,)


def _forward(image, meta, w_img, w_meta):
    """y = tanh(<w_img, image>) * (1 + <w_meta, meta>) + 0.3 <w_meta, meta>^2: an interaction."""
    a = tf.tanh(tf.reduce_sum(image * w_img, axis=[1, 2, 3]))
    b = tf.reduce_sum(meta * w_meta, axis=1)
    return a * (1.0 + b) + 0.3 * b**2


@pytest.fixture
def two_inputs():
    rng = np.random.default_rng(0)
    w_img = rng.normal(0, 0.3, IMAGE).astype(np.float32)
    w_meta = rng.normal(0, 0.8, META).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, [None, *IMAGE], name="image")
        meta = v1.placeholder(tf.float32, [None, *META], name="meta")
        y = _forward(image, meta, w_img, w_meta)
    session = v1.Session(graph=graph)  # not entered: the eager oracle runs beside it
    yield {"graph": graph, "session": session, "x": [image, meta], "y": y,
           "w": (w_img, w_meta), "rng": rng}
    session.close()


def _eager_gradients(w, image, meta):
    """The gradients by tf.GradientTape in eager mode: an independent computation."""
    image, meta = tf.constant(image[None]), tf.constant(meta[None])
    with tf.GradientTape() as tape:
        tape.watch([image, meta])
        y = _forward(image, meta, *w)
    return [g.numpy()[0] for g in tape.gradient(y, [image, meta])]


def _f(w, image, meta):
    return float(_forward(tf.constant(image[None]), tf.constant(meta[None]), *w).numpy()[0])


def _inputs(rng, n=None):
    lead = () if n is None else (n,)
    return [rng.uniform(-1, 1, (*lead, *IMAGE)).astype(np.float32),
            rng.uniform(-1, 1, (*lead, *META)).astype(np.float32)]


def test_gradient_of_several_inputs_equals_gradient_tape(two_inputs):
    m = two_inputs
    grad = saliency.GradientSaliency(m["graph"], m["session"], m["y"], m["x"])
    x_value = _inputs(m["rng"])
    masks = grad.GetMask(x_value)
    assert isinstance(masks, list) and [a.shape for a in masks] == [IMAGE, META]
    for got, want in zip(masks, _eager_gradients(m["w"], *x_value)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_joint_ig_completes_over_both_inputs(two_inputs):
    m = two_inputs
    ig = saliency.IntegratedGradients(m["graph"], m["session"], m["y"], m["x"])
    x_value = _inputs(m["rng"])
    baseline = [np.zeros(IMAGE, np.float32), np.full(META, 0.5, np.float32)]
    masks, error = ig.GetMask(x_value, x_baseline=baseline, x_steps=300, rule="trapezoid",
                              return_error=True)
    delta = _f(m["w"], *x_value) - _f(m["w"], *baseline)
    total = sum(float(mk.sum()) for mk in masks)
    assert abs(total - delta) <= 1e-3 * max(1.0, abs(delta))
    assert abs(error - (total - delta)) < 1e-5
    # Two separate method objects (one input each, the other fed) do not complete: the joint
    # path is what makes the parts add up.
    single = saliency.IntegratedGradients(m["graph"], m["session"], m["y"], m["x"][0])
    alone = single.GetMask(x_value[0], {m["x"][1]: x_value[1][None]}, x_steps=300,
                           rule="trapezoid")
    assert not np.allclose(alone, masks[0], atol=1e-3)


def test_batch_of_lists_equals_a_loop(two_inputs):
    m = two_inputs
    ig = saliency.IntegratedGradients(m["graph"], m["session"], m["y"], m["x"])
    batch = _inputs(m["rng"], n=3)
    baselines = [np.zeros((3, *IMAGE), np.float32), m["rng"].uniform(size=(3, *META))]
    masks = ig.GetMaskBatch(batch, x_baseline=baselines, x_steps=20, batch_size=7)
    for i in range(3):
        one = ig.GetMask([batch[0][i], batch[1][i]],
                         x_baseline=[baselines[0][i], baselines[1][i]], x_steps=20)
        for part, got in zip(one, masks):
            np.testing.assert_allclose(got[i], part, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("in_graph", [True, False])
def test_smoothgrad_noise_per_input_with_its_own_scale(two_inputs, in_graph):
    """Each input's noise scale is stdev_spread * (its max - its min): with a huge image range
    and a tiny meta range, the meta gradient stays close to the clean one. (y here separates
    the inputs, so the meta gradient feels the meta noise only.)"""
    m = two_inputs
    image_t, meta_t = m["x"]
    with m["graph"].as_default():
        w_img, w_meta = (tf.constant(w) for w in m["w"])
        a = tf.tanh(tf.reduce_sum(image_t * w_img, axis=[1, 2, 3]))
        y = a + 0.3 * tf.reduce_sum(meta_t * w_meta, axis=1) ** 2
    grad = saliency.GradientSaliency(m["graph"], m["session"], y, m["x"])
    grad.in_graph = in_graph
    assert grad.in_graph_unavailable == {}
    image = m["rng"].uniform(-50, 50, IMAGE).astype(np.float32)
    meta = np.array([0.1, 0.11, 0.12], np.float32)
    smooth = grad.GetSmoothedMask([image, meta], nsamples=30, magnitude=False, seed=2)
    again = grad.GetSmoothedMask([image, meta], nsamples=30, magnitude=False, seed=2,
                                 batch_size=4)
    for a_, b_ in zip(smooth, again):
        np.testing.assert_allclose(a_, b_, rtol=1e-5, atol=1e-7)
    clean = grad.GetMask([image, meta])
    # Noise of 0.15 * 0.02 on meta barely moves its gradient 0.6 <w, meta> w (noise of the
    # image's scale, 15, would make it 0.6 <w, meta + e> w, far from it).
    np.testing.assert_allclose(smooth[1], clean[1], rtol=0.05, atol=1e-4)
    var = grad.GetSmoothedMask([image, meta], nsamples=30, statistic="variance", seed=2)
    assert [v.shape for v in var] == [IMAGE, META]


def test_guided_ig_on_several_inputs(two_inputs):
    m = two_inputs
    gig = saliency.GuidedIG(m["graph"], m["session"], m["y"], m["x"])
    x_value = _inputs(m["rng"])
    masks = gig.GetMask(x_value, x_steps=50, max_dist=0.0)  # max_dist=0: IG, left Riemann sum
    ig = saliency.IntegratedGradients(m["graph"], m["session"], m["y"], m["x"])
    left = ig.GetMask(x_value, x_steps=50, rule="midpoint")
    for a, b in zip(masks, left):
        np.testing.assert_allclose(a, b, rtol=0.1, atol=0.02)


@pytest.mark.parametrize("name", [n for n in METHODS if not METHODS[n].cls.multi_input
                                  or METHODS[n].cls.graph_only])
def test_single_input_methods_refuse_a_list_before_building(two_inputs, name):
    m = two_inputs
    before = len(m["graph"].get_operations())
    spec = METHODS[name]
    with pytest.raises(TypeError, match=r"x: \w+ explains one input tensor, got a list of 2"):
        spec.build(m["graph"], m["session"], m["y"], m["x"], conv_layer=m["x"][0])
    assert len(m["graph"].get_operations()) == before


def test_bad_list_inputs_are_named(two_inputs):
    m = two_inputs
    grad = saliency.GradientSaliency(m["graph"], m["session"], m["y"], m["x"])
    image, meta = _inputs(m["rng"])
    with pytest.raises(TypeError, match=r"x_value: the model has 2 inputs .* got ndarray"):
        grad.GetMask(image)
    with pytest.raises(TypeError, match="a list of 2 arrays in that order, got a list of 1"):
        grad.GetMask([image])
    with pytest.raises(ValueError, match=r"x_value\[1\]: expected one input .* shape \[3\]"):
        grad.GetMask([image, meta[:2]])
    with pytest.raises(ValueError, match="x_batch: the inputs hold different numbers"):
        grad.GetMaskBatch([image[None], np.stack([meta, meta])])
    with pytest.raises(ValueError, match=r"x_value\[0\]: contains NaN"):
        grad.GetMask([np.full(IMAGE, np.nan, np.float32), meta])


def test_a_plain_per_input_feed_value_is_refused():
    """A [N, T] value for a batch-shaped placeholder, not marked PerExample, would be fed to
    every run as it is: its rows would not line up with the stacked rows (wrong masks)."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        mask = v1.placeholder(tf.float32, [None, 4], name="mask")
        y = tf.reduce_sum(x * mask, axis=1)
    xs = np.ones((2, 4), np.float32)
    masks = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], np.float32)
    with v1.Session(graph=graph) as session:
        ig = saliency.IntegratedGradients(graph, session, y, x)
        with pytest.raises(ValueError, match=r"feed_dict\['mask:0'\]: a plain value with one "
                                             r"row per input \(2\) .*PerExample"):
            ig.GetMaskBatch(xs, {mask: masks}, x_steps=2, batch_size=2)
        got = ig.GetMaskBatch(xs, {mask: saliency.PerExample(masks)}, x_steps=10)
        np.testing.assert_allclose(got, masks * xs, rtol=1e-6)


def test_occlusion_occludes_each_input_in_turn(two_inputs):
    """Image windows equal single-input occlusion with the metadata fed; each metadata value
    ablated alone scores f(x) - f(x with that value replaced)."""
    m = two_inputs
    image, meta = _inputs(m["rng"])
    occ = saliency.Occlusion(m["graph"], m["session"], m["y"], m["x"])
    masks = occ.GetMask([image, meta], size=[2, 1], stride=[2, 1], value=[0.0, 0.5],
                        batch_size=5)
    single = saliency.Occlusion(m["graph"], m["session"], m["y"], m["x"][0])
    np.testing.assert_allclose(
        masks[0], single.GetMask(image, {m["x"][1]: meta[None]}, size=2, stride=2),
        rtol=1e-5, atol=1e-6)
    f_x = _f(m["w"], image, meta)
    for j in range(3):
        ablated = meta.copy()
        ablated[j] = 0.5
        assert abs(masks[1][j] - (f_x - _f(m["w"], image, ablated))) < 1e-5
    # A baseline per input replaces the constant; batches equal single calls.
    base = [np.full(IMAGE, 0.2, np.float32), np.zeros(META, np.float32)]
    batch = _inputs(m["rng"], n=2)
    got = occ.GetMaskBatch(batch, size=[3, 2], stride=[3, 1], baseline=base)
    for i in range(2):
        one = occ.GetMask([batch[0][i], batch[1][i]], size=[3, 2], stride=[3, 1],
                          baseline=base)
        for a, b in zip(got, one):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"size\[1\]: window of 5 values is larger than x\[1\]"):
        occ.GetMask([image, meta], size=[2, 5])
    with pytest.raises(ValueError, match="stride: expected one value for all inputs or a list"):
        occ.GetMask([image, meta], size=1, stride=[1, 1, 1])
