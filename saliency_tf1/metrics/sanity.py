"""Sanity checks for saliency maps: model-parameter randomisation (Adebayo et al., 2018).

Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity Checks for
Saliency Maps", NeurIPS 2018, arXiv:1810.03292, section 3.

A mask that explains the *model* must change when the model's learned
weights are destroyed. The **cascading** test re-initialises the layers one
after the other from the top (output) down, accumulating, and compares each
new mask with the original; the **independent** test re-initialises one
layer at a time, the others trained. Masks that stay similar (high rank
correlation / SSIM) fail the check.

The weights of the TF1 graph are changed *in place*, in the caller's
session, and every variable is restored to its exact trained value
afterwards, also when the explanation raises midway. Nothing the check runs
is taken on trust (a model may come from a stranger, see
:mod:`saliency_tf1.models.guard`): before any run, everything reading the
variables (and, for ``reinitialize="initializer"``, computing their initial
values) is proven to be pure computation by :func:`~saliency_tf1.models.guard.check_run`,
and new values are written only through an assignment whose whole run is the
assignment and its variable -- the variable's own initializer when it is
exactly that (so an ordinary graph gains no ops), otherwise an assignment
this package builds itself (once per graph and variable, under
``saliency_tf1/``). A variable's initializer op is never run as such: an
initializer with a side effect hidden on it (a control input) stays unrun.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.batching import progress_bar
from ..engine.graph import cached_ops
from ..models.guard import check_run, run_closure
from ._common import importance_map

MEASURES = ("spearman_abs", "spearman", "ssim")


# -- similarity of two masks -------------------------------------------------------


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values))
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def spearman_rank_correlation(a: Any, b: Any) -> float:
    """Spearman's rank correlation of two arrays of the same shape (all elements).

    The Pearson correlation of their ranks (ties averaged); NaN when either
    array is constant.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a, b: expected arrays of the same size, got {a.size} and {b.size}")
    ra, rb = _ranks(a) - (a.size + 1) / 2.0, _ranks(b) - (b.size + 1) / 2.0
    denom = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / denom) if denom > 0 else float("nan")


def ssim(a: Any, b: Any, *, data_range: float | None = None, win_size: int = 7) -> float:
    """Mean structural similarity of two 2-D maps (Wang et al., 2004).

    Local means, variances and covariance over ``win_size`` x ``win_size``
    uniform windows (sample covariance) that lie inside the maps,
    ``K1 = 0.01``, ``K2 = 0.03``: the defaults of scikit-image's
    ``structural_similarity``. ``data_range`` defaults to the larger of the
    two maps' ranges.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a, b: expected 2-D maps of one shape, got {a.shape} and {b.shape}")
    if win_size < 2 or min(a.shape) < win_size:
        raise ValueError(f"win_size: {win_size} must be >= 2 and fit the maps' shape {a.shape}")
    if data_range is None:
        data_range = max(float(np.ptp(a)), float(np.ptp(b))) or 1.0
    view = np.lib.stride_tricks.sliding_window_view

    def local_mean(m: np.ndarray) -> np.ndarray:
        return view(m, (win_size, win_size)).mean(axis=(-2, -1))

    ux, uy = local_mean(a), local_mean(b)
    norm = win_size**2 / (win_size**2 - 1)
    vx = norm * (local_mean(a * a) - ux * ux)
    vy = norm * (local_mean(b * b) - uy * uy)
    vxy = norm * (local_mean(a * b) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def mask_similarity(a: Any, b: Any, measure: str = "spearman_abs") -> float:
    """How similar two masks of one input are.

    ``"spearman_abs"``: rank correlation of the per-pixel magnitudes
    (``sum_c |m|``); ``"spearman"``: rank correlation of the signed masks,
    all elements; ``"ssim"``: SSIM of the magnitude maps, each scaled to
    [0, 1] by its maximum. Adebayo et al. report all three.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a, b: expected masks of one shape, got {a.shape} and {b.shape}")
    if measure == "spearman":
        return spearman_rank_correlation(a, b)
    spatial = a.shape[:-1] if a.ndim == 3 else a.shape
    ma = importance_map(a, spatial, "a", absolute=True)
    mb = importance_map(b, spatial, "b", absolute=True)
    if measure == "spearman_abs":
        return spearman_rank_correlation(ma, mb)
    if measure == "ssim":
        ma = ma / ma.max() if ma.max() > 0 else ma
        mb = mb / mb.max() if mb.max() > 0 else mb
        return ssim(ma, mb, data_range=1.0)
    raise ValueError(f"measure: expected one of {MEASURES}, got {measure!r}")


# -- changing the weights in place ------------------------------------------------------


def model_layers(graph: Any, variables: Sequence[Any] | None = None) -> list[tuple[str, list]]:
    """The trainable variables grouped into layers by name scope, bottom (input) first.

    ``conv1/w`` and ``conv1/b`` form layer ``conv1``; layers are ordered by
    the creation of their first variable, which for ordinary model code is
    the order from the input to the output. Pass your own list of
    ``(name, variables)`` to the checks where this grouping does not fit.
    """
    import tensorflow as tf

    if variables is None:
        variables = graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)
    layers: dict[str, list] = {}
    for var in variables:
        scope = var.op.name.rpartition("/")[0] or var.op.name
        layers.setdefault(scope, []).append(var)
    return list(layers.items())


class _Weights:
    """Saves variables' values and writes new ones in place, through proven assignments.

    Everything it will run is proven first (:func:`saliency_tf1.models.guard.check_run`):
    reading the variables and, with ``initial_values``, computing their
    initial values; then each variable gets its writer (see the module
    docstring). Raises before any run (and before any op is added) if a
    proof fails.
    """

    def __init__(self, session: Any, variables: Sequence[Any], *,
                 initial_values: bool = False, allow_ops: Sequence[str] = ()) -> None:
        graph = session.graph
        reads = []
        for var in variables:
            if getattr(var, "graph", None) is not graph or not hasattr(var, "op") \
                    or not hasattr(var, "dtype"):
                raise ValueError(f"variables: {getattr(var, 'name', var)!r} is not a variable "
                                 "of the session's graph")
            reads.append(graph.as_graph_element(var))
        fetches = reads + [var.op for var in variables]
        if initial_values:
            for var in variables:
                if _initial_value(var) is None:
                    raise ValueError(f"reinitialize: variable {var.name!r} has no initial value "
                                     "in the graph to draw again ('initializer')")
            fetches += [_initial_value(var) for var in variables]
        check_run(graph, fetches, allow_ops=allow_ops,
                  what="read or re-initialise these variables")
        self.session = session
        self.variables = list(variables)
        self.reads = reads
        self.writers = [_writer(var) for var in self.variables]
        self.saved = [np.array(v, copy=True) for v in session.run(self.reads)]

    def write(self, pairs: Sequence[tuple[Any, np.ndarray]]) -> None:
        writers = dict(zip((v.name for v in self.variables), self.writers))
        for var, value in pairs:
            op, fed = writers[var.name]
            self.session.run(op, {fed: value})

    def initial_values(self, variables: Sequence[Any]) -> list[np.ndarray]:
        """Fresh draws of the variables' initial values (proven in the constructor)."""
        return self.session.run([_initial_value(v) for v in variables])

    def restore(self) -> None:
        """Writes every saved value back, even if one write fails (then raises)."""
        errors = []
        for var, value in zip(self.variables, self.saved):
            try:
                self.write([(var, value)])
            except Exception as err:  # keep restoring the others
                errors.append(err)
        if errors:
            raise RuntimeError(f"could not restore {len(errors)} variable(s): {errors[0]}")


def _initial_value(var: Any) -> Any:
    """The tensor a variable's initializer assigns (read in its graph: eager mode refuses)."""
    with var.graph.as_default():
        return getattr(var, "initial_value", None)


def _plain_write(var: Any) -> tuple[Any, Any] | None:
    """The variable's initializer if running it (value fed) runs only it and the variable."""
    init = getattr(var, "initializer", None)
    if init is None or init.type not in ("Assign", "AssignVariableOp") or len(init.inputs) != 2:
        return None
    value = init.inputs[1]
    if init.inputs[0].op.name != var.op.name or not init.graph.is_feedable(value):
        return None
    ran = {op.name for op in run_closure([init], [value])}
    return (init, value) if ran == {init.name, var.op.name} else None


def _writer(var: Any) -> tuple[Any, Any]:
    """``(assign op, fed tensor)`` writing ``var``, whose run is the assignment and the variable.

    The variable's initializer if it is exactly that, else an assignment of
    this package's (built once per graph and variable).
    """
    plain = _plain_write(var)
    if plain is not None:
        return plain
    import tensorflow as tf

    def build() -> tuple[Any, Any]:
        with var.graph.control_dependencies(None):
            value = tf.compat.v1.placeholder(var.dtype.base_dtype, var.shape,
                                             name="reinitialize_value")
            if hasattr(var, "handle"):  # a resource variable
                from tensorflow.python.ops import gen_resource_variable_ops

                op = gen_resource_variable_ops.assign_variable_op(var.handle, value,
                                                                  name="reinitialize")
            else:
                op = tf.compat.v1.assign(var, value, name="reinitialize").op
        return op, value

    return cached_ops(var.graph, ("reinitialize", var.op.name), build)


Reinitializer = Callable[[str, np.ndarray, np.random.Generator], np.ndarray]


def _randomize(weights: _Weights, variables: Sequence[Any], reinitialize: str | Reinitializer,
               rng: np.random.Generator) -> None:
    if reinitialize == "initializer":
        values = weights.initial_values(variables)
        weights.write(list(zip(variables, values)))
        return
    saved = dict(zip((v.name for v in weights.variables), weights.saved))
    pairs = []
    for var in variables:
        value = saved[var.name]
        if reinitialize == "normal":
            new = rng.normal(value.mean(), value.std(), value.shape)
        elif reinitialize == "shuffle":
            new = rng.permutation(value.reshape(-1)).reshape(value.shape)
        else:
            new = np.asarray(reinitialize(var.name, value.copy(), rng))
            if new.shape != value.shape:
                raise ValueError(
                    f"reinitialize: returned shape {new.shape} for {var.name!r} of shape "
                    f"{value.shape}"
                )
        pairs.append((var, np.asarray(new).astype(value.dtype)))
    weights.write(pairs)


def _check_reinitialize(reinitialize: Any) -> None:
    if not (callable(reinitialize) or reinitialize in ("normal", "shuffle", "initializer")):
        raise ValueError(
            "reinitialize: expected 'normal', 'shuffle', 'initializer' or a callable "
            f"(name, value, rng) -> value, got {reinitialize!r}"
        )


@contextlib.contextmanager
def randomized_variables(
    session: Any,
    variables: Sequence[Any],
    *,
    reinitialize: str | Reinitializer = "normal",
    seed: int | np.random.Generator | None = 0,
    allow_ops: Sequence[str] = (),
) -> Iterator[None]:
    """Re-initialises ``variables`` in place for the ``with`` block, then restores them exactly.

    ``reinitialize``: ``"normal"`` draws each variable from a normal
    distribution with its trained values' mean and standard deviation (so a
    variable whose values are all equal keeps them);
    ``"shuffle"`` permutes its trained values; ``"initializer"`` draws its
    initial value again (TensorFlow's random state; the initializer op itself
    is not run, see the module docstring); a callable
    ``(name, trained_value, rng) -> new_value`` chooses freely. The trained
    values come back on leaving the block, also on an exception.

    Raises :class:`~saliency_tf1.models.guard.UnsafeGraphError` before any
    run if reading the variables (or drawing their initial values) would run
    an op off the guard's allow-list (``allow_ops`` extends it).
    """
    _check_reinitialize(reinitialize)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    weights = _Weights(session, variables, initial_values=reinitialize == "initializer",
                       allow_ops=allow_ops)
    try:
        _randomize(weights, weights.variables, reinitialize, rng)
        yield
    finally:
        weights.restore()


# -- the check ---------------------------------------------------------------------------


@dataclass
class RandomizationResult:
    """Similarity of the masks of randomised models to the original masks.

    Attributes:
      mode: ``"cascading"`` or ``"independent"``.
      layers: layer names from the top; at step ``k`` the model has
        ``layers[:k + 1]`` (cascading) or ``layers[k]`` (independent) randomised.
      similarity: ``{measure: [steps, N]}`` similarity per step and input.
      original: the original masks ``[N, ...]``.
    """

    mode: str
    layers: list[str]
    similarity: dict[str, np.ndarray]
    original: np.ndarray

    def mean(self, measure: str = "spearman_abs") -> np.ndarray:
        """``[steps]`` the mean similarity over the inputs at each step (NaN-aware)."""
        values = self.similarity[measure]
        valid = ~np.isnan(values)
        count = valid.sum(axis=1)
        total = np.where(valid, values, 0.0).sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def randomization_check(
    explain: Callable[[np.ndarray], Any],
    images: Any,
    session: Any,
    layers: Sequence[tuple[str, Sequence[Any]]] | None = None,
    *,
    mode: str = "cascading",
    reinitialize: str | Reinitializer = "normal",
    seed: int | np.random.Generator | None = 0,
    measures: Sequence[str] = MEASURES,
    progress: bool | None = None,
    allow_ops: Sequence[str] = (),
) -> RandomizationResult:
    """Model-parameter randomisation test of a saliency method (Adebayo et al., 2018).

    Explains ``images`` with the trained model, then re-initialises the
    layers from the top down (cascading: accumulating; independent: one at a
    time) and explains them again after each step, comparing each mask with
    the original. Every variable is restored to its trained value on return,
    also when ``explain`` raises.

    Args:
      explain: ``images -> masks`` with the method under test, e.g.
        ``lambda xs: method.GetMaskBatch(xs, feed_dict=target.feed(classes))``.
        Fix the explained class in it (the trained model's prediction), so
        randomisation does not change which output is explained.
      images: ``[N, ...]`` inputs.
      session: the session holding the model's variables.
      layers: ``(name, variables)`` pairs from the input to the output;
        default :func:`model_layers` of the session's graph.
      mode: ``"cascading"`` or ``"independent"``.
      reinitialize, seed: how new weights are drawn (see :func:`randomized_variables`).
      measures: names from :data:`MEASURES` (see :func:`mask_similarity`).
      progress: show a progress bar over the steps.
      allow_ops: op types the variables' reads (and initial values) may run
        besides the guard's allow-list.

    Nothing of the model runs but what the explanation runs, the variables'
    reads and writes through proven assignments (see the module docstring):
    a side effect hidden on a variable's initializer is never run, and a read
    that would run an op off the allow-list is refused, before the first
    explanation, with :class:`~saliency_tf1.models.guard.UnsafeGraphError`.
    """
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode: expected 'cascading' or 'independent', got {mode!r}")
    measures = tuple(measures)
    if not measures or any(m not in MEASURES for m in measures):
        raise ValueError(f"measures: expected a non-empty subset of {MEASURES}, got {measures!r}")
    _check_reinitialize(reinitialize)
    layers = list(model_layers(session.graph) if layers is None else layers)
    if not layers:
        raise ValueError("layers: the graph has no trainable variables to randomise")
    top_first = layers[::-1]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    weights = _Weights(session, [v for _, group in layers for v in group],
                       initial_values=reinitialize == "initializer", allow_ops=allow_ops)

    images = np.asarray(images)
    original = np.asarray(explain(images))
    if len(original) != len(images):
        raise ValueError(f"explain: expected {len(images)} masks, got shape {original.shape}")
    for m in measures:  # before the cascade: each measure must apply to these masks
        try:
            mask_similarity(original[0], original[0], m)
        except ValueError as err:
            raise ValueError(f"measures: {m!r} does not apply to masks of shape "
                             f"{original.shape[1:]} ({err})") from None
    similarity = {m: np.empty((len(top_first), len(images))) for m in measures}
    try:
        with progress_bar(progress, len(top_first), f"randomisation ({mode})", auto_min=1) as bar:
            for step, (_, group) in enumerate(top_first):
                if mode == "independent" and step:
                    weights.restore()
                _randomize(weights, group, reinitialize, rng)
                masks = np.asarray(explain(images))
                if masks.shape != original.shape:
                    raise ValueError(
                        f"explain: returned shape {masks.shape} after randomisation, "
                        f"{original.shape} before"
                    )
                for m in measures:
                    similarity[m][step] = [mask_similarity(a, b, m)
                                           for a, b in zip(original, masks)]
                bar.update(1)
    finally:
        weights.restore()
    return RandomizationResult(mode, [name for name, _ in top_first], similarity, original)
