"""Explaining a data set on Apache Beam: locally (DirectRunner) or on Dataflow, Flink, Spark.

Needs the ``beam`` extra (``pip install 'saliency_tf1[beam]'``). The same
worker as the single-machine run (:class:`~saliency_tf1.streaming.BatchExplainer`)
runs inside a ``DoFn``: it loads the model once per worker (``setup``), gets
its inputs in batches (``beam.BatchElements``, at most ``batch_size``), and
runs each batch through the same batched calls as in-process code, so the
masks are the same. A bad input (an unreadable file, the wrong size, NaN
values, a method that raises on it) goes to the ``dead_letter`` output with
its reason; it never fails the pipeline or the other inputs::

    import apache_beam as beam
    from saliency_tf1.beam import Explain
    from saliency_tf1.streaming import ModelSpec

    model = ModelSpec("export/1", input_tensor="images", output_tensor="logits",
                      conv_tensor="block4/Relu:0")
    with beam.Pipeline() as p:
        out = (p | beam.Create(paths)
                 | Explain(model, {"ig": {"x_steps": 32}, "gradcam": {}}, batch_size=32))
        out.explanations | beam.Map(print)      # (key, Explanation)
        out.dead_letter | beam.Map(print)       # (key, Failure)

:func:`explain_with_beam` is the whole run: it skips inputs an earlier run
did, runs the pipeline, and writes each input's masks and the manifest
(:class:`~saliency_tf1.streaming.RunWriter`); ``saliency-tf1 explain --runner``
calls it.

The output folder must be a path every worker can write: the local disk for
the DirectRunner, a shared file system for a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

try:
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError(
        "saliency_tf1.beam needs Apache Beam: pip install 'saliency_tf1[beam]' (or "
        f"pip install apache-beam); import failed: {err}") from err

from .engine.checks import check_positive_int
from .streaming import (
    BatchExplainer,
    Explanation,
    Failure,
    ModelSpec,
    RunSummary,
    RunWriter,
)

#: The tags of :class:`Explain`'s two outputs.
EXPLANATIONS, DEAD_LETTER = "explanations", "dead_letter"

#: The namespace of the pipeline metrics (``model_loads``, ``batches``, ``inputs``,
#: ``failures`` counters and the ``batch_size`` distribution).
METRICS_NAMESPACE = "saliency_tf1"


class _ExplainDoFn(beam.DoFn):
    """Explains batches of inputs; the model loads in ``setup``, once per DoFn instance."""

    def __init__(self, explainer: BatchExplainer) -> None:
        # Plain values only: a graph or session does not pickle.
        self._explainer = explainer
        self._loads = 0
        self._loads_counter = Metrics.counter(METRICS_NAMESPACE, "model_loads")
        self._batches = Metrics.counter(METRICS_NAMESPACE, "batches")
        self._inputs = Metrics.counter(METRICS_NAMESPACE, "inputs")
        self._failures = Metrics.counter(METRICS_NAMESPACE, "failures")
        self._batch_size = Metrics.distribution(METRICS_NAMESPACE, "batch_size")

    def setup(self) -> None:
        self._explainer.setup()
        self._loads += 1

    def process(self, batch: Sequence[Any]) -> Iterable[Any]:
        if self._loads:  # Beam's metrics count only inside a bundle: report the loads here
            self._loads_counter.inc(self._loads)
            self._loads = 0
        self._batches.inc()
        self._inputs.inc(len(batch))
        self._batch_size.update(len(batch))
        for result in self._explainer.explain(batch):
            if isinstance(result, Failure):
                self._failures.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, (result.key, result))
            else:
                yield result.key, result

    def teardown(self) -> None:
        self._explainer.close()


class Explain(beam.PTransform):
    """Explains a PCollection of inputs: ``(key, Explanation)`` out, ``(key, Failure)`` to the
    dead letter.

    Args:
      model: a :class:`~saliency_tf1.streaming.ModelSpec` (what ``load_model``
        takes: the path, tensor names, conv tensor, feeds, guard options; and
        the image preprocessing), or its keyword arguments.
      methods: catalogue names (``saliency_tf1.METHODS``) with their
        arguments: ``["gradient", "ig"]`` or ``{"ig": {"x_steps": 32}}``.
      batch_size: most inputs per batch (``BatchElements``) and most rows per
        ``session.run``.
      metrics: ``("deletion", "insertion")`` to score each mask (RISE's areas
        under the curves, batched), or none.
      metric_steps: points on each deletion/insertion curve.
      class_names: names of the classes (an explanation's ``label``).
      keep_inputs: keep the pixels (or array) of each input in its explanation.
      min_batch_size: the smallest batch ``BatchElements`` forms while a bundle
        lasts (default: ``batch_size``, fixed batches; lower lets Beam adapt
        the size to the time a batch takes).

    The input PCollection holds image paths (each its own key), or
    ``(key, value)`` pairs whose value is an image path or a numpy array fed
    to the model as it is. Applying the transform returns a
    ``DoOutputsTuple``: ``.explanations`` (the main output) and ``.dead_letter``.
    The model is loaded on the workers, in ``setup``; bad arguments (an
    unknown method, a bad option) raise here, when the transform is built.
    """

    def __init__(self, model: ModelSpec | Mapping[str, Any], methods: Any, *,
                 batch_size: int = 32, metrics: Any = (), metric_steps: int = 20,
                 class_names: Sequence[str] | None = None, keep_inputs: bool = True,
                 min_batch_size: int | None = None, label: str | None = None) -> None:
        super().__init__(label)
        self.explainer = BatchExplainer(model, methods, batch_size=batch_size, metrics=metrics,
                                        metric_steps=metric_steps, class_names=class_names,
                                        keep_inputs=keep_inputs)
        self.min_batch_size = (self.explainer.batch_size if min_batch_size is None
                               else check_positive_int("min_batch_size", min_batch_size))
        if self.min_batch_size > self.explainer.batch_size:
            raise ValueError(f"min_batch_size: expected at most batch_size "
                             f"({self.explainer.batch_size}), got {self.min_batch_size}")

    def expand(self, inputs: Any) -> Any:
        return (inputs
                | "Batch" >> beam.BatchElements(min_batch_size=self.min_batch_size,
                                                max_batch_size=self.explainer.batch_size)
                | "Explain" >> beam.ParDo(_ExplainDoFn(self.explainer)).with_outputs(
                    DEAD_LETTER, main=EXPLANATIONS))


class _WriteDoFn(beam.DoFn):
    def __init__(self, out_dir: str) -> None:
        self._out_dir = out_dir

    def setup(self) -> None:
        self._writer = RunWriter(self._out_dir)

    def process(self, element: tuple[str, Explanation | Failure]) -> Iterable[dict[str, Any]]:
        yield self._writer.write(element[1])


class WriteRun(beam.PTransform):
    """Writes ``(key, Explanation | Failure)`` elements to a run's folder; yields their records.

    Each input gets ``OUT/masks/<name>.npz`` (when explained) and its record
    ``OUT/records/<name>.json`` (:class:`~saliency_tf1.streaming.RunWriter`);
    :func:`explain_with_beam` gathers the records into ``OUT/manifest.jsonl``
    when the pipeline is done.
    """

    def __init__(self, out_dir: str | os.PathLike, label: str | None = None) -> None:
        super().__init__(label)
        self.out_dir = RunWriter(out_dir).out_dir

    def expand(self, results: Any) -> Any:
        return results | "Write" >> beam.ParDo(_WriteDoFn(self.out_dir))


def pipeline_options(options: PipelineOptions | Sequence[str] | Mapping[str, Any] | None = None
                     ) -> PipelineOptions:
    """Beam pipeline options from flags (``["--runner=DirectRunner", ...]``), a dict, or None
    (the DirectRunner, in this process)."""
    if options is None:
        return PipelineOptions([])
    if isinstance(options, PipelineOptions):
        return options
    if isinstance(options, Mapping):
        return PipelineOptions(**options)
    if isinstance(options, str) or not all(isinstance(o, str) for o in options):
        raise TypeError(f"options: expected PipelineOptions, a list of flags or a dict, got "
                        f"{options!r}")
    return PipelineOptions(list(options))


def _counter(result: Any, name: str) -> int | None:
    try:
        found = result.metrics().query(beam.metrics.MetricsFilter()
                                       .with_namespace(METRICS_NAMESPACE).with_name(name))
    except Exception:  # a runner without metrics
        return None
    values = [c.committed if c.committed is not None else c.attempted
              for c in found["counters"]]
    return int(sum(values)) if values else 0


def explain_with_beam(
    inputs: Iterable[Any],
    model: ModelSpec | Mapping[str, Any],
    methods: Any,
    out_dir: str | os.PathLike,
    *,
    options: PipelineOptions | Sequence[str] | Mapping[str, Any] | None = None,
    batch_size: int = 32,
    metrics: Any = (),
    metric_steps: int = 20,
    class_names: Sequence[str] | None = None,
    retry_failed: bool = False,
) -> RunSummary:
    """Explains many inputs on Apache Beam and writes the run's folder; resumable.

    Inputs that already have a record in ``out_dir`` are left out before the
    pipeline starts (failed ones too, unless ``retry_failed``); with nothing
    left, no pipeline runs. The pipeline is ``Create(inputs) | Explain(...)``,
    both outputs flattened into :class:`WriteRun`; when it is done the records
    are gathered into ``out_dir/manifest.jsonl``. Arguments as for
    :class:`Explain`; ``options``: the pipeline's options (default: the
    DirectRunner), e.g. ``["--direct_num_workers=2",
    "--direct_running_mode=multi_processing"]``.

    Returns a :class:`~saliency_tf1.streaming.RunSummary` with the pipeline's
    ``model_loads`` and ``batches`` counters.
    """
    writer = RunWriter(out_dir)
    transform = Explain(model, methods, batch_size=batch_size, metrics=metrics,
                        metric_steps=metric_steps, class_names=class_names)
    opts = pipeline_options(options)
    todo, skipped = writer.pending(inputs, retry_failed=retry_failed)
    explained = failed = 0
    loads = batches = None
    if todo:
        pipeline = beam.Pipeline(options=opts)
        out = (pipeline
               | "Inputs" >> beam.Create(todo)
               | "Explain" >> transform)
        records = ((out[EXPLANATIONS], out[DEAD_LETTER]) | "Results" >> beam.Flatten()
                   | "WriteRun" >> WriteRun(writer.out_dir))
        del records
        result = pipeline.run()
        result.wait_until_finish()
        loads, batches = _counter(result, "model_loads"), _counter(result, "batches")
        failed = _counter(result, "failures") or 0
        explained = (_counter(result, "inputs") or 0) - failed
    total = writer.write_manifest()
    return RunSummary(writer.out_dir, writer.manifest_path, explained, failed, skipped, total,
                      model_loads=loads, batches=batches)
