"""Task heads: shapes, parameter layout, losses against hand computations, decoders, jit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning_jax.models.heads import (SequenceClassificationHead, SpanExtractionHead, TokenClassificationHead,
                                            first_subword_label_weights, span_loss, token_classification_loss,
                                            weighted_cross_entropy, word_predictions)
from prompt_tuning_jax.tasks.labels import best_spans
from prompt_tuning_jax.axes import LOGICAL_AXIS_RULES

B, T, H = 2, 9, 8
HIDDEN = jax.random.normal(jax.random.key(0), (B, T, H))
WORD_IDS = np.array([[-1, 0, 0, 1, 2, 2, 2, -1, -1],
                     [-1, 0, 1, 1, -1, -1, -1, -1, -1]])


def _init(head, *args, **kwargs):
  return head.init(jax.random.key(1), *args, **kwargs)


HEADS = {  # name -> (head, args, kwargs, expected output shapes)
    "sequence": (SequenceClassificationHead(num_labels=3), (HIDDEN,), {"cls_index": 1}, [(B, 3)]),
    "token": (TokenClassificationHead(num_labels=5), (HIDDEN,), {}, [(B, T, 5)]),
    "span": (SpanExtractionHead(), (HIDDEN,), {}, [(B, T, 2)]),
    "choice": (SequenceClassificationHead(num_labels=1), (jnp.concatenate([HIDDEN] * 3),), {"num_choices": 3},
               [(B, 3)]),
}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_shapes_parameter_layout_and_jit(name):
  head, args, kwargs, shapes = HEADS[name]
  boxed = _init(head, *args, **kwargs)["params"]
  # Same paths and logical axes as EncoderClassifier's head; only known axis names.
  assert sorted(boxed) == ["bias", "kernel"]
  assert isinstance(boxed["kernel"], nn.LogicallyPartitioned)
  assert boxed["kernel"].names == ("embed", "classes") and boxed["bias"].names == ("classes",)
  assert all(n in dict(LOGICAL_AXIS_RULES) for n in boxed["kernel"].names)
  variables = nn.unbox(_init(head, *args, **kwargs))
  assert variables["params"]["kernel"].shape[0] == H
  np.testing.assert_array_equal(variables["params"]["bias"], 0.0)
  assert 0.005 < float(variables["params"]["kernel"].std()) < 0.05  # normal(0.02)
  eager = jax.tree.leaves(head.apply(variables, *args, **kwargs))
  assert [o.shape for o in eager] == shapes
  jitted = jax.tree.leaves(jax.jit(lambda v, *a: head.apply(v, *a, **kwargs))(variables, *args))
  for e, j in zip(eager, jitted):
    np.testing.assert_allclose(e, j, rtol=1e-5, atol=1e-6)
  # Dropout is active only when not deterministic.
  dropped = jax.tree.leaves(head.apply(variables, *args, **kwargs, deterministic=False,
                                       rngs={"dropout": jax.random.key(2)}))
  assert not np.allclose(eager[0], dropped[0])


def test_sequence_head_reads_cls_index():
  head = SequenceClassificationHead(num_labels=3, dropout=0.0)
  variables = nn.unbox(_init(head, HIDDEN))
  k, b = variables["params"]["kernel"], variables["params"]["bias"]
  np.testing.assert_allclose(head.apply(variables, HIDDEN, cls_index=4), HIDDEN[:, 4] @ k + b, rtol=1e-5, atol=1e-6)
  assert not np.allclose(head.apply(variables, HIDDEN, cls_index=4), head.apply(variables, HIDDEN, cls_index=0))


def test_first_subword_label_weights():
  expected = [[0, 1, 0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 0]]
  out = first_subword_label_weights(WORD_IDS)
  assert isinstance(out, np.ndarray)
  np.testing.assert_array_equal(out, expected)
  # Same result under jit on device arrays; a word starting at token 0 (no [CLS]) counts.
  np.testing.assert_array_equal(jax.jit(first_subword_label_weights)(jnp.asarray(WORD_IDS)), expected)
  np.testing.assert_array_equal(first_subword_label_weights(np.array([[0, 0, 1, -1]])), [[1, 0, 1, 0]])


def test_token_loss_ignores_weight_zero_tokens():
  logits = jax.random.normal(jax.random.key(3), (B, T, 4))
  weights = first_subword_label_weights(WORD_IDS)
  labels = np.where(weights > 0, np.arange(B * T).reshape(B, T) % 4, -100)  # -100 on ignored tokens
  loss, stats = token_classification_loss(logits, labels, weights)
  # Hand computation over the five weighted tokens.
  logp = jax.nn.log_softmax(np.asarray(logits), -1)
  picked = [-logp[b, t, labels[b, t]] for b, t in zip(*np.nonzero(weights))]
  np.testing.assert_allclose(loss, np.mean(picked), rtol=1e-5)
  assert float(stats["count"]) == 5
  correct = sum(int(np.argmax(logits[b, t]) == labels[b, t]) for b, t in zip(*np.nonzero(weights)))
  assert float(stats["correct"]) == correct
  # Changing a weight-0 token's logits leaves the loss alone; a weight-1 token's does not.
  same, _ = token_classification_loss(logits.at[0, 2].add(50.0), labels, weights)
  other, _ = token_classification_loss(logits.at[0, 1].add(jnp.array([50.0, 0, 0, 0])), labels, weights)
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(same, loss, rtol=1e-6)
  assert abs(float(other) - float(loss)) > 1.0


def test_word_predictions_read_first_subword():
  # Token-level argmax: [0, 1, 2, 2, 0, 1, 1, 0, 0] and [2, 1, 0, 2, 0, 0, 0, 0, 0].
  argmax = np.array([[0, 1, 2, 2, 0, 1, 1, 0, 0], [2, 1, 0, 2, 0, 0, 0, 0, 0]])
  logits = np.eye(3)[argmax]
  assert word_predictions(logits, WORD_IDS) == [[1, 2, 0], [1, 0]]


def test_span_loss_matches_hand_computation():
  start = jnp.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, 0.0, 2.0]])
  end = jnp.array([[0.0, 0.0, 1.0, 0.0], [1.0, 3.0, 0.0, 0.0]])
  mask = jnp.array([[1, 0, 1, 1], [1, 0, 0, 1]])  # position 1 (question) is outside the context
  loss, stats = span_loss(start, end, jnp.array([2, 0]), jnp.array([3, 0]), mask)  # example 2: no answer
  lse = lambda xs: np.log(np.sum(np.exp(xs)))
  hand_start = [lse([1, 3, 4]) - 3, lse([0.5, 2]) - 0.5]
  hand_end = [lse([0, 1, 0]) - 0, lse([1, 0]) - 1]
  expected = (np.mean(hand_start) + np.mean(hand_end)) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # Both argmax starts are 3, so neither example is right; labels at the argmaxes make both right.
  assert float(stats["correct"]) == 0 and float(stats["count"]) == 2
  _, at_argmax = span_loss(start, end, jnp.array([3, 3]), jnp.array([2, 0]), mask)
  assert float(at_argmax["correct"]) == 2
  # Masked positions really are excluded: unmasking them changes the loss.
  assert abs(float(span_loss(start, end, jnp.array([2, 0]), jnp.array([3, 0]), jnp.ones_like(mask))[0]) - expected) > 0.1
  # Weights drop the second example.
  weighted, _ = span_loss(start, end, jnp.array([2, 0]), jnp.array([3, 0]), mask, weights=jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(weighted, (hand_start[0] + hand_end[0]) / 2, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(span_loss)(start, end, jnp.array([2, 0]), jnp.array([3, 0]), mask)[0],
                             expected, rtol=1e-5)


def test_best_spans_skips_inverted_and_too_long_spans():
  #             0    1    2    3    4    5
  start = [[0.0, 20.0, 8.0, 1.0, 1.0, 10.0]]
  end = [[0.0, 20.0, 1.0, 9.0, 7.0, 1.0]]
  mask = [[1, 0, 1, 1, 1, 1]]  # 1 is a question token: its 20s must never be used
  # Best start 5 with best end 3 is inverted (score 19); the best valid span is (2, 3).
  spans = best_spans(np.array(start), np.array(end), np.array(mask), n_best=3)
  assert spans == [[(2, 3, 17.0), (2, 4, 15.0), (3, 3, 10.0)]]
  assert all(s <= e for s, e, _ in spans[0])
  # max_answer_length=1 excludes (2, 3) and (2, 4).
  short = best_spans(np.array(start), np.array(end), np.array(mask), n_best=3, max_answer_length=1)
  assert short == [[(3, 3, 10.0), (2, 2, 9.0)]]
  # Default n_best: all valid in-context pairs, sorted, including the no-answer span (0, 0).
  full = best_spans(np.array(start), np.array(end), np.array(mask))[0]
  assert full[0] == (2, 3, 17.0) and (0, 0, 0.0) in full
  assert [s[2] for s in full] == sorted((s[2] for s in full), reverse=True)
  assert not any(1 in (s, e) for s, e, _ in full)


def test_multiple_choice_logits_and_loss():
  k = 3
  hidden = jax.random.normal(jax.random.key(4), (B * k, 5, H))
  head = SequenceClassificationHead(num_labels=1, dropout=0.0)
  variables = nn.unbox(_init(head, hidden, num_choices=k, cls_index=0))
  variables = {"params": {**variables["params"], "bias": jnp.array([0.7])}}
  logits = head.apply(variables, hidden, num_choices=k, cls_index=0)
  assert logits.shape == (B, k)
  kernel = np.asarray(variables["params"]["kernel"])[:, 0]
  for b in range(B):
    for c in range(k):  # choice c of example b is row b * k + c
      np.testing.assert_allclose(logits[b, c], np.dot(hidden[b * k + c, 0], kernel) + 0.7, rtol=1e-5, atol=1e-6)
  labels = jnp.array([2, 0])
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  hand = -np.log(probs[np.arange(B), labels])
  loss, stats = weighted_cross_entropy(logits, labels, jnp.ones(B))
  np.testing.assert_allclose(loss, hand.mean(), rtol=1e-5)
  assert float(stats["count"]) == 2
  assert float(stats["correct"]) == float(np.sum(np.argmax(logits, -1) == labels))
  only_first, _ = weighted_cross_entropy(logits, labels, jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(only_first, hand[0], rtol=1e-5)


def test_bank_heads_pick_each_examples_member():
  task_ids = jnp.array([1, 0])
  for head, kwargs in ((SequenceClassificationHead(num_labels=3, dropout=0.0, size=2), {}),
                       (TokenClassificationHead(num_labels=3, dropout=0.0, size=2), {})):
    variables = nn.unbox(_init(head, HIDDEN, task_ids=task_ids, **kwargs))
    kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
    assert kernel.shape == (2, H, 3) and bias.shape == (2, 3)
    variables = {"params": {"kernel": kernel, "bias": jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])}}
    out = head.apply(variables, HIDDEN, task_ids=task_ids, **kwargs)
    for b, member in enumerate([1, 0]):
      x = HIDDEN[b, 0] if isinstance(head, SequenceClassificationHead) else HIDDEN[b]
      want = x @ kernel[member] + variables["params"]["bias"][member]
      np.testing.assert_allclose(out[b], want, rtol=1e-5, atol=1e-5)
