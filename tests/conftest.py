"""Shared fixtures: small real TF1 graphs and sessions.

* ``analytic``: ``f(x) = 5*x0 + x1**2 + sin(x2)`` per example (known gradient and integral).
* ``relu_cnn``: a small random ReLU CNN on 16x16x3 inputs, fixed seed, conv layer exposed.
* ``demo_model``: the demo CNN trained for a few seconds on the shapes dataset (session scope).
* ``counting``: wraps a real session to count ``session.run`` calls.

Each graph is private to its test (``tf.Graph()`` + ``tf.compat.v1.Session``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1


@dataclass
class Model:
    graph: Any
    session: Any
    x: Any
    y: Any
    logits: Any = None
    conv: Any = None
    extra: dict | None = None

    def op_count(self) -> int:
        return len(self.graph.get_operations())


@pytest.fixture
def analytic():
    """``y = 5*x0 + x1**2 + sin(x2)`` for x of shape [None, 3]; gradient ``[5, 2 x1, cos x2]``."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        y = 5 * x[:, 0] + x[:, 1] ** 2 + tf.sin(x[:, 2])
    with v1.Session(graph=graph) as session:
        yield Model(graph, session, x, y)


def make_relu_cnn(size: int = 16, channels: int = 3, classes: int = 5, seed: int = 0) -> Model:
    """A random ReLU CNN (conv-relu-conv-relu-GAP-dense) with y = logits[:, 0]."""
    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, size, size, channels], name="x")
        w1 = tf.constant(rng.normal(0, 0.4, (3, 3, channels, 8)), tf.float32)
        w2 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 8)), tf.float32)
        wd = tf.constant(rng.normal(0, 0.5, (8, classes)), tf.float32)
        h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + 0.05)
        conv = tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME") - 0.02)
        logits = tf.matmul(tf.reduce_mean(conv, [1, 2]), wd, name="logits")
        y = logits[:, 0]
    session = v1.Session(graph=graph)
    return Model(graph, session, x, y, logits=logits, conv=conv)


@pytest.fixture
def relu_cnn():
    model = make_relu_cnn()
    yield model
    model.session.close()


@pytest.fixture(scope="session")
def demo_model():
    """The demo CNN (saliency_tf1.demo) trained briefly; shared, treat as read-only."""
    from saliency_tf1.datasets import make_shapes
    from saliency_tf1.demo import train_demo_model

    data = make_shapes(1200, seed=1)
    model = train_demo_model(data.subset(slice(0, 1000)), data.subset(slice(1000, None)),
                             steps=200, seed=1)
    model.data = data.subset(slice(1000, None))
    yield model
    model.close()


@pytest.fixture
def counting():
    """``counting(session)`` returns a mock that wraps the real session and counts ``run``."""

    def wrap(session):
        spy = mock.MagicMock(wraps=session)
        spy.graph = session.graph
        return spy

    return wrap


@pytest.fixture
def rng():
    return np.random.default_rng(1234)



# ---------------------------------------------------------------------------
# No test leaves a file behind outside pytest's tmp dirs.

#: Directory/file names that are never a test's leftovers (caches, tooling, envs).
_UNTRACKED_NAMES = frozenset({
    ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis",
    ".ipynb_checkpoints", ".venv", "venv", ".tox", ".nox", ".eggs", "build", "dist",
})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITTEN: set[str] = set()  # paths this process created or wrote, while recording
_RECORDING = [False]
_HOOKED = [False]
_NOT_RECORDED_UNDER: list[str] = []  # pytest's basetemp


def _not_a_leftover(name: str) -> bool:
    return (name in _UNTRACKED_NAMES or name.endswith((".egg-info", ".pyc"))
            or name.startswith((".coverage", "pytest-of-")))


def _record_writes(event: str, args: tuple) -> None:
    """Audit hook: remembers the paths Python code of this process writes or creates."""
    if not _RECORDING[0]:
        return
    if event == "open":
        path, mode, flags = args
        if path is None or isinstance(path, int) or not (
                (isinstance(mode, str) and any(c in mode for c in "wax+"))
                or (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)):
            return
        paths = [path]
    elif event in ("os.mkdir", "os.symlink", "os.link", "tempfile.mkstemp",
                   "tempfile.mkdtemp"):
        paths = [args[1] if event in ("os.symlink", "os.link") else args[0]]
    elif event in ("os.rename", "os.replace", "shutil.copyfile", "shutil.copytree",
                   "shutil.move"):
        paths = [args[1]]
    elif event == "shutil.make_archive":
        paths = [args[0]]
    else:
        return
    for path in paths:
        if isinstance(path, str | bytes | os.PathLike):
            path = os.path.abspath(os.fsdecode(path))
            if not any(path.startswith(root) for root in _NOT_RECORDED_UNDER):
                _WRITTEN.add(path)


def _paths_under(root: str, *, recursive: bool, skip: frozenset[str]) -> set[str]:
    """Paths below ``root`` (all levels, or its entries only), minus caches and ``skip``."""
    if not os.path.isdir(root):
        return set()
    if not recursive:
        return {path for name in os.listdir(root)
                if not _not_a_leftover(name) and (path := os.path.join(root, name)) not in skip}
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not _not_a_leftover(d)
                       and os.path.join(dirpath, d) not in skip]
        found.update(os.path.join(dirpath, n) for n in dirnames + filenames
                     if not _not_a_leftover(n) and os.path.join(dirpath, n) not in skip)
    return found


def _related(path: str, written: set[str]) -> bool:
    """``path`` was written, or is a directory above or below a written path."""
    return any(w == path or w.startswith(path + os.sep) or path.startswith(w + os.sep)
               for w in written)


@pytest.fixture(scope="session", autouse=True)
def no_files_left_behind(tmp_path_factory):
    """Fails the session if a test leaves a new file in the repo, the cwd or the temp dir.

    For the session, ``tempfile`` (and ``TMPDIR`` for subprocesses and
    TensorFlow) point to a private directory under pytest's basetemp, which
    must be empty again at the end. The repository's working tree (all
    levels), the working directory and the real temp dir (their entries) are
    snapshotted before the first test and compared after the last; pytest's
    own tmp dirs, caches and ``__pycache__`` are ignored.

    On a shared machine other processes create files meanwhile, so by default
    a new path there counts only if Python code of this process wrote it (an
    audit hook records writes). Under CI (``CI`` set) or with
    ``SALIENCY_TF1_STRICT_LEFTOVER_CHECK=1`` every new path in the repository
    and the working directory counts, whoever wrote it (subprocesses and
    TensorFlow's own writers included); the shared temp dir keeps the
    this-process rule, since the machine's other processes write there too.
    """
    import sys
    import tempfile

    strict = bool(os.environ.get("CI") or os.environ.get("SALIENCY_TF1_STRICT_LEFTOVER_CHECK"))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    basetemp = str(tmp_path_factory.getbasetemp().resolve())
    private = str(tmp_path_factory.mktemp("tempfile_dir").resolve())
    skip = frozenset({basetemp})
    roots = [(repo, True), (os.getcwd(), False), (tempfile.gettempdir(), False)]

    def snapshot() -> set[str]:
        paths: set[str] = set()
        for root, recursive in roots:
            paths |= _paths_under(root, recursive=recursive, skip=skip)
        return {p for p in paths if not (p + os.sep).startswith(basetemp + os.sep)}

    if not _HOOKED[0]:
        sys.addaudithook(_record_writes)  # hooks cannot be removed; idle when not recording
        _HOOKED[0] = True
    saved_env = {k: os.environ.get(k) for k in ("TMPDIR", "TEMP", "TMP")}
    saved_tempdir = tempfile.tempdir
    before = snapshot()
    os.environ.update(TMPDIR=private, TEMP=private, TMP=private)
    tempfile.tempdir = private
    _WRITTEN.clear()
    _NOT_RECORDED_UNDER[:] = [basetemp + os.sep]
    _RECORDING[0] = True
    try:
        yield
    finally:
        _RECORDING[0] = False
        tempfile.tempdir = saved_tempdir
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # The shared temp dir gets files from other processes of the machine: there a
    # new path counts only if this process wrote it (subprocesses write to the
    # private dir through TMPDIR, checked below).
    shared_temp = os.path.join(os.path.realpath(tempfile.gettempdir()), "")
    new = sorted(p for p in snapshot() - before
                 if (strict and not os.path.realpath(p).startswith(shared_temp))
                 or _related(p, _WRITTEN))
    new += sorted(os.path.join(private, name) for name in os.listdir(private))
    if new:
        listing = "\n  ".join(new)
        pytest.fail(
            f"tests left {len(new)} new path(s) outside pytest's tmp dirs (write to the "
            f"tmp_path fixture instead, or clean up):\n  {listing}",
            pytrace=False,
        )


# In CI every optional dependency is installed (the `dev` extra), so a skipped
# test means something is missing or mis-wired: fail it rather than let a
# green run hide it.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI (every test must run there): {reason}"
