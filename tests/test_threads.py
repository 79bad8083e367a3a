"""Shared method objects on one session, called from many threads, give the serial masks.

Every public call of every catalogue method (seeded where random) is run
serially, then again from a pool of threads in a shuffled order, each call
with its own input and class (fed through ``feed_dict``), so that a method
keeping per-call state on ``self`` or mixing up feeds between calls would give
another thread's mask.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from method_cases import build_model, call_targets, make_inputs

TARGETS = call_targets()
NAMES = list(dict.fromkeys(t.name for t in TARGETS))
THREADS = 8


@pytest.fixture(scope="module")
def shared():
    model = build_model()
    methods = {name: model.build(name) for name in NAMES}
    yield model, methods
    model.session.close()


def _jobs(model, targets):
    """(target, input, class): 4 calls per target, on 3 inputs (pairs of inputs when batched)."""
    images = make_inputs(model.x.shape.as_list()[1:], 4, seed=7)
    jobs = []
    for target in targets:
        for i, c in [(0, 1), (1, 3), (2, 0), (0, 2)]:
            value = images[i:i + 2] if target.batched else images[i]
            jobs.append((target, value, c))
    return jobs


def _run(methods, model, job):
    target, value, c = job
    return target.run(methods[target.name], value, model.feed(c))


def _threaded_equals_serial(model, methods, targets):
    jobs = _jobs(model, targets)
    serial = [_run(methods, model, job) for job in jobs]
    order = list(range(len(jobs))) * 3  # every job three times, interleaved
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = list(pool.map(lambda k: (k, _run(methods, model, jobs[k])), order))
    for k, mask in threaded:
        target, _, c = jobs[k]
        expected = serial[k]
        np.testing.assert_allclose(
            mask, expected, rtol=1e-6, atol=1e-7 * float(np.abs(expected).max() or 1),
            err_msg=f"{target.id} (class {c}) differs from the serial call when threaded")


@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
def test_threads_give_serial_masks(shared, target):
    model, methods = shared
    ops = model.op_count()
    _threaded_equals_serial(model, methods, [target])
    assert model.op_count() == ops


def test_all_methods_at_once_on_one_session(shared):
    model, methods = shared
    # XRAI's own segmentation is slow; its calls are covered by the test above.
    _threaded_equals_serial(model, methods, [t for t in TARGETS if t.name != "xrai"])
