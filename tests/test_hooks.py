"""SaliencyHook: saliency traced during training, read back from the event file."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.catalogue import METHODS
from saliency_tf1.datasets import CLASS_NAMES, make_shapes
from saliency_tf1.demo import build_cnn
from saliency_tf1.methods.grad_cam import GradCam
from saliency_tf1.methods.gradient import GradientSaliency
from saliency_tf1.methods.integrated_gradients import IntegratedGradients
from saliency_tf1.methods.occlusion import Occlusion
from saliency_tf1.target import ClassTarget
from saliency_tf1.training import HookedSession, SaliencyHook
from saliency_tf1.visualization import VisualizeImageGrayscale, encode_png, normalize_image

v1 = tf.compat.v1

WIDTHS = (8, 16)
SIZE = 32


#: The hook's default masks, with smaller arguments to keep the test fast.
HOOK_METHODS = {"gradient": {}, "smoothgrad": {"nsamples": 4}, "ig": {"x_steps": 8},
                "smoothig": {"x_steps": 8, "nsamples": 4}}
MASKS = list(HOOK_METHODS)
ONLY_GRADIENT = {"methods": ["gradient"]}


def build_training_graph(global_step: bool = True):
    """The small demo CNN with an Adam train op; returns (graph, tensors)."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        net = build_cnn(x, len(CLASS_NAMES), seed=0, widths=WIDTHS)
        logits = tf.identity(net["logits"], name="logits")
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        step = v1.train.get_or_create_global_step() if global_step else None
        train_op = v1.train.AdamOptimizer(3e-3).minimize(loss, global_step=step)
    return graph, {"x": x, "labels": labels, "logits": logits, "train_op": train_op,
                   "variables": net["variables"]}


def batches(data, batch: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.integers(0, len(data), batch)
        yield data.images[idx], data.labels[idx]


def read_events(logdir: str) -> dict[int, dict[str, object]]:
    """``{step: {tag: summary value}}`` of every event file under ``logdir``."""
    found: dict[int, dict[str, object]] = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(int(event.step), {})[value.tag] = value
    return found


def decode(value) -> np.ndarray:
    return tf.io.decode_png(value.image.encoded_image_string).numpy()


def expected_tags(n_samples: int, masks) -> set[str]:
    tags = set()
    for k in range(n_samples):
        tags |= {f"saliency/sample_{k}/image", f"saliency/sample_{k}/class"}
        tags |= {f"saliency/sample_{k}/{m}/{kind}" for m in masks for kind in ("mask", "overlay")}
    return tags


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(240, size=SIZE, seed=3)


@pytest.fixture(scope="module")
def monitored_run(shapes, tmp_path_factory):
    """200 steps under MonitoredTrainingSession with the hook every 50 steps."""
    logdir = str(tmp_path_factory.mktemp("monitored"))
    graph, t = build_training_graph()
    lines: list[str] = []
    hook = SaliencyHook(t["x"], t["logits"], shapes, num_samples=3, every_n_steps=50,
                        output_dir=logdir, methods=HOOK_METHODS, batch_size=32,
                        label_mapping=CLASS_NAMES, log=lines.append)
    data = batches(shapes)
    with graph.as_default():
        with v1.train.MonitoredTrainingSession(
            checkpoint_dir=logdir, hooks=[hook, v1.train.StopAtStepHook(last_step=200)],
            save_summaries_steps=None, save_summaries_secs=None, log_step_count_steps=None,
        ) as sess:
            ops_before, finalized = len(graph.get_operations()), graph.finalized
            while not sess.should_stop():
                images, labels = next(data)
                sess.run(t["train_op"], {t["x"]: images, t["labels"]: labels})
        ops_after = len(graph.get_operations())
    return {"logdir": logdir, "hook": hook, "graph": graph, "lines": lines,
            "ops": (ops_before, ops_after), "finalized": finalized,
            "events": read_events(logdir)}


def test_image_summaries_at_expected_steps(monitored_run):
    hook, events = monitored_run["hook"], monitored_run["events"]
    assert [r.step for r in hook.history] == [0, 50, 100, 150, 200]
    tags = expected_tags(3, MASKS)
    steps_with_saliency = sorted(s for s, vals in events.items()
                                 if any(t.startswith("saliency/") for t in vals))
    assert steps_with_saliency == [0, 50, 100, 150, 200]
    for step in steps_with_saliency:
        got = {t for t in events[step] if t.startswith("saliency/")}
        assert got == tags, step
        for tag in got - {f"saliency/sample_{k}/class" for k in range(3)}:
            image = decode(events[step][tag])
            assert image.shape[:2] == (SIZE, SIZE)
            assert image.shape[2] == (1 if tag.endswith("/mask") else 3)
    assert [r.step for r in hook.history] == [0, 50, 100, 150, 200]


def test_masks_at_last_step_equal_direct_computation(monitored_run, shapes):
    """Rebuild the model in a new graph from the final checkpoint and explain directly."""
    hook, events, logdir = monitored_run["hook"], monitored_run["events"], monitored_run["logdir"]
    checkpoint = tf.train.latest_checkpoint(logdir)
    assert checkpoint is not None and checkpoint.endswith("-200")
    samples = shapes.images[:3]
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3])
        net = build_cnn(x, len(CLASS_NAMES), seed=0, widths=WIDTHS)
        target = ClassTarget(net["logits"])
        saver = v1.train.Saver(var_list=net["variables"])
    with v1.Session(graph=graph) as session:
        saver.restore(session, checkpoint)
        classes = session.run(target.predictions, {x: samples})
        last = hook.history[-1]
        np.testing.assert_array_equal(last.classes, classes)
        grad = GradientSaliency(graph, session, target.y, x)
        ig = IntegratedGradients(graph, session, target.y, x)
        direct = {
            "gradient": grad.GetMaskBatch(samples, target.feed(classes)),
            "smoothgrad": np.stack([
                grad.GetSmoothedMask(samples[k], target.feed(int(classes[k])),
                                     stdev_spread=0.15, nsamples=4, seed=k)
                for k in range(3)]),
            "ig": np.stack([ig.GetMask(samples[k], target.feed(int(classes[k])), x_steps=8)
                            for k in range(3)]),
            "smoothig": np.stack([
                ig.GetSmoothedMask(samples[k], target.feed(int(classes[k])), stdev_spread=0.15,
                                   nsamples=4, seed=k, x_steps=8)
                for k in range(3)]),
        }
    assert set(last.masks) == set(MASKS)
    for name in MASKS:
        scale = float(np.max(np.abs(direct[name])))
        assert scale > 0, name
        np.testing.assert_allclose(last.masks[name], direct[name], rtol=1e-4,
                                   atol=1e-5 * scale, err_msg=name)
    # Training moved the masks: the first trigger explained other weights.
    assert not np.allclose(hook.history[0].masks["gradient"], last.masks["gradient"])

    # What the event file holds at the last step is these masks, drawn.
    written = events[200]
    for k in range(3):
        image = decode(written[f"saliency/sample_{k}/image"])
        np.testing.assert_array_equal(
            image, np.round(normalize_image(samples[k]) * 255).astype(np.uint8))
        for name in MASKS:
            mask_png = decode(written[f"saliency/sample_{k}/{name}/mask"])[..., 0]
            expected = np.round(VisualizeImageGrayscale(direct[name][k]) * 255)
            assert np.max(np.abs(mask_png.astype(int) - expected)) <= 1, name
        text = written[f"saliency/sample_{k}/class"].tensor.string_val[0].decode()
        assert text.startswith(CLASS_NAMES[classes[k]])
        assert text.endswith(f"(true {CLASS_NAMES[shapes.labels[k]]})")


def test_graph_does_not_grow_and_cost_is_logged(monitored_run):
    before, after = monitored_run["ops"]
    assert monitored_run["finalized"] and before == after
    lines = monitored_run["lines"]
    assert len(lines) == 5
    assert all("session.run calls" in line and " s, " in line for line in lines)
    # Batched work: one run for the classes, one per plain mask over all samples, and one per
    # sample for each smoothed mask (nsamples x x_steps rows fit in one batch of 32).
    plain = sum(not METHODS[m].smoothed for m in MASKS)
    smoothed = len(MASKS) - plain
    expected_runs = 1 + plain + 3 * smoothed
    assert all(r.session_runs == expected_runs for r in monitored_run["hook"].history)


def test_plain_session_loop_without_global_step(shapes, tmp_path):
    graph, t = build_training_graph(global_step=False)
    with graph.as_default():
        init = v1.global_variables_initializer()
    lines: list[str] = []
    hook = SaliencyHook("x:0", "logits:0", shapes.images[5:7], labels=shapes.labels[5:7],
                        every_n_steps=20, class_from="label", label_mapping=CLASS_NAMES,
                        png_dir=tmp_path / "png", log=lines.append, **ONLY_GRADIENT)
    data = batches(shapes, seed=1)
    with v1.Session(graph=graph) as session:
        session.run(init)
        with HookedSession(session, [hook]) as hooked:
            ops = len(graph.get_operations())
            for _ in range(50):
                images, labels = next(data)
                hooked.run(t["train_op"], {t["x"]: images, t["labels"]: labels})
        assert len(graph.get_operations()) == ops
        # At the end (step 50) the masks are those of the final weights.
        grad = GradientSaliency(graph, session, hook.target.y, t["x"])
        direct = grad.GetMaskBatch(shapes.images[5:7], hook.target.feed(shapes.labels[5:7]))
    assert [r.step for r in hook.history] == [0, 20, 40, 50]
    np.testing.assert_array_equal(hook.history[-1].classes, shapes.labels[5:7])
    np.testing.assert_allclose(hook.last_masks["gradient"], direct, rtol=1e-5,
                               atol=1e-6 * np.abs(direct).max())
    assert sorted(os.listdir(tmp_path / "png")) == [
        f"saliency_step_{s:08d}.png" for s in (0, 20, 40, 50)]
    names = ", ".join(CLASS_NAMES[c] for c in shapes.labels[5:7])
    assert all(f"classes [{names}]" in line for line in lines)


def test_first_k_of_an_iterable(shapes):
    graph, t = build_training_graph()

    def stream():
        for start in range(0, 20, 2):
            yield shapes.images[start:start + 2], shapes.labels[start:start + 2]

    hook = SaliencyHook(t["x"], t["logits"], stream(), num_samples=3, **ONLY_GRADIENT)
    with graph.as_default():
        hook.begin()
    np.testing.assert_array_equal(hook.samples, shapes.images[:3])
    np.testing.assert_array_equal(hook.labels, shapes.labels[:3])


@pytest.mark.parametrize("samples, kwargs, message", [
    (np.zeros((0, SIZE, SIZE, 3), np.float32), {}, "samples: expected at least one input"),
    (np.zeros((2, 16, 16, 3), np.float32), {}, r"samples: expected a batch of inputs of shape "
                                               r"\[N, 32, 32, 3\], got shape \(2, 16, 16, 3\)"),
    (np.zeros((2, SIZE, SIZE), np.float32), {}, "samples: expected a batch"),
    (iter([]), {}, "samples: expected at least one input"),
    (np.zeros((2, SIZE, SIZE, 3), np.float32), {"class_from": "label"},
     "labels: class_from='label' needs"),
    (np.zeros((2, SIZE, SIZE, 3), np.float32), {"labels": [0, 9]},
     r"labels: expected class indices in \[0, 4\)"),
])
def test_bad_input_fails_at_begin(samples, kwargs, message):
    graph, t = build_training_graph()
    hook = SaliencyHook(t["x"], t["logits"], samples, **kwargs, **ONLY_GRADIENT)  # no error yet
    ops = len(graph.get_operations())
    with graph.as_default(), pytest.raises(ValueError, match=message):
        hook.begin()
    with graph.as_default(), pytest.raises(ValueError, match=message), \
            v1.train.MonitoredTrainingSession(hooks=[hook], log_step_count_steps=None):
        pass
    # The checks come before any op is added.
    assert len(graph.get_operations()) == ops


def test_non_image_model_fails_at_begin(analytic):
    with analytic.graph.as_default():
        logits = tf.stack([analytic.y, -analytic.y], axis=1)
    hook = SaliencyHook(analytic.x, logits, np.ones((2, 3), np.float32), **ONLY_GRADIENT)
    with analytic.graph.as_default(), pytest.raises(
            ValueError, match=r"x: SaliencyHook explains images; .* got 'x:0' of shape"):
        hook.begin()
    hook = SaliencyHook("nope:0", logits, np.ones((2, 3), np.float32), **ONLY_GRADIENT)
    with analytic.graph.as_default(), pytest.raises(ValueError, match="x: 'nope:0' names no"):
        hook.begin()


@pytest.mark.parametrize("kwargs, error, message", [
    ({"every_n_steps": 0}, ValueError, "every_n_steps"),
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"class_from": "truth"}, ValueError, "class_from"),
    ({"methods": []}, ValueError, "methods: expected at least one method"),
    ({"methods": ["gradient", "nope"]}, ValueError, "method: unknown name 'nope'"),
    ({"methods": ["gradcam"]}, ValueError, r"methods: 'gradcam' needs conv_layer="),
    ({"methods": {"smoothgrad": {"seed": 3}}}, ValueError, "pass seed= to the hook"),
    ({"methods": [("ig", 25)]}, TypeError, r"methods: expected \(name, \{arguments\}\) pairs"),
    ({"methods": 3}, TypeError, "methods: expected catalogue names"),
])
def test_bad_arguments_fail_in_constructor(kwargs, error, message):
    with pytest.raises(error, match=message):
        SaliencyHook("x:0", "logits:0", np.zeros((1, 8, 8, 3)), **kwargs)


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_encode_png_round_trips(channels, rng):
    shape = (5, 7) if channels is None else (5, 7, channels)
    image = rng.integers(0, 256, shape).astype(np.uint8)
    decoded = tf.io.decode_png(encode_png(image)).numpy()
    np.testing.assert_array_equal(decoded, image.reshape(5, 7, -1))


def test_first_k_of_an_eager_dataset(shapes):
    dataset = tf.data.Dataset.from_tensor_slices((shapes.images[:10], shapes.labels[:10]))
    hook = SaliencyHook("x:0", "logits:0", dataset.batch(4), num_samples=6, **ONLY_GRADIENT)
    graph, _ = build_training_graph()
    with graph.as_default():
        hook.begin()
    np.testing.assert_array_equal(hook.samples, shapes.images[:6])
    np.testing.assert_array_equal(hook.labels, shapes.labels[:6])


def test_graph_mode_input_pipeline(shapes, tmp_path):
    """The training input is a tf.data pipeline in the graph; the hook explains its first K."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        dataset = tf.data.Dataset.from_tensor_slices((shapes.images, shapes.labels))
        dataset = dataset.repeat().batch(16)
        x, labels = v1.data.make_one_shot_iterator(dataset).get_next()
        logits = build_cnn(x, len(CLASS_NAMES), seed=0, widths=WIDTHS)["logits"]
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train_op = v1.train.AdamOptimizer(3e-3).minimize(
            loss, global_step=v1.train.get_or_create_global_step())
        hook = SaliencyHook(x, logits, dataset, num_samples=2, every_n_steps=10,
                            class_from="label", **ONLY_GRADIENT)
        with v1.train.MonitoredTrainingSession(
                hooks=[hook, v1.train.StopAtStepHook(last_step=20)],
                log_step_count_steps=None) as sess:
            while not sess.should_stop():
                sess.run(train_op)
    np.testing.assert_array_equal(hook.samples, shapes.images[:2])
    assert [r.step for r in hook.history] == [0, 10, 20]
    np.testing.assert_array_equal(hook.history[-1].classes, shapes.labels[:2])


def test_graph_mode_dataset_of_wrong_shape_fails_at_begin(shapes):
    graph, t = build_training_graph()
    with graph.as_default():
        small = tf.data.Dataset.from_tensor_slices(np.zeros((4, 16, 16, 3), np.float32))
    hook = SaliencyHook(t["x"], t["logits"], small, num_samples=2, **ONLY_GRADIENT)  # eager here
    with graph.as_default(), pytest.raises(
            ValueError, match=r"samples: expected inputs of shape \[32, 32, 3\]"):
        hook.begin()


@pytest.mark.parametrize("methods, error, message", [
    ({"smoothgrad": {"nsamples": 1.5}}, TypeError, r"methods\['smoothgrad'\]: nsamples"),
    ({"ig": {"x_steps": 0}}, ValueError, r"methods\['ig'\]: x_steps: expected a positive"),
    ({"ig": {"x_baseline": np.zeros((4, 4, 3))}}, ValueError, r"methods\['ig'\]: x_baseline"),
    ({"occlusion": {"size": 64}}, ValueError, r"methods\['occlusion'\]: .* larger than"),
    ({"gradient": {"x_steps": 5}}, TypeError, r"unexpected arguments \['x_steps'\]"),
])
def test_bad_method_arguments_fail_at_begin(shapes, methods, error, message):
    graph, t = build_training_graph()
    hook = SaliencyHook(t["x"], t["logits"], shapes.images[:2], methods=methods)
    with graph.as_default(), pytest.raises(error, match=message):
        hook.begin()


def test_any_catalogue_method_by_name_with_its_arguments(shapes):
    """Grad-CAM (on the conv layer) and a strided occlusion, traced by the hook, equal the
    methods called directly."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        net = build_cnn(x, len(CLASS_NAMES), seed=0, widths=WIDTHS)
        init = v1.global_variables_initializer()
    samples = shapes.images[:2]
    hook = SaliencyHook(x, net["logits"], samples, conv_layer=net["conv"],
                        methods={"gradcam": {"three_dims": False},
                                 "occlusion": {"size": 8, "stride": 8}})
    with v1.Session(graph=graph) as session:
        session.run(init)
        with HookedSession(session, [hook]):
            pass
        target = hook.target
        classes = hook.history[-1].classes
        cam = GradCam(graph, session, target.y, x, net["conv"]).GetMaskBatch(
            samples, target.feed(classes), three_dims=False)
        occlusion = Occlusion(graph, session, target.y, x).GetMaskBatch(
            samples, target.feed(classes), size=8, stride=8)
    assert set(hook.last_masks) == {"gradcam", "occlusion"}
    np.testing.assert_allclose(hook.last_masks["gradcam"], cam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hook.last_masks["occlusion"], occlusion, rtol=1e-5, atol=1e-5)
    assert hook.last_masks["gradcam"].shape == (2, SIZE, SIZE) and np.abs(cam).max() > 0
