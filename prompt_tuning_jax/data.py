"""Tokenized examples in memory, batched into a few padded length buckets.

A train batch is a pure function of (seed, step): epoch e is laid out from
rng(seed, e), so a run resumed at step s sees exactly the batches it would have.
Padding every batch to one of a few bucket lengths bounds the number of compiles;
grouping examples of similar length into a batch keeps the padding small.
"""

import dataclasses
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from prompt_tuning_jax import tasks

Batch = Dict[str, np.ndarray]


@dataclasses.dataclass
class Examples:
  """Tokenized examples of one split: ragged ids and token types, int labels, and the
  task id of each example (its index in a mixture; 0 for a single task)."""
  input_ids: List[np.ndarray]
  token_type_ids: List[np.ndarray]
  labels: np.ndarray
  task_ids: Optional[np.ndarray] = None

  def __post_init__(self):
    if self.task_ids is None:
      self.task_ids = np.zeros(len(self.labels), np.int32)

  def __len__(self) -> int:
    return len(self.labels)


def concatenate(parts: Sequence[Examples]) -> Examples:
  """One Examples holding every part, each part's task ids kept (a mixture's training set)."""
  return Examples([x for p in parts for x in p.input_ids], [x for p in parts for x in p.token_type_ids],
                  np.concatenate([p.labels for p in parts]), np.concatenate([p.task_ids for p in parts]))


def load_examples(task_name: str, split: str, max_length: int, task_id: int = 0) -> Examples:
  """Runs the seqio task's preprocessing once and keeps the result in memory."""
  task = tasks.get_task(task_name)
  ds = task.get_dataset(sequence_length={"inputs": max_length}, split=split, shuffle=False, use_cached=False)
  ids, types, labels = [], [], []
  for ex in tfds.as_numpy(ds):
    ids.append(ex["inputs"])
    types.append(ex["token_type_ids"])
    labels.append(ex["label"])
  if not labels:
    raise tasks.DataError(f"task {task_name!r} split {split!r} is empty.")
  return Examples(ids, types, np.asarray(labels, np.int32), np.full(len(labels), task_id, np.int32))


def bucket_lengths(max_length: int, smallest: int = 16) -> List[int]:
  """Lengths 16, 24, 32, 48, 64, 96, ... (powers of two and 1.5x) below `max_length`, then it."""
  out, n = [], smallest
  while n < max_length:
    out.append(n)
    if n * 3 // 2 < max_length:
      out.append(n * 3 // 2)
    n *= 2
  return out + [max_length]


def pad_batch(examples: Examples, index: Sequence[int], buckets: Sequence[int], batch_size: int) -> Batch:
  """Examples at `index` -> arrays [B, T] padded to the smallest fitting bucket.

  Rows beyond len(index) (a short final eval batch) are padding with weight 0.
  """
  longest = max(len(examples.input_ids[i]) for i in index)
  length = next(b for b in buckets if b >= longest)
  ids = np.zeros((batch_size, length), np.int32)
  types = np.zeros((batch_size, length), np.int32)
  labels = np.zeros((batch_size,), np.int32)
  task_ids = np.zeros((batch_size,), np.int32)
  weights = np.zeros((batch_size,), np.float32)
  for row, i in enumerate(index):
    n = len(examples.input_ids[i])
    ids[row, :n] = examples.input_ids[i]
    types[row, :n] = examples.token_type_ids[i]
    labels[row] = examples.labels[i]
    task_ids[row] = examples.task_ids[i]
    weights[row] = 1.0
  return {"input_ids": ids, "token_type_ids": types, "attention_mask": (ids != 0).astype(np.int32),
          "labels": labels, "task_ids": task_ids, "weights": weights}


class TrainBatches:
  """Endless shuffled batches; batch s is determined by (seed, s).

  Each epoch shuffles the examples, sorts each window of `group_batches` batches by
  length, cuts it into batches and shuffles the batch order (HF's group_by_length).
  group_batches=1 gives plain shuffled batches.
  """

  def __init__(self, examples: Examples, batch_size: int, max_length: int, seed: int, group_batches: int = 50):
    if len(examples) < batch_size:
      raise ValueError(f"the training split has {len(examples)} examples, fewer than BATCH_SIZE={batch_size}.")
    self.examples, self.batch_size, self.seed, self.group_batches = examples, batch_size, seed, group_batches
    self.buckets = bucket_lengths(max_length)
    self.steps_per_epoch = len(examples) // batch_size
    self._lengths = np.array([len(x) for x in examples.input_ids])
    self._epoch, self._batches = -1, None

  def epoch_batches(self, epoch: int) -> np.ndarray:
    """[steps_per_epoch, B] example indices of `epoch`."""
    rng = np.random.default_rng((self.seed, epoch))
    order = rng.permutation(len(self.examples))[:self.steps_per_epoch * self.batch_size]
    window = self.batch_size * self.group_batches
    for start in range(0, len(order), window):
      chunk = order[start:start + window]
      order[start:start + window] = chunk[np.argsort(self._lengths[chunk], kind="stable")]
    return order.reshape(self.steps_per_epoch, self.batch_size)[rng.permutation(self.steps_per_epoch)]

  def batch(self, step: int) -> Batch:
    epoch, i = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._epoch, self._batches = epoch, self.epoch_batches(epoch)
    return pad_batch(self.examples, self._batches[i], self.buckets, self.batch_size)


def eval_order(examples: Examples) -> np.ndarray:
  """Example indices by length, so eval batches carry little padding."""
  return np.argsort([len(x) for x in examples.input_ids], kind="stable")


def eval_batches(examples: Examples, batch_size: int, max_length: int) -> Iterator[Batch]:
  """Every example once, in `eval_order`; the last batch padded with zero-weight rows."""
  buckets, order = bucket_lengths(max_length), eval_order(examples)
  for start in range(0, len(examples), batch_size):
    yield pad_batch(examples, order[start:start + batch_size], buckets, batch_size)
