"""The ``saliency-tf1`` command: end to end on exported models, and its error paths.

A small random CNN (``saliency_tf1.demo.build_cnn``) is exported as a frozen
graph and as a v1 SavedModel; PNGs are written by the test. ``explain`` must
write one figure and one ``.npy`` per method for each image, print the class
the live graph predicts (with its softmax probability), and its masks must be
the masks the live graph gives for the same pixels and class. Each user error
exits with status 1 and one ``saliency-tf1: error:`` message, no traceback;
usage errors exit with 2.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.catalogue import available_methods
from saliency_tf1.cli import (
    DEFAULT_METHODS,
    _output_names,
    _stderr_captured,
    load_image,
    main,
    parse_methods,
    to_model_input,
)
from saliency_tf1.demo import build_cnn
from saliency_tf1.methods.grad_cam import GradCam
from saliency_tf1.methods.gradient import GradientSaliency
from saliency_tf1.streaming import read_manifest
from saliency_tf1.target import ClassTarget

Image = pytest.importorskip("PIL.Image")
v1 = tf.compat.v1

SIZE, CLASSES = 16, 4
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Exported:
    root: Path
    frozen: str
    saved_model: str
    conv: str
    images: list[str]  # PNGs of SIZE x SIZE
    pixels: list[np.ndarray]  # their uint8 pixels
    live: dict  # graph, session, x, logits, conv, target


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        net = build_cnn(x, CLASSES, seed=2, widths=(4, 8))
        logits = tf.identity(net["logits"], name="logits")
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(root / "saved_model"))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "serving_default": v1.saved_model.predict_signature_def({"images": x},
                                                                    {"scores": logits})})
        builder.save()
        frozen = v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), ["logits"])
        (root / "model.pb").write_bytes(frozen.SerializeToString())
        target = ClassTarget(logits)
    rng = np.random.default_rng(0)
    paths, pixels = [], []
    for i in range(2):
        img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        path = root / f"image{i}.png"
        Image.fromarray(img).save(path)
        paths.append(str(path))
        pixels.append(img)
    live = {"graph": graph, "session": session, "x": x, "logits": logits,
            "conv": net["conv"], "target": target}
    yield Exported(root, str(root / "model.pb"), str(root / "saved_model"), net["conv"].name,
                   paths, pixels, live)
    session.close()


def _live_prediction(ex: Exported, x_value: np.ndarray) -> tuple[int, np.ndarray]:
    logits = ex.live["session"].run(ex.live["logits"], {ex.live["x"]: x_value[None]})[0]
    probs = np.exp(logits - logits.max())
    return int(np.argmax(logits)), probs / probs.sum()


def _live_mask(ex: Exported, cls, x_value: np.ndarray, name: str) -> np.ndarray:
    live = ex.live
    with live["graph"].as_default():
        if name == "gradcam":
            method = GradCam(live["graph"], live["session"], live["target"].y, live["x"],
                             live["conv"])
        else:
            method = GradientSaliency(live["graph"], live["session"], live["target"].y,
                                      live["x"])
    return method.GetMask(x_value, live["target"].feed(cls))


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _printed(out: str) -> dict[str, tuple[int, float]]:
    """``{image path: (predicted class, probability)}`` from explain's stdout."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"(.+): predicted class (\d+) \(p=([0-9.]+)\)", line)
        if m:
            found[m.group(1)] = (int(m.group(2)), float(m.group(3)))
    return found


def test_explain_frozen_graph_writes_masks_figures_and_prints_the_class(exported, tmp_path,
                                                                        capsys):
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        ["explain", exported.frozen, "--input-tensor", "x", "--output-tensor", "logits",
         "--conv-tensor", exported.conv, "--method", "gradient,gradcam", "--quiet",
         *exported.images, "--out", out], capsys)
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == sorted(
        f"image{i}{suffix}" for i in range(2)
        for suffix in (".png", "_gradient.npy", "_gradcam.npy"))
    printed = _printed(stdout)
    for path, pixels in zip(exported.images, exported.pixels):
        x_value = pixels.astype(np.float32) / 255  # the default scale: [0, 1]
        cls, probs = _live_prediction(exported, x_value)
        assert printed[path][0] == cls
        assert printed[path][1] == pytest.approx(probs[cls], abs=6e-4)
        stem = Path(path).stem
        for name in ("gradient", "gradcam"):
            np.testing.assert_allclose(np.load(out / f"{stem}_{name}.npy"),
                                       _live_mask(exported, cls, x_value, name),
                                       rtol=1e-4, atol=1e-6)
        with Image.open(out / f"{stem}.png") as png:
            assert png.format == "PNG"
            assert png.width > 2 * png.height  # input + two panels in one row


def test_explain_saved_model_by_signature_keys_with_class_and_scale(exported, tmp_path,
                                                                   capsys):
    out = tmp_path / "out"
    image = exported.images[0]
    code, stdout, stderr = _run(
        ["explain", exported.saved_model, "--input-tensor", "images", "--output-tensor",
         "scores", "--class", 3, "--scale", 2, "--offset", -1, "--method", "gradient", "-q",
         image, "--out", out], capsys)
    assert code == 0, stderr
    x_value = exported.pixels[0].astype(np.float32) / 255 * 2 - 1
    cls, probs = _live_prediction(exported, x_value)
    assert _printed(stdout)[image][0] == cls
    assert f"explained class 3 (p={probs[3]:.3f})" in stdout
    np.testing.assert_allclose(np.load(out / "image0_gradient.npy"),
                               _live_mask(exported, 3, x_value, "gradient"),
                               rtol=1e-4, atol=1e-6)
    assert (out / "image0.png").is_file()


def test_explain_default_and_all_methods(exported, tmp_path, capsys):
    out = tmp_path / "default"
    code, _, stderr = _run(["explain", exported.frozen, "--input-tensor", "x",
                            "--output-tensor", "logits", "-q", exported.images[0],
                            "--out", out], capsys)
    assert code == 0, stderr
    without_conv = [n for n in DEFAULT_METHODS if n != "gradcam"]
    assert sorted(os.listdir(out)) == sorted(
        ["image0.png"] + [f"image0_{n}.npy" for n in without_conv])

    out = tmp_path / "all"
    code, _, stderr = _run(["explain", exported.frozen, "--input-tensor", "x",
                            "--output-tensor", "logits", "--conv-tensor", exported.conv,
                            "--method", "all", "-q", exported.images[0], "--out", out], capsys)
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == sorted(
        ["image0.png"] + [f"image0_{n}.npy" for n in available_methods()])
    for name in available_methods():
        mask = np.load(out / f"image0_{name}.npy")
        assert mask.shape[:2] == (SIZE, SIZE) and np.all(np.isfinite(mask)), name


def test_resize_flag_and_duplicate_names(exported, tmp_path, capsys):
    big = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [tmp_path / "a" / "cat.png", tmp_path / "b" / "cat.png"]
    for p in paths:
        Image.fromarray(big).save(p)
    out = tmp_path / "out"
    code, stdout, stderr = _run(["explain", exported.frozen, "--input-tensor", "x",
                                 "--output-tensor", "logits", "--method", "gradient", "--resize",
                                 "-q", *paths, "--out", out], capsys)
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == ["cat-2.png", "cat-2_gradient.npy", "cat.png",
                                       "cat_gradient.npy"]
    resized = np.asarray(Image.fromarray(big).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    cls, _ = _live_prediction(exported, resized.astype(np.float32) / 255)
    assert _printed(stdout)[str(paths[0])][0] == cls
    assert np.load(out / "cat_gradient.npy").shape == (SIZE, SIZE, 3)


# ---------------------------------------------------------------------------
# Errors


@pytest.fixture(scope="module")
def unsafe_model(tmp_path_factory):
    """A frozen graph whose output runs a WriteFile op into ``pwned`` (a control dependency)."""
    root = tmp_path_factory.mktemp("unsafe")
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="x")
        write = tf.io.write_file(str(root / "pwned"), "owned", name="exfiltrate")
        with tf.control_dependencies([write]):
            tf.identity(tf.reduce_mean(x, [1, 2]), name="logits")
    path = root / "evil.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path, root / "pwned"


def _error(code: int, stderr: str, *needles: str) -> None:
    assert code == 1, stderr
    assert stderr.startswith("saliency-tf1: error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


def test_missing_files(exported, tmp_path, capsys):
    base = ["explain", "--input-tensor", "x", "--output-tensor", "logits", "-q",
            "--out", tmp_path / "out"]
    code, _, err = _run([*base, tmp_path / "nope.pb", exported.images[0]], capsys)
    _error(code, err, "nope.pb", "not found")
    code, _, err = _run([*base, exported.frozen, tmp_path / "nope.png"], capsys)
    _error(code, err, "nope.png", "not found")
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    code, _, err = _run([*base, exported.frozen, not_an_image], capsys)
    _error(code, err, "notes.txt", "cannot read this image")
    code, _, err = _run([*base, not_an_image, exported.images[0]], capsys)
    _error(code, err, "notes.txt", "not a frozen")
    assert not (tmp_path / "out").exists()


def test_bad_tensor_names_list_the_candidates(exported, tmp_path, capsys):
    base = ["explain", exported.frozen, exported.images[0], "-q", "--out", tmp_path / "out"]
    code, _, err = _run([*base, "--input-tensor", "images", "--output-tensor", "logits"],
                        capsys)
    _error(code, err, "input tensor 'images'", f"x:0 float32 [None, {SIZE}, {SIZE}, 3]")
    code, _, err = _run([*base, "--input-tensor", "x", "--output-tensor", "logit"], capsys)
    _error(code, err, "output tensor 'logit'", f"logits:0 float32 [None, {CLASSES}]",
           "did you mean: 'logits'")
    code, _, err = _run([*base, "--input-tensor", "x", "--output-tensor", "logits",
                         "--conv-tensor", "no/such", "--method", "gradcam"], capsys)
    _error(code, err, "conv tensor 'no/such'", exported.conv)
    # A tensor that exists but is not logits [batch, classes].
    code, _, err = _run([*base, "--input-tensor", "x", "--output-tensor", exported.conv],
                        capsys)
    _error(code, err, "expected logits [batch, classes]")
    code, _, err = _run([*base, "--input-tensor", "x", "--output-tensor", "logits",
                         "--class", CLASSES], capsys)
    _error(code, err, f"--class {CLASSES}", f"{CLASSES} classes")


def test_wrong_image_size_names_both_sizes(exported, tmp_path, capsys):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(path)
    out = tmp_path / "out"
    # The wrong-sized image comes second: nothing is written for the first either.
    code, _, err = _run(["explain", exported.frozen, "--input-tensor", "x", "--output-tensor",
                         "logits", "-q", exported.images[0], path, "--out", out], capsys)
    _error(code, err, "big.png", "20x24", f"{SIZE}x{SIZE}", "--resize")
    assert not out.exists()


def test_unsafe_graph_is_refused_by_default(unsafe_model, tmp_path, capsys, exported):
    model, pwned = unsafe_model
    argv = ["explain", model, "--input-tensor", "x", "--output-tensor", "logits",
            "--method", "gradient", "-q", exported.images[0], "--out", tmp_path / "out"]
    code, _, err = _run(argv, capsys)
    _error(code, err, "refusing to load", "exfiltrate", "WriteFile", "--allow-unsafe-ops")
    assert not pwned.exists()
    # Positive control: the flag is passed on, and the graph really is malicious.
    code, out, err = _run([*argv, "--allow-unsafe-ops"], capsys)
    assert code == 0, err
    assert pwned.read_bytes() == b"owned"
    pwned.unlink()


def test_usage_errors_exit_2(exported, tmp_path, capsys):
    base = ["explain", exported.frozen, "--input-tensor", "x", "--output-tensor", "logits",
            exported.images[0], "--out", tmp_path / "out"]
    for extra, needle in [(["--method", "nosuch"], "unknown 'nosuch'"),
                          (["--method", "gradcam"], "needs --conv-tensor"),
                          (["--class", "-1"], "--class"),
                          (["--scale", "nan"], "--scale: expected a finite number, got 'nan'"),
                          (["--offset", "inf"], "--offset: expected a finite number"),
                          (["--scale", "two"], "--scale: expected a number")]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in base + extra])
        assert exit_info.value.code == 2
        assert needle in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", exported.frozen, exported.images[0]])  # no --out / tensors
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unfed_placeholder_and_feed(tmp_path, capsys):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        gain = v1.placeholder(tf.float32, [], name="gain")
        tf.identity(tf.reduce_mean(x, [1, 2]) * tf.constant([1.0, -1.0, 0.5]) * gain,
                    name="logits")
    model = tmp_path / "gain.pb"
    model.write_bytes(graph.as_graph_def().SerializeToString())
    image = tmp_path / "img.png"
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[..., 2] = 255
    Image.fromarray(pixels).save(image)
    argv = ["explain", model, "--input-tensor", "x", "--output-tensor", "logits", "-q",
            "--method", "gradient", image, "--out", tmp_path / "out"]
    code, _, err = _run(argv, capsys)
    _error(code, err, "gain", "--feed")
    # logits = gain * (0, 0, 0.5): class 2 for gain 2, and dlogit_2/dx = gain * 0.5 / 64.
    code, out, err = _run([*argv, "--feed", "gain=2"], capsys)
    assert code == 0, err
    assert _printed(out)[str(image)][0] == 2
    mask = np.load(tmp_path / "out" / "img_gradient.npy")
    np.testing.assert_allclose(mask[..., 2], 2 * 0.5 / 64)
    np.testing.assert_allclose(mask[..., :2], 0)
    code, _, err = _run([*argv, "--feed", "gain"], capsys)
    _error(code, err, "NAME=VALUE")


# ---------------------------------------------------------------------------
# Pieces


def test_load_image_and_scaling(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "rgb.png"), (5, 7)), rgb)
    np.testing.assert_array_equal(load_image(str(tmp_path / "rgb.png"), (None, None)), rgb)
    gray = load_image(str(tmp_path / "rgb.png"), (5, 7), channels=1)
    assert gray.shape == (5, 7, 1)
    np.testing.assert_allclose(gray[..., 0], rgb @ [0.299, 0.587, 0.114], atol=1)
    assert load_image(str(tmp_path / "rgb.png"), (10, 3), resize=True).shape == (10, 3, 3)

    pixels = np.array([[[0, 51, 255]]], np.uint8)
    np.testing.assert_allclose(to_model_input(pixels), [[[0, 0.2, 1]]], rtol=1e-6)
    np.testing.assert_allclose(to_model_input(pixels, 255), [[[0, 51, 255]]], rtol=1e-6)
    np.testing.assert_allclose(to_model_input(pixels, 2, -1), [[[-1, -0.6, 1]]], rtol=1e-6)
    assert to_model_input(pixels).dtype == np.float32


def test_parse_methods_and_output_names():
    assert parse_methods(None, has_conv=True) == (list(DEFAULT_METHODS), [])
    assert parse_methods(None, has_conv=False)[0] == [n for n in DEFAULT_METHODS
                                                      if n != "gradcam"]
    names, left_out = parse_methods("all", has_conv=False)
    assert sorted(names + left_out) == sorted(available_methods())
    assert "gradcam" in left_out and "gradcam" not in names
    assert parse_methods("ig, gradient,ig", has_conv=False) == (["ig", "gradient"], [])
    with pytest.raises(ValueError, match="unknown 'foo'"):
        parse_methods("gradient,foo", has_conv=True)
    assert _output_names(["a/x.png", "b/x.jpg", "y.png", "c/x.png"]) == ["x", "x-2", "y", "x-3"]


def test_captured_stderr_is_replayed_only_on_failure(capfd):
    with _stderr_captured(True):
        os.write(2, b"startup noise\n")
    assert "startup noise" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), _stderr_captured(True):
        os.write(2, b"why it failed\n")
        raise RuntimeError("boom")
    assert "why it failed" in capfd.readouterr().err


# ---------------------------------------------------------------------------
# As a shell user runs it


def _subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.run([sys.executable, "-m", "saliency_tf1", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_python_m_help(tmp_path):
    done = _subprocess("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "explain" in done.stdout and "demo" in done.stdout
    done = _subprocess("explain", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--input-tensor" in done.stdout and "--resize" in done.stdout
    done = _subprocess("frobnicate", cwd=tmp_path)
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_shell_error_is_one_clean_message(exported, tmp_path):
    done = _subprocess("explain", exported.frozen, "--input-tensor", "nope", "--output-tensor",
                       "logits", exported.images[0], "--out", str(tmp_path / "out"),
                       cwd=tmp_path)
    assert done.returncode == 1
    # Only our message: no traceback, no TensorFlow start-up log lines before it.
    assert done.stderr.startswith("saliency-tf1: error: input tensor 'nope'"), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_missing_pillow_is_a_clear_error(monkeypatch, tmp_path):
    from saliency_tf1.cli import UserError, image_size

    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(UserError, match=r"needs Pillow: pip install 'saliency_tf1\[cli\]'"):
        image_size(str(tmp_path / "any.png"))


# ---------------------------------------------------------------------------
# Runs over many inputs (no Beam: the single-machine path)


def test_manifest_run_from_folder_glob_and_list_resumes_and_reports(exported, tmp_path, capsys):
    folder = tmp_path / "images"
    (folder / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(5)
    pixels = {}
    for name in ("a.png", "deeper/b.png", "c.jpg.txt"):  # the .txt is not taken from a folder
        pixels[name] = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels[name]).save(folder / name, format="PNG")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{exported.images[1]}\n\n# a comment\n")
    out = tmp_path / "run"
    argv = ["explain", exported.frozen, "--input-tensor", "x", "--output-tensor", "logits",
            "--conv-tensor", exported.conv, "--method", "gradient,gradcam", "-q", "--manifest",
            "--class-names", _labels(tmp_path), folder, str(tmp_path / "*.nothing"), "--out",
            out]
    code, _, err = _run(argv, capsys)  # a pattern that matches nothing is an error
    _error(code, err, "the pattern matches no files")
    # A glob (image[0].png matches image0.png) and a list file instead.
    argv[-3:-2] = [exported.images[0].replace("image0", "image[0]"), f"@{listing}"]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert "explained 4 inputs, 1 failed, 0 done before (in this process)" in stdout
    assert "broken.png" in err and "cannot read this image" in err
    records = {Path(r["key"]).name: r for r in read_manifest(out)}
    assert sorted(records) == ["a.png", "b.png", "broken.png", "image0.png", "image1.png"]
    for name, r in records.items():
        if name == "broken.png":
            assert r["error"] and r["masks"] == {}
            continue
        img = pixels.get(name, pixels.get(f"deeper/{name}"))
        if img is None:
            img = exported.pixels[int(name[5])]
        x_value = img.astype(np.float32) / 255
        cls, probs = _live_prediction(exported, x_value)
        assert (r["prediction"], r["label"]) == (cls, f"<class {cls}>")
        assert r["score"] == pytest.approx(probs[cls], abs=1e-5)
        with np.load(out / r["masks"]["gradient"]) as npz:
            for method in ("gradient", "gradcam"):
                np.testing.assert_allclose(npz[method], _live_mask(exported, cls, x_value, method),
                                           rtol=1e-4, atol=1e-6)
    # Again, with --report: nothing to do but the report.
    code, stdout, err = _run([*argv, "--report"], capsys)
    assert code == 0, err
    assert "explained 0 inputs, 0 failed, 5 done before" in stdout
    assert (out / "report" / "index.html").is_file()
    html = (out / "report" / "index.html").read_text()
    assert "&lt;class 1&gt;" in html or "&lt;class 0&gt;" in html
    assert "<class " not in html  # labels are escaped, in the page and in its data
    code, stdout, err = _run(["report", out, "--title", "again", "-q"], capsys)
    assert code == 0 and stdout.strip() == str(out / "report" / "index.html")
    code, _, err = _run(["report", tmp_path], capsys)
    _error(code, err, "no manifest.jsonl")


def _labels(tmp_path: Path) -> str:
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"<class {k}>\n" for k in range(CLASSES)))
    return str(path)


def test_allow_op_is_passed_to_the_loader_only_when_given(exported, tmp_path, capsys,
                                                           monkeypatch):
    import saliency_tf1.models as models

    calls = []

    def spy(path, **kwargs):
        calls.append(kwargs)
        raise ValueError("spy: not loading")

    monkeypatch.setattr(models, "load_model", spy)
    base = ["explain", exported.frozen, "--input-tensor", "x", "--output-tensor", "logits",
            "--method", "gradient", "-q", exported.images[0], "--out", tmp_path / "out"]
    for extra in ([], ["--manifest"]):
        code, _, err = _run([*base, *extra, "--allow-op", "LookupTableFindV2", "--allow-op",
                             "HashTableV2"], capsys)
        _error(code, err, "spy: not loading")
        assert calls.pop() == {"allow_unsafe_ops": False, "gradients": True,
                               "allow_ops": ("LookupTableFindV2", "HashTableV2")}
        code, _, err = _run([*base, *extra], capsys)
        _error(code, err, "spy: not loading")
        assert calls.pop() == {"allow_unsafe_ops": False, "gradients": True}
    assert not (tmp_path / "out").exists()


def test_run_usage_errors(exported, tmp_path, capsys, monkeypatch):
    base = ["explain", exported.frozen, "--input-tensor", "x", "--output-tensor", "logits",
            exported.images[0], "--out", tmp_path / "out", "-q"]
    for extra, needle in [(["--metrics", "sic"], "--metrics: expected names from"),
                          (["--batch-size", "0"], "--batch-size"),
                          (["--project", "p"], "Beam pipeline options go as --name=value"),
                          (["--direct_num_workers", "0"], "--direct_num_workers")]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in base + extra])
        assert exit_info.value.code == 2, extra
        assert needle in capsys.readouterr().err
    # A Beam option without Beam installed: one clear line.
    import saliency_tf1

    monkeypatch.setitem(sys.modules, "apache_beam", None)
    monkeypatch.delitem(sys.modules, "saliency_tf1.beam", raising=False)
    monkeypatch.delattr(saliency_tf1, "beam", raising=False)
    code, _, err = _run([*base, "--runner", "DirectRunner"], capsys)
    _error(code, err, "--runner: saliency_tf1.beam needs Apache Beam",
           "pip install 'saliency_tf1[beam]'")
    code, _, err = _run([*base, "--direct_num_workers", "2"], capsys)
    _error(code, err, "needs Apache Beam")
    assert not (tmp_path / "out").exists()


def test_deep_images_are_scaled_not_clipped(tmp_path):
    """16-bit PNGs and float TIFFs keep their range (8-bit conversion would clip them white)."""
    from PIL import Image

    from saliency_tf1.streaming import InputError, load_image

    ramp16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "deep.png")
    got = load_image(str(tmp_path / "deep.png"), (8, 8), channels=3)
    assert got.dtype == np.float32 and got.shape == (8, 8, 3)
    np.testing.assert_allclose(got[..., 0], ramp16 / 65535 * 255, rtol=1e-5)
    unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    np.testing.assert_allclose(load_image(str(tmp_path / "unit.tif"), channels=1)[..., 0],
                               unit * 255, rtol=1e-5)
    resized = load_image(str(tmp_path / "unit.tif"), (4, 4), channels=1, resize=True)
    assert resized.shape == (4, 4, 1) and 0 < resized.mean() < 255
    Image.fromarray(unit * 1000 - 7, mode="F").save(tmp_path / "wild.tif")
    with pytest.raises(InputError, match=r"wild.tif: cannot read this 'F' image faithfully: "
                                         r"values in \[-7, 993\]"):
        load_image(str(tmp_path / "wild.tif"), channels=1)


def test_unwritable_out_and_run_errors_are_one_line(exported, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = _run(["explain", exported.frozen, "--input-tensor", "x", "--output-tensor",
                         "logits", exported.images[0], "--out", blocker / "sub", "-q"], capsys)
    assert code == 1 and err.strip().count("\n") == 0 and "a_file" in err, err
    assert "Traceback" not in err


def test_op_error_summary_keeps_the_cause():
    from saliency_tf1.cli import op_error_summary

    graph = tf.Graph()
    with graph.as_default():
        k = tf.compat.v1.placeholder(tf.int32, [])
        y = tf.gather(tf.constant([1.0, 2.0, 3.0]), k, name="pick")
    with tf.compat.v1.Session(graph=graph) as session, pytest.raises(tf.errors.OpError) as info:
        session.run(y, {k: 7})
    summary = op_error_summary(info.value)
    assert summary.startswith("InvalidArgumentError: ")
    assert "7" in summary and "Graph execution error" not in summary, summary


def test_many_methods_are_drawn_in_a_grid(tmp_path):
    from PIL import Image

    from saliency_tf1.visualization import save_figure

    image = np.random.default_rng(0).uniform(size=(16, 16, 3))
    masks = {f"m{i}": np.random.default_rng(i).uniform(size=(16, 16)) for i in range(13)}
    path = save_figure(image, masks, tmp_path / "grid.png")
    with Image.open(path) as img:
        assert img.width / img.height < 2.5  # 14 panels: 3 rows of 6, not one long row


def test_softmax_output_is_seen_through_identities():
    from saliency_tf1.streaming import is_softmax_output

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3])
        probs = tf.identity(tf.identity(tf.nn.softmax(x)), name="output_0")
        assert is_softmax_output(probs) and not is_softmax_output(tf.identity(x * 2))
