"""Legacy model code through the switch: tf.compat.v1.layers, tf_slim nets, tf-keras in graph mode.

``TF_USE_LEGACY_KERAS`` must be set before TensorFlow is imported, and this
test process imported TensorFlow long ago, so the models are built and
explained in one subprocess that calls
:func:`saliency_tf1.legacy.enable_legacy_keras` first. It builds

* a CNN written with ``tf.compat.v1.layers`` (conv, batch norm, dense),
* a ``tf_slim.nets.resnet_v1`` (two bottleneck blocks, ``slim.batch_norm``
  through ``resnet_arg_scope``), after showing that without the
  ``tf_keras.legacy_tf_layers`` alias it fails as the issue describes,
  and ``resnet_v1_50`` itself at 64x64 (one gradient),
* a tf-keras functional CNN loaded with :func:`saliency_tf1.models.load_keras_model`
  (traced: :mod:`saliency_tf1.models.tf2`) from the object and from an ``.h5``
  file (and, outputs only, from a tf-keras SavedModel directory, inlined; a
  Lambda layer's bytecode is refused),

all with random weights, and explains each with every catalogue method
(cheap arguments), reporting each mask's shape and whether it is finite and
not all zero. The tests below check the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.catalogue import available_methods
from saliency_tf1.models.legacy import LEGACY_KERAS_ENV, enable_legacy_keras

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
MODELS = ["tf_layers", "slim_resnet_v1", "keras_object", "keras_h5"]
CAM_METHODS = {"gradcam", "gradcampp", "guidedgradcam"}

SCRIPT = textwrap.dedent('''
    import importlib, json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from saliency_tf1.models import legacy
    report = {"before_import": legacy.tensorflow_uses_legacy_keras()}
    legacy.enable_legacy_keras()                 # first: before TensorFlow is imported
    import numpy as np
    import tensorflow as tf
    import tf_slim as slim
    from tf_slim.nets import resnet_v1
    from method_cases import grid_segments, method_args
    from saliency_tf1.methods.gradient import GradientSaliency
    from saliency_tf1.models import load_keras_model
    from saliency_tf1.catalogue import METHODS, available_methods
    from saliency_tf1.target import ClassTarget
    from saliency_tf1.methods.xrai import XRAIParameters

    v1 = tf.compat.v1
    out = sys.argv[1]
    report["after_import"] = legacy.tensorflow_uses_legacy_keras()
    report["env"] = os.environ.get("TF_USE_LEGACY_KERAS")
    report["alias"] = (sys.modules["tf_keras.legacy_tf_layers.normalization"]
                       is importlib.import_module("tf_keras.src.legacy_tf_layers.normalization"))
    report["models"] = {}
    rng = np.random.default_rng(0)

    def args(name, size):
        if name == "xrai":
            return {"extra_parameters": XRAIParameters(
                steps=4, experimental_params={"min_pixel_diff": 0}),
                "segments": grid_segments(size, 4)}
        return method_args(name)

    def explain(key, graph, session, x, logits, conv, size, keep=None):
        image = rng.random((size, size, 3)).astype(np.float32)
        target = ClassTarget(logits)
        masks, rows = {}, {}
        for name in available_methods():
            spec = METHODS[name]
            method = spec.build(graph, session, target.y, x, conv)
            mask = np.asarray(getattr(method, spec.call)(image, target.feed(1), **args(name, size)))
            masks[name] = mask
            rows[name] = {"shape": list(mask.shape), "finite": bool(np.isfinite(mask).all()),
                          "nonzero": bool(np.any(mask != 0))}
        report["models"][key] = rows
        if keep is not None:
            keep[key] = (image, masks)

    def slim_resnet(x):
        blocks = [resnet_v1.resnet_v1_block("block1", base_depth=4, num_units=2, stride=2),
                  resnet_v1.resnet_v1_block("block2", base_depth=8, num_units=1, stride=1)]
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            net, ends = resnet_v1.resnet_v1(x, blocks, num_classes=4, is_training=False,
                                            global_pool=True, scope="small")
        return tf.squeeze(net, [1, 2], name="logits"), ends["small/block2"]

    # tf.compat.v1.layers.
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 16, 16, 3], name="x")
        h = v1.layers.conv2d(x, 8, 3, padding="same", activation=tf.nn.relu, name="conv1")
        h = v1.layers.batch_normalization(h, training=False, name="bn1")
        conv = v1.layers.conv2d(h, 8, 3, padding="same", activation=tf.nn.relu, name="conv2")
        logits = v1.layers.dense(tf.reduce_mean(conv, [1, 2]), 4, name="logits")
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        explain("tf_layers", graph, session, x, logits, conv, 16)

    # tf_slim: without the alias slim.batch_norm fails, with it the net builds.
    saved = {k: sys.modules.pop(k) for k in list(sys.modules)
             if k.startswith("tf_keras.legacy_tf_layers")}
    with tf.Graph().as_default():
        try:
            slim_resnet(v1.placeholder(tf.float32, [None, 32, 32, 3]))
            report["without_alias"] = "built"
        except ModuleNotFoundError as err:
            report["without_alias"] = str(err)
    legacy.register_legacy_tf_layers()
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 32, 32, 3], name="x")
        logits, conv = slim_resnet(x)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        explain("slim_resnet_v1", graph, session, x, logits, conv, 32)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 64, 64, 3], name="x")
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            net, _ = resnet_v1.resnet_v1_50(x, num_classes=4, is_training=False)
        target = ClassTarget(tf.squeeze(net, [1, 2]))
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        mask = GradientSaliency(graph, session, target.y, x).GetMask(
            rng.random((64, 64, 3)).astype(np.float32), target.feed(2))
        report["resnet_v1_50"] = {"shape": list(mask.shape),
                                  "finite": bool(np.isfinite(mask).all()),
                                  "nonzero": bool(np.any(mask != 0))}

    # tf-keras: an eager model, in graph mode from the object and from an .h5 file.
    K = importlib.import_module("tf_keras")
    inp = K.Input((16, 16, 3), name="image")
    h = K.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = K.layers.BatchNormalization()(h)
    h = K.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(h)
    outputs = K.layers.Dense(4, name="logits")(K.layers.GlobalAveragePooling2D()(h))
    model = K.Model(inp, outputs)
    probe = rng.random((2, 16, 16, 3)).astype(np.float32)
    eager_logits = model(probe, training=False).numpy()
    h5 = os.path.join(out, "model.h5")
    model.save(h5)
    kept, logit_error = {}, {}
    for key, source in (("keras_object", model), ("keras_h5", h5)):
        with load_keras_model(source) as loaded:
            x = loaded.tensor("image", role="input")
            logits = loaded.tensor("logits", role="output")
            conv = loaded.tensor("conv/Relu", role="conv")
            graph_logits = loaded.session.run(logits, {x: probe})
            logit_error[key] = float(np.abs(graph_logits - eager_logits).max())
            rng = np.random.default_rng(1)  # the same image for both
            explain(key, loaded.graph, loaded.session, x, logits, conv, 16, kept)
    # The caller's eager model still works after its graph-mode rebuilds.
    report["eager_after"] = float(np.abs(model(probe, training=False).numpy()
                                          - eager_logits).max())
    saved_dir = os.path.join(out, "keras_saved_model")  # a tf-keras SavedModel directory
    model.save(saved_dir, save_format="tf")
    with load_keras_model(saved_dir) as loaded:
        logit_error["keras_saved_model"] = float(np.abs(loaded.session.run(
            loaded.outputs["logits"], {loaded.inputs["image"]: probe}) - eager_logits).max())
    report["keras_logit_error"] = logit_error
    # A Lambda layer holding Python bytecode is refused unless allowed.
    doubler = K.Sequential([K.Input((3,)), K.layers.Lambda(lambda t: 2 * t)])
    doubler.save(os.path.join(out, "lambda.h5"))
    try:
        load_keras_model(os.path.join(out, "lambda.h5")).close()
        report["lambda"] = "loaded"
    except ValueError as err:  # UnsafeGraphError
        report["lambda"] = f"{type(err).__name__}: {err}"
    with load_keras_model(os.path.join(out, "lambda.h5"), allow_unsafe_ops=True) as loaded:
        (lambda_in,), (lambda_out,) = loaded.inputs.values(), loaded.outputs.values()
        report["lambda_allowed"] = loaded.session.run(
            lambda_out, {lambda_in: np.ones((1, 3), np.float32)}).tolist()
    report["keras_mask_error"] = {
        name: float(np.abs(kept["keras_object"][1][name] - kept["keras_h5"][1][name]).max())
        for name in kept["keras_object"][1]}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f)
''')


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("legacy")
    (out / "tmp").mkdir()
    script = out / "legacy_models.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != LEGACY_KERAS_ENV}
    env.update(PYTHONPATH=os.pathsep.join([TESTS, REPO, env.get("PYTHONPATH", "")]),
               TMPDIR=str(out / "tmp"), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(script), str(out)], cwd=out, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    with open(out / "report.json") as f:
        return json.load(f)


@pytest.mark.slow
def test_the_switch_in_a_fresh_process(report):
    assert report["before_import"] is None  # TensorFlow not imported yet: switchable
    assert report["after_import"] is True and report["env"] == "1"
    assert report["alias"] is True
    # The repair the switch makes is what lets tf_slim's batch norm build.
    assert "No module named 'tf_keras.legacy_tf_layers'" in report["without_alias"]
    assert report["resnet_v1_50"] == {"shape": [64, 64, 3], "finite": True, "nonzero": True}


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_method_explains_legacy_models(report, model):
    rows = report["models"][model]
    assert list(rows) == available_methods()
    size = 32 if model == "slim_resnet_v1" else 16
    for name, row in rows.items():
        shape = row["shape"]
        assert shape[:2] == [size, size] and len(shape) <= 3, (name, shape)
        assert len(shape) == 2 or shape[2] in (1, 3), (name, shape)
        assert row["finite"], (name, row)
        # A Grad-CAM map is ReLU(sum_k w_k A_k): on random weights it may be all zero, which
        # the contract keeps zero (Guided Grad-CAM multiplies by it). Every other mask of a
        # random ReLU net at a random input has some non-zero entry.
        assert row["nonzero"] or name in CAM_METHODS, (name, row)


@pytest.mark.slow
def test_keras_model_in_graph_mode_matches_eager(report):
    # The graph-mode rebuilds compute the eager model's function ...
    assert max(report["keras_logit_error"].values()) < 1e-5
    assert set(report["keras_logit_error"]) == {"keras_object", "keras_h5", "keras_saved_model"}
    assert report["eager_after"] == 0.0  # and the caller's eager model was left working
    # ... and the object and its .h5 file give the same masks.
    assert report["keras_mask_error"]
    assert max(report["keras_mask_error"].values()) < 1e-4


@pytest.mark.slow
def test_keras_lambda_layer_needs_allow_unsafe_ops(report):
    assert report["lambda"].startswith("UnsafeGraphError")
    assert "Lambda layer holding Python bytecode" in report["lambda"]
    assert "allow_unsafe_ops=True" in report["lambda"]
    assert report["lambda_allowed"] == [[2.0, 2.0, 2.0]]


def test_enabling_after_tensorflow_was_imported_raises(monkeypatch):
    monkeypatch.setattr(tf, "_tf_uses_legacy_keras", False, raising=False)
    monkeypatch.delenv(LEGACY_KERAS_ENV, raising=False)
    with pytest.raises(RuntimeError, match="before anything imports tensorflow") as err:
        enable_legacy_keras()
    assert f"{LEGACY_KERAS_ENV}=1" in str(err.value)
    assert LEGACY_KERAS_ENV not in os.environ  # nothing changed


def test_keras_loader_does_not_need_the_switch(monkeypatch, tmp_path):
    """Keras models are traced, not rebuilt with tf-keras's graph-mode layers: a process
    whose TensorFlow routes tf.keras to Keras 3 loads tf-keras models too."""
    import tf_keras

    from saliency_tf1.models import load_keras_model

    monkeypatch.setattr(tf, "_tf_uses_legacy_keras", False, raising=False)
    monkeypatch.delenv(LEGACY_KERAS_ENV, raising=False)
    with pytest.raises(FileNotFoundError):
        load_keras_model(tmp_path / "model.h5")
    inp = tf_keras.Input((3,), name="features")
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="scores")(inp))
    with load_keras_model(model) as loaded:
        x, y = loaded.inputs["features"], loaded.outputs["scores"]
        values = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_allclose(loaded.session.run(y, {x: values}), model(values).numpy(),
                                   rtol=1e-6)
    assert LEGACY_KERAS_ENV not in os.environ
