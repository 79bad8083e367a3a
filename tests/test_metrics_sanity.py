"""Model-parameter randomisation sanity checks (Adebayo et al., 2018) and mask similarity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.methods.gradient import GradientSaliency
from saliency_tf1.metrics.sanity import (
    mask_similarity,
    model_layers,
    randomization_check,
    randomized_variables,
    spearman_rank_correlation,
    ssim,
)

v1 = tf.compat.v1


@dataclass
class Net:
    graph: Any
    session: Any
    x: Any
    y: Any
    variables: list


@pytest.fixture
def net():
    """8x8x2 images -> dense 16 -> relu -> dense 8 -> relu -> dense 3 -> * scale; y = logit 0.

    Four layers: l0, l1, l2 (resource variables) and `top` (a ref variable).
    """
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 8, 8, 2], name="x")
        h = tf.reshape(x, [-1, 128])
        for i, width in enumerate((16, 8, 3)):
            with v1.variable_scope(f"l{i}"):
                w = v1.get_variable("w", [h.shape[1], width],
                                    initializer=v1.initializers.glorot_normal(seed=i))
                b = v1.get_variable("b", [width], initializer=v1.initializers.random_uniform(
                    0.05, 0.15, seed=10 + i))
                h = tf.matmul(h, w) + b
                h = tf.nn.relu(h) if i < 2 else h
        with v1.variable_scope("top"):
            scale = v1.Variable(np.array([1.0, 2.0, 3.0], np.float32), name="scale",
                                use_resource=False)
        y = (h * scale)[:, 0]
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    variables = graph.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES)
    yield Net(graph, session, x, y, variables)
    session.close()


def snapshot(net):
    return [np.array(v) for v in net.session.run(net.variables)]


def assert_restored(net, saved):
    now = snapshot(net)
    assert len(now) == len(saved)
    for before, after in zip(saved, now):
        assert before.dtype == after.dtype
        np.testing.assert_array_equal(before, after)   # value by value, exactly


def test_model_layers_groups_by_scope_bottom_first(net):
    layers = model_layers(net.graph)
    assert [name for name, _ in layers] == ["l0", "l1", "l2", "top"]
    assert [v.op.name for v in layers[0][1]] == ["l0/w", "l0/b"]


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_every_variable_is_restored_exactly_when_the_metric_raises_midway(net, mode, rng):
    saved = snapshot(net)
    grad = GradientSaliency(net.graph, net.session, net.y, net.x)
    ops = len(net.graph.get_operations())
    calls = []

    def explain(xs):
        calls.append(1)
        if len(calls) == 3:      # the original and one randomised step went through
            raise RuntimeError("boom")
        return grad.GetMaskBatch(xs)

    with pytest.raises(RuntimeError, match="boom"):
        randomization_check(explain, rng.uniform(size=(2, 8, 8, 2)), net.session, mode=mode)
    assert len(calls) == 3
    assert_restored(net, saved)
    assert len(net.graph.get_operations()) == ops    # weights changed without new ops


def test_randomized_variables_restores_after_an_exception_in_the_block(net):
    saved = snapshot(net)
    with pytest.raises(KeyError), randomized_variables(net.session, net.variables, seed=3):
        changed = snapshot(net)
        assert all(not np.array_equal(a, b) for a, b in zip(saved, changed))
        raise KeyError("inside")
    assert_restored(net, saved)


def which_layers_differ(net, saved):
    names = [name for name, _ in model_layers(net.graph)]
    groups = [vs for _, vs in model_layers(net.graph)]
    now = dict(zip((v.name for v in net.variables), snapshot(net)))
    before = dict(zip((v.name for v in net.variables), saved))
    out = []
    for name, group in zip(names, groups):
        differ = [not np.array_equal(now[v.name], before[v.name]) for v in group]
        assert all(differ) or not any(differ)      # a layer is randomised as a whole
        if all(differ):
            out.append(name)
    return out


@pytest.mark.parametrize("mode, expected", [
    ("cascading", [[], ["top"], ["l2", "top"], ["l1", "l2", "top"], ["l0", "l1", "l2", "top"]]),
    ("independent", [[], ["top"], ["l2"], ["l1"], ["l0"]]),
])
def test_layers_are_randomised_from_the_top(net, rng, mode, expected):
    saved = snapshot(net)
    seen = []

    def explain(xs):
        seen.append(which_layers_differ(net, saved))
        return xs

    result = randomization_check(explain, rng.uniform(size=(2, 8, 8, 2)), net.session, mode=mode)
    assert [sorted(s) for s in seen] == [sorted(e) for e in expected]
    assert result.layers == ["top", "l2", "l1", "l0"]
    assert_restored(net, saved)


def test_a_mask_independent_of_the_model_fails_the_check(net, rng):
    # "Explaining" with the input itself (an edge detector would do the same)
    # ignores the weights: every randomised mask equals the original.
    images = rng.uniform(size=(3, 8, 8, 2))
    result = randomization_check(lambda xs: np.array(xs), images, net.session)
    for measure in ("spearman_abs", "spearman", "ssim"):
        np.testing.assert_allclose(result.similarity[measure], 1.0)
        assert result.similarity[measure].shape == (4, 3)


def test_gradient_masks_change_when_the_demo_model_is_randomised(demo_model):
    m = demo_model
    images, labels = m.data.images[:6], m.data.labels[:6]
    grad = GradientSaliency(m.graph, m.session, m.target.y, m.x)
    feed = m.target.feed(labels)
    saved = m.session.run(m.graph.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES))
    result = randomization_check(lambda xs: grad.GetMaskBatch(xs, feed), images, m.session)
    assert result.layers == ["dense", "conv2", "conv1", "conv0"]
    # The original gradient maps of one input agree with themselves (sanity of the
    # measure), and after every layer is re-drawn they have little in common.
    assert mask_similarity(result.original[0], result.original[0]) == pytest.approx(1.0)
    assert result.mean("spearman_abs")[-1] < 0.5
    assert result.mean("ssim")[-1] < 0.5
    after = m.session.run(m.graph.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES))
    for a, b in zip(saved, after):
        np.testing.assert_array_equal(a, b)


def test_reinitialize_options(net):
    saved = dict(zip((v.name for v in net.variables), snapshot(net)))
    layer = [v for v in net.variables if v.op.name.startswith("l1/")]

    def values():
        return [np.array(a) for a in net.session.run(layer)]

    with randomized_variables(net.session, layer, reinitialize="shuffle", seed=0):
        for v, value in zip(layer, values()):
            np.testing.assert_array_equal(np.sort(value, axis=None),
                                          np.sort(saved[v.name], axis=None))
    with randomized_variables(net.session, layer, reinitialize="normal", seed=5):
        first = values()
    with randomized_variables(net.session, layer, reinitialize="normal", seed=5):
        np.testing.assert_array_equal(first[0], values()[0])       # same seed, same weights
    with randomized_variables(net.session, layer, reinitialize="initializer"):
        bias = values()[1]      # a fresh draw of its own initializer, uniform(0.05, 0.15)
        assert not np.array_equal(bias, saved["l1/b:0"])
        assert np.all((bias >= 0.05) & (bias <= 0.15))
    received = []

    def zeros(name, value, rng):
        received.append((name, value.shape))
        return np.zeros_like(value)

    with randomized_variables(net.session, layer, reinitialize=zeros):
        assert all(not np.any(v) for v in values())
    assert received == [("l1/w:0", (16, 8)), ("l1/b:0", (8,))]
    np.testing.assert_array_equal(values()[0], saved["l1/w:0"])


def test_normal_keeps_a_constant_variable():
    # N(mean, std) of all-equal values is those values: nothing learned to destroy.
    graph = tf.Graph()
    with graph.as_default():
        c = v1.get_variable("c", [4], initializer=v1.initializers.constant(0.5))
    with v1.Session(graph=graph) as session:
        session.run(c.initializer)
        with randomized_variables(session, [c], reinitialize="normal"):
            np.testing.assert_array_equal(session.run(c), np.full(4, 0.5, np.float32))


def test_spearman_matches_scipy(rng):
    stats = pytest.importorskip("scipy.stats")
    a = rng.integers(0, 5, 200).astype(float)          # many ties
    b = a + rng.normal(0, 2, 200)
    assert spearman_rank_correlation(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    assert spearman_rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman_rank_correlation(np.ones(5), np.arange(5)))


def test_ssim_matches_scikit_image(rng):
    metrics = pytest.importorskip("skimage.metrics")
    a = rng.uniform(size=(20, 24))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    expected = metrics.structural_similarity(a, b, data_range=1.0)
    assert ssim(a, b, data_range=1.0) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0)


def test_mask_similarity_measures(rng):
    mask = rng.normal(size=(10, 10, 3))
    assert mask_similarity(mask, -mask, "spearman") == pytest.approx(-1.0)
    assert mask_similarity(mask, -mask, "spearman_abs") == pytest.approx(1.0)   # magnitudes
    assert mask_similarity(mask, 3 * mask, "ssim") == pytest.approx(1.0)        # max-scaled
    with pytest.raises(ValueError, match="measure"):
        mask_similarity(mask, mask, "hog")


def test_result_mean_skips_undefined_similarities(net, rng):
    images = rng.uniform(size=(2, 8, 8, 2))
    constant_first = np.array(images)
    constant_first[0] = 1.0            # a constant mask has no ranking: NaN
    result = randomization_check(lambda xs: constant_first, images, net.session,
                                 measures=("spearman_abs",))
    assert np.all(np.isnan(result.similarity["spearman_abs"][:, 0]))
    np.testing.assert_allclose(result.mean("spearman_abs"), 1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "random"}, "mode"),
    ({"measures": ("hog",)}, "measures"),
    ({"reinitialize": "zeros"}, "reinitialize"),
    ({"layers": []}, "layers"),
])
def test_errors_name_the_argument(net, rng, kwargs, message):
    with pytest.raises(ValueError, match=message):
        randomization_check(lambda xs: xs, rng.uniform(size=(1, 8, 8, 2)), net.session, **kwargs)


def test_explain_changing_shape_is_an_error_and_restores(net, rng):
    saved = snapshot(net)
    calls = []

    def explain(xs):
        calls.append(1)
        return xs if len(calls) == 1 else xs[:, :4]

    with pytest.raises(ValueError, match="explain"):
        randomization_check(explain, rng.uniform(size=(1, 8, 8, 2)), net.session)
    assert_restored(net, saved)


def test_variables_of_another_graph_are_refused(net):
    other = tf.Graph()
    with other.as_default():
        stranger = v1.get_variable("stranger", [2])
    with pytest.raises(ValueError, match="variables"), randomized_variables(net.session,
                                                                            [stranger]):
        pass


def test_measures_that_do_not_fit_the_masks_fail_before_the_cascade(net, rng):
    """1-D masks with the default measures (SSIM needs 2-D maps): one explain call, then the
    error naming measures; no layer randomised."""
    saved = snapshot(net)
    calls = []

    def explain(xs):
        calls.append(1)
        return xs.reshape(len(xs), -1)  # a 1-D mask per input

    with pytest.raises(ValueError, match=r"measures: 'ssim' does not apply to masks of shape"):
        randomization_check(explain, rng.uniform(size=(2, 8, 8, 2)), net.session)
    assert len(calls) == 1
    assert_restored(net, saved)
    # Without SSIM the same masks work.
    result = randomization_check(explain, rng.uniform(size=(2, 8, 8, 2)), net.session,
                                 measures=("spearman_abs",))
    assert len(result.layers) == 4
