"""Views beyond images (tokens, features, time series) and the channel reductions."""

from __future__ import annotations

import re

import numpy as np
import pytest

from saliency_tf1.visualization import VisualizeImageGrayscale
from saliency_tf1.visualization.arrays import CHANNEL_REDUCTIONS, minmax_scale, reduce_channels
from saliency_tf1.visualization.figures import pyplot
from saliency_tf1.visualization.views import (
    TokenHTML,
    feature_bar_chart,
    timeseries_figure,
    token_figure,
    token_html,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def plt():
    plt = pyplot()
    yield plt
    plt.close("all")


# ---------------------------------------------------------------------------
# Channel reductions


def test_reduce_channels_definitions():
    rng = np.random.default_rng(0)
    mask = rng.normal(size=(5, 6, 3))
    np.testing.assert_allclose(reduce_channels(mask), np.abs(mask).sum(axis=2))
    np.testing.assert_allclose(reduce_channels(mask, "max_abs"), np.abs(mask).max(axis=2))
    np.testing.assert_allclose(reduce_channels(mask, "sum"), mask.sum(axis=2))
    np.testing.assert_allclose(reduce_channels(mask, "l2"), np.linalg.norm(mask, axis=2))
    np.testing.assert_allclose(reduce_channels(mask, "sum", axis=0), mask.sum(axis=0))
    # PAIR's grayscale view is the sum of |m| scaled to its 100th percentile.
    s = reduce_channels(mask)
    np.testing.assert_allclose(VisualizeImageGrayscale(mask, percentile=100),
                               (s - s.min()) / (s.max() - s.min()))
    # tf-keras-vis / AUCMEDI: abs, max over channels, min-max.
    m = np.abs(mask).max(axis=2)
    np.testing.assert_allclose(reduce_channels(mask, "max_abs", normalize=True),
                               (m - m.min()) / (m.max() - m.min()))
    assert set(CHANNEL_REDUCTIONS) == {"sum_abs", "max_abs", "sum", "l2"}


def test_minmax_scale_of_constants_is_zero_and_never_nan():
    assert np.all(minmax_scale(np.full((3, 3), 7.0)) == 0)
    np.testing.assert_allclose(minmax_scale([1.0, 2.0, 3.0]), [0, 0.5, 1])
    rows = minmax_scale(np.array([[1.0, 3.0], [2.0, 2.0]]), axis=1)
    np.testing.assert_allclose(rows, [[0, 1], [0, 0]])
    assert np.all(reduce_channels(np.zeros((4, 4, 3)), "max_abs", normalize=True) == 0)


def test_reduce_channels_refuses_bad_arguments():
    mask = np.ones((4, 4, 3))
    with pytest.raises(ValueError, match=r"how: expected one of \['sum_abs'.*got 'mean'"):
        reduce_channels(mask, "mean")
    with pytest.raises(ValueError, match=r"axis: expected an axis of the mask's 3 dim.*got 3"):
        reduce_channels(mask, axis=3)
    with pytest.raises(ValueError, match=r"mask: expected a numeric array.*<U1"):
        reduce_channels(np.array(["a", "b"]))
    before = mask.copy()
    reduce_channels(mask, "l2", normalize=True)
    np.testing.assert_array_equal(mask, before)


# ---------------------------------------------------------------------------
# Tokens


def _span_colors(snippet: str) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in m) for m in
            re.findall(r"background-color: rgb\((\d+), (\d+), (\d+)\)", snippet)]


def test_token_html_colours_by_sign_and_escapes():
    tokens = ["[CLS]", "<b>bad</b>", "great", "plain", "[SEP]"]
    scores = np.array([0.0, -1.0, 2.0, 0.0, 0.0])
    snippet = token_html(tokens, scores, title="a & b")
    assert isinstance(snippet, TokenHTML) and snippet._repr_html_() == str(snippet)
    assert "<b>bad</b>" not in snippet and "&lt;b&gt;bad&lt;/b&gt;" in snippet
    assert "<b>a &amp; b</b>" in snippet
    colors = _span_colors(snippet)
    assert len(colors) == len(tokens)
    r, g, b = colors[2]  # the largest positive score: full red
    assert r > 200 and g < 60 and b < 60
    r, g, b = colors[1]  # negative: blue, half strength
    assert b > r and b > 200
    assert colors[0] == (255, 255, 255) or min(colors[0]) > 245  # zero: white
    titles = [float(t) for t in re.findall(r'title="([^"]+)"', snippet)]
    np.testing.assert_allclose(titles, scores)


def test_token_html_leaves_out_padding_and_uses_a_sequential_scale_for_magnitudes():
    tokens = ["[CLS]", "a", "[SEP]", "[PAD]", "[PAD]"]
    scores = np.array([0.0, 3.0, 1.0, 9.0, 9.0])  # padding scores must not count
    mask = np.array([1, 1, 1, 0, 0])
    snippet = token_html(tokens, scores, attention_mask=mask)
    assert "[PAD]" not in snippet and len(_span_colors(snippet)) == 3
    # The real tokens only, also accepted.
    assert token_html(tokens[:3], scores, attention_mask=mask) == snippet
    colors = _span_colors(snippet)
    assert colors[1][2] < 60 and colors[1][0] > 60  # the peak, 3.0, is full colour (dark red)
    assert colors[0][0] > 245  # 0 is white on the sequential scale


def test_token_views_refuse_mismatches():
    with pytest.raises(ValueError, match=r"tokens, scores: expected one score per token, got 2 "
                                         r"tokens and 3 scores"):
        token_html(["a", "b"], [1, 2, 3])
    with pytest.raises(TypeError, match="tokens: expected a sequence of strings"):
        token_html("ab", [1, 2])
    with pytest.raises(ValueError, match=r"scores: expected a 1-D numeric array.*\(2, 2\)"):
        token_html(["a", "b"], np.ones((2, 2)))
    with pytest.raises(ValueError, match="scores: contains NaN"):
        token_figure(["a"], [np.nan])
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(2,\)"):
        token_html(["a", "b"], [1, 2], attention_mask=[1, 1, 0])
    with pytest.raises(ValueError, match="vmax: expected a positive number, got -1"):
        token_html(["a"], [1.0], vmax=-1)


def test_token_figure_draws_one_coloured_box_per_token(plt, tmp_path):
    tokens = ["[CLS]"] + ["word"] * 30 + ["[SEP]"]
    scores = np.linspace(-1, 1, len(tokens))
    fig = token_figure(tokens, scores, width=40, title="t")
    ax = fig.axes[0]
    texts = [t for t in ax.texts]
    assert [t.get_text() for t in texts] == tokens
    ys = sorted({t.get_position()[1] for t in texts})
    assert len(ys) > 1  # wrapped onto several lines
    faces = [t.get_bbox_patch().get_facecolor() for t in texts]
    assert faces[0][2] > faces[0][0]    # -1: blue
    assert faces[-1][0] > faces[-1][2]  # +1: red
    fig.savefig(tmp_path / "tokens.png")
    assert (tmp_path / "tokens.png").read_bytes()[:8] == PNG
    # Into the caller's axes.
    fig2, ax2 = plt.subplots()
    assert token_figure(["a", "b"], [1, 2], ax=ax2) is fig2 and len(ax2.texts) == 2


# ---------------------------------------------------------------------------
# Features


def test_feature_bar_chart_orders_colours_and_marks(plt, tmp_path):
    scores = np.array([0.1, -3.0, 2.0, 0.0, -0.5])
    names = ["a", "b", "c", "d", "e"]
    fig = feature_bar_chart(scores, names, top=3, relevant=[False, True, False, False, False],
                            title="IG")
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 3
    # barh draws bottom-up: the top bar (largest |score|) is the last.
    widths = [b.get_width() for b in bars]
    assert widths == [-0.5, 2.0, -3.0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["e", "c", "b *"]
    assert bars[1].get_facecolor()[0] > bars[1].get_facecolor()[2]  # positive: red
    assert bars[2].get_facecolor()[2] > bars[2].get_facecolor()[0]  # negative: blue
    fig.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match=r"scores: expected 5 values \(one per item\), got 4"):
        feature_bar_chart(scores[:4], names)
    with pytest.raises(ValueError, match="top: expected a positive int, got 0"):
        feature_bar_chart(scores, names, top=0)
    with pytest.raises(ValueError, match=r"relevant: expected 5 booleans, got shape \(2,\)"):
        feature_bar_chart(scores, names, relevant=[True, False])


# ---------------------------------------------------------------------------
# Time series


def test_timeseries_figure_shades_attribution_under_each_channel(plt, tmp_path):
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(50, 3))
    scores = np.zeros(50)
    scores[20:30] = 1.0
    region = scores > 0
    fig = timeseries_figure(signal, scores, region=region, channel_names=["x", "y", "z"],
                            title="IG")
    panels = [ax for ax in fig.axes if ax.get_ylabel() in ("x", "y", "z")]
    assert len(panels) == 3
    for c, ax in enumerate(panels):
        (image,) = ax.images
        shaded = image.get_array()
        np.testing.assert_array_equal(np.asarray(shaded)[0], scores)
        assert image.get_clip_path() is not None  # shading only under the signal
        (line,) = [ln for ln in ax.lines if len(ln.get_xdata()) == 50]
        np.testing.assert_allclose(line.get_ydata(), signal[:, c])
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    fig.savefig(tmp_path / "ts.png")
    assert (tmp_path / "ts.png").read_bytes()[:8] == PNG
    # One score per channel; a 1-D signal.
    fig = timeseries_figure(signal, rng.normal(size=(50, 3)))
    assert sum(1 for ax in fig.axes if ax.images) == 3
    fig = timeseries_figure(signal[:, 0], np.abs(scores))
    assert sum(1 for ax in fig.axes if ax.images) == 1


def test_timeseries_figure_refuses_mismatches(plt):
    signal = np.zeros((20, 2))
    with pytest.raises(ValueError, match=r"scores: expected finite values of shape \(20,\) or "
                                         r"\(20, 2\).*got \(19,\)"):
        timeseries_figure(signal, np.zeros(19))
    with pytest.raises(ValueError, match=r"signal: expected a finite \[T\] or \[T, C\]"):
        timeseries_figure(np.zeros((2, 3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match=r"region: expected 20 booleans"):
        timeseries_figure(signal, np.zeros(20), region=np.ones(5, bool))
    with pytest.raises(ValueError, match="channel_names: expected 2 names, got 1"):
        timeseries_figure(signal, np.zeros(20), channel_names=["a"])
    fig, axes = plt.subplots(3, 1)
    with pytest.raises(ValueError, match=r"axes: expected 2 axes \(one per channel\), got 3"):
        timeseries_figure(signal, np.zeros(20), axes=axes)
