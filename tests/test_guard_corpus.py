"""Legitimate models pass the untrusted-model guard without flags, load, and are explained.

Two subprocesses build the corpus into a temp folder, each recording, for a
probe input, the live model's logits and its gradient of logit 0 (computed
there with ``tf.gradients`` / ``tf.GradientTape``, independently of this
package's loaders):

* plain TensorFlow (control flow v2, then again v1): a small CNN with fused
  batch norm, a dropout switch (``tf.cond`` on an ``is_training``
  placeholder), a ``tf.while_loop`` and an Adam training op with summaries,
  exported as a frozen graph, plain and sharded meta checkpoints (a second,
  training saver left in the graph), a v1 ``SavedModelBuilder`` export with a
  main op and a ``simple_save`` export; a string-preprocessing model
  (base64 -> raw floats, a setting string split and parsed); a ``tf.Module``
  SavedModel with ``If``/``While`` in its function; a Keras 3 ``export()``
  (Keras 3 is importable here);
* the legacy-Keras switch: a tf-keras model (batch norm, dropout) saved as a
  SavedModel directory and as ``.h5`` (both loaded with
  :func:`~saliency_tf1.models.load_keras_model` and explained there, since
  tf-keras needs the switch before TensorFlow is imported), and frozen tf-slim
  nets (``resnet_v1``, ``resnet_v2`` blocks with ``slim.batch_norm``; a slim
  net with batch-norm and dropout switches).

Here every model is checked by the guard (no refusal), loaded with
:func:`~saliency_tf1.models.load_model` and no flags, its logits compared
with the live ones and its gradient mask (:class:`GradientSaliency`)
compared with the live gradient. Which op types each model needed is
printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from saliency_tf1.methods.gradient import GradientSaliency
from saliency_tf1.models import ALLOWED_OPS, explain_unsafe_ops, load_model
from saliency_tf1.models.legacy import LEGACY_KERAS_ENV
from saliency_tf1.target import ClassTarget

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

_COMMON = '''
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = sys.argv[1]
    report = {}

    def record(key, path, kind, x, y, probe, logits, grad):
        import numpy as np
        for name, value in (("probe", probe), ("logits", logits), ("grad", grad)):
            np.save(os.path.join(out, f"{key}_{name}.npy"), np.asarray(value))
        report[key] = {"path": path, "kind": kind, "x": x, "y": y}
'''

PLAIN = textwrap.dedent(_COMMON) + textwrap.dedent('''
    import base64
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(0)
    SIZE = 8


    def net(x, is_training):
        init = v1.initializers.he_normal(seed=1)
        h = tf.nn.conv2d(x, v1.get_variable("conv/w", [3, 3, 3, 4], initializer=init), 1,
                         "SAME")
        gamma = v1.get_variable("bn/gamma", [4], initializer=v1.ones_initializer())
        beta = v1.get_variable("bn/beta", [4], initializer=v1.zeros_initializer())
        mean = v1.get_variable("bn/moving_mean", [4], initializer=v1.zeros_initializer(),
                               trainable=False)
        var = v1.get_variable("bn/moving_variance", [4], initializer=v1.ones_initializer(),
                              trainable=False)
        h, _, _ = v1.nn.fused_batch_norm(h, gamma, beta, mean, var, is_training=False)
        h = tf.nn.relu(h)
        h = tf.cond(is_training, lambda: tf.nn.dropout(h, rate=0.5, seed=2), lambda: h)
        _, h = tf.while_loop(lambda i, t: i < 2, lambda i, t: (i + 1, 0.9 * t), [0, h])
        h = tf.reduce_mean(tf.nn.max_pool2d(h, 2, 2, "SAME"), [1, 2])
        w = v1.get_variable("dense/w", [4, 3], initializer=v1.initializers.glorot_uniform(3))
        b = v1.get_variable("dense/b", [3], initializer=v1.zeros_initializer())
        return tf.identity(tf.matmul(h, w) + b, name="logits")


    def build_tf1(tag):
        probe = rng.random((2, SIZE, SIZE, 3)).astype(np.float32)
        graph = tf.Graph()
        with graph.as_default():
            v1.set_random_seed(0)
            x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
            is_training = v1.placeholder_with_default(False, [], name="is_training")
            logits = net(x, is_training)
            labels = v1.placeholder(tf.int64, [None], name="labels")
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits))
            step = v1.train.get_or_create_global_step()
            v1.add_to_collection("train_op", v1.train.AdamOptimizer(1e-3).minimize(
                loss, global_step=step))
            v1.summary.scalar("loss", loss)
            v1.summary.histogram("logits", logits)
            v1.summary.merge_all()
            v1.get_local_variable("eval_count", [], initializer=v1.zeros_initializer())
            grad = tf.gradients(logits[:, 0], x)[0]
            session = v1.Session(graph=graph)
            session.run(v1.global_variables_initializer())
            live = session.run([logits, grad], {x: probe})
            frozen = v1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), ["logits"])
            path = os.path.join(out, f"{tag}_frozen.pb")
            with open(path, "wb") as f:
                f.write(frozen.SerializeToString())
            record(f"{tag}_frozen", path, "frozen", "x", "logits", probe, *live)
            v1.train.Saver(name="training_saver")  # left in the graph, as training scripts do
            for sharded in (False, True):
                key = f"{tag}_checkpoint" + ("_sharded" if sharded else "")
                os.makedirs(os.path.join(out, key))
                prefix = v1.train.Saver(sharded=sharded).save(session,
                                                               os.path.join(out, key, "model"))
                record(key, prefix + ".meta", "checkpoint", "x", "logits", probe, *live)
            key = f"{tag}_builder"
            builder = v1.saved_model.Builder(os.path.join(out, key))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={
                    "serving_default": v1.saved_model.predict_signature_def(
                        {"images": x}, {"logits": logits})},
                main_op=tf.group(v1.local_variables_initializer(), v1.tables_initializer(),
                                 name="main_op"))
            builder.save()
            record(key, os.path.join(out, key), "saved_model", "images", "logits", probe,
                   *live)
            key = f"{tag}_simple_save"
            v1.saved_model.simple_save(session, os.path.join(out, key), {"images": x},
                                       {"logits": logits})
            record(key, os.path.join(out, key), "saved_model", "images", "logits", probe,
                   *live)
            session.close()


    build_tf1("cfv2")  # functional If / While: TensorFlow 2's default in graph mode
    v1.disable_control_flow_v2()
    build_tf1("cfv1")  # Switch / Merge / Enter / Exit / NextIteration
    v1.enable_control_flow_v2()

    # String preprocessing: base64 float32 bytes in, a setting string parsed.
    graph = tf.Graph()
    with graph.as_default():
        raw = v1.placeholder(tf.string, [None], name="raw")
        features = tf.reshape(tf.io.decode_raw(tf.io.decode_base64(raw), tf.float32), [-1, 4],
                              name="features")
        setting = v1.placeholder_with_default(tf.constant("scale=2.5;bias=x"), [],
                                              name="setting")
        parts = tf.strings.split(tf.strings.regex_replace(setting, "x", "0"), ";")
        values = tf.strings.to_number(tf.strings.split(parts, "=").to_tensor()[:, 1])
        w = v1.get_variable("w", initializer=rng.normal(size=(4, 3)).astype(np.float32))
        logits = tf.identity(tf.matmul(features, w) * values[0] + values[1], name="logits")
        grad = tf.gradients(logits[:, 0], features)[0]
        probe = rng.random((2, 4)).astype(np.float32)
        encoded = [base64.urlsafe_b64encode(row.tobytes()) for row in probe]
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            live = session.run([logits, grad], {raw: encoded})
            v1.saved_model.simple_save(session, os.path.join(out, "strings"), {"raw": raw},
                                       {"logits": logits})
        record("strings", os.path.join(out, "strings"), "saved_model", "features:0",
               "logits", probe, *live)


    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x):
            h = tf.matmul(x, self.w)
            if tf.reduce_sum(x) > 0:  # autograph: a functional If
                h = h * 2.0
            for _ in tf.range(2):  # a While
                h = h + 0.5
            return {"logits": h}


    def eager_live(model, probe):
        with tf.GradientTape() as tape:
            t = tf.constant(probe)
            tape.watch(t)
            y = model(t)
            y = y["logits"] if isinstance(y, dict) else y
            first = y[:, 0]
        return y.numpy(), tape.gradient(first, t).numpy()


    module = Module()
    probe = rng.random((2, 4)).astype(np.float32)
    tf.saved_model.save(module, os.path.join(out, "tf_module"), signatures=module.__call__)
    record("tf_module", os.path.join(out, "tf_module"), "saved_model", "x", "logits", probe,
           *eager_live(module, probe))

    import keras

    report["_keras"] = keras.__version__
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(h))
    probe = rng.random((2, SIZE, SIZE, 3)).astype(np.float32)
    live = eager_live(lambda t: model(t, training=False), probe)
    model.export(os.path.join(out, "keras3_export"), verbose=False)
    record("keras3_export", os.path.join(out, "keras3_export"), "saved_model", "", "", probe,
           *live)

    with open(os.path.join(out, "plain.json"), "w") as f:
        json.dump(report, f)
''')

LEGACY = textwrap.dedent(_COMMON) + textwrap.dedent('''
    from saliency_tf1.models import legacy

    legacy.enable_legacy_keras()  # before TensorFlow is imported
    import numpy as np
    import tensorflow as tf
    import tf_keras as K
    import tf_slim as slim
    from tf_slim.nets import resnet_v1, resnet_v2

    from saliency_tf1.methods.gradient import GradientSaliency
    from saliency_tf1.models import explain_unsafe_ops, load_keras_model

    v1 = tf.compat.v1
    v1.experimental.output_all_intermediates(True)  # gradients of tf-keras's graph-mode conds
    rng = np.random.default_rng(1)
    SIZE = 16

    # tf-keras (batch norm, dropout): a SavedModel directory and an .h5 file, loaded and
    # explained here (they need the switch).
    K.utils.set_random_seed(0)
    inp = K.Input((SIZE, SIZE, 3), name="image")
    h = K.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    h = K.layers.BatchNormalization()(h)
    h = K.layers.Dropout(0.5)(h)
    h = K.layers.GlobalAveragePooling2D()(h)
    model = K.Model(inp, K.layers.Dense(3, name="logits")(h))
    probe = rng.random((2, SIZE, SIZE, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        t = tf.constant(probe)
        tape.watch(t)
        y = model(t, training=False)
        first = y[:, 0]
    live_logits, live_grad = y.numpy(), tape.gradient(first, t).numpy()
    model.save(os.path.join(out, "tf_keras_saved_model"), save_format="tf")
    record("tf_keras_saved_model", os.path.join(out, "tf_keras_saved_model"), "saved_model",
           "image", "logits", probe, live_logits, live_grad)
    model.save(os.path.join(out, "tf_keras.h5"))
    for key in ("tf_keras.h5", "tf_keras_saved_model"):
        with load_keras_model(os.path.join(out, key)) as loaded:  # no flags
            x, logits = loaded.inputs["image"], loaded.outputs["logits"]
            with loaded.graph.as_default():
                first = logits[:, 0]
            # The loader checks an .h5 model's rebuilt graph (no saver: tf-keras set the
            # weights), and a directory's SavedModel before loading it (checked in the test);
            # the methods' own ops (added below) are not the model's.
            graph_def = loaded.graph.as_graph_def()
            mask = GradientSaliency(loaded.graph, loaded.session, first, x).GetMaskBatch(probe)
            findings = explain_unsafe_ops(graph_def, allowed_restore=()) \
                if key.endswith(".h5") else []
            report["_" + key] = {
                "findings": [list(f) for f in findings],
                "logit_error": float(np.abs(loaded.session.run(logits, {x: probe})
                                            - live_logits).max()),
                "mask_error": float(np.abs(mask - live_grad).max()),
                "ops": sorted({n.op for n in graph_def.node}
                              | {n.op for f in graph_def.library.function for n in f.node_def}),
            }


    def freeze(key, graph, session, x, logits, probe):
        grad = tf.gradients(logits[:, 0], x)[0]
        live = session.run([logits, grad], {x: probe})
        frozen = v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), [logits.op.name])
        path = os.path.join(out, key + ".pb")
        with open(path, "wb") as f:
            f.write(frozen.SerializeToString())
        record(key, path, "frozen", x.op.name, logits.op.name, probe, *live)


    for name, module in (("resnet_v1", resnet_v1), ("resnet_v2", resnet_v2)):
        graph = tf.Graph()
        with graph.as_default():
            v1.set_random_seed(0)
            x = v1.placeholder(tf.float32, [None, 32, 32, 3], name="x")
            block = getattr(module, name + "_block")
            blocks = [block("block1", base_depth=4, num_units=2, stride=2),
                      block("block2", base_depth=8, num_units=1, stride=1)]
            with slim.arg_scope(module.resnet_arg_scope()):
                net, _ = getattr(module, name)(x, blocks, num_classes=3, is_training=False,
                                               global_pool=True, scope="small")
            logits = tf.squeeze(net, [1, 2], name="logits")
            session = v1.Session(graph=graph)
            session.run(v1.global_variables_initializer())
            freeze("slim_" + name, graph, session, x, logits,
                   rng.random((2, 32, 32, 3)).astype(np.float32))
            session.close()

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        is_training = v1.placeholder_with_default(False, [], name="is_training")
        with slim.arg_scope([slim.conv2d], normalizer_fn=slim.batch_norm,
                            normalizer_params={"is_training": is_training}):
            h = slim.conv2d(x, 4, [3, 3], scope="conv1")
            h = slim.max_pool2d(h, [2, 2], scope="pool1")
            h = slim.dropout(h, 0.5, is_training=is_training, scope="dropout")
            logits = tf.identity(slim.fully_connected(slim.flatten(h), 3, activation_fn=None,
                                                      scope="fc"), name="logits")
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        freeze("slim_switches", graph, session, x, logits,
               rng.random((2, SIZE, SIZE, 3)).astype(np.float32))
        session.close()

    with open(os.path.join(out, "legacy.json"), "w") as f:
        json.dump(report, f)
''')

#: Models the graph-mode gradient cannot go through, for reasons outside the guard.
NOT_EXPLAINED: dict[str, str] = {}


def _run(script: str, out, name: str) -> dict:
    path = out / f"{name}.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != LEGACY_KERAS_ENV}
    env.update(PYTHONPATH=os.pathsep.join([REPO, env.get("PYTHONPATH", "")]),
               TMPDIR=str(out / "tmp"), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(path), str(out)], cwd=out, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    with open(out / f"{name}.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    (out / "tmp").mkdir()
    reports = {"plain": _run(PLAIN, out, "plain"), "legacy": _run(LEGACY, out, "legacy")}
    models = {k: v for r in reports.values() for k, v in r.items() if not k.startswith("_")}
    extras = {k: v for r in reports.values() for k, v in r.items() if k.startswith("_")}
    arrays = {key: {name: np.load(out / f"{key}_{name}.npy")
                    for name in ("probe", "logits", "grad")} for key in models}
    return models, extras, arrays


def _proto(entry: dict):
    """What the loader checks: the GraphDef, MetaGraphDef or SavedModel meta graph."""
    path = entry["path"]
    if entry["kind"] == "frozen":
        proto = graph_pb2.GraphDef()
    elif entry["kind"] == "checkpoint":
        proto = meta_graph_pb2.MetaGraphDef()
    else:
        saved = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved.ParseFromString(f.read())
        return saved.meta_graphs[0]
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def _op_types(proto) -> set[str]:
    graph_def = proto.graph_def if hasattr(proto, "saver_def") else proto
    return ({n.op for n in graph_def.node}
            | {n.op for f in graph_def.library.function for n in f.node_def})


MODELS = ["cfv2_frozen", "cfv2_checkpoint", "cfv2_checkpoint_sharded", "cfv2_builder",
          "cfv2_simple_save", "cfv1_frozen", "cfv1_checkpoint", "cfv1_checkpoint_sharded",
          "cfv1_builder", "cfv1_simple_save", "strings", "tf_module", "keras3_export",
          "tf_keras_saved_model", "slim_resnet_v1", "slim_resnet_v2", "slim_switches"]


@pytest.mark.slow
def test_the_corpus_is_complete(corpus):
    models, extras, _ = corpus
    assert sorted(models) == sorted(MODELS)
    assert extras["_keras"].startswith("3.")  # Keras 3 is importable here: its export is in


@pytest.mark.slow
@pytest.mark.parametrize("key", MODELS)
def test_legitimate_model_loads_without_flags_and_is_explained(corpus, key):
    models, _, arrays = corpus
    entry, data = models[key], arrays[key]
    assert explain_unsafe_ops(_proto(entry)) == []
    with load_model(entry["path"]) as model:  # no allow_unsafe_ops, no allow_ops
        assert model.kind == entry["kind"]
        x = model.tensor(entry["x"], role="input") if entry["x"] else \
            next(iter(model.inputs.values()))
        logits = model.tensor(entry["y"], role="output") if entry["y"] else \
            next(iter(model.outputs.values()))
        out = model.session.run(logits, {x: data["probe"]})
        np.testing.assert_allclose(out, data["logits"], rtol=1e-5, atol=1e-6)
        if key in NOT_EXPLAINED:
            return
        target = ClassTarget(logits)
        mask = GradientSaliency(model.graph, model.session, target.y, x).GetMaskBatch(
            data["probe"], feed_dict=target.feed(np.zeros(len(data["probe"]), int)))
    scale = max(1.0, float(np.abs(data["grad"]).max()))
    np.testing.assert_allclose(mask, data["grad"], rtol=1e-4, atol=1e-6 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["tf_keras.h5", "tf_keras_saved_model"])
def test_tf_keras_models_load_and_explain_without_flags(corpus, key):
    report = corpus[1]["_" + key]
    assert report["logit_error"] < 1e-5 and report["mask_error"] < 1e-5
    if key.endswith(".h5"):  # the graph rebuilt from the file passes the guard
        assert report["findings"] == [] and set(report["ops"]) <= set(ALLOWED_OPS)


@pytest.mark.slow
def test_which_op_types_the_corpus_needs(corpus, record_property):
    """Prints, per model, how many op types it uses and how many of each allow-list group."""
    models, extras, _ = corpus
    used = {key: _op_types(_proto(models[key])) for key in MODELS}
    used["tf_keras.h5 (rebuilt)"] = set(extras["_tf_keras.h5"]["ops"])
    saver = {"RestoreV2", "SaveV2", "MergeV2Checkpoints"}
    lines = [f"allow-list: {len(ALLOWED_OPS)} op types"]
    for key, ops in used.items():
        assert ops - saver <= set(ALLOWED_OPS), (key, sorted(ops - saver - set(ALLOWED_OPS)))
        groups = Counter(" ".join(ALLOWED_OPS[op].split()[:3]).rstrip(",:") for op in ops
                         if op in ALLOWED_OPS)
        lines.append(f"  {key}: {len(ops)} op types"
                     + (f" + saver ops {sorted(ops & saver)}" if ops & saver else "") + "; "
                     + ", ".join(f"{n} {g}" for g, n in groups.most_common()))
    union = set().union(*used.values()) - saver
    lines.append(f"  all models together: {len(union)} of the {len(ALLOWED_OPS)} allowed "
                 f"op types: {', '.join(sorted(union))}")
    record_property("corpus op types", len(union))
    print("\n" + "\n".join(lines))
