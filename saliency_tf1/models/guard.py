"""The untrusted-model guard: which ops of a GraphDef may run when a stranger's model loads.

A graph can hold ops that read or write files, open network connections or
run Python when the model is run. The loaders (:mod:`saliency_tf1.models.loaders`)
check every GraphDef / MetaGraphDef with :func:`find_unsafe_ops`, function
library included, *before* anything is imported or run, and refuse a graph
with an op of :data:`UNSAFE_OPS` by raising :class:`UnsafeGraphError`; the
only exceptions are the checkpoint ops of the model's own saver that loading
runs to restore the weights.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# ---------------------------------------------------------------------------
# The deny-list.

_READS = "reads files"
_WRITES = "writes files"
_READS_WRITES = "reads and writes files"
_NETWORK = "talks to the network or other processes"
_PYTHON = "runs Python code"
_DEBUG = "debugger op: writes tensors to files or network addresses"
_HIDDEN = "runs a serialized graph this check cannot see"
_SUMMARY = "writes summary files"

#: Op types refused in an untrusted graph, with what each can do. A graph
#: holding one (in its nodes or in any function of its library) is not loaded
#: unless ``allow_unsafe_ops=True``; the checkpoint ops of :data:`SAVER_OPS`
#: are allowed where they belong to a saver (see :func:`find_unsafe_ops`).
UNSAFE_OPS: Mapping[str, str] = {
    # Files: raw access.
    "ReadFile": _READS,
    "WriteFile": _WRITES,
    "MatchingFiles": "lists files",
    "ImmutableConst": "memory-maps a file",
    "FileSystemSetConfiguration": "configures file systems",
    # Checkpoints.
    "Save": _WRITES,
    "SaveV2": _WRITES,
    "SaveSlices": _WRITES,
    "MergeV2Checkpoints": _READS_WRITES,
    "Restore": _READS,
    "RestoreV2": _READS,
    "RestoreSlice": _READS,
    "DTensorRestoreV2": _READS,
    "LoadAndRemapMatrix": _READS,
    "GenerateVocabRemapping": _READS,
    "CalibrationStatisticsSaver": _WRITES,
    # Lookup tables filled from files.
    "InitializeTableFromTextFile": _READS,
    "InitializeTableFromTextFileV2": _READS,
    # Queue-based readers.
    "WholeFileReader": _READS,
    "WholeFileReaderV2": _READS,
    "TextLineReader": _READS,
    "TextLineReaderV2": _READS,
    "FixedLengthRecordReader": _READS,
    "FixedLengthRecordReaderV2": _READS,
    "TFRecordReader": _READS,
    "TFRecordReaderV2": _READS,
    "LMDBReader": _READS,
    "IdentityReader": _READS,
    "IdentityReaderV2": _READS,
    "ReaderRead": _READS,
    "ReaderReadV2": _READS,
    "ReaderReadUpTo": _READS,
    "ReaderReadUpToV2": _READS,
    "ReaderRestoreState": _READS,
    "ReaderRestoreStateV2": _READS,
    "RecordInput": _READS,
    # tf.data sources and sinks.
    "TFRecordDataset": _READS,
    "TFRecordDatasetV2": _READS,
    "TextLineDataset": _READS,
    "FixedLengthRecordDataset": _READS,
    "FixedLengthRecordDatasetV2": _READS,
    "CSVDataset": _READS,
    "CSVDatasetV2": _READS,
    "ExperimentalCSVDataset": _READS,
    "LMDBDataset": _READS,
    "ExperimentalLMDBDataset": _READS,
    "SqlDataset": _READS,
    "ExperimentalSqlDataset": _READS,
    "MatchingFilesDataset": "lists files",
    "ExperimentalMatchingFilesDataset": "lists files",
    "LoadDataset": _READS,
    "SaveDataset": _WRITES,
    "SaveDatasetV2": _WRITES,
    "DatasetToTFRecord": _WRITES,
    "ExperimentalDatasetToTFRecord": _WRITES,
    "DistributedSave": _WRITES,
    "SnapshotDataset": _READS_WRITES,
    "SnapshotDatasetV2": _READS_WRITES,
    "SnapshotDatasetReader": _READS,
    "SnapshotNestedDatasetReader": _READS,
    "SnapshotChunkDataset": _READS,
    "ListSnapshotChunksDataset": _READS,
    "CacheDataset": _READS_WRITES,
    "CacheDatasetV2": _READS_WRITES,
    "DatasetFromGraph": _HIDDEN,
    # Summaries.
    "CreateSummaryFileWriter": _SUMMARY,
    "CreateSummaryDbWriter": _SUMMARY,
    "SummaryWriter": _SUMMARY,
    "WriteSummary": _SUMMARY,
    "WriteScalarSummary": _SUMMARY,
    "WriteHistogramSummary": _SUMMARY,
    "WriteImageSummary": _SUMMARY,
    "WriteAudioSummary": _SUMMARY,
    "WriteGraphSummary": _SUMMARY,
    "WriteRawProtoSummary": _SUMMARY,
    "ImportEvent": _SUMMARY,
    "FlushSummaryWriter": _SUMMARY,
    "CloseSummaryWriter": _SUMMARY,
    "StatsAggregatorSetSummaryWriter": _SUMMARY,
    # Debugger.
    "DebugIdentity": _DEBUG,
    "DebugIdentityV2": _DEBUG,
    "DebugIdentityV3": _DEBUG,
    "DebugNanCount": _DEBUG,
    "DebugNumericSummary": _DEBUG,
    "DebugNumericSummaryV2": _DEBUG,
    "DumpTensor": _DEBUG,
    # Python.
    "PyFunc": _PYTHON,
    "PyFuncStateless": _PYTHON,
    "EagerPyFunc": _PYTHON,
    # Network and other processes.
    "GcsConfigureCredentials": _NETWORK,
    "GcsConfigureBlockCache": _NETWORK,
    "BigQueryReader": _NETWORK,
    "GenerateBigQueryReaderPartitions": _NETWORK,
    "DataServiceDataset": _NETWORK,
    "DataServiceDatasetV2": _NETWORK,
    "DataServiceDatasetV3": _NETWORK,
    "DataServiceDatasetV4": _NETWORK,
    "RegisterDataset": _NETWORK,
    "RegisterDatasetV2": _NETWORK,
    "Rpc": _NETWORK,
    "TryRpc": _NETWORK,
    "RpcClient": _NETWORK,
    "RpcCall": _NETWORK,
    "RpcServer": _NETWORK,
    "RpcServerStart": _NETWORK,
    "RpcServerRegister": _NETWORK,
    "RpcCheckStatus": _NETWORK,
    "RpcGetValue": _NETWORK,
    "DeleteRpcFutureResource": _NETWORK,
    "RemoteCall": _NETWORK,
    "Send": _NETWORK,
    "Recv": _NETWORK,
    "_Send": _NETWORK,
    "_Recv": _NETWORK,
    "_HostSend": _NETWORK,
    "_HostRecv": _NETWORK,
    "CollectiveReduce": _NETWORK,
    "CollectiveReduceV2": _NETWORK,
    "CollectiveReduceV3": _NETWORK,
    "CollectiveGather": _NETWORK,
    "CollectiveGatherV2": _NETWORK,
    "CollectiveBcastSend": _NETWORK,
    "CollectiveBcastSendV2": _NETWORK,
    "CollectiveBcastRecv": _NETWORK,
    "CollectiveBcastRecvV2": _NETWORK,
    "CollectivePermute": _NETWORK,
    "CollectiveAllToAllV2": _NETWORK,
    "CollectiveAllToAllV3": _NETWORK,
    "CollectiveReduceScatterV2": _NETWORK,
    "CollectiveInitializeCommunicator": _NETWORK,
    "CollectiveAssignGroupV2": _NETWORK,
    # The process itself.
    "Abort": "aborts the process",
}


def _string_attr(node: Any, name: str, default: str) -> str:
    value = node.attr[name].s if name in node.attr else b""
    return value.decode("utf-8", "replace") if value else default


def _descriptor_from_file(node: Any) -> bool:
    source = _string_attr(node, "descriptor_source", "local://")
    return source != "local://" and not source.startswith("bytes://")


#: Op types that are unsafe only with some attribute values: the test, and what it means.
CONDITIONALLY_UNSAFE_OPS: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "PrintV2": (lambda node: _string_attr(node, "output_stream", "stderr").startswith("file://"),
                "prints to a file (output_stream file://...)"),
    "DecodeProtoV2": (_descriptor_from_file, "reads a proto descriptor file"),
    "EncodeProto": (_descriptor_from_file, "reads a proto descriptor file"),
    "Copy": (lambda node: bool(node.attr["debug_ops_spec"].list.s)
             if "debug_ops_spec" in node.attr else False, _DEBUG),
    "CopyHost": (lambda node: bool(node.attr["debug_ops_spec"].list.s)
                 if "debug_ops_spec" in node.attr else False, _DEBUG),
}

#: Checkpoint ops a saver is made of; allowed where they belong to one.
SAVER_OPS = frozenset(
    {"Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "Restore", "RestoreV2", "RestoreSlice"}
)
_RESTORE_OPS = frozenset({"Restore", "RestoreV2", "RestoreSlice"})

#: What else may depend on another saver's ops (they are never run when the model is).
_SAVER_PLUMBING = SAVER_OPS | {
    "Identity", "IdentityN", "NoOp", "Pack", "ShardedFilename", "StringJoin", "Assign",
    "AssignVariableOp", "PartitionedCall", "StatefulPartitionedCall",
    "StaticRegexFullMatch", "Select",  # a sharded saver picks its temp-file suffix
}
_FILENAME_USERS = _SAVER_PLUMBING | {"Placeholder", "PlaceholderWithDefault"}

# SavedModel keys of the ops its loader runs (tensorflow.saved_model constants).
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"
INIT_OP_COLLECTIONS = ("saved_model_main_op", "legacy_init_op")
PLACEHOLDER_OPS = ("Placeholder", "PlaceholderWithDefault")
_DT_STRING = 7  # tensorflow.core.framework.types_pb2.DT_STRING
VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp", "AutoReloadVariable")


def unsafe_reason(node: Any) -> str | None:
    """What ``node`` (a NodeDef) can do that an untrusted graph must not, or ``None``."""
    reason = UNSAFE_OPS.get(node.op)
    if reason is None and node.op in CONDITIONALLY_UNSAFE_OPS:
        test, what = CONDITIONALLY_UNSAFE_OPS[node.op]
        reason = what if test(node) else None
    return reason


class UnsafeGraphError(ValueError):
    """A model's graph holds ops that touch the file system, the network or run Python.

    Attributes:
      offending: ``[(node name, op type), ...]``; a node inside a function of
        the graph's library is named ``"NODE (in function FN)"``.
      source: the path that was being loaded.
    """

    def __init__(self, offending: list[tuple[str, str]], source: str = "") -> None:
        self.offending = list(offending)
        self.source = source
        shown = self.offending[:20]
        lines = "\n".join(f"  {name}  ({op}: {_reason_of(op)})" for name, op in shown)
        more = (f"\n  ... and {len(self.offending) - len(shown)} more"
                if len(self.offending) > len(shown) else "")
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}refusing to load this graph: it holds {len(self.offending)} op(s) that "
            f"can touch the file system or the network or run Python, "
            f"and none of them was run:\n{lines}{more}\n"
            "Pass allow_unsafe_ops=True only if you trust where this model came from."
        )


def _reason_of(op: str) -> str:
    if op == "Lambda":
        return "a Keras Lambda layer holding Python bytecode"
    if op in UNSAFE_OPS:
        return UNSAFE_OPS[op]
    return CONDITIONALLY_UNSAFE_OPS[op][1] if op in CONDITIONALLY_UNSAFE_OPS else "unsafe"


def node_name(ref: str) -> str:
    """The node a NodeDef input refers to (``^ctrl``, ``name:1`` -> ``name``)."""
    return ref.lstrip("^").split(":")[0]


def _functions_referenced(node: Any, library: Mapping[str, Any]) -> set[str]:
    """Names of library functions ``node`` calls (its op, or function-valued attrs)."""
    names = {node.op} if node.op in library else set()
    for value in node.attr.values():
        if value.HasField("func"):
            names.add(value.func.name)
        elif value.HasField("list"):
            names.update(f.name for f in value.list.func)
    return names & library.keys()


class _GraphIndex:
    """Producers/consumers of a GraphDef's nodes, for reachability questions."""

    def __init__(self, graph_def: Any) -> None:
        self.nodes = {node.name: node for node in graph_def.node}
        self.consumers: dict[str, set[str]] = defaultdict(set)
        self.producers: dict[str, list[str]] = {}
        for node in graph_def.node:
            producers = [node_name(ref) for ref in node.input]
            self.producers[node.name] = producers
            for producer in producers:
                self.consumers[producer].add(node.name)

    def _closure(self, roots: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
        seen = {r for r in roots if r in self.nodes}
        queue = deque(seen)
        while queue:
            for nxt in edges.get(queue.popleft(), ()):
                if nxt in self.nodes and nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    def ancestors(self, roots: Iterable[str]) -> set[str]:
        """``roots`` and every node they depend on (data or control)."""
        return self._closure(roots, self.producers)

    def descendants(self, roots: Iterable[str]) -> set[str]:
        """``roots`` and every node that depends on them."""
        return self._closure(roots, self.consumers)

    def data_input(self, name: str, index: int = 0) -> str | None:
        refs = [r for r in self.nodes[name].input if not r.startswith("^")]
        return node_name(refs[index]) if index < len(refs) else None


class _SaverPolicy:
    """Decides which checkpoint ops of a meta graph belong to savers (see find_unsafe_ops)."""

    def __init__(self, index: _GraphIndex, saver_def: Any, load_roots: set[str],
                 signature_nodes: set[str]) -> None:
        self.index = index
        self.filename = node_name(saver_def.filename_tensor_name) if saver_def else None
        restore = node_name(saver_def.restore_op_name) if saver_def else None
        self.restore_path = index.ancestors([restore]) if restore else set()
        inputs = [n for n, node in index.nodes.items()
                  if node.op in PLACEHOLDER_OPS and not self._is_filename(n)]
        # Nodes the model's users run (those computed from its inputs, its
        # signature tensors) and, with them, those its loader runs (restore, init).
        self.used = index.descendants(inputs) | signature_nodes
        self.exposed = self.used | index.ancestors(load_roots)

    def _is_filename(self, name: str) -> bool:
        """A saver's filename placeholder: a string that only checkpoint plumbing uses."""
        node = self.index.nodes[name]
        if name == self.filename:
            return True
        is_string = "dtype" in node.attr and node.attr["dtype"].type == _DT_STRING
        return is_string and all(self.index.nodes[n].op in _FILENAME_USERS
                                 for n in self.index.descendants([name]))

    def _reads_fed_filename(self, name: str) -> bool:
        """The node's file prefix is the saver's filename tensor (through Identity only)."""
        prefix = self.index.data_input(name)
        while prefix is not None and prefix != self.filename and \
                self.index.nodes[prefix].op == "Identity":
            prefix = self.index.data_input(prefix)
        return prefix is not None and prefix == self.filename

    def on_restore_path(self, name: str) -> bool:
        """Part of the own saver's restore: only the restore op depends on it, not the model."""
        below = self.index.descendants([name])
        return name in self.restore_path and below <= self.restore_path and not below & self.used

    def inert(self, name: str) -> bool:
        """Nothing the model's users or loader run depends on it; only saver plumbing does."""
        below = self.index.descendants([name])
        return not below & self.exposed and all(
            self.index.nodes[n].op in _SAVER_PLUMBING for n in below)

    def allows_node(self, name: str) -> bool:
        op = self.index.nodes[name].op
        if op not in SAVER_OPS:
            return False
        if op in _RESTORE_OPS and self.on_restore_path(name) and self._reads_fed_filename(name):
            return True
        return self.inert(name)

    def allows_caller(self, name: str) -> bool:
        """A node calling a function of the library that holds checkpoint ops."""
        return self.on_restore_path(name) or self.inert(name)


def find_unsafe_ops(graph_def: Any, *, allowed_restore: Any = None) -> list[tuple[str, str]]:
    """The nodes of a graph that touch the file system or the network or run Python.

    Looks at every node of the GraphDef (in graph order) and of every function
    in its library (by function name); nothing is imported or run. A node is unsafe if its op is
    in :data:`UNSAFE_OPS`, or in :data:`CONDITIONALLY_UNSAFE_OPS` with an
    unsafe attribute (``PrintV2`` to ``file://``, a proto descriptor read
    from a file, debug ops on ``Copy``).

    Checkpoint ops (:data:`SAVER_OPS`) are allowed in two places only:

    * on the restore path of the model's own saver (the ``saver_def``): a
      restore op that reads the saver's filename tensor and on which only the
      saver's restore op depends -- loading runs it, with the checkpoint's path;
    * where nothing computed from the model's input placeholders, its
      signature tensors or the ops its loader runs (restore and init ops)
      depends on it, and only saver plumbing does (a saver's save path, or
      another saver left in a training graph): running the model never runs it.

    The same holds for checkpoint ops inside library functions (TF2
    SavedModels restore through a function call), judged by the graph nodes
    that call the function. A plain GraphDef (a frozen graph) has no saver,
    so every checkpoint op in it is refused.

    Args:
      graph_def: a ``GraphDef``, or a ``MetaGraphDef`` (whose ``saver_def``,
        signatures and SavedModel init ops are used).
      allowed_restore: ``None`` (default): the MetaGraphDef's own
        ``saver_def`` decides, as above. A ``SaverDef``: use it instead. An
        iterable of node names: allow exactly these nodes, no saver rules
        (``()`` refuses every checkpoint op).

    Returns:
      ``[(node name, op type), ...]`` of the offending nodes; empty if the
      graph is safe to load. A node inside library function ``fn`` is named
      ``"node (in function fn)"``.
    """
    meta = graph_def if hasattr(graph_def, "graph_def") and hasattr(graph_def, "saver_def") \
        else None
    gdef = meta.graph_def if meta is not None else graph_def
    if not hasattr(gdef, "node") or not hasattr(gdef, "library"):
        raise TypeError(
            f"graph_def: expected a GraphDef or MetaGraphDef, got {type(graph_def).__name__}"
        )
    index = _GraphIndex(gdef)
    library = {f.signature.name: f for f in gdef.library.function}

    policy: _SaverPolicy | None = None
    explicit: set[str] | None = None
    if allowed_restore is None or hasattr(allowed_restore, "restore_op_name"):
        saver_def = allowed_restore
        if saver_def is None and meta is not None and meta.HasField("saver_def"):
            saver_def = meta.saver_def
        if saver_def is not None or meta is not None:
            policy = _SaverPolicy(index, saver_def, *_load_roots_and_signature(meta, saver_def))
    else:
        if isinstance(allowed_restore, str):
            raise TypeError("allowed_restore: expected an iterable of node names, got a str")
        explicit = set(allowed_restore)

    def allowed_node(name: str, op: str) -> bool:
        if explicit is not None:
            return name in explicit
        return policy is not None and policy.allows_node(name)

    found = [(node.name, node.op) for node in gdef.node
             if unsafe_reason(node) and not allowed_node(node.name, node.op)]

    # Functions: which graph nodes call each (directly or through other functions).
    callers: dict[str, set[str]] = defaultdict(set)
    calls = {fname: set().union(*(_functions_referenced(n, library) for n in f.node_def))
             for fname, f in library.items()}
    for node in gdef.node:
        for fname in _functions_referenced(node, library):
            callers[fname].add(node.name)
    changed = True
    while changed:  # propagate graph callers down the call graph to a fixed point
        changed = False
        for fname, callees in calls.items():
            for callee in callees:
                if not callers[fname] <= callers[callee]:
                    callers[callee] |= callers[fname]
                    changed = True
    for fname in sorted(library):
        for node in library[fname].node_def:
            if not unsafe_reason(node):
                continue
            name = f"{node.name} (in function {fname})"
            if explicit is not None:
                ok = name in explicit
            else:
                ok = (node.op in SAVER_OPS and policy is not None and bool(callers[fname])
                      and all(policy.allows_caller(c) for c in callers[fname]))
            if not ok:
                found.append((name, node.op))
    return found


def _load_roots_and_signature(meta: Any, saver_def: Any) -> tuple[set[str], set[str]]:
    """Nodes a loader runs (restore, init ops) and nodes named by signatures."""
    roots = {node_name(saver_def.restore_op_name)} if saver_def is not None else set()
    signature_nodes: set[str] = set()
    if meta is None:
        return roots, signature_nodes
    for key, signature in meta.signature_def.items():
        names = {node_name(info.name) for info in
                 list(signature.inputs.values()) + list(signature.outputs.values()) if info.name}
        for info in list(signature.inputs.values()) + list(signature.outputs.values()):
            if info.HasField("coo_sparse"):
                names |= {node_name(t) for t in (info.coo_sparse.values_tensor_name,
                                                  info.coo_sparse.indices_tensor_name,
                                                  info.coo_sparse.dense_shape_tensor_name)}
        (roots if key == INIT_OP_SIGNATURE_KEY else signature_nodes).update(names)
    for key in INIT_OP_COLLECTIONS:
        if key in meta.collection_def:
            roots.update(node_name(n) for n in meta.collection_def[key].node_list.value)
    return roots, signature_nodes


def check_graph(graph_def: Any, source: str = "", *, allowed_restore: Any = None) -> None:
    """Raises :class:`UnsafeGraphError` if :func:`find_unsafe_ops` finds anything."""
    offending = find_unsafe_ops(graph_def, allowed_restore=allowed_restore)
    if offending:
        raise UnsafeGraphError(offending, source)
