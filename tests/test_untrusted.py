"""Untrusted models: graphs that could touch files or run Python are refused before anything runs.

Each malicious model here writes (or reads) a file of the test's ``tmp_path``
when it is loaded or run. The loaders must refuse it by default, naming the
offending node, and the file must not exist afterwards; with
``allow_unsafe_ops=True`` the same model does write the file (the positive
control: the model is really malicious and the check is what stopped it).
Normal checkpoints and SavedModels, with their own save/restore ops, load.

The three attack shapes of the guard's issue are here, each built and shown
real by its positive control: (1) a checkpoint ``SaveV2`` in a library
function called from the restore path (meta checkpoint, v1 SavedModel, and
inside a TF2 SavedModel's restore function; also through the CLI), (2)
file-reading ops a deny-list missed (``FixedUnigramCandidateSampler``,
``Skipgram``), (3) a ``SaveV2`` hidden on a variable's initializer, which
``randomization_check`` must never run.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from saliency_tf1.methods.gradient import GradientSaliency
from saliency_tf1.metrics.sanity import randomization_check, randomized_variables
from saliency_tf1.models import (
    ALLOWED_OPS,
    UNSAFE_OPS,
    UnsafeGraphError,
    explain_unsafe_ops,
    find_unsafe_ops,
    find_unsafe_run,
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


def _written(tmp_path, stem="pwned"):
    """Files the attack wrote (a checkpoint write makes STEM.index and STEM.data-...)."""
    return sorted(p.name for p in tmp_path.rglob(stem + "*"))


def _refused(call, tmp_path, expected, stem="pwned"):
    """``call()`` raises UnsafeGraphError listing ``expected`` nodes; no file was written."""
    with pytest.raises(UnsafeGraphError) as err:
        call()
    for node, op in expected:
        assert (node, op) in err.value.offending, (err.value.offending, node)
        assert node in str(err.value) and op in str(err.value)
    assert "allow_unsafe_ops=True" in str(err.value) and "allow_ops" in str(err.value)
    assert isinstance(err.value, ValueError)
    assert _written(tmp_path, stem) == []
    return err.value


def test_malicious_frozen_graph_is_refused_and_nothing_runs(tmp_path):
    pwned = tmp_path / "pwned"
    graph = tf.Graph()
    with graph.as_default():
        _model(pwned, variable=False)
    path = tmp_path / "evil.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())

    for load in (load_frozen_graph, load_model):
        error = _refused(lambda load=load: load(path), tmp_path, [("exfiltrate", "WriteFile")])
        assert error.offending == [("exfiltrate", "WriteFile")] and error.source == str(path)
        assert error.findings[0].reason == UNSAFE_OPS["WriteFile"] == "writes files"

    # Positive control: allowed, running the output writes the file.
    with load_frozen_graph(path, allow_unsafe_ops=True) as model:
        assert not pwned.exists()  # loading a frozen graph runs nothing
        model.session.run(model.tensor("logits"), {model.tensor("x"): X})
    assert pwned.read_bytes() == b"owned"


def test_ops_inside_library_functions_are_found_with_their_call_path(tmp_path):
    pwned = tmp_path / "pwned"

    @tf.function(autograph=False)  # autograph would write temp files
    def inner(t):
        tf.io.write_file(str(pwned), "owned", name="hidden_write")
        return 2.0 * t

    @tf.function(autograph=False)
    def outer(t):
        return inner(t) + 1.0

    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(outer(x), name="logits")
    graph_def = graph.as_graph_def()
    findings = explain_unsafe_ops(graph_def)
    assert len(findings) == 1
    found = findings[0]
    fname = found.name.split("in function ")[1].rstrip(")")
    assert found.op == "WriteFile" and found.name == f"hidden_write (in function {fname})"
    assert "inner" in fname and fname in {f.signature.name for f in graph_def.library.function}
    # The call path: graph node -> outer's function -> inner's function.
    call, outer_fn, inner_fn = found.path.split(" -> ")
    assert call.startswith("graph node ") and "outer" in outer_fn and inner_fn == fname
    path = tmp_path / "evil.pb"
    path.write_bytes(graph_def.SerializeToString())
    error = _refused(lambda: load_frozen_graph(path), tmp_path, [(found.name, "WriteFile")])
    assert found.path in str(error)


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


def _node(graph_def, name):
    return next(n for n in graph_def.node if n.name == name)


def _add_control_input(meta, node_name, dependency):
    _node(meta.graph_def, node_name).input.append("^" + dependency)


def test_normal_checkpoint_loads_with_its_own_restore_ops(tmp_path):
    meta, prefix = _checkpoint(tmp_path)
    # The saver's ops are only allowed because the saver_def says whose they are.
    saver_ops = sorted(n.op for n in meta.graph_def.node if n.op in SAVER_OPS)
    assert saver_ops == ["RestoreV2", "SaveV2"]
    assert sorted(op for _, op in find_unsafe_ops(meta.graph_def)) == saver_ops  # no saver
    assert find_unsafe_ops(meta, allowed_restore=()) == find_unsafe_ops(meta.graph_def)
    assert find_unsafe_ops(meta) == []
    assert find_unsafe_ops(meta.graph_def, allowed_restore=meta.saver_def) == []
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
    "restore op feeding the output, named the restore op",
    "restore op also feeding the output", "restore assigning a non-variable"])
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
        assert find_unsafe_ops(meta) == []  # another saver's dangling restore never runs ...
        _add_control_input(meta, restore, "other_restore")  # ... until loading runs it
        expected = [("other_restore", "RestoreV2")]
    elif tamper == "save op feeding the output":
        _add_control_input(meta, "logits", "save/SaveV2")
        expected = [("save/SaveV2", "SaveV2")]
    elif tamper == "restore op feeding the output, named the restore op":
        sneaky = meta.graph_def.node.add()
        sneaky.CopyFrom(_node(meta.graph_def, "save/RestoreV2"))
        sneaky.name = "sneaky_restore"  # reads the saver's filename, feeds only "logits"
        _add_control_input(meta, "logits", "sneaky_restore")
        meta.saver_def.restore_op_name = "logits"
        expected = [("sneaky_restore", "RestoreV2")]
    elif tamper == "restore op also feeding the output":
        _add_control_input(meta, "logits", "save/RestoreV2")  # the model would read a file
        expected = [("save/RestoreV2", "RestoreV2")]
    else:  # the restored value goes into a constant's place, not a variable
        assign = _node(meta.graph_def, "save/AssignVariableOp")
        assign.input[0] = "x"
        expected = [("save/AssignVariableOp", "AssignVariableOp")]
    path = _write_meta(meta, tmp_path / "ckpt" / "model.meta")
    assert set(expected) <= set(find_unsafe_ops(meta))
    _refused(lambda: load_checkpoint(path), tmp_path, expected)

    if tamper == "write file on the restore path":  # positive control: loading runs it
        load_checkpoint(path, allow_unsafe_ops=True).close()
        assert pwned.read_bytes() == b"owned"


# -- attack 1: a function called from the restore path, its body holding SaveV2 ----------------


def _evil_function(pwned, graph_def):
    """Adds a function whose body runs SaveV2 to ``pwned`` (its control output) and a call of it.

    Returns the call node's name (in ``graph_def``) and the function's name.
    """
    graph = tf.Graph()
    with graph.as_default():
        @tf.function(autograph=False)
        def evil():
            tf.raw_ops.SaveV2(prefix=str(pwned), tensor_names=["owned"], shape_and_slices=[""],
                              tensors=[tf.constant(1.0)], name="evil_save")
        evil()
    built = graph.as_graph_def()
    (function,) = built.library.function
    function.signature.control_output.append("evil_save")
    function.control_ret["evil_save"] = "evil_save"
    graph_def.library.function.add().CopyFrom(function)
    (call,) = built.node
    call.name = "evil_call"
    graph_def.node.add().CopyFrom(call)
    return call.name, function.signature.name


def _hijack_restore(meta, pwned):
    """The issue's attack 1: restore_op_name -> NoOp(^real restore, ^call of the function)."""
    call, fname = _evil_function(pwned, meta.graph_def)
    hijack = meta.graph_def.node.add()
    hijack.name, hijack.op = "restore_everything", "NoOp"
    hijack.input.extend(["^" + meta.saver_def.restore_op_name, "^" + call])
    meta.saver_def.restore_op_name = hijack.name
    return f"evil_save (in function {fname})"


def test_attack_1_function_on_the_restore_path_of_a_checkpoint(tmp_path):
    meta, _ = _checkpoint(tmp_path)
    evil = _hijack_restore(meta, tmp_path / "pwned")
    path = _write_meta(meta, tmp_path / "ckpt" / "model.meta")
    findings = explain_unsafe_ops(meta)
    assert [(f.name, f.op) for f in findings] == [(evil, "SaveV2")]
    assert "restore path" in findings[0].reason
    assert findings[0].path.startswith("graph node 'evil_call' (StatefulPartitionedCall)")
    for load in (load_checkpoint, load_model):
        _refused(lambda load=load: load(path), tmp_path, [(evil, "SaveV2")])
    # Positive control: loading runs the restore op, which writes the attacker's checkpoint.
    load_checkpoint(path, allow_unsafe_ops=True).close()
    assert _written(tmp_path) == ["pwned.data-00000-of-00001", "pwned.index"]


def test_checkpoint_ops_in_functions_off_the_restore_path_are_refused(tmp_path):
    meta, _ = _checkpoint(tmp_path)
    call, fname = _evil_function(tmp_path / "pwned", meta.graph_def)
    evil = f"evil_save (in function {fname})"
    # Called by a node nothing depends on, like another saver's save op: never run.
    assert explain_unsafe_ops(meta) == []
    _add_control_input(meta, "logits", call)  # ... and now the model runs it
    (finding,) = explain_unsafe_ops(meta)
    assert (finding.name, finding.op) == (evil, "SaveV2") and "'logits'" in finding.reason
    meta.graph_def.node.remove(_node(meta.graph_def, call))  # called by nothing at all
    _node(meta.graph_def, "logits").input.remove("^" + call)
    (finding,) = explain_unsafe_ops(meta)
    assert finding.name == evil and "no graph node calls" in finding.reason


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


def _edit_saved_model(export_dir, edit):
    path = export_dir / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(path.read_bytes())
    result = edit(saved.meta_graphs[0])
    path.write_bytes(saved.SerializeToString())
    return result


def test_attack_1_function_on_the_restore_path_of_a_saved_model(tmp_path, capsys):
    export = _saved_model(tmp_path / "model")
    evil = _edit_saved_model(export, lambda meta: _hijack_restore(meta, tmp_path / "pwned"))
    for load in (load_saved_model, load_model):
        _refused(lambda load=load: load(export), tmp_path, [(evil, "SaveV2")])
    # The command line refuses it too, with a failing exit code.
    from PIL import Image

    from saliency_tf1.cli import main

    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "image.png")
    argv = ["explain", str(export), str(tmp_path / "image.png"), "--input-tensor", "x",
            "--output-tensor", "logits", "--method", "gradient", "-q", "--out",
            str(tmp_path / "out")]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "refusing to load" in err and "evil_save" in err and "--allow-unsafe-ops" in err
    assert _written(tmp_path) == [] and not (tmp_path / "out").exists()
    # Positive control.
    load_saved_model(export, allow_unsafe_ops=True).close()
    assert _written(tmp_path) == ["pwned.data-00000-of-00001", "pwned.index"]


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


class _Module(tf.Module):
    def __init__(self, evil=None):
        super().__init__()
        self.w = tf.Variable(W)
        self.evil = evil

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)], autograph=False)
    def __call__(self, x):
        if self.evil is not None:
            tf.io.write_file(str(self.evil), "owned", name="exfiltrate")
        return {"logits": tf.matmul(x, self.w)}


def _tf2_saved_model(path, evil=None):
    module = _Module(evil)
    tf.saved_model.save(module, str(path), signatures=module.__call__)
    return path


@pytest.mark.usefixtures("no_autograph_leftovers")
def test_tf2_saved_model(tmp_path):
    """A TF2 SavedModel restores through function calls (allowed); a file write in them is not."""
    pwned = tmp_path / "pwned"
    _tf2_saved_model(tmp_path / "tf2_clean")
    _tf2_saved_model(tmp_path / "tf2_evil", pwned)
    assert not pwned.exists()
    with load_saved_model(tmp_path / "tf2_clean") as model:
        out = model.session.run(model.outputs["logits"], {model.inputs["x"]: X})
    np.testing.assert_allclose(out, X @ W, rtol=1e-6)
    error = _refused(lambda: load_saved_model(tmp_path / "tf2_evil"), tmp_path, [])
    assert [op for _, op in error.offending] == ["WriteFile"]
    assert "(in function " in error.offending[0][0]


@pytest.mark.usefixtures("no_autograph_leftovers")
def test_attack_1_inside_the_tf2_restore_function(tmp_path):
    """The hidden call sits inside the SavedModel's own restore function body."""
    export = _tf2_saved_model(tmp_path / "tf2")

    def edit(meta):
        restore = meta.graph_def.library.function
        (body,) = [f for f in restore if "traced_restore" in f.signature.name]
        holder = graph_pb2.GraphDef()
        call, fname = _evil_function(tmp_path / "pwned", holder)
        meta.graph_def.library.function.add().CopyFrom(holder.library.function[0])
        node = body.node_def.add()
        node.CopyFrom(holder.node[0])
        body.signature.control_output.append(call)
        body.control_ret[call] = call
        return f"evil_save (in function {fname})", body.signature.name

    evil, restore_fn = _edit_saved_model(export, edit)
    error = _refused(lambda: load_saved_model(export), tmp_path, [(evil, "SaveV2")])
    finding = next(f for f in error.findings if f.name == evil)
    assert f"-> {restore_fn} -> " in finding.path  # reached through the restore function
    load_saved_model(export, allow_unsafe_ops=True).close()  # positive control
    assert _written(tmp_path) == ["pwned.data-00000-of-00001", "pwned.index"]


# -- attack 2: file-reading ops a deny-list missed --------------------------------------------


def _candidate_sampler_graph(vocab):
    graph = tf.Graph()
    with graph.as_default():
        x, logits = _model(variable=False)
        sampled, _, _ = tf.raw_ops.FixedUnigramCandidateSampler(
            true_classes=tf.zeros([1, 1], tf.int64), num_true=1, num_sampled=4, unique=False,
            range_max=3, vocab_file=str(vocab), name="sampler")
        tf.identity(logits + tf.cast(tf.reduce_sum(sampled), tf.float32), name="leaky_logits")
    return graph.as_graph_def()


def _skipgram_graph(corpus):
    """``Skipgram`` exists only in GraphDefs of producer version < 19: written by hand."""
    graph = tf.Graph()
    with graph.as_default():
        _model(variable=False)
        tf.zeros([], tf.float32, name="zero")
    graph_def = graph.as_graph_def()
    graph_def.versions.producer = 18
    node = graph_def.node.add()
    node.name, node.op = "skipgram", "Skipgram"
    node.attr["filename"].s = str(corpus).encode()
    node.attr["batch_size"].i = 2
    node.attr["window_size"].i = 1
    node.attr["min_count"].i = 1
    node.attr["subsample"].f = 0.0
    total = graph_def.node.add()  # logits + the number of words read
    total.name, total.op = "leaky_logits", "AddV2"
    total.input.extend(["logits", "words_read"])
    total.attr["T"].type = tf.float32.as_datatype_enum
    cast = graph_def.node.add()
    cast.name, cast.op = "words_read", "Cast"
    cast.input.append("skipgram:2")  # words_per_epoch
    cast.attr["SrcT"].type = tf.int64.as_datatype_enum
    cast.attr["DstT"].type = tf.float32.as_datatype_enum
    return graph_def


@pytest.mark.parametrize("op", ["FixedUnigramCandidateSampler", "Skipgram"])
def test_attack_2_file_reading_ops_are_refused(tmp_path, op):
    secret = tmp_path / "secret.txt"
    if op == "Skipgram":
        secret.write_text("alpha beta gamma delta " * 3)
        graph_def, node = _skipgram_graph(secret), "skipgram"
    else:
        secret.write_text("a,0\nb,0\nc,7\n")  # only id 2 can be drawn
        graph_def, node = _candidate_sampler_graph(secret), "sampler"
    assert UNSAFE_OPS[op] == "reads files" and op not in ALLOWED_OPS
    path = tmp_path / "evil.pb"
    path.write_bytes(graph_def.SerializeToString())
    error = _refused(lambda: load_frozen_graph(path), tmp_path, [(node, op)], stem="nothing")
    assert error.offending == [(node, op)]
    # Positive control: the file's content reaches the logits.
    with load_frozen_graph(path, allow_unsafe_ops=True) as model:
        leaky = model.session.run(model.tensor("leaky_logits"), {model.tensor("x"): X})
    extra = 12.0 if op == "Skipgram" else 4 * 2.0  # the file's words / four draws of id 2
    np.testing.assert_allclose(leaky, X @ W + extra, rtol=1e-6)


# -- attack 3: a side effect hidden on a variable's initializer ------------------------------------


def _hidden_save(meta, pwned, on):
    """A SaveV2 writing ``pwned``, added as a control input of node ``on``."""
    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("hidden"):
        tf.raw_ops.SaveV2(prefix=str(pwned), tensor_names=["owned"], shape_and_slices=[""],
                          tensors=[tf.constant(1.0)], name="hidden_save")
    meta.graph_def.node.extend(graph.as_graph_def().node)
    _add_control_input(meta, on, "hidden/hidden_save")


def _explainer(model):
    with model.graph.as_default():
        y = model.tensor("logits")[:, 0]
    grad = GradientSaliency(model.graph, model.session, y, model.tensor("x"))
    return grad.GetMaskBatch


def test_attack_3_save_on_a_variable_initializer(tmp_path):
    meta, prefix = _checkpoint(tmp_path)
    assert _node(meta.graph_def, "w/Assign").op == "AssignVariableOp"  # w's initializer
    _hidden_save(meta, tmp_path / "pwned", on="w/Assign")
    path = _write_meta(meta, tmp_path / "ckpt" / "model.meta")
    findings = explain_unsafe_ops(meta)
    assert [(f.name, f.op) for f in findings] == [("hidden/hidden_save", "SaveV2")]
    assert "'w/Assign'" in findings[0].reason
    _refused(lambda: load_checkpoint(path), tmp_path, [("hidden/hidden_save", "SaveV2")])

    with load_checkpoint(path, allow_unsafe_ops=True) as model:
        assert _written(tmp_path) == []  # nothing runs at load
        explain = _explainer(model)
        (w,) = model.graph.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES)
        assert [(f.name, f.op) for f in find_unsafe_run(model.graph, [w.initializer])] == [
            ("hidden/hidden_save", "SaveV2")]
        trained = model.session.run(w)
        images = np.random.default_rng(0).uniform(size=(3, 4)).astype(np.float32)
        for reinitialize in ("normal", "initializer"):
            result = randomization_check(explain, images, model.session,
                                         reinitialize=reinitialize, measures=("spearman",))
            assert result.layers == ["w"] and np.isfinite(result.original).all()
            assert _written(tmp_path) == []  # the initializer's SaveV2 never ran
            np.testing.assert_array_equal(model.session.run(w), trained)
        # It wrote through an assignment of its own, never through w/Assign.
        assert model.graph.get_operation_by_name("saliency_tf1/reinitialize").type == \
            "AssignVariableOp"
        with randomized_variables(model.session, [w], reinitialize="initializer"):
            np.testing.assert_allclose(model.session.run(w), W)  # a fresh draw of W's constant
        # Positive control: running the initializer, as re-initialising through it would,
        # writes the attacker's file.
        model.session.run(w.initializer)
    assert _written(tmp_path) == ["pwned.data-00000-of-00001", "pwned.index"]


def test_a_side_effect_on_a_variable_read_stops_randomization_before_any_run(tmp_path):
    meta, prefix = _checkpoint(tmp_path)
    _hidden_save(meta, tmp_path / "pwned", on="w/Read/ReadVariableOp")  # w's snapshot
    path = _write_meta(meta, tmp_path / "ckpt" / "model.meta")
    _refused(lambda: load_checkpoint(path), tmp_path, [("hidden/hidden_save", "SaveV2")])
    with load_checkpoint(path, allow_unsafe_ops=True) as model:
        calls = []

        def explain(xs):
            calls.append(1)
            return xs

        ops = len(model.graph.get_operations())
        with pytest.raises(UnsafeGraphError, match="refusing to read or re-initialise") as err:
            randomization_check(explain, X, model.session)
        assert ("hidden/hidden_save", "SaveV2") in err.value.offending
        assert calls == [] and _written(tmp_path) == []
        assert len(model.graph.get_operations()) == ops  # nothing built either


# -- SavedModel init ops, Python, attributes -----------------------------------------------------


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
    _refused(lambda: load_saved_model(export), tmp_path, [("exfiltrate", "WriteFile")])
    _refused(lambda: load_model(export), tmp_path, [("exfiltrate", "WriteFile")])
    load_saved_model(export, allow_unsafe_ops=True).close()  # loading runs the init op
    assert pwned.read_bytes() == b"owned"


def test_saved_model_whose_init_op_restores_or_assigns_elsewhere(tmp_path):
    def main_op(graph):
        with graph.as_default():
            zero = tf.constant(0.0, name="zero")
            stray = tf.raw_ops.RestoreV2(prefix=tf.constant("/elsewhere"), tensor_names=["w"],
                                         shape_and_slices=[""], dtypes=[tf.float32],
                                         name="init_restore")
            return tf.group(stray, zero, name="main_op")

    export = _saved_model(tmp_path / "model", main_op=main_op)
    _refused(lambda: load_saved_model(export), tmp_path, [("init_restore", "RestoreV2")])


def test_saved_model_running_python(tmp_path):
    pwned = tmp_path / "pwned"

    def touch(a):
        pwned.write_text("owned")
        return a

    def forward(logits):
        return tf.identity(v1.py_func(touch, [logits], tf.float32, name="python"), name="out")

    export = _saved_model(tmp_path / "model", forward=forward)
    _refused(lambda: load_saved_model(export), tmp_path, [("python", "PyFunc")])


def test_attribute_checks():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        tf.print(x, output_stream=sys.stderr, name="to_stderr")
        tf.print(x, output_stream="file:///tmp/log", name="to_file")
        data = v1.placeholder(tf.string, [None], name="data")
        tf.io.decode_proto(data, "tensorflow.Example", [], [], name="builtin_descriptor")
        tf.io.decode_proto(data, "x.Y", [], [], descriptor_source="/tmp/desc",
                           name="file_descriptor")
    graph_def = graph.as_graph_def()
    # PrintV2 is allowed, but not to a file; DecodeProtoV2 is off the list.
    assert sorted(find_unsafe_ops(graph_def)) == [
        ("builtin_descriptor", "DecodeProtoV2"), ("file_descriptor", "DecodeProtoV2"),
        ("to_file", "PrintV2")]
    # Allowed by name, the descriptor read from a file still is not.
    assert sorted(find_unsafe_ops(graph_def, allow_ops=["DecodeProtoV2"])) == [
        ("file_descriptor", "DecodeProtoV2"), ("to_file", "PrintV2")]
    assert set(CONDITIONALLY_UNSAFE_OPS) >= {"PrintV2", "DecodeProtoV2", "EncodeProto"}
    # A constant holding a resource handle could name any resource of the session.
    forged = graph_pb2.GraphDef()
    node = forged.node.add()
    node.name, node.op = "forged", "Const"
    node.attr["dtype"].type = tf.resource.as_datatype_enum
    node.attr["value"].tensor.dtype = tf.resource.as_datatype_enum
    (finding,) = explain_unsafe_ops(forged)
    assert finding.name == "forged" and "resource handle" in finding.reason


def test_function_attributes_must_name_library_functions():
    graph_def = graph_pb2.GraphDef()
    node = graph_def.node.add()
    node.name, node.op = "call", "StatefulPartitionedCall"
    node.attr["f"].func.name = "WriteFile"  # a primitive op would be called instead
    (finding,) = explain_unsafe_ops(graph_def)
    assert finding.name == "call" and "not a function of the graph's library" in finding.reason
    gradient = graph_def.library.gradient.add()
    gradient.function_name, gradient.gradient_func = "f", "WriteFile"
    assert ("gradient of f", "GradientDef") in find_unsafe_ops(graph_def)


# -- extending the allow-list, arguments ---------------------------------------------------------


def _table_model(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.string, [None], name="x")
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(["a", "b"], [1.0, 2.0]), default_value=0.0)
        tf.identity(table.lookup(x), name="logits")
    path = tmp_path / "table.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_allow_ops_extends_the_list_explicitly(tmp_path):
    path = _table_model(tmp_path)
    error = _refused(lambda: load_model(path), tmp_path, [])
    table_ops = sorted({op for _, op in error.offending})
    assert table_ops == ["HashTableV2", "LookupTableFindV2", "LookupTableImportV2"]
    # Not all of them: still refused, naming the rest.
    error = _refused(lambda: load_model(path, allow_ops=("LookupTableFindV2",)), tmp_path, [])
    assert sorted({op for _, op in error.offending}) == ["HashTableV2", "LookupTableImportV2"]
    init = next(name for name, op in error.offending if op == "LookupTableImportV2")
    with load_model(path, allow_ops=table_ops) as model:
        model.session.run(model.graph.get_operation_by_name(init))  # fills the table
        out = model.session.run(model.tensor("logits"), {model.tensor("x"): ["b", "z"]})
    np.testing.assert_array_equal(out, [2.0, 0.0])


@pytest.mark.parametrize("bad, error, message", [
    ("LookupTableFindV2", TypeError, "allow_ops: expected a tuple of op type names"),
    ((3,), TypeError, "allow_ops: expected op type names"),
    (("NoSuchOp",), ValueError, "allow_ops: 'NoSuchOp' is not an op type"),
])
def test_bad_allow_ops_are_refused_by_name_before_anything(tmp_path, bad, error, message):
    path = _table_model(tmp_path)
    for load in (load_model, load_frozen_graph):
        with pytest.raises(error, match=message):
            load(path, allow_ops=bad)
    with pytest.raises(error, match=message):
        find_unsafe_ops(graph_pb2.GraphDef(), allow_ops=bad)


def test_find_unsafe_ops_arguments(tmp_path):
    meta, _ = _checkpoint(tmp_path)
    assert find_unsafe_ops(meta.graph_def, allowed_restore=meta.saver_def) == []
    assert len(find_unsafe_ops(meta, allowed_restore=())) == 2
    assert find_unsafe_ops(meta, allow_ops=SAVER_OPS, allowed_restore=()) == []
    with pytest.raises(TypeError, match="GraphDef or MetaGraphDef"):
        find_unsafe_ops(b"not a graph")
    with pytest.raises(TypeError, match="allowed_restore: expected None, a SaverDef or"):
        find_unsafe_ops(meta, allowed_restore=["save/RestoreV2"])


def test_the_allow_list_and_the_names_of_known_bad_ops():
    # Every entry says why it is safe; no known-bad op or checkpoint op is on it.
    assert all(isinstance(v, str) and v for v in ALLOWED_OPS.values())
    assert not set(ALLOWED_OPS) & set(UNSAFE_OPS)
    assert not set(ALLOWED_OPS) & SAVER_OPS
    named = ["ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveV2", "SaveSlices", "Restore",
             "RestoreV2", "RestoreSlice", "MergeV2Checkpoints", "PyFunc", "PyFuncStateless",
             "EagerPyFunc", "TFRecordReaderV2", "TFRecordDataset", "ImmutableConst",
             "DebugIdentity", "WriteSummary", "GcsConfigureCredentials",
             "FixedUnigramCandidateSampler", "Skipgram"]
    assert [op for op in named if op not in UNSAFE_OPS] == []
