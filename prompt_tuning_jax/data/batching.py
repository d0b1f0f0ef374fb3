"""Tokenized examples in memory, batched into a few padded length buckets.

A train batch is a pure function of (seed, step): epoch e is laid out from
rng(seed, e), so a run resumed at step s sees exactly the batches it would have.
Padding every batch to one of a few bucket lengths bounds the number of compiles;
grouping examples of similar length into a batch keeps the padding small.

Every task family (tasks/families.py) fits one layout: token arrays are ragged in their last
axis T and padded together, whatever comes before it (a multiple-choice example is [K, T]).
A batch holds examples of one input shape, so a mixture of classification and multiple
choice trains on batches of each.
"""

import dataclasses
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from prompt_tuning_jax import errors
Batch = Dict[str, np.ndarray]

IGNORE_LABEL = -100  # Hugging Face's ignore index: a token without a label (not a word's first sub-word).


@dataclasses.dataclass
class Examples:
  """Tokenized examples of one split, or of a mixture's splits.

  Attributes:
    input_ids: per example [T] int32, or [K, T] (one row per choice: multiple choice).
    token_type_ids: the same shapes.
    labels: int [n] (class, or the right choice), int [n, 2] (answer start and end token), or per example
      [T] token labels (IGNORE_LABEL where a token carries none).
    task_ids: [n] each example's task index in a mixture (0 for a single task).
    token_fields: more per-token arrays, batched and padded like input_ids (span extraction: context_mask).
    meta: what decoding and metrics read on the host and batches never carry (word ids, gold tags, character
      offsets, answers, question groups, ...): one list per key, an entry per example.
  """
  input_ids: List[np.ndarray]
  token_type_ids: List[np.ndarray]
  labels: Union[np.ndarray, List[np.ndarray]]
  task_ids: Optional[np.ndarray] = None
  token_fields: Dict[str, List[np.ndarray]] = dataclasses.field(default_factory=dict)
  meta: Dict[str, list] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.task_ids is None:
      self.task_ids = np.zeros(len(self.input_ids), np.int32)

  def __len__(self) -> int:
    return len(self.input_ids)

  def lengths(self) -> np.ndarray:
    """[n] each example's T (for [K, T] the padded length of its choices)."""
    return np.array([x.shape[-1] for x in self.input_ids])


def concatenate(parts: Sequence[Examples]) -> Examples:
  """One Examples holding every part, each part's task ids kept (a mixture's training set). Meta keys that
  not every part has are dropped: training reads no meta."""
  join = lambda lists: [x for part in lists for x in part]
  ragged = isinstance(parts[0].labels, list)
  labels = join(p.labels for p in parts) if ragged else np.concatenate([p.labels for p in parts])
  shared_meta = set.intersection(*(set(p.meta) for p in parts))
  return Examples(join(p.input_ids for p in parts), join(p.token_type_ids for p in parts), labels,
                  np.concatenate([p.task_ids for p in parts]),
                  {k: join(p.token_fields[k] for p in parts) for k in parts[0].token_fields},
                  {k: join(p.meta[k] for p in parts) for k in sorted(shared_meta)})


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
  """Examples at `index` (all of one input shape) -> arrays padded to the smallest fitting bucket T':
  input_ids, token_type_ids, attention_mask [B, T'] ([B, K, T'] for choices), labels [B] / [B, 2] / [B, T']
  (token labels padded with IGNORE_LABEL), token_fields [B, T'], task_ids and weights [B].

  Rows beyond len(index) (a short final eval batch) are padding with weight 0.
  """
  length = next(b for b in buckets if b >= max(examples.input_ids[i].shape[-1] for i in index))

  def pad(arrays, fill=0):
    out = np.full((batch_size, *arrays[index[0]].shape[:-1], length), fill, np.int32)
    for row, i in enumerate(index):
      out[row, ..., :arrays[i].shape[-1]] = arrays[i]
    return out

  ids = pad(examples.input_ids)
  if isinstance(examples.labels, list):
    labels = pad(examples.labels, IGNORE_LABEL)
  else:
    labels = np.zeros((batch_size, *examples.labels.shape[1:]), np.int32)
    labels[:len(index)] = examples.labels[np.asarray(index)]
  task_ids = np.zeros((batch_size,), np.int32)
  task_ids[:len(index)] = examples.task_ids[np.asarray(index)]
  weights = np.zeros((batch_size,), np.float32)
  weights[:len(index)] = 1.0
  return {"input_ids": ids, "token_type_ids": pad(examples.token_type_ids),
          "attention_mask": (ids != 0).astype(np.int32), "labels": labels, "task_ids": task_ids, "weights": weights,
          **{k: pad(v) for k, v in examples.token_fields.items()}}


def shape_groups(examples: Examples) -> List[np.ndarray]:
  """Indices of the examples of each input shape ([T]; [K, T] for each K), in first-seen order."""
  groups: Dict[tuple, List[int]] = {}
  for i, x in enumerate(examples.input_ids):
    groups.setdefault(x.shape[:-1], []).append(i)
  return [np.asarray(g) for g in groups.values()]


class BatchOrder:
  """Endless shuffled batches of example indices; batch s is determined by (seed, s). Both data paths
  (encoder examples here, text-to-text examples in text_batching.py) train in this order; a subclass pads the
  examples at an index into its batch (`pad`).

  Each epoch shuffles the examples of each group (examples of one input shape), sorts each window of
  `group_batches` batches by length, cuts it into batches and shuffles the order of all batches (HF's
  group_by_length). group_batches=1 gives plain shuffled batches.
  """

  def __init__(self, groups: Sequence[np.ndarray], lengths: np.ndarray, batch_size: int, seed: int,
               group_batches: int = 50, describe_group: Callable[[np.ndarray], str] = lambda group: ""):
    for group in groups:
      if len(group) < batch_size:
        raise errors.ConfigError(f"the training split has {len(group)} examples{describe_group(group)}, fewer "
                                 f"than BATCH_SIZE={batch_size}.")
    self.groups, self.batch_size, self.seed, self.group_batches = list(groups), batch_size, seed, group_batches
    self.steps_per_epoch = sum(len(g) // batch_size for g in self.groups)
    self._lengths = np.asarray(lengths)
    self._epoch, self._batches = -1, None

  def epoch_batches(self, epoch: int) -> np.ndarray:
    """[steps_per_epoch, B] example indices of `epoch`."""
    rng = np.random.default_rng((self.seed, epoch))
    batches, window = [], self.batch_size * self.group_batches
    for group in self.groups:
      order = group[rng.permutation(len(group))[:len(group) // self.batch_size * self.batch_size]]
      for start in range(0, len(order), window):
        chunk = order[start:start + window]
        order[start:start + window] = chunk[np.argsort(self._lengths[chunk], kind="stable")]
      batches.append(order.reshape(-1, self.batch_size))
    return np.concatenate(batches)[rng.permutation(self.steps_per_epoch)]

  def indices(self, step: int) -> np.ndarray:
    """[B] the example indices of batch `step`."""
    epoch, i = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._epoch, self._batches = epoch, self.epoch_batches(epoch)
    return self._batches[i]

  def batch(self, step: int) -> Batch:
    return self.pad(self.indices(step))

  def pad(self, index: np.ndarray) -> Batch:
    raise NotImplementedError

  def state_dict(self, position: int) -> Dict[str, int]:
    """The iterator state a checkpoint records, `position` being the index of the next batch: batches from
    batch(position) on are those an uninterrupted run sees when seed, batch size and examples match."""
    return {"seed": int(self.seed), "batch_size": int(self.batch_size), "examples": int(len(self._lengths)),
            "position": int(position)}


class TrainBatches(BatchOrder):
  """Encoder train batches (pad_batch) in BatchOrder's order; a group is the examples of one input shape."""

  def __init__(self, examples: Examples, batch_size: int, max_length: int, seed: int, group_batches: int = 50):
    groups = shape_groups(examples)
    describe = lambda group: ("" if len(groups) == 1 else
                              f" of input shape {examples.input_ids[group[0]].shape[:-1]}+(T,)")
    super().__init__(groups, examples.lengths(), batch_size, seed, group_batches, describe)
    self.examples, self.buckets = examples, bucket_lengths(max_length)

  def pad(self, index: np.ndarray) -> Batch:
    return pad_batch(self.examples, index, self.buckets, self.batch_size)


def indexed_batches(lengths: Sequence[int], batch_size: int,
                    pad: Callable[[np.ndarray], Batch]) -> Iterator[Tuple[np.ndarray, Batch]]:
  """(example indices, batch) covering every example once, shortest first (little padding); the last batch
  is padded with empty rows, which the index leaves out. Evaluation of both data paths batches this way."""
  order = np.argsort(np.asarray(lengths), kind="stable")
  for start in range(0, len(order), batch_size):
    index = order[start:start + batch_size]
    yield index, pad(index)


def eval_order(examples: Examples) -> np.ndarray:
  """Example indices by length, so eval batches carry little padding."""
  return np.argsort(examples.lengths(), kind="stable")


def eval_batches(examples: Examples, batch_size: int, max_length: int) -> Iterator[Batch]:
  """Every example once, in `eval_order`; the last batch padded with zero-weight rows."""
  return (batch for _, batch in indexed_eval_batches(examples, batch_size, max_length))


def indexed_eval_batches(examples: Examples, batch_size: int, max_length: int) -> Iterator[Tuple[np.ndarray, Batch]]:
  """(example indices, batch) of `eval_batches`."""
  buckets = bucket_lengths(max_length)
  return indexed_batches(examples.lengths(), batch_size,
                         lambda index: pad_batch(examples, index, buckets, batch_size))
