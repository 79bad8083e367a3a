"""Runs over a data set on Apache Beam's DirectRunner, against in-process masks.

A small CNN is exported as a v1 SavedModel; ~200 generated shape images are
written as PNGs, plus a truncated PNG and one of the wrong size. The pipeline
(in-process, and multi_processing with 2 workers) must give, for every good
image, the masks that ``GetMaskBatch`` gives in this process on the live graph
for the predicted class, load the model once per worker, send the two bad
images to the dead letter with their reasons while every other output is
written, and skip everything on a second run. The single-machine run (no
Beam) must give the same numbers.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

beam = pytest.importorskip("apache_beam")
Image = pytest.importorskip("PIL.Image")

from apache_beam.testing.util import assert_that  # noqa: E402

from saliency_tf1.beam import Explain, explain_with_beam  # noqa: E402
from saliency_tf1.cli import main  # noqa: E402
from saliency_tf1.datasets import make_shapes  # noqa: E402
from saliency_tf1.demo import build_cnn  # noqa: E402
from saliency_tf1.methods.grad_cam import GradCam  # noqa: E402
from saliency_tf1.methods.gradient import GradientSaliency  # noqa: E402
from saliency_tf1.methods.integrated_gradients import IntegratedGradients  # noqa: E402
from saliency_tf1.streaming import (  # noqa: E402
    Explanation,
    Failure,
    ModelSpec,
    expand_inputs,
    explain_to_dir,
    file_name,
    read_manifest,
)
from saliency_tf1.target import ClassTarget  # noqa: E402

v1 = tf.compat.v1
SIZE, CLASSES, N_GOOD, BATCH = 16, 4, 198, 16
METHODS = {"gradient": {}, "ig": {"x_steps": 8}, "gradcam": {}, "smoothgrad": {"nsamples": 3}}


@pytest.fixture(autouse=True)
def beam_temp_dir(tmp_path, monkeypatch):
    """Beam's runners leave empty folders in the temp dir (``beam-temp*``, a requirements
    cache, staging dirs): here they go under the test's tmp_path."""
    temp = tmp_path / "beam_tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))  # the multi_processing workers'


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The SavedModel, the image paths (good ones first), and the in-process masks."""
    root = tmp_path_factory.mktemp("beam")
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        net = build_cnn(x, CLASSES, seed=4, widths=(4, 8))
        logits = tf.identity(net["logits"], name="logits")
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(root / "model"))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "serving_default": v1.saved_model.predict_signature_def({"images": x},
                                                                    {"scores": logits})})
        builder.save()
        target = ClassTarget(logits)
        grad = GradientSaliency(graph, session, target.y, x)
        ig = IntegratedGradients(graph, session, target.y, x)
        cam = GradCam(graph, session, target.y, x, net["conv"])
    shapes = make_shapes(N_GOOD, size=SIZE, seed=5)
    pixels = np.round(shapes.images * 255).astype(np.uint8)
    (root / "images" / "sub").mkdir(parents=True)
    paths = []
    for i, img in enumerate(pixels):  # some in a subfolder: a folder input is read at all levels
        path = root / "images" / ("sub" if i % 3 == 0 else "") / f"shape{i:03d}.png"
        Image.fromarray(img).save(path)
        paths.append(str(path))
    corrupt = root / "images" / "corrupt.png"
    corrupt.write_bytes(Path(paths[1]).read_bytes()[:120])  # a header, then nothing
    big = root / "images" / "big.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(big)

    # The oracle: this process, the live graph, GetMaskBatch for the predicted classes.
    xs = pixels.astype(np.float32) / np.float32(255)
    out = session.run(logits, {x: xs}).astype(np.float64)
    probs = np.exp(out - out.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    classes = out.argmax(1)
    feed = target.feed(classes)
    expected = {
        "gradient": grad.GetMaskBatch(xs, feed, batch_size=BATCH),
        "ig": ig.GetMaskBatch(xs, feed, x_steps=8, batch_size=BATCH),
        "gradcam": cam.GetMaskBatch(xs, feed, batch_size=BATCH),
        "smoothgrad": np.stack([grad.GetSmoothedMask(xv, target.feed(int(c)), nsamples=3,
                                                     seed=0)
                                for xv, c in zip(xs, classes)]),
    }
    session.close()
    spec = ModelSpec(str(root / "model"), "images", "scores", conv_tensor=net["conv"].name)
    return {"root": root, "spec": spec, "paths": paths, "bad": [str(corrupt), str(big)],
            "classes": classes, "probs": probs, "expected": expected}


def _check_run(data, out: Path, inputs: list[str]) -> dict[str, dict]:
    """Checks a run's folder against the oracle; returns its records by key."""
    records = {r["key"]: r for r in read_manifest(out)}
    assert sorted(records) == sorted(inputs)
    corrupt, big = data["bad"]
    assert records[corrupt]["error"].startswith(f"{corrupt}: cannot read this image")
    assert "20x24" in records[big]["error"] and f"{SIZE}x{SIZE}" in records[big]["error"]
    for key in data["bad"]:
        assert records[key]["masks"] == {} and records[key]["method"] is None
        assert not (out / "masks" / f"{file_name(key)}.npz").exists()
    for i, path in enumerate(data["paths"]):
        r = records[path]
        assert r["error"] is None
        assert r["prediction"] == r["explained_class"] == data["classes"][i]
        assert r["score"] == pytest.approx(data["probs"][i, data["classes"][i]], abs=1e-6)
        assert set(r["masks"]) == set(METHODS) and set(r["seconds"]) == set(METHODS)
        with np.load(out / r["masks"]["gradient"]) as npz:
            np.testing.assert_array_equal(npz["image"], np.asarray(Image.open(path)))
            for name in METHODS:
                np.testing.assert_allclose(npz[name], data["expected"][name][i], rtol=1e-5,
                                           atol=1e-7, err_msg=f"{name} of {path}")
    return records


def test_direct_runner_equals_in_process_with_dead_letter_and_resume(data, tmp_path):
    inputs = [str(data["root"] / "images")]  # a folder: all levels, sorted
    paths = sorted(data["paths"] + data["bad"])
    out = tmp_path / "run"
    summary = explain_with_beam(paths, data["spec"], METHODS, out, batch_size=BATCH)
    assert summary.model_loads == 1  # one in-process worker: setup once
    assert summary.batches >= -(-(N_GOOD + 2) // BATCH)  # BatchElements: at most BATCH each
    assert (summary.explained, summary.failed, summary.skipped) == (N_GOOD, 2, 0)
    _check_run(data, out, paths)

    # A second run does nothing: no pipeline, no file rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = explain_with_beam(paths, data["spec"], METHODS, out, batch_size=BATCH)
    assert (again.explained, again.failed, again.skipped, again.total) == (0, 0, N_GOOD + 2,
                                                                          N_GOOD + 2)
    assert again.model_loads is None
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
            and p.name != "manifest.jsonl"} == {p: t for p, t in stamps.items()
                                                 if p.name != "manifest.jsonl"}

    # The single-machine run (no Beam) from the folder: the same records and masks.
    local = tmp_path / "local"
    done = explain_to_dir(expand_inputs(inputs), data["spec"], METHODS, local,
                          batch_size=BATCH)
    assert (done.explained, done.failed) == (N_GOOD, 2)
    beam_records = {r["key"]: r for r in read_manifest(out)}
    for r in read_manifest(local):
        b = beam_records[r["key"]]
        assert (r["prediction"], r["error"], r["masks"]) == (b["prediction"], b["error"],
                                                             b["masks"])
    _check_run(data, local, paths)


def test_multi_processing_two_workers(data, tmp_path):
    paths = data["paths"] + data["bad"]
    out = tmp_path / "run"
    summary = explain_with_beam(
        paths, data["spec"], METHODS, out, batch_size=BATCH,
        options=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert 1 <= summary.model_loads <= 2  # at most once per worker process
    assert (summary.explained, summary.failed) == (N_GOOD, 2)
    _check_run(data, out, paths)


def test_explain_transform_keyed_arrays_and_dead_letter(data, tmp_path):
    rng = np.random.default_rng(0)
    good = rng.uniform(0, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    nan = good[0].copy()
    nan[3, 4, 1] = np.nan
    huge = np.full((SIZE, SIZE, 3), 3e38, np.float32)  # the logits overflow: not finite
    elements = [("a", good[0]), ("nan", nan), ("b", good[1]), ("small", good[0][:8]),
                ("huge", huge), ("c", good[2]), 42, ("file", data["paths"][0])]

    def check_ok(found):
        keys = sorted(k for k, _ in found)
        assert keys == ["a", "b", "c", "file"], keys
        for key, e in found:
            assert isinstance(e, Explanation) and e.key == key
            assert set(e.masks) == {"gradient", "ig"} and e.masks["ig"].shape == (SIZE, SIZE, 3)
            assert set(e.metrics["ig"]) == {"deletion_auc", "insertion_auc"}
            assert e.input is None if key == "file" else np.array_equal(e.input, good["abc".index(
                key)])

    def check_dead(found):
        reasons = {k: f.reason for k, f in found}
        assert all(isinstance(f, Failure) for _, f in found)
        assert sorted(reasons) == ["42", "huge", "nan", "small"], reasons
        assert "NaN" in reasons["nan"]
        assert f"[{SIZE}, {SIZE}, 3]" in reasons["small"] and "(8, 16, 3)" in reasons["small"]
        assert "not finite" in reasons["huge"]
        assert "expected an image path" in reasons["42"]

    with beam.Pipeline() as p:
        out = (p | beam.Create(elements)
               | Explain(data["spec"], {"gradient": {}, "ig": {"x_steps": 4}}, batch_size=8,
                         metrics=("deletion", "insertion"), metric_steps=4))
        assert_that(out.explanations, check_ok, label="explanations")
        assert_that(out.dead_letter, check_dead, label="dead letter")


def test_explain_checks_its_arguments_when_built(data):
    with pytest.raises(ValueError, match="unknown name 'nosuch'"):
        Explain(data["spec"], ["nosuch"])
    spec_no_conv = ModelSpec(data["spec"].path, "images", "scores")
    with pytest.raises(ValueError, match="'gradcam' needs conv_tensor="):
        Explain(spec_no_conv, ["gradcam"])
    with pytest.raises(ValueError, match="batch_size is the run's"):
        Explain(data["spec"], {"ig": {"batch_size": 4}})
    with pytest.raises(TypeError, match="batch_size: expected a positive integer"):
        Explain(data["spec"], ["gradient"], batch_size=0.5)
    with pytest.raises(ValueError, match="metrics: expected names from"):
        Explain(data["spec"], ["gradient"], metrics=["sic"])
    with pytest.raises(TypeError, match="input_tensor: expected a non-empty str"):
        ModelSpec(data["spec"].path, "", "scores")


def test_command_line_runner(data, tmp_path, capsys):
    out = tmp_path / "cli"
    listing = tmp_path / "inputs.txt"
    listing.write_text("\n".join(["# two good, one bad", *data["paths"][:2], data["bad"][1]]))
    argv = ["explain", data["spec"].path, "--input-tensor", "images", "--output-tensor",
            "scores", "--conv-tensor", data["spec"].conv_tensor, "--method", "gradient,gradcam",
            f"@{listing}", data["paths"][5], "--out", str(out), "--runner", "DirectRunner",
            "--batch-size", "2", "-q"]
    code = main(argv)
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "explained 3 inputs, 1 failed, 0 done before (DirectRunner (Beam))" in stdout
    assert "big.png" in stderr and "20x24" in stderr
    records = {r["key"]: r for r in read_manifest(out)}
    for i in (0, 1, 5):
        with np.load(out / records[data["paths"][i]]["masks"]["gradient"]) as npz:
            np.testing.assert_allclose(npz["gradcam"], data["expected"]["gradcam"][i],
                                       rtol=1e-5, atol=1e-7)
    # Beam's own options pass through as --name=value; a second run skips all four.
    with pytest.raises(SystemExit) as info:
        main([*argv, "--type_check_strictness", "ALL_REQUIRED"])
    assert info.value.code == 2
    assert "Beam pipeline options go as --name=value" in capsys.readouterr().err
    code = main([*argv, "--direct_num_workers=1", "--type_check_strictness=ALL_REQUIRED"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "explained 0 inputs, 0 failed, 4 done before" in stdout
    assert json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["key"]
    assert os.path.isfile(out / "records" / f"{file_name(data['paths'][5])}.json")
