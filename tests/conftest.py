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


def _not_a_leftover(name: str) -> bool:
    return (name in _UNTRACKED_NAMES or name.endswith((".egg-info", ".pyc"))
            or name.startswith((".coverage", "pytest-of-")))


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


@pytest.fixture(scope="session", autouse=True)
def no_files_left_behind(tmp_path_factory):
    """Fails the session if a test leaves a new file in the repo, the cwd or the temp dir.

    Snapshots the repository's working tree (all levels), the working
    directory and ``tempfile.gettempdir()`` (their entries) before the first
    test and compares after the last; pytest's own tmp dirs (``tmp_path``,
    ``tmp_path_factory``), caches and ``__pycache__`` are ignored. On a machine
    where other processes create files meanwhile, set
    ``SALIENCY_TF1_SKIP_LEFTOVER_CHECK=1`` to skip the check (CI never does).
    """
    import tempfile

    if os.environ.get("SALIENCY_TF1_SKIP_LEFTOVER_CHECK"):
        yield
        return
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    basetemp = str(tmp_path_factory.getbasetemp().resolve())
    skip = frozenset({basetemp})
    roots = [(repo, True), (os.getcwd(), False), (tempfile.gettempdir(), False)]

    def snapshot() -> set[str]:
        paths: set[str] = set()
        for root, recursive in roots:
            paths |= _paths_under(root, recursive=recursive, skip=skip)
        return {p for p in paths if not (p + os.sep).startswith(basetemp + os.sep)}

    before = snapshot()
    yield
    new = sorted(snapshot() - before)
    if new:
        listing = "\n  ".join(new)
        pytest.fail(
            f"tests left {len(new)} new path(s) outside pytest's tmp dirs (write to the "
            f"tmp_path fixture instead):\n  {listing}\n(If another process made them during "
            "the run, re-run, or set SALIENCY_TF1_SKIP_LEFTOVER_CHECK=1 on a shared machine.)",
            pytrace=False,
        )
