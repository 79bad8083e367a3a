"""The guard against TensorFlow's whole op registry: everything off the allow-list is refused.

Every op type this TensorFlow registers (``TF_GetAllOpList``: the public
``tf.raw_ops`` and the internal ones) is put, as a bare NodeDef -- what the
guard sees; nothing is built or run -- into each place a model can hide it:
a frozen graph, a library function's body (called), a ``While`` body, an
``If`` branch, the saver's restore path (graph and called function) and a
SavedModel's init path. In each, exactly the op types off
:data:`~saliency_tf1.models.guard.ALLOWED_OPS` must be refused (on the restore
path: all but the saver plumbing of ``RESTORE_PATH_OPS``), which includes
every op with a file-, path-, directory-, URL- or resource-like attribute or
input and every stateful op that is not on the list. The allowed ones with
such an attribute or input, or stateful, are each accounted for.

The counts are printed (``pytest -s``) and recorded as test properties.
"""

from __future__ import annotations

import re

import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, op_def_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from saliency_tf1.models.guard import (
    ALLOWED_OPS,
    CONDITIONALLY_UNSAFE_OPS,
    RESTORE_PATH_OPS,
    SAVER_OPS,
    explain_unsafe_ops,
)

_DT_RESOURCE = tf.resource.as_datatype_enum
#: Names of attributes or inputs that can name a file, a path, a directory, a URL or a resource.
_FILE_LIKE = re.compile(r"file|path|dir|url|uri|resource|shared_name|container", re.IGNORECASE)


def _registry() -> dict[str, op_def_pb2.OpDef]:
    from tensorflow.python.client import pywrap_tf_session as c_api

    ops = op_def_pb2.OpList()
    buffer = c_api.TF_GetAllOpList()
    try:
        ops.ParseFromString(c_api.TF_GetBuffer(buffer))
    finally:
        c_api.TF_DeleteBuffer(buffer)
    return {op.name: op for op in ops.op}


REGISTRY = _registry()
NAMES = sorted(REGISTRY)
INDEX = {f"n{i}": name for i, name in enumerate(NAMES)}


def _file_like(op: op_def_pb2.OpDef) -> list[str]:
    """Attributes / inputs whose name or type says they can name a file or a resource."""
    found = [f"attr {a.name}" for a in op.attr if _FILE_LIKE.search(a.name)]
    found += [f"input {i.name}" for i in op.input_arg
              if _FILE_LIKE.search(i.name) or i.type == _DT_RESOURCE]
    return found


def _nodes(into) -> None:
    """One bare node of every registered op type, named n0, n1, ... (see INDEX)."""
    for name, op in INDEX.items():
        node = into.add()
        node.name, node.op = name, op


def _function(library, name: str) -> None:
    function = library.function.add()
    function.signature.name = name
    _nodes(function.node_def)


def _call(graph_def, name: str, op: str, **funcs: str) -> None:
    node = graph_def.node.add()
    node.name, node.op = name, op
    for key, fname in funcs.items():
        node.attr[key].func.name = fname


def _trivial(library, name: str) -> None:
    library.function.add().signature.name = name


def _contexts() -> dict[str, tuple[object, str]]:
    """Each place, as the proto the guard checks and the function the nodes sit in (or "")."""
    frozen = graph_pb2.GraphDef()
    _nodes(frozen.node)

    called = graph_pb2.GraphDef()
    _function(called.library, "body")
    _call(called, "call", "StatefulPartitionedCall", f="body")

    loop = graph_pb2.GraphDef()
    _function(loop.library, "body")
    _trivial(loop.library, "cond")
    _call(loop, "loop", "While", cond="cond", body="body")

    branch = graph_pb2.GraphDef()
    _function(branch.library, "body")
    _trivial(branch.library, "other")
    _call(branch, "branch", "If", then_branch="body", else_branch="other")

    def meta_with_saver():
        meta = meta_graph_pb2.MetaGraphDef()
        meta.saver_def.filename_tensor_name = "save/Const:0"
        meta.saver_def.restore_op_name = "save/restore_all"
        meta.saver_def.save_tensor_name = "save/Const:0"
        filename = meta.graph_def.node.add()
        filename.name, filename.op = "save/Const", "PlaceholderWithDefault"
        return meta

    def restore_op(meta, inputs):
        restore = meta.graph_def.node.add()
        restore.name, restore.op = "save/restore_all", "NoOp"
        restore.input.extend("^" + n for n in inputs)

    restore = meta_with_saver()
    _nodes(restore.graph_def.node)
    restore_op(restore, INDEX)

    restore_fn = meta_with_saver()
    _function(restore_fn.graph_def.library, "body")
    _call(restore_fn.graph_def, "call", "StatefulPartitionedCall", f="body")
    restore_op(restore_fn, ["call"])

    init = meta_graph_pb2.MetaGraphDef()
    _nodes(init.graph_def.node)
    main_op = init.graph_def.node.add()
    main_op.name, main_op.op = "main_op", "NoOp"
    main_op.input.extend("^" + n for n in INDEX)
    init.collection_def["saved_model_main_op"].node_list.value.append("main_op")

    return {"frozen graph": (frozen, ""), "called function body": (called, "body"),
            "While body": (loop, "body"), "If branch": (branch, "body"),
            "restore path": (restore, ""), "function on the restore path": (restore_fn, "body"),
            "init path": (init, "")}


def _refused_ops(proto, function: str) -> set[str]:
    """The op types the guard refuses among the n0, n1, ... nodes (a node named once each)."""
    suffix = f" (in function {function})" if function else ""
    refused = {}
    for finding in explain_unsafe_ops(proto):
        if finding.name.endswith(suffix) and finding.name[: len(finding.name) - len(suffix)] \
                in INDEX:
            node = finding.name[: len(finding.name) - len(suffix)]
            assert finding.op == INDEX[node] and node not in refused, finding
            assert finding.reason, finding
            refused[node] = finding.op
    return set(refused.values())


def test_every_registered_op_off_the_allow_list_is_refused_everywhere(record_property):
    registered = set(NAMES)
    assert len(registered) >= 1500  # the whole registry, not only the Python-wrapped ops
    assert registered >= {n for n in dir(tf.raw_ops) if not n.startswith("_")}
    assert set(ALLOWED_OPS) <= registered  # no typo on the list: every entry is a real op
    off_list = registered - set(ALLOWED_OPS)
    suspicious = {n for n in NAMES if REGISTRY[n].is_stateful or _file_like(REGISTRY[n])}
    assert {"FixedUnigramCandidateSampler", "Skipgram", "WriteFile", "SaveV2",
            "PyFunc"} <= suspicious & off_list
    on_restore_path = {op for op in RESTORE_PATH_OPS if op not in SAVER_OPS | {"Assign",
                                                                                "AssignVariableOp"}}
    lines = [f"registry walk: {len(registered)} op types registered, {len(ALLOWED_OPS)} on "
             f"the allow-list, {len(off_list)} off it ({len(suspicious & off_list)} of them "
             "stateful or with a file/path/dir/url/resource-like attribute or input)"]
    for context, (proto, function) in _contexts().items():
        refused = _refused_ops(proto, function)
        assert suspicious - set(ALLOWED_OPS) <= refused, context
        if context.endswith("restore path"):
            # Only saver plumbing may run there; restore ops reading nothing, assignments
            # targeting nothing are refused too.
            assert refused == registered - on_restore_path, (context, sorted(
                (registered - on_restore_path) ^ refused)[:10])
        elif context == "init path":  # assignments must target a variable there
            assert refused == off_list | {"Assign", "AssignVariableOp"}, context
        else:
            assert refused == off_list, (context, sorted(refused ^ off_list)[:10])
        lines.append(f"  {context}: {len(registered)} checked, {len(refused)} refused, "
                     f"{len(registered) - len(refused)} allowed")
        record_property(f"refused in {context}", len(refused))
    record_property("registered op types", len(registered))
    record_property("allow-list size", len(ALLOWED_OPS))
    print("\n" + "\n".join(lines))


def test_allowed_ops_with_file_or_resource_like_signatures_are_accounted_for():
    """Each allowed op whose signature looks like it could reach a file or a resource is vetted.

    Resource inputs may only be handles that allowed ops make: the graph's
    variables, and the stacks / tensor arrays of one run; attribute names that
    merely look file-like are listed with what they are.
    """
    look_alikes = {"attr direction": "an RNN's direction (uni- or bidirectional)",
                   "attr top_paths": "the number of beam-search paths",
                   # A variable's name in the session's own resource manager: sessions do
                   # not share them (test_variable_names_do_not_reach_other_sessions).
                   "attr container": "", "attr shared_name": ""}
    handle_makers = {name for name in ALLOWED_OPS
                     if any(o.type == _DT_RESOURCE for o in REGISTRY[name].output_arg)}
    assert handle_makers == {"VarHandleOp", "StackV2", "TensorArrayV3", "TensorArrayGradV3",
                             "TensorArrayGradWithShape"}
    unexplained = {}
    for name in sorted(ALLOWED_OPS):
        rest = [f for f in _file_like(REGISTRY[name])
                if f not in look_alikes and not (
                    f.startswith("input ") and _resource_input(REGISTRY[name], f[6:]))]
        if rest:
            unexplained[name] = rest
    assert unexplained == {}
    # Attribute-dependent ops on the list have their attribute checked.
    assert {n for n in ALLOWED_OPS if n in CONDITIONALLY_UNSAFE_OPS} == {"PrintV2"}
    stateful = sorted(n for n in ALLOWED_OPS if REGISTRY[n].is_stateful)
    assert stateful and all(ALLOWED_OPS[n] for n in stateful)


def _resource_input(op: op_def_pb2.OpDef, name: str) -> bool:
    return any(i.name == name and i.type == _DT_RESOURCE for i in op.input_arg)


@pytest.mark.parametrize("stream, refused", [("stderr", False), ("log(info)", False),
                                             ("file:///tmp/x", True), ("/tmp/x", True)])
def test_print_is_allowed_to_the_log_only(stream, refused):
    graph_def = graph_pb2.GraphDef()
    node = graph_def.node.add()
    node.name, node.op = "print", "PrintV2"
    node.attr["output_stream"].s = stream.encode()
    assert bool(explain_unsafe_ops(graph_def)) is refused


def test_variable_names_do_not_reach_other_sessions():
    """Why a variable's ``shared_name`` is harmless: each session has its own resources."""
    v1 = tf.compat.v1

    def graph_of(write: bool):
        graph = tf.Graph()
        with graph.as_default():
            handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="secret",
                                            container="")
            op = (tf.raw_ops.AssignVariableOp(resource=handle, value=42.0) if write
                  else tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32))
        return graph, op

    owner_graph, write = graph_of(True)
    stranger_graph, read = graph_of(False)
    with v1.Session(graph=owner_graph) as owner, v1.Session(graph=stranger_graph) as stranger:
        owner.run(write)
        with pytest.raises(tf.errors.FailedPreconditionError):
            stranger.run(read)  # not initialised in the stranger's session
