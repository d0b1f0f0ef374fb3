"""Task heads over a backbone's final hidden states `hidden [B, T, H]`, with losses and decoders.

Each head owns exactly two randomly initialised parameters, `kernel [embed, classes]` and
`bias [classes]` (a bank of K heads: `[tasks, embed, classes]`, `[tasks, classes]`), so every head
module named "head" has the same paths ("head/kernel", "head/bias") and is trained by `head/.*`.
Losses share `weighted_cross_entropy`: float32 cross-entropy, a weighted mean, padding
carries weight 0. Decoders are numpy and run on host after eval.
"""

from typing import Callable, Dict, List, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_tuning_jax.axes import with_axes
from prompt_tuning_jax.dropout import Dropout
# Label conventions and the host-side span search belong to the tasks (they need no model); re-exported here.
from prompt_tuning_jax.tasks.labels import MASKED_LOGIT, first_subword_label_weights



def _project(head: nn.Module, x, features: int, dropout: float, deterministic: bool, size: Optional[int] = None,
             task_ids=None) -> jax.Array:
  """Dropout then x @ kernel + bias; x [B, ..., H] -> [B, ..., features]. Call from a compact method: the
  parameters land directly on `head` (no Dense_0 level).

  With `size` K the head is a bank of K (kernel [K, H, features], bias [K, features]) and example b uses
  member task_ids[b] [B]: one head per task in a mixture, or per member of an ensemble.
  """
  if size is None:
    kernel = head.param("kernel", with_axes(nn.initializers.normal(0.02), "embed", "classes"),
                        (x.shape[-1], features))
    bias = head.param("bias", with_axes(nn.initializers.zeros, "classes"), (features,))
    return jnp.dot(Dropout(dropout)(x, deterministic=deterministic), kernel) + bias
  kernel = head.param("kernel", with_axes(nn.initializers.normal(0.02), "tasks", "embed", "classes"),
                      (size, x.shape[-1], features))
  bias = head.param("bias", with_axes(nn.initializers.zeros, "tasks", "classes"), (size, features))
  x = Dropout(dropout)(x, deterministic=deterministic)
  per_example_bias = bias[task_ids].reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (features,))
  return jnp.einsum("b...h,bhc->b...c", x, kernel[task_ids]) + per_example_bias


def weighted_cross_entropy(logits, labels, weights) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """logits [..., C], labels [...], weights [...] -> (weighted mean loss, {"correct", "count"})."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  weights = jnp.asarray(weights, jnp.float32)
  correct = (logits.argmax(-1) == labels) * weights
  total = jnp.maximum(weights.sum(), 1.0)
  return (losses * weights).sum() / total, {"correct": correct.sum(), "count": weights.sum()}


class SequenceClassificationHead(nn.Module):
  """Logits from the [CLS] state, for classification and multiple choice. Loss: weighted_cross_entropy.

  Multiple choice (COPA, SWAG) scores each (context, choice_k) sequence by its first class logit: a 1-class
  head for a multiple-choice task alone, column 0 of the task's head in a mixture with classification tasks
  (one head bank serves both, so they can share a prompt).

  With `size` K, it is a bank of K heads (kernel [K, H, C], bias [K, C]) and example b uses head task_ids[b]
  (multi-task: one head per task; ensembles: one per member).
  """
  num_labels: int
  dropout: float = 0.1
  size: Optional[int] = None

  @nn.compact
  def __call__(self, hidden, cls_index: int = 0, deterministic: bool = True,
               pooler: Optional[Callable[[jax.Array], jax.Array]] = None, task_ids=None,
               num_choices: Optional[int] = None) -> jax.Array:
    """hidden [B, T, H] -> logits [B, C]. cls_index is P after an input prompt, else 0; pooler (e.g.
    BertEncoder.pool) maps the [CLS] state [B, H] first; task_ids [B]. With num_choices K, hidden is
    [B*K, T, H] (the choices of one example consecutive, task_ids [B*K]) and the logits are [B, K]."""
    features = hidden[:, cls_index]
    if pooler is not None:
      features = pooler(features)
    logits = _project(self, features, self.num_labels, self.dropout, deterministic, self.size, task_ids)
    return logits if num_choices is None else logits[:, 0].reshape(-1, num_choices)


class TokenClassificationHead(nn.Module):
  """Per-token logits (NER, SRL); labels live on each word's first sub-word. `size`: a bank, as above."""
  num_labels: int
  dropout: float = 0.1
  size: Optional[int] = None

  @nn.compact
  def __call__(self, hidden, deterministic: bool = True, task_ids=None) -> jax.Array:
    """hidden [B, T, H], task_ids [B] -> logits [B, T, C]."""
    return _project(self, hidden, self.num_labels, self.dropout, deterministic, self.size, task_ids)


def token_classification_loss(logits, labels, weights) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """logits [B, T, C], labels [B, T], weights [B, T] -> (mean loss over weighted tokens,
  {"correct", "count"} over weighted tokens). Labels at weight-0 tokens are ignored (any value)."""
  return weighted_cross_entropy(logits, jnp.where(weights > 0, labels, 0), weights)


def word_predictions(logits, word_ids) -> List[List[int]]:
  """logits [B, T, C], word_ids [B, T] -> per example, the predicted label id of each word, in
  word order, read at the word's first sub-word (the token that carried its label)."""
  word_ids = np.asarray(word_ids)
  predicted = np.asarray(logits).argmax(-1)
  first = first_subword_label_weights(word_ids) > 0
  return [predicted[b][first[b]].tolist() for b in range(word_ids.shape[0])]


class SpanExtractionHead(nn.Module):
  """Extractive QA (SQuAD): start and end logits per token from one Dense(H, 2)."""
  dropout: float = 0.1

  @nn.compact
  def __call__(self, hidden, deterministic: bool = True) -> jax.Array:
    """hidden [B, T, H] -> logits [B, T, 2]: [..., 0] starts, [..., 1] ends."""
    return _project(self, hidden, 2, self.dropout, deterministic)


def span_loss(start_logits, end_logits, start_positions, end_positions, context_mask,
              weights: Optional[jax.Array] = None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """Mean of the start and end cross-entropies; logits [B, T], positions [B], context_mask [B, T].

  Positions where context_mask is 0 (question, [SEP], padding) get logit -1e9, so the softmax
  runs over the context only. Index 0 ([CLS]) is the no-answer position (SQuAD v2): set
  context_mask[:, 0] = 1 when no-answer is allowed, and label unanswerable examples (0, 0).
  A gold position outside the mask costs ~1e9: it is a data bug, not something to train on.
  weights [B] (optional, default all 1) drop padded examples from the mean.
  Returns (loss, {"correct": examples whose start and end argmax are both right, "count"}).
  """
  mask = jnp.asarray(context_mask) > 0
  if weights is None:
    weights = jnp.ones(start_positions.shape, jnp.float32)
  start_logits = jnp.where(mask, start_logits.astype(jnp.float32), MASKED_LOGIT)
  end_logits = jnp.where(mask, end_logits.astype(jnp.float32), MASKED_LOGIT)
  start, stats = weighted_cross_entropy(start_logits, start_positions, weights)
  end, _ = weighted_cross_entropy(end_logits, end_positions, weights)
  both = (start_logits.argmax(-1) == start_positions) & (end_logits.argmax(-1) == end_positions)
  return (start + end) / 2, {"correct": (both * jnp.asarray(weights, jnp.float32)).sum(), "count": stats["count"]}
