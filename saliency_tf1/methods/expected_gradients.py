"""Expected Gradients and GradientSHAP: Integrated Gradients averaged over random baselines."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.checks import (
    check_array,
    check_finite_number,
    check_no_extra,
    check_positive_int,
    check_seed,
    describe,
)
from ..engine.noise import KEY_BITS, standard_normal
from ..engine.paths import integrate_paths, runs
from .base import TF1Saliency

#: Named reference sets that need no data (see :meth:`ExpectedGradients.GetMask`).
PRESETS = ("uniform",)


def generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator for a checked seed; ``None`` seeds one from NumPy's global state.

    So ``np.random.seed(s)`` before a ``seed=None`` call makes it reproducible.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(np.random.randint(0, 2**32, size=4, dtype=np.uint64))
    return np.random.default_rng(seed)


@dataclass(frozen=True)
class ReferenceDraw:
    """Which reference each sample ``k`` uses (the same for every input of a call).

    Exactly one of: ``table`` and ``index`` (sample ``k`` uses
    ``table[index[k]]``, ``table`` being the caller's array, read only);
    ``uniform_key`` (sample ``k`` is uniform noise in the input's range, drawn
    from ``default_rng([uniform_key, k])``).
    """

    table: np.ndarray | None = None
    index: np.ndarray | None = None
    uniform_key: int | None = None

    def rows(self, k: np.ndarray, inputs: np.ndarray, work: np.dtype) -> np.ndarray:
        """The references of rows whose samples are ``k`` and inputs ``inputs``."""
        if self.table is not None:
            return self.table[self.index[k]].astype(work, copy=False)
        shape = inputs.shape[1:]
        axes = tuple(range(1, inputs.ndim))
        low = inputs.min(axis=axes, keepdims=True)
        high = inputs.max(axis=axes, keepdims=True)
        unit = uniform_arrays(self.uniform_key, k, shape, work)
        return low + unit * (high - low)


def uniform_arrays(key: int, k: np.ndarray, shape: tuple[int, ...],
                   dtype: np.dtype) -> np.ndarray:
    """``[len(k), *shape]`` uniforms in ``[0, 1)``, sample ``k`` from ``default_rng([key, k])``.

    Sample ``k``'s draw is the same whatever chunk of rows it falls in, so the
    masks do not depend on ``batch_size``.
    """
    out = np.empty((len(k), *shape), dtype=dtype)
    cache: dict[int, np.ndarray] = {}
    for r, kk in enumerate(k.tolist()):
        if kk not in cache:
            cache[kk] = np.random.default_rng([key, kk]).random(shape, dtype=dtype)
        out[r] = cache[kk]
    return out


def draw_references(references: Any, shape: tuple[int, ...], nsamples: int,
                    rng: np.random.Generator, work: np.dtype) -> ReferenceDraw:
    """Checks ``references`` and draws one (uniformly, with replacement) per sample.

    ``references``: an array of references ``[M, *shape]`` (or one reference
    ``shape``), an iterable of references or of batches of them (read once,
    keeping only ``nsamples`` references: reservoir sampling with replacement,
    one reservoir per sample), or the name of a preset (:data:`PRESETS`).
    Raises TypeError/ValueError naming ``references`` before any model run.
    """
    if isinstance(references, str):
        if references not in PRESETS:
            raise ValueError(f"references: expected an array, an iterable of arrays or one of "
                             f"{list(PRESETS)}, got {references!r}")
        return ReferenceDraw(uniform_key=int(rng.integers(2**63)))
    expected = f"[M, {', '.join(map(str, shape))}] or {list(shape)}"
    if isinstance(references, np.ndarray | numbers.Number):
        table = check_array("references", references, None, batched=False)
        if table.shape == shape:
            table = table[None]
        elif table.shape[1:] != shape or table.ndim != len(shape) + 1:
            raise ValueError(f"references: expected an array of shape {expected} (the "
                             f"input's shape), got shape {table.shape}")
        return ReferenceDraw(table=table, index=rng.integers(0, len(table), nsamples))
    if not isinstance(references, Iterable):
        raise TypeError(f"references: expected an array, an iterable of arrays or one of "
                        f"{list(PRESETS)}, got {describe(references)}")
    chosen = np.empty((nsamples, *shape), dtype=work)
    seen = 0
    for j, item in enumerate(references):
        batch = check_array(f"references[{j}]", item, None, batched=False)
        if batch.shape == shape:
            batch = batch[None]
        elif batch.shape[1:] != shape or batch.ndim != len(shape) + 1:
            raise ValueError(f"references[{j}]: expected a reference of shape {list(shape)} or "
                             f"a batch [b, {', '.join(map(str, shape))}], got shape "
                             f"{batch.shape}")
        b = len(batch)
        # Each sample's reservoir takes an item of this batch with probability
        # b / (seen + b), then a uniform one of its b items.
        take = rng.random(nsamples) < b / (seen + b)
        pick = rng.integers(0, b, nsamples)
        chosen[take] = batch[pick[take]]
        seen += b
    if seen == 0:
        raise ValueError("references: expected at least one reference, got an empty iterable")
    return ReferenceDraw(table=chosen, index=np.arange(nsamples))


class ExpectedGradients(TF1Saliency):
    """Expected Gradients: Integrated Gradients averaged over baselines drawn from data.

    ``phi(x) = E_{r ~ D, a ~ U(0, 1)} [(x - r) * d y / d x (r + a (x - r))]``,
    estimated with ``nsamples`` draws of a reference ``r`` (uniformly, with
    replacement, from ``references``) and a point ``a`` on the straight path:
    Erion, Janizek, Sturmfels, Lundberg and Lee, "Improving performance of
    deep learning models with axiomatic attribution priors and expected
    gradients", Nature Machine Intelligence 2021 (arXiv:1906.10670). With
    ``stdev > 0`` it is GradientSHAP (Lundberg and Lee, "A Unified Approach to
    Interpreting Model Predictions", NeurIPS 2017; captum's variant): the input
    gets Gaussian noise ``x~ = x + N(0, stdev^2)`` per sample, and ``x~``
    replaces ``x`` above.

    Completeness holds in expectation: ``E[sum(mask)] = f(x) - E_r[f(r)]``
    (with noise, ``E[f(x~)] - E_r[f(r)]``); the estimate's error shrinks like
    ``1 / sqrt(nsamples)``.

    All samples of all inputs form one stream of gradient rows, ``batch_size``
    rows per ``session.run`` (built while the previous batch runs). The
    random draws (references, path points, noise) depend only on ``seed`` and
    the sample number, so the mask does not depend on ``batch_size``, and the
    inputs of ``GetMaskBatch`` share them (common random numbers): the batch
    equals the stacked ``GetMask`` calls with the same seed. Only the input
    gradient is asked of the backend, so the class runs over the core API too.

    Example::

        eg = ExpectedGradients(graph, session, logits[:, 3], x)
        mask = eg.GetMask(image, references=train_images, nsamples=200, seed=0)
        shap = eg.GetMask(image, references=iter(batches), stdev=0.1, seed=0)  # GradientSHAP
    """

    #: Gradient rows per ``session.run`` by default.
    default_batch_size = 32

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        *,
        references: Any,
        nsamples: int = 50,
        stdev: float = 0.0,
        seed: int | np.random.Generator | None = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the Expected Gradients mask of one input, shape ``x_value.shape``.

        Args:
          x_value: one input, not batched.
          feed_dict: values for the graph's other placeholders; never modified.
          references: the baselines' distribution: an array ``[M, ...]`` of
            references (or one reference of the input's shape); an iterable of
            references or of batches ``[b, ...]`` of them (a generator over a
            data set: read once, keeping only ``nsamples`` references); or
            ``"uniform"``: each reference uniform noise in
            ``[min(x_value), max(x_value)]`` (the "uniform baseline" of
            Sturmfels, Lundberg and Lee, Distill 2020), for when no data is at hand.
          nsamples: number of (reference, path point[, noise]) samples.
          stdev: standard deviation of the Gaussian noise added to the input
            per sample (GradientSHAP); 0 for Expected Gradients.
          seed: ``None`` (drawn from NumPy's global state), an int or a
            ``np.random.Generator``; the same seed gives the same mask.
          batch_size: most gradient rows per ``session.run``.
          progress: show a progress bar (``None``: for long runs on a terminal).
        """
        return super().GetMask(x_value, feed_dict, batch_size=batch_size, references=references,
                               nsamples=nsamples, stdev=stdev, seed=seed, progress=progress)

    def GetMaskBatch(
        self,
        x_batch: Any,
        feed_dict: dict | None = None,
        *,
        references: Any,
        nsamples: int = 50,
        stdev: float = 0.0,
        seed: int | np.random.Generator | None = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns one mask per input of ``x_batch``; all samples share one stream of batches.

        Every input uses the same draws (references, path points, noise), so
        the result equals stacking :meth:`GetMask` of each input with the same
        seed. Arguments as in :meth:`GetMask`.
        """
        return super().GetMaskBatch(x_batch, feed_dict, batch_size=batch_size,
                                    references=references, nsamples=nsamples, stdev=stdev,
                                    seed=seed, progress=progress)

    def GetSmoothedMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        batch_size: int | None = None,
        references: Any,
        **kwargs: Any,
    ) -> np.ndarray:
        """SmoothGrad of Expected Gradients (see :meth:`TF1Saliency.GetSmoothedMask`).

        ``nsamples`` and ``seed`` are the smoothing's: each noisy copy gets
        Expected Gradients with its default number of samples, and its draws
        come from a stream derived from ``seed`` (shared by the copies), so
        the same seed gives the same mask. ``references`` and the other
        keyword arguments are as in :meth:`GetMask`.
        """
        seed = check_seed("seed", seed)
        if isinstance(seed, np.random.Generator):
            derived: Any = int(seed.integers(2**63))
        elif seed is None:
            derived = None
        else:
            derived = [seed, 1]  # a stream independent of the smoothing noise's default_rng(seed)
        return super().GetSmoothedMask(x_value, feed_dict, stdev_spread, nsamples, magnitude,
                                       seed=seed, batch_size=batch_size, references=references,
                                       _sample_seed=derived, **kwargs)

    # -- checks and kernel -----------------------------------------------------------

    def _check_args(self, xs, call, references, nsamples=50, stdev=0.0, seed=None,
                    progress=None, _sample_seed=None, **kwargs):
        check_no_extra(f"ExpectedGradients.{call}", kwargs)
        nsamples = check_positive_int("nsamples", nsamples)
        stdev = check_finite_number("stdev", stdev, minimum=0.0)
        seed = check_seed("seed", seed)
        if call == "GetSmoothedMask":
            seed = _sample_seed
        rng = (np.random.default_rng(seed) if isinstance(seed, list) else generator(seed))
        work = np.result_type(xs.dtype, np.float32)
        draws = draw_references(references, xs.shape[1:], nsamples, rng, work)
        alphas = rng.random(nsamples)
        noise_key = int(rng.integers(0, 1 << KEY_BITS)) if stdev > 0 else None
        args = {"draws": draws, "alphas": alphas, "stdev": stdev, "noise_key": noise_key,
                "progress": progress}
        return args, nsamples

    def _masks(self, inputs, sources, feed, batch_size, draws, alphas, stdev, noise_key,
               progress):
        work = np.result_type(inputs.dtype, np.float32)
        inputs = inputs.astype(work, copy=False)
        n_samples = len(alphas)
        shape = inputs.shape[1:]
        expand = (slice(None),) + (None,) * len(shape)

        size = int(np.prod(shape, dtype=np.int64))
        scale = work.type(stdev)
        nodes = alphas.astype(work)
        # The weights (x - r) / n of two chunks live at once (see integrate_paths):
        # two buffers, used alternately.
        rows_per_chunk = min(batch_size, len(inputs) * n_samples)
        weight_buffers = itertools.cycle(
            [np.empty((rows_per_chunk, *shape), work) for _ in range(2)])

        def fill_rows(i, k, out):
            diffs = next(weight_buffers)[: len(i)]
            chunk_runs = runs(i)  # one input, consecutive samples: k[a:b] is a range
            if noise_key is None:
                for a, b in chunk_runs:
                    out[a:b] = inputs[i[a]]
            else:  # x + stdev * z_k
                flat = out.reshape(len(i), size)
                for a, b in chunk_runs:
                    standard_normal(noise_key, int(k[a]), int(b - a), size, work, out=flat[a:b])
                out *= scale
                for a, b in chunk_runs:
                    out[a:b] += inputs[i[a]]
            refs = draws.rows(k, out, work)
            np.subtract(out, refs, out=diffs)
            np.multiply(diffs, nodes[k][expand], out=out)
            out += refs
            diffs /= work.type(n_samples)
            return diffs

        sums, _ = integrate_paths(self.backend, len(inputs), n_samples, fill_rows, feed, sources,
                                  batch_size, row_shape=shape, dtype=work, progress=progress,
                                  desc="ExpectedGradients")
        return sums.astype(work, copy=False)

