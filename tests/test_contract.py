"""The contract every public method honours on bad and unusual input (DESIGN.md §5).

Each case of :data:`CASES` is run against every public call of every method in
the catalogue (:func:`method_cases.call_targets`): bad inputs raise a
ValueError/TypeError whose message names the argument; inputs that are merely
unusual (an int image, a nested list, a read-only array, a huge ``batch_size``)
work and give the same mask as the plain float input. After every call, failed
or not, the graph's op count, the variables' values and the caller's input and
``feed_dict`` are as they were.

``python tests/test_contract.py`` runs the same matrix outside pytest and prints
a table of what every case got for every method.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from method_cases import (  # noqa: E402
    EXTRA_CALLS,
    CallTarget,
    ContractModel,
    build_model,
    call_targets,
    make_inputs,
)

from saliency_tf1 import PerExample  # noqa: E402
from saliency_tf1.catalogue import METHODS, available_methods  # noqa: E402

v1 = tf.compat.v1

SHAPE = (12, 12, 3)
TARGETS = call_targets()


# ---------------------------------------------------------------------------
# The model, the methods and the good inputs, built once per module


@dataclass
class Bench:
    model: ContractModel
    methods: dict[str, Any]          # name -> method, or the exception its constructor raised
    image: np.ndarray                # one good input
    images: np.ndarray               # a good batch of 2
    ints: np.ndarray                 # uint8 image with values 0..255
    foreign: Any                     # a placeholder of another graph
    references: dict[str, np.ndarray] = field(default_factory=dict)

    def good_input(self, target: CallTarget) -> np.ndarray:
        return self.images if target.batched else self.image

    def reference(self, target: CallTarget) -> np.ndarray:
        """The mask of the good input with the default arguments (cached)."""
        if target.id not in self.references:
            self.references[target.id] = target.run(
                self.methods[target.name], self.good_input(target), self.model.feed())
        return self.references[target.id]


def make_bench() -> Bench:
    model = build_model(size=SHAPE[0], channels=SHAPE[2])
    methods: dict[str, Any] = {}
    for name in dict.fromkeys(t.name for t in TARGETS):
        try:
            methods[name] = model.build(name)
        except Exception as err:  # reported by every case of the method
            methods[name] = err
    with tf.Graph().as_default():
        foreign = v1.placeholder(tf.float32, [], name="foreign")
    images = make_inputs(SHAPE, 2, seed=3)
    ints = np.random.default_rng(4).integers(0, 256, SHAPE, dtype=np.uint8)
    return Bench(model, methods, images[0], images, ints, foreign)


@pytest.fixture(scope="module")
def bench():
    made = make_bench()
    yield made
    made.model.session.close()


# ---------------------------------------------------------------------------
# The cases


@dataclass(frozen=True)
class Call:
    value: Any
    feed_dict: Any
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One way of calling a method, and what it must get.

    ``make(bench, target)`` gives the call. ``error``: the exception it must
    raise, whose message names ``names`` (``"input"`` = the input argument,
    ``x_value``/``x_batch``); ``None``: it must work, and give the mask of
    ``same_as(bench, target)`` when that is set. ``allowed``: an error a
    working case may raise instead (a huge batch_size may be refused).
    """

    name: str
    make: Callable[[Bench, CallTarget], Call]
    error: type[Exception] | None = None
    names: str = "input"
    same_as: Callable[[Bench, CallTarget], Call] | None = None
    allowed: type[Exception] | None = None
    needs: str | None = None   # an argument the call must accept for the case to apply
    calls: tuple[str, ...] | None = None  # the calls it applies to (None: all)

    @property
    def expected(self) -> str:
        if self.error is None:
            return "works" + (" (same mask)" if self.same_as else "")
        return f"{self.error.__name__} naming {self.names}"


def _inp(target: CallTarget, single: Any, batch: Any = None) -> Any:
    """``single`` for a one-input call; ``batch`` (default: two copies of it) for GetMaskBatch."""
    if not target.batched:
        return single
    return np.stack([single, single]) if batch is None else batch


def _bad_input(transform: Callable[[np.ndarray], Any], *, mixed: bool = False):
    """A case input: ``transform(image)``; batched, beside a good image when ``mixed``."""

    def make(b: Bench, t: CallTarget) -> Call:
        bad = transform(b.image)
        batch = np.stack([b.images[0], bad]) if mixed else None
        return Call(_inp(t, bad, batch), b.model.feed())

    return make


def _with_nonfinite(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def transform(image: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[3, 4, 1] = value
        return out

    return transform


def _feed(make_feed: Callable[[Bench], Any]):
    def make(b: Bench, t: CallTarget) -> Call:
        return Call(b.good_input(t), make_feed(b))

    return make


def _kwargs(**kwargs: Any):
    def make(b: Bench, t: CallTarget) -> Call:
        return Call(b.good_input(t), b.model.feed(), kwargs)

    return make


def _good(b: Bench, t: CallTarget) -> Call:
    return Call(b.good_input(t), b.model.feed())


def _ints(dtype: Any):
    def make(b: Bench, t: CallTarget) -> Call:
        image = b.ints.astype(dtype)
        return Call(_inp(t, image), b.model.feed())

    return make


def _ints_as_float(dtype: Any):
    """The int image as the float dtype it computes in (its noise is drawn in that dtype)."""

    def make(b: Bench, t: CallTarget) -> Call:
        image = b.ints.astype(np.result_type(dtype, np.float32))
        return Call(_inp(t, image), b.model.feed())

    return make


def _transformed_good(transform: Callable[[np.ndarray], Any]):
    def make(b: Bench, t: CallTarget) -> Call:
        return Call(transform(b.good_input(t)), b.model.feed())

    return make


def _read_only(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flags.writeable = False
    return out


CASES: list[Case] = [
    # -- the input: rank, shape, dtype, values ---------------------------------
    Case("rank too low", _bad_input(lambda im: im[..., 0]), ValueError),
    Case("rank too high (a batch where one input is expected)",
         lambda b, t: Call(_inp(t, b.image[None], b.images[None]), b.model.feed()), ValueError),
    Case("wrong shape: channels", _bad_input(lambda im: im[..., :2]), ValueError),
    Case("wrong shape: height", _bad_input(lambda im: im[:11]), ValueError),
    Case("empty batch / empty input",
         lambda b, t: Call(_inp(t, np.zeros((0, *SHAPE[1:]), np.float32),
                                np.zeros((0, *SHAPE), np.float32)), b.model.feed()), ValueError),
    Case("0-d input", lambda b, t: Call(np.float32(0.5), b.model.feed()), ValueError),
    Case("None input", lambda b, t: Call(None, b.model.feed()), TypeError),
    Case("dtype: strings", _bad_input(lambda im: np.full(im.shape, "a")), TypeError),
    Case("dtype: complex", _bad_input(lambda im: im.astype(np.complex64)), TypeError),
    Case("dtype: object", _bad_input(lambda im: im.astype(object)), TypeError),
    Case("ragged nested list", lambda b, t: Call([[0.0, 1.0], [2.0]], b.model.feed()), TypeError),
    Case("NaN value", _bad_input(_with_nonfinite(np.nan), mixed=True), ValueError),
    Case("+Inf value", _bad_input(_with_nonfinite(np.inf), mixed=True), ValueError),
    Case("-Inf value", _bad_input(_with_nonfinite(-np.inf), mixed=True), ValueError),
    # -- batch_size ------------------------------------------------------------------
    Case("batch_size=0", _kwargs(batch_size=0), ValueError, "batch_size", needs="batch_size"),
    Case("batch_size=-3", _kwargs(batch_size=-3), ValueError, "batch_size", needs="batch_size"),
    Case("batch_size=2.5", _kwargs(batch_size=2.5), TypeError, "batch_size", needs="batch_size"),
    # -- other method arguments -------------------------------------------------------
    Case("unknown keyword argument", _kwargs(no_such_argument=1), TypeError,
         "no_such_argument"),
    Case("nsamples=0", _kwargs(nsamples=0), ValueError, "nsamples", calls=("GetSmoothedMask",)),
    Case("stdev_spread=NaN", _kwargs(stdev_spread=float("nan")), ValueError, "stdev_spread",
         calls=("GetSmoothedMask",)),
    # -- feed_dict ------------------------------------------------------------------
    Case("feed_dict missing a placeholder", _feed(lambda b: {}), ValueError, "feed_dict"),
    Case("feed_dict=None (placeholder missing)", _feed(lambda b: None), ValueError, "feed_dict"),
    Case("feed_dict unknown tensor name",
         _feed(lambda b: {**b.model.feed(), "no_such_tensor:0": 1.0}), ValueError, "feed_dict"),
    Case("feed_dict tensor of another graph",
         _feed(lambda b: {**b.model.feed(), b.foreign: 1.0}), ValueError, "feed_dict"),
    Case("feed_dict key not a tensor", _feed(lambda b: {**b.model.feed(), 3: 1.0}),
         TypeError, "feed_dict"),
    Case("feed_dict feeds x", _feed(lambda b: {**b.model.feed(), b.model.x: b.images}),
         ValueError, "feed_dict"),
    Case("feed_dict value of the wrong shape",
         _feed(lambda b: {b.model.target.classes: [[1]]}), ValueError, "feed_dict"),
    Case("feed_dict not a mapping", _feed(lambda b: [(b.model.target.classes, [1])]),
         TypeError, "feed_dict"),
    # -- unusual but valid --------------------------------------------------------------
    Case("uint8 image", _ints(np.uint8), same_as=_ints_as_float(np.uint8)),
    Case("int64 image", _ints(np.int64), same_as=_ints_as_float(np.int64)),
    Case("float64 image", _transformed_good(lambda a: a.astype(np.float64))),
    # A list of Python floats is a float64 array (seeded noise is drawn in float64).
    Case("nested list input", _transformed_good(lambda a: a.tolist()),
         same_as=_transformed_good(lambda a: a.astype(np.float64))),
    Case("read-only input", _transformed_good(_read_only), same_as=_good),
    Case("Fortran-order input", _transformed_good(np.asfortranarray), same_as=_good),
    Case("huge batch_size (10**9)", _kwargs(batch_size=10**9), same_as=_good,
         allowed=ValueError, names="batch_size", needs="batch_size"),
    Case("batch_size=1", _kwargs(batch_size=1), same_as=_good, needs="batch_size"),
    # Silent failures closed (bool images read as 0/1; seeds and feed values checked by name).
    Case("bool image", lambda b, t: Call(_inp(t, b.ints > 127), b.model.feed()),
         same_as=lambda b, t: Call(_inp(t, (b.ints > 127).astype(np.float32)), b.model.feed())),
    Case("seed=-1", _kwargs(seed=-1), ValueError, "seed", calls=("GetSmoothedMask",)),
    Case("seed='a'", _kwargs(seed="a"), TypeError, "seed", calls=("GetSmoothedMask",)),
    Case("seed=1.5", _kwargs(seed=1.5), TypeError, "seed", calls=("GetSmoothedMask",)),
    Case("feed_dict string for an int placeholder",
         _feed(lambda b: {b.model.target.classes: np.array(["a"])}), TypeError, "feed_dict"),
    Case("feed_dict fractional class", _feed(lambda b: {b.model.target.classes: [1.5]}),
         ValueError, "feed_dict"),
    Case("feed_dict class out of range", _feed(lambda b: {b.model.target.classes: [4]}),
         ValueError, "feed_dict"),
    Case("feed_dict whole-float class", _feed(lambda b: {b.model.target.classes: [1.0]}),
         same_as=_good),
    Case("feed_dict keyed by tensor name",
         _feed(lambda b: {b.model.target.classes.name: np.array([1], np.int32)}),
         same_as=_good),
    Case("feed_dict keyed by op name",
         _feed(lambda b: {b.model.target.classes.op.name: [1]}), same_as=_good),
]


# ---------------------------------------------------------------------------
# Running one case


@dataclass
class Outcome:
    got: str                       # "ok", an exception's class name, "n/a", "build failed"
    message: str = ""
    problems: list[str] = field(default_factory=list)


def _same(a: Any, b: Any) -> bool:
    """Deep equality of caller-owned values (arrays by dtype and content, NaN == NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict) and isinstance(b, dict):  # keys by identity: tensor == adds ops
        return (len(a) == len(b) and all(x is y for x, y in zip(a, b))
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, PerExample) and isinstance(b, PerExample):
        return _same(a.values, b.values)
    return a is b or a == b


def _argument(case: Case, target: CallTarget) -> str:
    return target.input_name if case.names == "input" else case.names


def _check_mask(result: np.ndarray, target: CallTarget, value: Any) -> list[str]:
    problems = []
    n = len(np.asarray(value)) if target.batched else None
    per_example = result.shape[1:] if target.batched else result.shape
    if target.batched and result.shape[:1] != (n,):
        problems.append(f"expected {n} masks, got shape {result.shape}")
    if per_example[:2] != SHAPE[:2]:
        problems.append(f"mask shape {result.shape} does not match the input's {SHAPE[:2]}")
    if result.dtype.kind not in "biuf" or not np.all(np.isfinite(result)):
        problems.append(f"mask is not finite/real (dtype {result.dtype})")
    return problems


def run_case(bench: Bench, target: CallTarget, case: Case) -> Outcome:
    """Runs ``case`` on ``target``; the outcome lists every broken promise."""
    method = bench.methods[target.name]
    if isinstance(method, Exception):
        return Outcome("build failed", str(method),
                       [f"constructor raised {type(method).__name__}: {method}"])
    if (case.needs and not target.accepts(method, case.needs)) or (
            case.calls is not None and target.call not in case.calls):
        return Outcome("n/a")
    call = case.make(bench, target)
    value_before = copy.deepcopy(call.value)
    feed_before = ({k: copy.deepcopy(v) for k, v in call.feed_dict.items()}
                   if isinstance(call.feed_dict, dict) else None)
    model = bench.model
    ops_before, vars_before = model.op_count(), model.variable_values()

    problems: list[str] = []
    result, error = None, None
    try:
        result = target.run(method, call.value, call.feed_dict, **call.kwargs)
    except Exception as err:  # judged below
        error = err
    got = "ok" if error is None else type(error).__name__
    message = "" if error is None else str(error)
    argument = _argument(case, target)

    if case.error is not None:
        if error is None:
            problems.append(f"no error raised (expected {case.expected})")
        elif not isinstance(error, case.error):
            problems.append(f"raised {got}: {message!r}; expected {case.error.__name__}")
        elif argument not in message:
            problems.append(f"{got} message does not name {argument!r}: {message!r}")
    elif error is not None:
        if case.allowed is not None and isinstance(error, case.allowed) and argument in message:
            pass  # a clear refusal is acceptable
        else:
            problems.append(f"raised {got}: {message!r} (expected it to work)")
    else:
        problems += _check_mask(result, target, call.value)
        if case.same_as is not None and not problems:
            ref_call = case.same_as(bench, target)
            expected = (bench.reference(target) if case.same_as is _good
                        else target.run(method, ref_call.value, ref_call.feed_dict,
                                        **ref_call.kwargs))
            scale = float(np.max(np.abs(expected))) or 1.0
            if expected.shape != result.shape or not np.allclose(
                    result, expected, rtol=1e-5, atol=1e-5 * scale):
                diff = (np.max(np.abs(result - expected)) if expected.shape == result.shape
                        else "shape")
                problems.append(f"mask differs from the reference call's (max |diff| {diff}, "
                                f"scale {scale:.3g})")

    if model.op_count() != ops_before:
        problems.append(f"graph grew from {ops_before} to {model.op_count()} ops")
    if not all(map(np.array_equal, model.variable_values(), vars_before)):
        problems.append("variables' values changed")
    if not _same(call.value, value_before):
        problems.append("the caller's input was modified")
    if feed_before is not None and not _same(call.feed_dict, feed_before):
        problems.append("the caller's feed_dict was modified")
    return Outcome(got, message, problems)


# ---------------------------------------------------------------------------
# Tests


def test_every_catalogue_method_is_available():
    """All catalogue entries import (a method missing here is missing from the matrix)."""
    missing = [name for name in METHODS if name not in available_methods()]
    assert not missing, f"catalogue methods whose module does not import: {missing}"


def test_matrix_covers_every_available_method_and_call():
    names = {t.name for t in TARGETS}
    assert names == set(available_methods())
    for target in TARGETS:
        assert target.call == METHODS[target.name].call or target.call in EXTRA_CALLS
    assert any(t.call == "GetMaskBatch" for t in TARGETS)
    assert any(t.call == "GetSmoothedMask" for t in TARGETS)


def _applies(target: CallTarget, case: Case) -> bool:
    """Whether ``case`` applies to ``target``'s call (decided from the class, before building)."""
    if case.calls is not None and target.call not in case.calls:
        return False
    return not case.needs or target.accepts(METHODS[target.name].cls, case.needs)


APPLICABLE = [(t, c) for t in TARGETS for c in CASES if _applies(t, c)]


@pytest.mark.parametrize(("target", "case"), APPLICABLE,
                         ids=[f"{t.id}-{c.name}" for t, c in APPLICABLE])
def test_contract(bench, target, case):
    outcome = run_case(bench, target, case)
    assert outcome.got != "n/a", f"{case.name} was expected to apply to {target.id}"
    assert not outcome.problems, f"{target.id} / {case.name}: " + "; ".join(outcome.problems)


BATCHED = [t for t in TARGETS if t.call == "GetMaskBatch"]

#: GetMaskBatch arguments that hold one entry per input.
PER_INPUT_ARGS = ("segments",)


@pytest.mark.parametrize("target", BATCHED, ids=[t.id for t in BATCHED])
def test_batch_equals_stacked_single_calls_with_per_example_feeds(bench, target):
    """GetMaskBatch with a class per input == GetMask of each input with its class."""
    method = bench.methods[target.name]
    classes = [1, 3]
    batch = target.run(method, bench.images, bench.model.feed(classes))
    for i, c in enumerate(classes):
        # Arguments given per input in a batch (XRAI's segments) go to their input.
        kwargs = {k: (v[i] if k in PER_INPUT_ARGS else v) for k, v in target.kwargs.items()}
        one = CallTarget(target.name, "GetMask", kwargs).run(
            method, bench.images[i], bench.model.feed(c))
        np.testing.assert_allclose(batch[i], one, rtol=1e-5, atol=1e-6 * np.abs(one).max())


SEEDED = [t for t in TARGETS if t.seeded]


@pytest.mark.parametrize("target", SEEDED, ids=[t.id for t in SEEDED])
def test_seeded_calls_repeat(bench, target):
    method = bench.methods[target.name]
    first = target.run(method, bench.good_input(target), bench.model.feed())
    again = target.run(method, bench.good_input(target), bench.model.feed())
    np.testing.assert_array_equal(first, again)


# ---------------------------------------------------------------------------
# The table for the closing note: python tests/test_contract.py


def print_table() -> None:
    made = make_bench()
    results = {(t.id, c.name): run_case(made, t, c) for t in TARGETS for c in CASES}
    tried = [o for o in results.values() if o.got != "n/a"]
    print(f"{len(CASES)} cases x {len(TARGETS)} calls of {len(made.methods)} methods "
          f"({', '.join(made.methods)}): {len(tried)} tried, "
          f"{sum(not o.problems for o in tried)} as expected\n")
    width = max(len(c.name) for c in CASES)
    print(f"| {'case':<{width}} | expected | got (count over calls) | broken |")
    print(f"|{'-' * (width + 2)}|---|---|---|")
    for case in CASES:
        outs = [results[(t.id, case.name)] for t in TARGETS]
        counts = Counter(o.got for o in outs)
        got = ", ".join(f"{k} x{v}" for k, v in counts.most_common())
        print(f"| {case.name:<{width}} | {case.expected} | {got} | "
              f"{sum(bool(o.problems) for o in outs)} |")
    print()
    for target in TARGETS:
        outs = [results[(target.id, c.name)] for c in CASES]
        bad = sum(bool(o.problems) for o in outs)
        print(f"{target.id:<28} {sum(o.got != 'n/a' for o in outs):>3} tried, {bad} broken")
    broken = [(k, o) for k, o in results.items() if o.problems]
    if broken:
        print("\nBroken promises:")
        for (tid, cname), outcome in broken:
            print(f"- {tid} / {cname}: {'; '.join(outcome.problems)}")
    made.model.session.close()


if __name__ == "__main__":
    print_table()
