"""The README's "Migrating" examples run, and give PAIR's numbers."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_compat import pair_on_numpy2  # noqa: F401  (the fixture, used below)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def assert_close(actual, expected, rtol=1e-5):
    expected = np.asarray(expected, np.float64)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol,
                               atol=rtol * float(np.max(np.abs(expected))))


def run_script(name: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_migrating_core_example_runs_without_tensorflow():
    out = run_script("migrating_core.py")
    assert "vanilla" in out and "occlusion" in out
    assert "tensorflow imported: False" in out


@pytest.mark.oracle
@pytest.mark.usefixtures("pair_on_numpy2")  # PAIR's GuidedIG on NumPy 2
def test_migrating_core_example_gives_pairs_numbers():
    pair = pytest.importorskip("saliency.core")
    ns = runpy.run_path(str(EXAMPLES / "migrating_core.py"))
    f, im, args = ns["call_model_function"], ns["IMAGE"], ns["CALL_MODEL_ARGS"]
    np.random.seed(3)
    masks = ns["main"]()
    assert_close(masks["vanilla"], pair.GradientSaliency().GetMask(im, f, args))
    np.random.seed(3)
    assert_close(masks["smoothgrad"], pair.GradientSaliency().GetSmoothedMask(im, f, args))
    ig = pair.IntegratedGradients().GetMask(im, f, args, x_steps=25,
                                            x_baseline=np.zeros(im.shape), batch_size=20)
    assert_close(masks["ig"], ig)
    assert_close(masks["batch"][0], ig)
    assert_close(masks["batch"][1], pair.IntegratedGradients().GetMask(im[::-1], f, args))
    assert_close(masks["occlusion"], pair.Occlusion().GetMask(im, f, args, size=5))
    assert_close(masks["grad_cam"], pair.GradCam().GetMask(im, f, args))
    assert_close(masks["blur_ig"], pair.BlurIG().GetMask(im, f, args, max_sigma=10, steps=20))
    params = pair.XRAIParameters()
    params.steps = 20
    assert_close(masks["xrai"], pair.XRAI().GetMask(im, f, args, extra_parameters=params))
    assert_close(masks["guided_ig"], pair.GuidedIG().GetMask(
        im, f, args, x_steps=50, x_baseline=np.zeros(im.shape), max_dist=0.1))
    # And the model's hand-written gradient is its derivative (central differences).
    eps, pixel = 1e-6, (7, 11)
    for channel in range(3):
        up, down = im.copy(), im.copy()
        up[pixel + (channel,)] += eps
        down[pixel + (channel,)] -= eps
        ys = f(np.stack([up, down]), args, ["OUTPUT_LAYER_VALUES"])["OUTPUT_LAYER_VALUES"]
        assert masks["vanilla"][pixel + (channel,)] == pytest.approx(
            (ys[0] - ys[1]) / (2 * eps), rel=1e-5, abs=1e-9)


def test_migrating_tf1_example_runs_as_a_script(capsys):
    runpy.run_path(str(EXAMPLES / "migrating_tf1.py"), run_name="__main__")
    assert "core_guided_backprop" in capsys.readouterr().out


@pytest.mark.oracle
def test_migrating_tf1_example_gives_pairs_numbers():
    pair = pytest.importorskip("saliency.tf1")
    ns = runpy.run_path(str(EXAMPLES / "migrating_tf1.py"))
    np.random.seed(4)
    masks = ns["main"]()
    graph, sess, images, logits, conv, selector, y = ns["build_model"]()
    im = np.random.default_rng(1).uniform(0, 1, (24, 24, 3)).astype(np.float32)
    feed = {selector: int(np.argmax(sess.run(logits, {images: im[None]})[0]))}
    gradient = pair.GradientSaliency(graph, sess, y, images)
    assert_close(masks["vanilla"], gradient.GetMask(im, feed_dict=dict(feed)))
    np.random.seed(4)
    assert_close(masks["smoothgrad"], gradient.GetSmoothedMask(im, feed_dict=dict(feed)))
    ig = pair.IntegratedGradients(graph, sess, y, images).GetMask(
        im, feed_dict=dict(feed), x_steps=25, x_baseline=np.zeros(im.shape), batch_size=1)
    assert_close(masks["ig"], ig)
    assert_close(masks["core_ig"], ig)
    assert_close(masks["core_gradient"], masks["vanilla"])
    assert_close(masks["batch"][0], masks["vanilla"])
    assert_close(masks["occlusion"], pair.Occlusion(graph, sess, y, images).GetMask(
        im, feed_dict=dict(feed), size=6))
    assert_close(masks["grad_cam"], pair.GradCam(graph, sess, y, images, conv).GetMask(
        im, feed_dict=dict(feed)))
    sess.close()
