"""Untrusted models: graphs that would touch files or run Python are refused before anything runs.

Each malicious model here writes ``tmp_path / "pwned"`` when loaded or run.
The loaders must refuse it by default, naming the offending node, and the
file must not exist afterwards; with ``allow_unsafe_ops=True`` the same model
does write the file (the positive control: the model is really malicious and
the check is what stopped it). Normal checkpoints and SavedModels, with their
own save/restore ops, load.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from saliency_tf1.models import (
    UNSAFE_OPS,
    UnsafeGraphError,
    find_unsafe_ops,
    load_checkpoint,
    load_frozen_graph,
    load_model,
    load_saved_model,
)
from saliency_tf1.models.guard import CONDITIONALLY_UNSAFE_OPS, SAVER_OPS

v1 = tf.compat.v1

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
X = np.ones((2, 4), np.float32)


def _model(write_to=None, *, variable=True):
    """x [None, 4] -> logits = x @ w; optionally a WriteFile op "exfiltrate" as a control dep."""
    x = v1.placeholder(tf.float32, [None, 4], name="x")
    w = v1.get_variable("w", initializer=W) if variable else tf.constant(W, name="w")
    deps = []
    if write_to is not None:
        deps = [tf.io.write_file(str(write_to), "owned", name="exfiltrate")]
    with tf.control_dependencies(deps):
        logits = tf.identity(tf.matmul(x, w), name="logits")
    return x, logits


def _refused(call, pwned, expected):
    """``call()`` raises UnsafeGraphError listing ``expected`` nodes; the file was not written."""
    with pytest.raises(UnsafeGraphError) as err:
        call()
    names = [name for name, _ in err.value.offending]
    for node, op in expected:
        assert (node, op) in err.value.offending, (names, node)
        assert node in str(err.value) and op in str(err.value)
    assert "allow_unsafe_ops=True" in str(err.value)
    assert isinstance(err.value, ValueError)
    assert not pwned.exists()
    return err.value


def test_malicious_frozen_graph_is_refused_and_nothing_runs(tmp_path):
    pwned = tmp_path / "pwned"
    graph = tf.Graph()
    with graph.as_default():
        _model(pwned, variable=False)
    path = tmp_path / "evil.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())

    for load in (load_frozen_graph, load_model):
        error = _refused(lambda load=load: load(path), pwned, [("exfiltrate", "WriteFile")])
        assert error.offending == [("exfiltrate", "WriteFile")] and error.source == str(path)

    # Positive control: allowed, running the output writes the file.
    with load_frozen_graph(path, allow_unsafe_ops=True) as model:
        assert not pwned.exists()  # loading a frozen graph runs nothing
        model.session.run(model.tensor("logits"), {model.tensor("x"): X})
    assert pwned.read_bytes() == b"owned"


def test_ops_inside_library_functions_are_found(tmp_path):
    pwned = tmp_path / "pwned"

    @tf.function(autograph=False)  # autograph would write temp files
    def scaled(t):
        tf.io.write_file(str(pwned), "owned", name="hidden_write")
        return 2.0 * t

    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(scaled(x), name="logits")
    graph_def = graph.as_graph_def()
    offending = find_unsafe_ops(graph_def)
    assert len(offending) == 1
    name, op = offending[0]
    assert op == "WriteFile" and name.startswith("hidden_write (in function ")
    assert name.split("in function ")[1].rstrip(")") in {
        f.signature.name for f in graph_def.library.function}
    path = tmp_path / "evil.pb"
    path.write_bytes(graph_def.SerializeToString())
    _refused(lambda: load_frozen_graph(path), pwned, [(name, "WriteFile")])


def _checkpoint(tmp_path, *, extra=None):
    """A normal model saved with a Saver; ``extra(graph)`` adds nodes before the export."""
    graph = tf.Graph()
    with graph.as_default():
        x, logits = _model()
        if extra is not None:
            extra(graph)
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(tmp_path / "ckpt" / "model"))
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((tmp_path / "ckpt" / "model.meta").read_bytes())
    return meta, prefix


def _write_meta(meta, path):
    path.write_bytes(meta.SerializeToString())
    return path


def _add_control_input(meta, node_name, dependency):
    node = next(n for n in meta.graph_def.node if n.name == node_name)
    node.input.append("^" + dependency)


def test_normal_checkpoint_loads_with_its_own_restore_ops(tmp_path):
    meta, prefix = _checkpoint(tmp_path)
    # The saver's ops are only allowed because the saver_def says whose they are.
    saver_ops = sorted(n.op for n in meta.graph_def.node if n.op in SAVER_OPS)
    assert saver_ops == ["RestoreV2", "SaveV2"]
    assert sorted(op for _, op in find_unsafe_ops(meta.graph_def)) == saver_ops
    assert find_unsafe_ops(meta) == []
    with load_checkpoint(prefix + ".meta") as model:
        out = model.session.run(model.tensor("logits"), {model.tensor("x"): X})
    np.testing.assert_allclose(out, X @ W, rtol=1e-6)


def _restore_reading_elsewhere(graph):
    with graph.as_default():
        tf.raw_ops.RestoreV2(prefix=tf.constant("/elsewhere/model"), tensor_names=["w"],
                             shape_and_slices=[""], dtypes=[tf.float32], name="other_restore")


def _write_file(path):
    def extra(graph):
        with graph.as_default():
            tf.io.write_file(str(path), "owned", name="exfiltrate")
    return extra


@pytest.mark.parametrize("tamper", [
    "write file on the restore path", "save op on the restore path",
    "restore op reading another path", "save op feeding the output",
    "restore op feeding the output, named the restore op"])
def test_tampered_checkpoint_is_refused(tmp_path, tamper):
    pwned = tmp_path / "pwned"
    extra = {"write file on the restore path": _write_file(pwned),
             "restore op reading another path": _restore_reading_elsewhere}.get(tamper)
    meta, prefix = _checkpoint(tmp_path, extra=extra)
    restore = meta.saver_def.restore_op_name
    if tamper == "write file on the restore path":
        _add_control_input(meta, restore, "exfiltrate")
        expected = [("exfiltrate", "WriteFile")]
    elif tamper == "save op on the restore path":
        _add_control_input(meta, restore, "save/SaveV2")
        expected = [("save/SaveV2", "SaveV2")]
    elif tamper == "restore op reading another path":
        assert find_unsafe_ops(meta) == []  # dangling, it never runs ...
        _add_control_input(meta, restore, "other_restore")  # ... until loading runs it
        expected = [("other_restore", "RestoreV2")]
    elif tamper == "save op feeding the output":
        _add_control_input(meta, "logits", "save/SaveV2")
        expected = [("save/SaveV2", "SaveV2")]
    else:  # running the model would read the filename placeholder's default path
        sneaky = meta.graph_def.node.add()
        sneaky.CopyFrom(next(n for n in meta.graph_def.node if n.name == "save/RestoreV2"))
        sneaky.name = "sneaky_restore"  # reads the saver's filename, feeds only "logits"
        _add_control_input(meta, "logits", "sneaky_restore")
        meta.saver_def.restore_op_name = "logits"
        expected = [("sneaky_restore", "RestoreV2")]
    path = _write_meta(meta, tmp_path / "ckpt" / "model.meta")
    assert find_unsafe_ops(meta) == expected
    _refused(lambda: load_checkpoint(path), pwned, expected)

    if tamper == "write file on the restore path":  # positive control: loading runs it
        load_checkpoint(path, allow_unsafe_ops=True).close()
        assert pwned.read_bytes() == b"owned"


def _saved_model(export_dir, *, main_op=None, forward=None):
    graph = tf.Graph()
    with graph.as_default():
        x, logits = _model()
        if forward is not None:
            logits = forward(logits)
        init = v1.global_variables_initializer()
        v1.train.Saver(name="training_saver")  # another saver, as training graphs have
        with v1.Session(graph=graph) as session:
            session.run(init)
            builder = v1.saved_model.Builder(str(export_dir))
            signature = v1.saved_model.predict_signature_def({"x": x}, {"logits": logits})
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature},
                main_op=main_op(graph) if main_op is not None else None)
            builder.save()
    return export_dir


def test_normal_saved_model_loads(tmp_path):
    export = _saved_model(tmp_path / "model")
    with load_saved_model(export) as model:
        out = model.session.run(model.outputs["logits"], {model.inputs["x"]: X})
    np.testing.assert_allclose(out, X @ W, rtol=1e-6)


def test_saved_model_whose_init_op_writes_a_file(tmp_path):
    pwned = tmp_path / "pwned"

    def main_op(graph):
        return tf.group(tf.io.write_file(str(pwned), "owned", name="exfiltrate"),
                        name="main_op")

    export = _saved_model(tmp_path / "model", main_op=main_op)
    _refused(lambda: load_saved_model(export), pwned, [("exfiltrate", "WriteFile")])
    _refused(lambda: load_model(export), pwned, [("exfiltrate", "WriteFile")])
    load_saved_model(export, allow_unsafe_ops=True).close()  # loading runs the init op
    assert pwned.read_bytes() == b"owned"


def test_saved_model_running_python(tmp_path):
    pwned = tmp_path / "pwned"

    def touch(a):
        pwned.write_text("owned")
        return a

    def forward(logits):
        return tf.identity(v1.py_func(touch, [logits], tf.float32, name="python"), name="out")

    export = _saved_model(tmp_path / "model", forward=forward)
    _refused(lambda: load_saved_model(export), pwned, [("python", "PyFunc")])


@pytest.fixture
def no_autograph_leftovers():
    """Removes the source files autograph writes to the temp dir while tracing.

    ``tf.saved_model.save`` traces its signature wrappers with autograph,
    which writes generated modules to the temp dir and deletes them only at
    interpreter exit (ignoring files already gone).
    """
    import glob
    import os
    import tempfile

    pattern = os.path.join(tempfile.gettempdir(), "__autograph_generated_file*.py")
    before = set(glob.glob(pattern))
    yield
    for path in set(glob.glob(pattern)) - before:
        os.remove(path)


@pytest.mark.usefixtures("no_autograph_leftovers")
def test_tf2_saved_model(tmp_path):
    """A TF2 SavedModel restores through function calls (allowed); a file write in them is not."""
    pwned = tmp_path / "pwned"

    class Model(tf.Module):
        def __init__(self, evil):
            super().__init__()
            self.w = tf.Variable(W)
            self.evil = evil

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)], autograph=False)
        def __call__(self, x):
            if self.evil:
                tf.io.write_file(str(pwned), "owned", name="exfiltrate")
            return {"logits": tf.matmul(x, self.w)}

    for evil in (False, True):
        module = Model(evil)
        tf.saved_model.save(module, str(tmp_path / f"tf2_{evil}"), signatures=module.__call__)
    assert not pwned.exists()
    with load_saved_model(tmp_path / "tf2_False") as model:
        out = model.session.run(model.outputs["logits"], {model.inputs["x"]: X})
    np.testing.assert_allclose(out, X @ W, rtol=1e-6)
    error = _refused(lambda: load_saved_model(tmp_path / "tf2_True"), pwned, [])
    assert [op for _, op in error.offending] == ["WriteFile"]
    assert "(in function " in error.offending[0][0]


def test_attribute_dependent_ops(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        tf.print(x, output_stream=sys.stderr, name="to_stderr")
        tf.print(x, output_stream=f"file://{tmp_path / 'log'}", name="to_file")
        data = v1.placeholder(tf.string, [None], name="data")
        tf.io.decode_proto(data, "tensorflow.Example", [], [], name="builtin_descriptor")
        tf.io.decode_proto(data, "x.Y", [], [], descriptor_source=str(tmp_path / "desc"),
                           name="file_descriptor")
    assert sorted(find_unsafe_ops(graph.as_graph_def())) == [
        ("file_descriptor", "DecodeProtoV2"), ("to_file", "PrintV2")]


def test_find_unsafe_ops_arguments(tmp_path):
    meta, _ = _checkpoint(tmp_path)
    names = [n for n, _ in find_unsafe_ops(meta.graph_def)]
    assert find_unsafe_ops(meta.graph_def, allowed_restore=names) == []
    assert find_unsafe_ops(meta.graph_def, allowed_restore=names[:1]) == \
        find_unsafe_ops(meta.graph_def)[1:]
    assert find_unsafe_ops(meta.graph_def, allowed_restore=meta.saver_def) == []
    assert len(find_unsafe_ops(meta, allowed_restore=())) == 2
    with pytest.raises(TypeError, match="GraphDef or MetaGraphDef"):
        find_unsafe_ops(b"not a graph")
    with pytest.raises(TypeError, match="iterable of node names"):
        find_unsafe_ops(meta, allowed_restore="save/RestoreV2")


def test_the_deny_list():
    # The ops the issue names are all refused, each with what it does.
    named = ["ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveV2", "SaveSlices", "Restore",
             "RestoreV2", "RestoreSlice", "MergeV2Checkpoints", "PyFunc", "PyFuncStateless",
             "EagerPyFunc", "TFRecordReaderV2", "TextLineReaderV2", "FixedLengthRecordReaderV2",
             "TFRecordDataset", "TextLineDataset", "FixedLengthRecordDataset",
             "WholeFileReaderV2", "LoadAndRemapMatrix", "ImmutableConst", "DebugIdentity",
             "WriteSummary", "WriteAudioSummary", "CreateSummaryFileWriter",
             "GcsConfigureCredentials", "GcsConfigureBlockCache"]
    assert not [op for op in named if op not in UNSAFE_OPS]
    assert all(isinstance(v, str) and v for v in UNSAFE_OPS.values())
    assert set(CONDITIONALLY_UNSAFE_OPS) >= {"PrintV2", "DecodeProtoV2"}
    assert set(UNSAFE_OPS) >= SAVER_OPS
    # Every op this TensorFlow registers whose name says it touches files, runs
    # Python or is a reader/writer is either refused or known to be harmless.
    harmless = {"ShardedFilename", "ShardedFilespec", "ReaderNumRecordsProduced",
                "ReaderNumRecordsProducedV2", "ReaderNumWorkUnitsCompleted",
                "ReaderNumWorkUnitsCompletedV2", "ReaderReset", "ReaderResetV2",
                "ReaderSerializeState", "ReaderSerializeStateV2", "DebugGradientIdentity",
                "DebugGradientRefIdentity", "BoostedTreesExampleDebugOutputs", "Print"}
    suspicious = [op for op in dir(tf.raw_ops) if not op.startswith("_") and any(
        word in op for word in ("File", "Reader", "Save", "Restore", "PyFunc", "Debug",
                                "SummaryWriter", "Rpc", "Gcs", "Print", "Record"))]
    assert suspicious  # the scan sees ops at all
    missed = [op for op in suspicious if op not in UNSAFE_OPS
              and op not in CONDITIONALLY_UNSAFE_OPS and op not in harmless]
    assert missed == []
