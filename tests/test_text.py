"""Text: explaining a BERT-style transformer through its embeddings (issue 16).

The model is the small transformer encoder of saliency_tf1.modalities.models,
trained for a few seconds on sentences whose class is decided by one planted
keyword (or, for the neutral class, by its absence), so the token that
decides each sentence is known.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import saliency_tf1 as saliency
from saliency_tf1.datasets import KEYWORDS, make_keyword_sentences
from saliency_tf1.modalities import (
    baseline_token_ids,
    chance_hit_rate,
    embed,
    embedding_baseline,
    token_scores,
    top_k_hit_rate,
    top_tokens,
)
from saliency_tf1.modalities.models import train_text_model

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def text():
    """The trained model and 60 held-out sentences that hold a keyword (treat as read-only)."""
    data = make_keyword_sentences(1400, seed=1)
    model = train_text_model(data.subset(slice(0, 1200)), data.subset(slice(1200, None)),
                             steps=150, seed=0)
    held_out = data.subset(slice(1200, None))
    model.data = data
    model.test = held_out.subset(np.flatnonzero(held_out.labels < 2)[:60])
    yield model
    model.close()


def _layer_norm(h, gamma, beta, eps=1e-6):
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean) ** 2).mean(-1, keepdims=True)
    return (h - mean) / np.sqrt(var + eps) * gamma + beta


def _weights(model, *names):
    variables = {v.op.name: v for v in model.graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)}
    return model.session.run([variables[n] for n in names])


# ---------------------------------------------------------------------------
# The data


def test_sentences_have_their_keyword_and_structure():
    data = make_keyword_sentences(300, length=12, min_words=4, seed=5)
    words = [set(data.vocab.index(w) for w in group) for group in KEYWORDS]
    assert np.bincount(data.labels).tolist() == [100, 100, 100]
    for i in range(len(data)):
        n = int(data.attention_mask[i].sum())
        ids = data.ids[i]
        assert ids[0] == data.cls_id and ids[n - 1] == data.sep_id
        assert np.all(ids[n:] == data.pad_id) and np.all(ids[:n] != data.pad_id)
        held = [j for j in range(n) if any(ids[j] in w for w in words)]
        if data.labels[i] == 2:
            assert held == [] and not data.keywords[i].any()
        else:
            assert held == np.flatnonzero(data.keywords[i]).tolist() and len(held) == 1
            assert ids[held[0]] in words[data.labels[i]]
    again = make_keyword_sentences(300, length=12, min_words=4, seed=5)
    np.testing.assert_array_equal(again.ids, data.ids)
    assert data.tokens(0)[0] == "[CLS]" and data.tokens(0)[-1] == "[SEP]"
    with pytest.raises(ValueError, match="make_keyword_sentences: expected n >= 1"):
        make_keyword_sentences(0)


def test_baseline_token_ids_keep_special_tokens_only():
    ids = np.array([[1, 7, 8, 2, 0], [1, 9, 2, 0, 0]], np.int32)
    before = ids.copy()
    base = baseline_token_ids(ids, 0, keep=(1, 2))
    np.testing.assert_array_equal(base, [[1, 0, 0, 2, 0], [1, 0, 2, 0, 0]])
    np.testing.assert_array_equal(ids, before)
    assert base.dtype == ids.dtype
    np.testing.assert_array_equal(baseline_token_ids(ids[0], 5), [5] * 5)
    with pytest.raises(TypeError, match="ids: expected an integer array of token ids"):
        baseline_token_ids(ids.astype(float), 0)
    with pytest.raises(TypeError, match="pad_id: expected an int token id, got 0.5"):
        baseline_token_ids(ids, 0.5)


# ---------------------------------------------------------------------------
# Embeddings through the model's own graph


def test_embed_equals_the_embedding_graph_in_numpy(text):
    m, data = text, text.test
    word, pos, gamma, beta = _weights(
        m, "embeddings/word_embeddings", "embeddings/position_embeddings",
        "embeddings/LayerNorm/gamma", "embeddings/LayerNorm/beta")
    ops = len(m.graph.get_operations())
    lookup = embed(m.session, m.token_embeddings, m.ids, data.ids[:5])
    np.testing.assert_allclose(lookup, word[data.ids[:5]])
    out = embed(m.session, m.embeddings, m.ids, data.ids[:5])
    np.testing.assert_allclose(out, _layer_norm(word[data.ids[:5]] + pos, gamma, beta),
                               rtol=1e-4, atol=1e-5)
    one = embed(m.session, m.embeddings, m.ids, data.ids[0])
    assert one.shape == (data.ids.shape[1], word.shape[1])
    np.testing.assert_allclose(one, out[0], rtol=1e-6, atol=1e-6)
    base = embedding_baseline(m.session, m.embeddings, m.ids, data.ids[:5],
                              pad_id=data.pad_id, keep=(data.cls_id, data.sep_id))
    ids = baseline_token_ids(data.ids[:5], data.pad_id, (data.cls_id, data.sep_id))
    np.testing.assert_allclose(base, _layer_norm(word[ids] + pos, gamma, beta),
                               rtol=1e-4, atol=1e-5)
    # The sentence's special tokens embed the same in both: only the words differ.
    special = np.isin(data.ids[:5], [data.cls_id, data.sep_id])
    np.testing.assert_allclose(base[special], out[special], rtol=1e-6, atol=1e-6)
    # A method's feed_dict (PerExample values) is accepted, the ids in it ignored.
    fed = embed(m.session, m.embeddings, m.ids, data.ids[:5],
                {m.mask: saliency.PerExample(data.attention_mask[:5]),
                 m.ids: saliency.PerExample(data.ids[:5])})
    np.testing.assert_allclose(fed, out)
    assert len(m.graph.get_operations()) == ops


def test_embed_refuses_bad_input_before_running(text, counting):
    m, data = text, text.test
    spy = counting(m.session)
    ops = len(m.graph.get_operations())
    with pytest.raises(TypeError, match="id_values: expected integer token ids, got dtype "
                                        "float64"):
        embed(spy, m.embeddings, m.ids, data.ids[:2].astype(float))
    rows = len(data.vocab)
    with pytest.raises(ValueError, match=rf"id_values: 'input_ids:0' indexes {rows} entries "
                                         rf"\(classes, table rows...\); expected values in "
                                         rf"\[0, {rows}\), got \[{rows}\]"):
        embed(spy, m.embeddings, m.ids, np.full((2, data.ids.shape[1]), rows))
    with pytest.raises(ValueError, match=r"id_values: .*got \[-1\]"):
        embed(spy, m.embeddings, m.ids, np.full(data.ids.shape[1], -1))
    with pytest.raises(ValueError, match=r"id_values: expected token ids of shape \(16,\).*got "
                                         r"shape \(2, 5\)"):
        embed(spy, m.embeddings, m.ids, data.ids[:2, :5])
    with pytest.raises(ValueError, match="embeddings: tensor 'token_embeddings:0' is not "
                                         "computed from ids \\('input_mask:0'\\)"):
        embed(spy, m.token_embeddings, m.mask, data.ids[:2])
    with pytest.raises(TypeError, match="ids: expected the integer token-ids tensor"):
        embed(spy, m.logits, m.embeddings, data.ids[:2])
    with pytest.raises(ValueError, match=r"feed_dict\['input_mask:0'\]: PerExample has 1 "
                                         r"entries, expected one per sentence \(2\)"):
        embed(spy, m.embeddings, m.ids, data.ids[:2],
              {m.mask: saliency.PerExample(data.attention_mask[:1])})
    with pytest.raises(ValueError, match="feed_dict: key 'nope' names no tensor"):
        embed(spy, m.embeddings, m.ids, data.ids[:2], {"nope": 1})
    assert spy.run.call_count == 0
    assert len(m.graph.get_operations()) == ops
    # A placeholder the embeddings need and nobody fed (BERT's token-type ids).
    graph = tf.Graph()
    with graph.as_default():
        ids = v1.placeholder(tf.int32, [None, 4])
        types = v1.placeholder(tf.int32, [None, 4], name="token_type_ids")
        emb = tf.gather(tf.ones([10, 3]), ids) + tf.gather(tf.ones([2, 3]), types)
    with v1.Session(graph=graph) as session:
        with pytest.raises(ValueError, match=r"missing a value for placeholder\(s\) "
                                             r"\['token_type_ids:0'\]"):
            embed(session, emb, ids, np.zeros(4, np.int32))
        out = embed(session, emb, ids, np.zeros(4, np.int32), {types: np.ones((1, 4))})
        np.testing.assert_allclose(out, np.full((4, 3), 2.0))


# ---------------------------------------------------------------------------
# Token scores


def test_token_scores_reduce_the_embedding_axis_and_drop_padding():
    rng = np.random.default_rng(0)
    mask = rng.normal(size=(2, 5, 4))
    attention = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    scores = token_scores(mask, attention)
    np.testing.assert_allclose(scores, np.where(attention, mask.sum(-1), 0))
    np.testing.assert_allclose(token_scores(mask, how="l2"), np.linalg.norm(mask, axis=-1))
    np.testing.assert_allclose(token_scores(mask[0], attention[0], "sum_abs", fill=np.nan)[:3],
                               np.abs(mask[0]).sum(-1)[:3])
    assert np.all(np.isnan(token_scores(mask[0], attention[0], fill=np.nan)[3:]))
    with pytest.raises(ValueError, match=r"how: expected one of \['sum', 'l2', 'sum_abs'\], "
                                         r"got 'max'"):
        token_scores(mask, how="max")
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(2, 5\)"):
        token_scores(mask, attention[:, :4])
    with pytest.raises(ValueError, match=r"mask: expected \[T, D\] or \[N, T, D\]"):
        token_scores(mask[0, 0])


def test_top_tokens_never_returns_padding():
    scores = np.array([[0.0, -2.0, 1.0, 5.0], [3.0, 0.0, 0.0, 0.0]])
    attention = np.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(top_tokens(scores, attention, k=2), [[2, 0], [0, -1]])
    np.testing.assert_array_equal(top_tokens(scores[0], attention[0], 2, absolute=True), [1, 2])
    np.testing.assert_array_equal(top_tokens(scores[0]), [3])


# ---------------------------------------------------------------------------
# Must show: the keyword first, completeness within 5%


def _check_keywords_and_completeness(masks, errors, data, predicted):
    scores = token_scores(masks, data.attention_mask)
    totals = masks.reshape(len(masks), -1).sum(axis=1)
    delta = totals - errors
    # Token scores ("sum") add up to the mask's total: completeness holds per token too.
    np.testing.assert_allclose(scores.sum(axis=1), totals, rtol=1e-4, atol=1e-4)
    relative = np.abs(errors) / np.abs(delta)
    first = top_k_hit_rate(scores, data.keywords, k=1, valid=data.attention_mask,
                           absolute=False)
    chance = chance_hit_rate(data.keywords, data.attention_mask).mean()
    print(f"keyword first {first.mean():.2f} (chance {chance:.2f}), completeness error "
          f"median {np.median(relative):.1e} max {relative.max():.1e}, accuracy "
          f"{np.mean(predicted == data.labels):.2f}")
    assert np.all(relative <= 0.05)
    assert first.mean() >= 0.9


def test_ig_with_pad_baseline_on_the_embedding_output(text):
    """x = LayerNorm(token + position embeddings), one sentence per GetMask."""
    m, data = text, text.test
    ops = len(m.graph.get_operations())
    assert m.accuracy >= 0.95
    predicted = m.target.predict(m.session, m.ids, data.ids, {m.mask: data.attention_mask})
    ig = saliency.IntegratedGradients(m.graph, m.session, m.target.y, m.embeddings)
    emb = embed(m.session, m.embeddings, m.ids, data.ids)
    base = embedding_baseline(m.session, m.embeddings, m.ids, data.ids, pad_id=data.pad_id,
                              keep=(data.cls_id, data.sep_id))
    ops_ig = len(m.graph.get_operations())
    masks, errors = [], []
    for i in range(len(data)):
        feed = {m.mask: saliency.PerExample(data.attention_mask[i:i + 1]),
                **m.target.feed(int(predicted[i]))}
        mask, error = ig.GetMask(emb[i], feed, x_baseline=base[i], x_steps=48,
                                 rule="trapezoid", return_error=True)
        masks.append(mask)
        errors.append(error)
    _check_keywords_and_completeness(np.stack(masks), np.array(errors), data, predicted)
    assert ops_ig > ops and len(m.graph.get_operations()) == ops_ig


def test_ig_through_intermediate_embeddings_with_per_example_ids_and_mask(text, counting):
    """x = the embedding lookup, fed directly; ids and mask as PerExample in one GetMaskBatch."""
    m, data = text, text.test
    predicted = m.target.predict(m.session, m.ids, data.ids, {m.mask: data.attention_mask})
    spy = counting(m.session)
    ig = saliency.IntegratedGradients(m.graph, spy, m.target.y, m.token_embeddings)
    feed = {m.ids: saliency.PerExample(data.ids),
            m.mask: saliency.PerExample(data.attention_mask), **m.target.feed(predicted)}
    emb = embed(m.session, m.token_embeddings, m.ids, data.ids, feed)
    base = embedding_baseline(m.session, m.token_embeddings, m.ids, data.ids,
                              pad_id=data.pad_id, keep=(data.cls_id, data.sep_id), feed_dict=feed)
    masks, errors = ig.GetMaskBatch(emb, feed, x_baseline=base, x_steps=48, rule="trapezoid",
                                    return_error=True, batch_size=480)
    assert spy.run.call_count == -(-len(data) * 48 // 480)
    _check_keywords_and_completeness(masks, errors, data, predicted)
    # The rows line up: the batch equals explaining each sentence alone.
    for i in (0, 7):
        one = ig.GetMask(emb[i], {m.ids: saliency.PerExample(data.ids[i:i + 1]),
                                  m.mask: saliency.PerExample(data.attention_mask[i:i + 1]),
                                  **m.target.feed(int(predicted[i]))},
                         x_baseline=base[i], x_steps=48, rule="trapezoid")
        np.testing.assert_allclose(one, masks[i], rtol=1e-4, atol=1e-6)
