"""Methods on TensorFlow's distributed runtime give the masks of a local session.

An in-process cluster on loopback (``tf.compat.v1.train.Server``), of one task
or of two tasks with the model split between them (conv layers on task 1, the
head on task 0, so activations and gradients cross between tasks), and a
session whose target is task 0's server: every public call of every catalogue
method is built and run unchanged on it and compared with the same model in a
local session.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf
from method_cases import build_model, call_targets, make_inputs

from saliency_tf1 import PerExample
from saliency_tf1.methods.integrated_gradients import IntegratedGradients
from saliency_tf1.streaming import iter_masks

v1 = tf.compat.v1

TARGETS = call_targets()
SHAPE = (12, 12, 3)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _cluster(tasks: int) -> list:
    spec = tf.train.ClusterSpec({"worker": [f"localhost:{p}" for p in _free_ports(tasks)]})
    config = v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=2)
    return [v1.train.Server(spec, job_name="worker", task_index=i, config=config, start=True)
            for i in range(tasks)]


@pytest.fixture(scope="module", params=[1, 2], ids=["one task", "two tasks"])
def models(request):
    """(local model, the same model on the cluster, its methods by name for both)."""
    servers = _cluster(request.param)
    local = build_model(size=SHAPE[0], channels=SHAPE[2])
    remote = build_model(
        size=SHAPE[0], channels=SHAPE[2], target=servers[0].target,
        conv_device=f"/job:worker/task:{request.param - 1}", head_device="/job:worker/task:0")
    names = dict.fromkeys(t.name for t in TARGETS)
    yield (local, remote, {n: local.build(n) for n in names}, {n: remote.build(n) for n in names},
           request.param, servers)
    local.session.close()
    remote.session.close()
    # The servers stop with the process (TF1 servers have no stop()).


def test_the_cluster_session_runs_on_every_task(models):
    _, remote, _, _, tasks, _ = models
    assert tf.compat.as_str(remote.session.sess_str).startswith("grpc://")
    metadata = v1.RunMetadata()
    remote.session.run(remote.y, {remote.x: np.zeros((1, *SHAPE)), **remote.feed()},
                       options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE),
                       run_metadata=metadata)
    ran_on = {d.device.split("/device")[0] for d in metadata.step_stats.dev_stats}
    assert {f"/job:worker/replica:0/task:{i}" for i in range(tasks)} <= ran_on


@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
def test_cluster_session_gives_local_masks(models, target):
    local, remote, local_methods, remote_methods, _, _ = models
    images = make_inputs(SHAPE, 2, seed=11)
    value = images if target.batched else images[0]
    classes = [2, 0] if target.batched else 2
    expected = target.run(local_methods[target.name], value, local.feed(classes))
    ops = remote.op_count()
    got = target.run(remote_methods[target.name], value, remote.feed(classes))
    assert remote.op_count() == ops
    np.testing.assert_allclose(got, expected, rtol=1e-5,
                               atol=1e-6 * float(np.abs(expected).max() or 1))


def test_images_sharded_over_workers_from_one_client(models):
    """The README's recipe: one model per worker, a thread per worker streams its shard."""
    local, _, _, _, tasks, servers = models
    images = make_inputs(SHAPE, 7, seed=12)
    labels = np.array([0, 3, 1, 2, 2, 0, 1], np.int32)
    ig = IntegratedGradients(local.graph, local.session, local.y, local.x)
    expected = ig.GetMaskBatch(images, {local.target.classes: PerExample(labels)}, x_steps=5)

    def explain_shard(k):
        worker = build_model(size=SHAPE[0], channels=SHAPE[2], target=servers[k].target,
                             conv_device=f"/job:worker/task:{k}",
                             head_device=f"/job:worker/task:{k}")
        method = IntegratedGradients(worker.graph, worker.session, worker.y, worker.x)
        shard = slice(k, None, tasks)
        masks = list(iter_masks(method, iter(images[shard]), chunk_size=2, x_steps=5,
                                per_example={worker.target.classes: iter(labels[shard])}))
        worker.session.close()
        return masks

    with ThreadPoolExecutor(tasks) as pool:
        shards = list(pool.map(explain_shard, range(tasks)))
    got = np.empty_like(expected)
    for k, masks in enumerate(shards):
        got[k::tasks] = masks
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
