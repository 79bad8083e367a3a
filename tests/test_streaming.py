"""iter_masks: a stream of inputs explained chunk by chunk, in bounded memory."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.methods.gradient import GradientSaliency
from saliency_tf1.methods.integrated_gradients import IntegratedGradients
from saliency_tf1.streaming import iter_masks
from saliency_tf1.target import ClassTarget

v1 = tf.compat.v1


class Counted:
    """An iterable of random inputs that records how many were read."""

    def __init__(self, n: int, shape=(16, 16, 3), seed: int = 0):
        self.n, self.shape, self.seed, self.read = n, shape, seed, 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n):
            self.read += 1
            yield rng.random(self.shape, dtype=np.float32)

    def array(self) -> np.ndarray:
        return np.stack(list(Counted(self.n, self.shape, self.seed)))


@pytest.fixture
def target_cnn(relu_cnn):
    """relu_cnn with y = the logit of a class fed per input."""
    with relu_cnn.graph.as_default():
        target = ClassTarget(relu_cnn.logits)
    return relu_cnn, target


def test_stream_equals_one_batch_and_runs_once_per_chunk(relu_cnn, counting):
    spy = counting(relu_cnn.session)
    grad = GradientSaliency(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
    inputs = Counted(10)
    masks = list(iter_masks(grad, iter(inputs), chunk_size=4))
    assert spy.run.call_count == 3  # chunks of 4, 4, 2 inputs
    np.testing.assert_allclose(np.stack(masks), grad.GetMaskBatch(inputs.array()),
                               rtol=1e-6, atol=1e-7)


def test_chunk_size_and_batch_size_never_change_the_masks(relu_cnn):
    ig = IntegratedGradients(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    inputs = Counted(5)
    expected = ig.GetMaskBatch(inputs.array(), x_steps=6)
    for chunk_size, batch_size in [(1, None), (2, 5), (5, 64), (None, 7)]:
        got = np.stack(list(iter_masks(ig, inputs, chunk_size=chunk_size, x_steps=6,
                                       batch_size=batch_size)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_reads_the_stream_lazily_one_chunk_ahead_at_most(relu_cnn):
    grad = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    inputs = Counted(10**9)  # would never fit in memory
    stream = iter_masks(grad, iter(inputs), chunk_size=8)
    assert inputs.read == 0  # nothing read before the first mask is asked for
    first = list(itertools.islice(stream, 3))
    assert len(first) == 3 and inputs.read == 8
    list(itertools.islice(stream, 6))  # 9 masks: a second chunk
    assert inputs.read == 16
    stream.close()


def test_per_example_feeds_stream_alongside_the_inputs(target_cnn):
    model, target = target_cnn
    grad = GradientSaliency(model.graph, model.session, target.y, model.x)
    inputs, labels = Counted(7), [0, 3, 1, 4, 2, 2, 0]
    masks = list(iter_masks(grad, inputs, chunk_size=3,
                            per_example={target.classes: iter(labels)}))
    for x, label, mask in zip(inputs.array(), labels, masks):
        np.testing.assert_allclose(mask, grad.GetMask(x, target.feed(label)),
                                   rtol=1e-6, atol=1e-7)


def test_one_input_calls_and_constant_feeds(target_cnn):
    model, target = target_cnn
    grad = GradientSaliency(model.graph, model.session, target.y, model.x)
    inputs = Counted(4)
    feed = target.feed(2)
    before = dict(feed)
    smooth = list(iter_masks(grad, inputs, call="GetSmoothedMask", feed_dict=feed,
                             nsamples=3, seed=5))
    assert feed.keys() == before.keys() and all(feed[k] is before[k] for k in feed)
    for x, mask in zip(inputs.array(), smooth):
        np.testing.assert_array_equal(mask, grad.GetSmoothedMask(x, feed, nsamples=3, seed=5))


def test_masks_are_independent_arrays(relu_cnn):
    grad = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    masks = list(iter_masks(grad, Counted(4), chunk_size=4))
    assert all(m.base is None for m in masks)  # none keeps its chunk's array alive


def test_a_reader_reusing_one_buffer_is_safe(relu_cnn):
    grad = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    data = Counted(6).array()
    buffer = np.empty_like(data[0])

    def reader():
        for x in data:
            buffer[...] = x
            yield buffer

    got = np.stack(list(iter_masks(grad, reader(), chunk_size=4)))
    np.testing.assert_allclose(got, grad.GetMaskBatch(data), rtol=1e-6, atol=1e-7)


def test_errors_name_the_argument_or_the_input(target_cnn):
    model, target = target_cnn
    grad = GradientSaliency(model.graph, model.session, target.y, model.x)
    good = list(Counted(5))
    feed = {target.classes: [1]}
    # Checked when called, before any input is read.
    for kwargs, error, pattern in [
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"call": "GetMsk"}, ValueError, "call: expected one of"),
        ({"feed_dict": [1]}, TypeError, "feed_dict"),
        ({"per_example": [1]}, TypeError, "per_example"),
        ({"per_example": {target.classes: 3}}, TypeError, "per_example.*iterable"),
        ({"per_example": {target.classes.name: [1]}, "feed_dict": feed}, ValueError,
         "also given in feed_dict"),
    ]:
        inputs = Counted(3)
        with pytest.raises(error, match=pattern):
            iter_masks(grad, inputs, **kwargs)
        assert inputs.read == 0
    with pytest.raises(TypeError, match="call: GradientSaliency has no method"):
        iter_masks(grad, good, call="GetMaskWithDetails")
    # Checked as the stream is read: the bad input is named by its index.
    bad = good[:3] + [np.full((16, 16, 3), np.nan, np.float32)] + good[3:]
    with pytest.raises(ValueError, match=r"inputs\[3\]: contains NaN"):
        list(iter_masks(grad, bad, chunk_size=2, feed_dict=feed))
    with pytest.raises(ValueError, match=r"inputs\[2\]: expected one input"):
        list(iter_masks(grad, good[:2] + [np.zeros((8, 8, 3))], feed_dict=feed))
    with pytest.raises(ValueError, match="ran out after 4 values"):
        list(iter_masks(grad, good, chunk_size=2, per_example={target.classes: [0] * 4}))
    with pytest.raises(ValueError, match=r"more values than inputs \(5\)"):
        list(iter_masks(grad, good, chunk_size=2, per_example={target.classes: [0] * 6}))
    with pytest.raises(ValueError, match="feed_dict: missing a value"):
        list(iter_masks(grad, good))


def _peak_bytes(stream_factory, keep: bool) -> int:
    """Peak traced memory (numpy data included) while consuming a stream of masks."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        kept, total = [], None
        for mask in stream_factory():
            total = mask.copy() if total is None else total + mask
            if keep:
                kept.append(mask)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_bounded_over_a_long_stream(relu_cnn):
    """Peak memory does not grow with the stream (numpy allocations, via tracemalloc)."""
    grad = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    input_bytes = 16 * 16 * 3 * 4

    def stream(n):
        return lambda: iter_masks(grad, iter(Counted(n)), chunk_size=32)

    list(stream(64)())  # warm up TF's and numpy's one-off allocations
    short = _peak_bytes(stream(300), keep=False)
    long = _peak_bytes(stream(3000), keep=False)
    # 3000 inputs are 9.2 MB (and as many masks); the stream holds about a chunk.
    assert long < 1.25 * short + 64 * input_bytes, (short, long)
    assert long < 3000 * input_bytes / 10, long
    # The measurement sees memory that does grow: keeping every mask.
    kept = _peak_bytes(stream(3000), keep=True)
    assert kept > 3000 * input_bytes * 0.9 > 5 * long, (kept, long)
