"""Text models: explain through the embedding tensor, score each token, show the tokens.

Token ids are integers, so gradients cannot reach them: a text classifier is
explained with respect to its embeddings, a float tensor that any method of
this package takes as ``x`` (an intermediate tensor is fed directly; the
graph before it does not run). The ids and the attention mask go into
``feed_dict`` as :class:`~saliency_tf1.PerExample` values, one row per
explained sentence, so every path point or noisy copy of a sentence is run
with that sentence's mask::

    ids_batch, mask_batch = ...                                  # [N, T] each
    emb = embed(sess, model.embeddings, model.ids, ids_batch)    # [N, T, D]
    base = embedding_baseline(sess, model.embeddings, model.ids, ids_batch,
                              pad_id=PAD, keep=(CLS, SEP))      # [CLS] [PAD] ... [SEP]
    ig = saliency_tf1.IntegratedGradients(graph, sess, target.y, model.embeddings)
    feed = {model.ids: PerExample(ids_batch), model.mask: PerExample(mask_batch),
            **target.feed(classes)}
    masks = ig.GetMaskBatch(emb, feed, x_baseline=base, x_steps=64, rule="trapezoid")
    scores = token_scores(masks, mask_batch)                     # [N, T], 0 on padding

The baseline matters. Zero embeddings are far from anything the model saw:
on a BERT-style model (position embeddings added, then LayerNorm) the path
from zero crosses the LayerNorm's steep region and the position embeddings
themselves get attributed. The embeddings of ``[CLS] [PAD] ... [SEP]``,
computed by the model's own embedding graph, differ from the sentence's only
in the words (Sundararajan et al., "Axiomatic Attribution for Deep
Networks", ICML 2017, Sec. 3.1, use an all-zero embedding baseline for text;
the padding-token baseline is the common choice for BERT-style models).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..engine.checks import check_positive_int, describe
from ..engine.graph import check_tensor, depends_on, required_placeholders, tf_module
from ..engine.session import FixedRun, PerExample, check_feed_value
from ..visualization.arrays import reduce_channels

#: How :func:`token_scores` reduces a token's embedding attributions.
TOKEN_REDUCTIONS = ("sum", "l2", "sum_abs")


def _check_ids(name: str, values: Any, ids: Any) -> np.ndarray:
    """``values`` as an int array ``[N, T]`` that fits the ids tensor (1-D: one sentence)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    per_example = ids.shape[1:]
    if arr.ndim == per_example.rank:
        arr = arr[None]
    if not ids.shape.is_compatible_with(arr.shape) or arr.size == 0:
        raise ValueError(f"{name}: expected token ids of shape {per_example} (one sentence) or "
                         f"[N, *{per_example}], got shape {np.shape(values)}")
    check_feed_value(ids, arr, name)  # dtype, shape and the table's rows (index_bound)
    return arr


def baseline_token_ids(ids: Any, pad_id: int, keep: Iterable[int] = ()) -> np.ndarray:
    """``ids`` with every token replaced by ``pad_id`` except those whose id is in ``keep``.

    ``baseline_token_ids(ids, PAD, keep=(CLS, SEP))`` turns ``[CLS] w1 w2
    [SEP] [PAD]`` into ``[CLS] [PAD] [PAD] [SEP] [PAD]``: the same length and
    special tokens in the same places, no words. A new array; ``ids`` is not
    modified.
    """
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu" or arr.ndim < 1:
        raise TypeError(f"ids: expected an integer array of token ids, got {describe(ids)} "
                        f"of dtype {arr.dtype}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, (int, np.integer)):
        raise TypeError(f"pad_id: expected an int token id, got {pad_id!r}")
    keep = list(keep)
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) for k in keep):
        raise TypeError(f"keep: expected int token ids, got {keep!r}")
    return np.where(np.isin(arr, keep), arr, np.asarray(pad_id, arr.dtype))


def embed(
    session: Any,
    embeddings: Any,
    ids: Any,
    id_values: Any,
    feed_dict: Mapping | None = None,
) -> np.ndarray:
    """The values of ``embeddings`` for token ids, computed by the model's own graph.

    Args:
      session: a session holding the model's weights.
      embeddings: the float tensor that will be explained (``x``), computed
        from ``ids``: the embedding lookup, or the embedding layer's output
        (token + position embeddings, LayerNorm), ``[None, T, D]``.
      ids: the int token-ids placeholder ``[None, T]``.
      id_values: ``[T]`` (one sentence) or ``[N, T]`` token ids.
      feed_dict: values for other placeholders ``embeddings`` needs (e.g.
        token-type ids), one row per sentence; :class:`~saliency_tf1.PerExample`
        values are read as their rows, so a method's ``feed_dict`` can be reused.

    Returns:
      ``[T, D]`` for one sentence, ``[N, T, D]`` for a batch; one ``session.run``.
    """
    tf = tf_module()
    graph = getattr(embeddings, "graph", None)
    check_tensor("embeddings", embeddings, graph)
    check_tensor("ids", ids, graph)
    if not ids.dtype.is_integer:
        raise TypeError(f"ids: expected the integer token-ids tensor, got dtype {ids.dtype.name}")
    if not embeddings.dtype.is_floating:
        raise TypeError(f"embeddings: expected a float tensor, got dtype "
                        f"{embeddings.dtype.name}")
    if not depends_on(embeddings, ids):
        raise ValueError(f"embeddings: tensor {embeddings.name!r} is not computed from ids "
                         f"({ids.name!r})")
    if not callable(getattr(session, "run", None)):
        raise TypeError(f"session: expected a tf.compat.v1.Session, got {describe(session)}")
    one = np.ndim(id_values) == ids.shape.rank - 1
    values = _check_ids("id_values", id_values, ids)
    if feed_dict is not None and not isinstance(feed_dict, Mapping):
        raise TypeError(f"feed_dict: expected a dict or None, got {describe(feed_dict)}")
    tensors, fed = [], []
    for key, value in (feed_dict or {}).items():
        name = key if not isinstance(key, str) or ":" in key else f"{key}:0"
        try:
            tensor = graph.as_graph_element(name, allow_tensor=True, allow_operation=False)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"feed_dict: key {key!r} names no tensor of the graph ({err})"
                             ) from None
        if not isinstance(tensor, tf.Tensor) or tensor.graph is not graph:
            raise ValueError(f"feed_dict: key {key!r} is not a tensor of the model's graph")
        if tensor.name == ids.name:
            continue  # the ids are id_values
        if isinstance(value, PerExample):
            if len(value) != len(values):
                raise ValueError(f"feed_dict[{tensor.name!r}]: PerExample has {len(value)} "
                                 f"entries, expected one per sentence ({len(values)})")
            value = value.values
        check_feed_value(tensor, value, f"feed_dict[{tensor.name!r}]")
        tensors.append(tensor)
        fed.append(value)
    missing = [t.name for t in required_placeholders([embeddings], [ids, *tensors])]
    if missing:
        raise ValueError(f"feed_dict: missing a value for placeholder(s) {missing} that "
                         f"embeddings ({embeddings.name!r}) depends on")
    with graph.as_default():
        out = np.asarray(FixedRun(session, [embeddings], [ids, *tensors])(values, *fed)[0])
    return out[0] if one else out


def embedding_baseline(
    session: Any,
    embeddings: Any,
    ids: Any,
    id_values: Any,
    *,
    pad_id: int,
    keep: Iterable[int] = (),
    feed_dict: Mapping | None = None,
) -> np.ndarray:
    """The embeddings of the sentences with their words replaced by ``pad_id``: IG's baseline.

    ``embed(session, embeddings, ids, baseline_token_ids(id_values, pad_id,
    keep), feed_dict)``: with ``keep=(CLS, SEP)``, the embeddings of ``[CLS]
    [PAD] ... [SEP]`` of each sentence's length. Pass it as ``x_baseline``
    (one per sentence in ``GetMaskBatch``). Shapes as :func:`embed`.
    """
    return embed(session, embeddings, ids, baseline_token_ids(id_values, pad_id, keep),
                 feed_dict)


def token_scores(
    mask: Any,
    attention_mask: Any = None,
    how: str = "sum",
    *,
    fill: float = 0.0,
) -> np.ndarray:
    """One score per token: a mask over embeddings reduced over the embedding axis.

    Args:
      mask: ``[T, D]`` or ``[N, T, D]`` attributions of the embeddings.
      attention_mask: ``[T]`` / ``[N, T]``, nonzero on real tokens; padded
        positions get ``fill``. ``None``: every position is a token.
      how: ``"sum"`` (default: signed, and for Integrated Gradients the token
        scores then still add up to ``f(x) - f(baseline)``), ``"l2"`` (the
        norm of the token's attributions: magnitude only) or ``"sum_abs"``.
      fill: the score of padded positions.

    Returns:
      float64 ``[T]`` or ``[N, T]``.
    """
    if not isinstance(how, str) or how not in TOKEN_REDUCTIONS:
        raise ValueError(f"how: expected one of {list(TOKEN_REDUCTIONS)}, got {how!r}")
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "biuf":
        raise ValueError(f"mask: expected [T, D] or [N, T, D] attributions, got {arr.dtype} of "
                         f"shape {arr.shape}")
    scores = reduce_channels(arr, how)
    if attention_mask is None:
        return scores
    valid = np.asarray(attention_mask)
    if valid.shape != scores.shape and not (valid.ndim == 1 and valid.shape == scores.shape[-1:]):
        raise ValueError(f"attention_mask: expected shape {scores.shape} (the tokens of the "
                         f"mask), got {valid.shape}")
    if valid.dtype.kind not in "biuf":
        raise TypeError(f"attention_mask: expected 0/1 values, got dtype {valid.dtype}")
    return np.where(valid != 0, scores, float(fill))


def top_tokens(scores: Any, attention_mask: Any = None, k: int = 1, *,
               absolute: bool = False) -> np.ndarray:
    """The positions of the ``k`` highest-scoring real tokens, best first.

    ``scores``: ``[T]`` or ``[N, T]``; ``attention_mask`` like it (padding is
    never returned). Ranks by the signed score (what speaks for the explained
    class) unless ``absolute``. Returns ``[k]`` or ``[N, k]`` ints (a
    sentence with fewer than ``k`` tokens: its tokens, then -1).
    """
    k = check_positive_int("k", k)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores: expected [T] or [N, T], got shape {s.shape}")
    two = s if s.ndim == 2 else s[None]
    valid = (np.ones(two.shape, bool) if attention_mask is None
             else np.broadcast_to(np.asarray(attention_mask) != 0, two.shape))
    ranked = np.where(valid, np.abs(two) if absolute else two, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    taken = np.take_along_axis(valid, order, axis=1)
    out = np.where(taken, order, -1)
    return out if s.ndim == 2 else out[0]
