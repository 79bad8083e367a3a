"""Views of attributions beyond images: tokens, tabular features, time series.

* :func:`token_html` / :func:`token_figure`: tokens coloured by their score,
  as an HTML snippet (rendered inline by Jupyter) or a matplotlib figure;
* :func:`feature_bar_chart`: one bar per named feature, largest first;
* :func:`timeseries_figure`: each channel's signal as a line, its attribution
  shaded under it.

Signed scores are drawn on a diverging scale centred on zero (red: for the
explained output, blue: against), scaled by the largest magnitude;
non-negative scores (a magnitude, a Grad-CAM map) on a sequential one. The
figures are made with :func:`saliency_tf1.visualization.pyplot` (the Agg
backend unless the caller chose one) and returned open: show them, save them
with ``fig.savefig(path)``, or close them with ``pyplot().close(fig)``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

from .figures import pyplot

#: Colour maps for signed and for non-negative scores.
DIVERGING_CMAP = "bwr"
SEQUENTIAL_CMAP = "Reds"


def _scores_1d(name: str, scores: Any, length: int | None = None) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.dtype.kind not in "biuf" or arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D numeric array, got {arr.dtype} of shape "
                         f"{arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or Inf values")
    if length is not None and len(arr) != length:
        raise ValueError(f"{name}: expected {length} values (one per item), got {len(arr)}")
    return arr


def _color_scale(values: np.ndarray, signed: bool | None, vmax: float | None
                 ) -> tuple[Any, Any, bool]:
    """``(colormap, norm, signed)`` for the values."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    if signed is None:
        signed = bool(np.any(values < 0))
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if vmax is not None:
        if not np.isfinite(vmax) or vmax <= 0:
            raise ValueError(f"vmax: expected a positive number, got {vmax!r}")
        peak = float(vmax)
    peak = peak if peak > 0 else 1.0
    if signed:
        return colormaps[DIVERGING_CMAP], Normalize(-peak, peak), True
    return colormaps[SEQUENTIAL_CMAP], Normalize(0.0, peak), False


def _token_inputs(tokens: Sequence[str], scores: Any, attention_mask: Any
                  ) -> tuple[list[str], np.ndarray]:
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise TypeError("tokens: expected a sequence of strings (one per token)")
    tokens = list(tokens)
    values = _scores_1d("scores", scores)
    if attention_mask is not None:
        keep = np.asarray(attention_mask) != 0
        if keep.shape != values.shape:
            raise ValueError(f"attention_mask: expected shape {values.shape} (the scores'), got "
                             f"{keep.shape}")
        values = values[keep]
        if len(tokens) == len(keep):
            tokens = [t for t, k in zip(tokens, keep) if k]
    if len(tokens) != len(values):
        raise ValueError(f"tokens, scores: expected one score per token, got {len(tokens)} "
                         f"tokens and {len(values)} scores")
    return tokens, values


class TokenHTML(str):
    """An HTML snippet (a ``str``) that Jupyter renders as HTML when it is a cell's value."""

    def _repr_html_(self) -> str:
        return str(self)


def token_html(
    tokens: Sequence[str],
    scores: Any,
    *,
    attention_mask: Any = None,
    signed: bool | None = None,
    vmax: float | None = None,
    title: str | None = None,
) -> TokenHTML:
    """The tokens as HTML ``<span>`` s, each with a background colour for its score.

    Args:
      tokens: the sentence's tokens (strings; HTML-escaped here).
      scores: one score per token, e.g. from
        :func:`saliency_tf1.modalities.text.token_scores`.
      attention_mask: drop padded positions (0s): ``tokens`` may then list
        the real tokens only, or every position.
      signed: diverging scale (``None``: if any score is negative).
      vmax: the score drawn at full colour (``None``: the largest ``|score|``).
      title: a caption before the tokens.

    Returns:
      :class:`TokenHTML`; hovering a token shows its score.
    """
    tokens, values = _token_inputs(tokens, scores, attention_mask)
    cmap, norm, _ = _color_scale(values, signed, vmax)
    spans = []
    for token, value in zip(tokens, values):
        r, g, b, _ = cmap(float(np.clip(norm(value), 0, 1)))
        text = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "#fff"
        spans.append(
            f'<span title="{value:.4g}" style="background-color: rgb({r * 255:.0f}, '
            f'{g * 255:.0f}, {b * 255:.0f}); color: {text}; padding: 1px 3px; margin: 1px; '
            f'border-radius: 3px; font-family: monospace">{html.escape(token)}</span>')
    caption = "" if title is None else f"<b>{html.escape(title)}</b> "
    return TokenHTML(f'<div style="line-height: 1.9">{caption}{" ".join(spans)}</div>')


def token_figure(
    tokens: Sequence[str],
    scores: Any,
    *,
    attention_mask: Any = None,
    signed: bool | None = None,
    vmax: float | None = None,
    width: int = 60,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """The tokens as text boxes coloured by score, wrapped at ``width`` characters.

    Arguments as :func:`token_html`; ``ax``: draw into these axes (else a new
    figure). Returns the figure.
    """
    tokens, values = _token_inputs(tokens, scores, attention_mask)
    cmap, norm, _ = _color_scale(values, signed, vmax)
    if isinstance(width, bool) or not isinstance(width, int) or width < 8:
        raise ValueError(f"width: expected an int >= 8 (characters per line), got {width!r}")
    places, x, row = [], 0, 0
    for token in tokens:
        size = min(len(token), width) + 1
        if x and x + size > width:
            x, row = 0, row + 1
        places.append((x, row))
        x += size
    rows = row + 1
    if ax is None:
        height = 0.36 * rows + (0.8 if title else 0.5)
        fig, ax = pyplot().subplots(figsize=(0.11 * width + 0.4, height))
    else:
        fig = ax.figure
    for token, value, (x, row) in zip(tokens, values, places):
        color = cmap(float(np.clip(norm(value), 0, 1)))
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        ax.text(x + 0.3, row + 0.5, token, family="monospace", fontsize=10, va="center",
                ha="left", color="black" if luminance > 0.5 else "white",
                bbox={"facecolor": color, "edgecolor": "none", "boxstyle": "round,pad=0.2"})
    ax.set_xlim(0, width)
    ax.set_ylim(rows, 0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return fig


def feature_bar_chart(
    scores: Any,
    feature_names: Sequence[str],
    *,
    top: int | None = None,
    relevant: Any = None,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Horizontal bars, one per feature, the largest ``|score|`` on top.

    Args:
      scores: ``[F]`` attributions (e.g. a tabular model's mask).
      feature_names: ``F`` names.
      top: show the ``top`` largest only.
      relevant: ``[F]`` booleans: features known to matter, marked with ``*``.
      title: the axes' title.
      ax: draw into these axes (else a new figure).

    Positive bars are red, negative blue. Returns the figure.
    """
    names = list(feature_names)
    values = _scores_1d("scores", scores, len(names))
    marked = np.zeros(len(values), bool) if relevant is None else np.asarray(relevant, bool)
    if marked.shape != values.shape:
        raise ValueError(f"relevant: expected {len(values)} booleans, got shape {marked.shape}")
    order = np.argsort(-np.abs(values), kind="stable")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top: expected a positive int, got {top!r}")
        order = order[:top]
    order = order[::-1]  # barh draws bottom-up: the largest ends on top
    own = ax is None
    if own:
        fig, ax = pyplot().subplots(figsize=(4.5, 0.28 * len(order) + 0.9))
    else:
        fig = ax.figure
    colors = ["#d62728" if values[j] >= 0 else "#1f77b4" for j in order]
    ax.barh(np.arange(len(order)), values[order], color=colors)
    ax.set_yticks(np.arange(len(order)), [names[j] + (" *" if marked[j] else "")
                                          for j in order])
    ax.axvline(0, color="gray", lw=0.6)
    ax.set_xlabel("attribution")
    if title:
        ax.set_title(title, fontsize=10)
    if own:
        fig.tight_layout()
    return fig


def timeseries_figure(
    signal: Any,
    scores: Any,
    *,
    region: Any = None,
    channel_names: Sequence[str] | None = None,
    signed: bool | None = None,
    vmax: float | None = None,
    title: str | None = None,
    axes: Any = None,
) -> Any:
    """Each channel as a line, its attribution shaded under it (one panel per channel).

    Args:
      signal: ``[T]`` or ``[T, C]``.
      scores: ``[T]`` (one value per time step, shared by the channels, e.g.
        a Grad-CAM map or :func:`~saliency_tf1.modalities.timeseries.time_scores`)
        or ``[T, C]`` (each channel its own).
      region: ``[T]`` booleans: a known window, drawn as a bar under the signal.
      channel_names: a label per channel.
      signed, vmax: the colour scale (as :func:`token_html`), shared by the panels.
      title: the figure's title.
      axes: ``C`` axes to draw into (else a new figure).

    Returns the figure (with a colour bar).
    """
    sig = np.asarray(signal, dtype=np.float64)
    if sig.ndim == 1:
        sig = sig[:, None]
    if sig.ndim != 2 or not np.all(np.isfinite(sig)):
        raise ValueError(f"signal: expected a finite [T] or [T, C] array, got shape "
                         f"{np.shape(signal)}")
    length, channels = sig.shape
    vals = np.asarray(scores, dtype=np.float64)
    if vals.shape == (length,):
        vals = np.repeat(vals[:, None], channels, axis=1)
    if vals.shape != sig.shape or not np.all(np.isfinite(vals)):
        raise ValueError(f"scores: expected finite values of shape ({length},) or {sig.shape} "
                         f"(the signal's), got {np.shape(scores)}")
    names = list(channel_names) if channel_names is not None else [
        f"channel {c}" for c in range(channels)]
    if len(names) != channels:
        raise ValueError(f"channel_names: expected {channels} names, got {len(names)}")
    marked = None if region is None else np.asarray(region, bool)
    if marked is not None and marked.shape != (length,):
        raise ValueError(f"region: expected {length} booleans, got shape {marked.shape}")
    cmap, norm, _ = _color_scale(vals, signed, vmax)
    if axes is None:
        fig, axes = pyplot().subplots(channels, 1, figsize=(7, 1.5 * channels + 0.6),
                                      sharex=True, squeeze=False)
        axes = axes[:, 0]
    else:
        axes = np.atleast_1d(axes)
        if len(axes) != channels:
            raise ValueError(f"axes: expected {channels} axes (one per channel), got "
                             f"{len(axes)}")
        fig = axes[0].figure
    t = np.arange(length)
    span = float(sig.max() - sig.min()) or 1.0
    low, high = float(sig.min()) - 0.15 * span, float(sig.max()) + 0.05 * span
    image = None
    for c, ax in enumerate(axes):
        fill = ax.fill_between(t, low, sig[:, c], facecolor="none", edgecolor="none")
        image = ax.imshow(vals[None, :, c], extent=(-0.5, length - 0.5, low, high),
                          aspect="auto", origin="lower", cmap=cmap, norm=norm,
                          interpolation="nearest")
        image.set_clip_path(fill.get_paths()[0], transform=ax.transData)
        ax.plot(t, sig[:, c], color="black", lw=1)
        if marked is not None and marked.any():
            ax.fill_between(t, low, low + 0.06 * span, where=marked, color="#2ca02c",
                            step="mid", lw=0, label="known window")
        ax.set_xlim(-0.5, length - 0.5)
        ax.set_ylim(low, high)
        ax.set_ylabel(names[c], fontsize=9)
    axes[-1].set_xlabel("time step")
    if marked is not None and marked.any():
        axes[0].legend(loc="upper right", fontsize=8)
    fig.colorbar(image, ax=list(axes), label="attribution", fraction=0.04, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
