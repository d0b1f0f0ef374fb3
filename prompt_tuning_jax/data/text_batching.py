"""Text-to-text examples in memory, batched into padded length buckets for a T5.

Examples come from a seqio task ('inputs', 'targets' with EOS) or from a text file of
inputs (inference). Inputs and targets are each padded to one of a few bucket lengths
(batching.bucket_lengths), so a run compiles a handful of programs. Train batches are a pure
function of (seed, step) in the encoder trainer's order (batching.BatchOrder: shuffled per
epoch, grouped by input length), so a resumed run sees the batches it would have seen.
Every batch carries `prompt_ids` [B], the prompt-bank member of each row (its task id in a
mixture, 0 otherwise; padding rows 0).
"""

import dataclasses
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np
from prompt_tuning_jax import errors
from prompt_tuning_jax.data import batching

Batch = Dict[str, np.ndarray]


@dataclasses.dataclass
class TextExamples:
  """Tokenized examples of one split: ragged input and target ids (EOS included; targets may be
  empty for inference) with their strings, example ids and prompt ids (the prompt-bank member each
  example uses: its task's id in a mixture; None = all 0); meta: per feature that a task's metric reads
  (e.g. 'group', 'answers', 'label'; tasks/text_to_text.py), one value per example."""
  inputs: List[np.ndarray]
  targets: List[np.ndarray]
  inputs_text: List[str]
  targets_text: List[str]
  idx: np.ndarray
  prompt_ids: Optional[np.ndarray] = None
  meta: Dict[str, list] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.prompt_ids is None:
      self.prompt_ids = np.zeros((len(self.inputs),), np.int32)

  def __len__(self) -> int:
    return len(self.inputs)


def concatenate(parts: Sequence[TextExamples]) -> TextExamples:
  """One TextExamples holding every part in order, each part's prompt ids kept (a mixture's training set);
  meta keeps the features every part has."""
  join = lambda name: [x for part in parts for x in getattr(part, name)]
  shared_meta = set.intersection(*(set(part.meta) for part in parts)) if parts else set()
  return TextExamples(join("inputs"), join("targets"), join("inputs_text"), join("targets_text"),
                      np.concatenate([p.idx for p in parts]), np.concatenate([p.prompt_ids for p in parts]),
                      {k: [x for part in parts for x in part.meta[k]] for k in sorted(shared_meta)})


def load_input_file(path, vocabulary, max_length: int) -> TextExamples:
  """One input per non-empty line of a UTF-8 text file, tokenized with EOS and truncated as seqio does."""
  lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
  lines = [line for line in lines if line]
  if not lines:
    raise errors.DataError(f"{path}: no inputs (one per line expected).")
  ids = [np.array(list(vocabulary.encode(line))[:max_length - 1] + [vocabulary.eos_id], np.int32) for line in lines]
  return TextExamples(ids, [np.zeros((0,), np.int32)] * len(ids), lines, [""] * len(ids), np.arange(len(ids)))


def shift_right(targets: np.ndarray, start_id: int = 0) -> np.ndarray:
  """Decoder inputs [..., T']: the start id, then the targets without their last position."""
  return np.concatenate([np.full(targets.shape[:-1] + (1,), start_id, targets.dtype), targets[..., :-1]], axis=-1)


def pad_to(sequences: Sequence[np.ndarray], rows: int, buckets: Sequence[int]) -> np.ndarray:
  """[rows, bucket] int32: `sequences` left-aligned, padded with 0 to the smallest bucket that fits."""
  longest = max([len(s) for s in sequences] + [1])
  out = np.zeros((rows, next(b for b in buckets if b >= longest)), np.int32)
  for row, s in enumerate(sequences):
    out[row, :len(s)] = s
  return out


def pad_batch(examples: TextExamples, index: Sequence[int], buckets: Mapping[str, Sequence[int]],
              batch_size: int) -> Batch:
  """Examples at `index` -> a batch (see models/encoder_decoder_model.py) of batch_size rows; missing rows are all padding."""
  targets = pad_to([examples.targets[i] for i in index], batch_size, buckets["targets"])
  prompt_ids = np.zeros((batch_size,), np.int32)
  prompt_ids[:len(index)] = examples.prompt_ids[np.asarray(index, np.int64)]
  return {"encoder_input_tokens": pad_to([examples.inputs[i] for i in index], batch_size, buckets["inputs"]),
          "decoder_target_tokens": targets, "decoder_input_tokens": shift_right(targets),
          "decoder_loss_weights": (targets > 0).astype(np.float32), "prompt_ids": prompt_ids}


def feature_buckets(feature_lengths: Mapping[str, int]) -> Dict[str, List[int]]:
  """Bucket lengths per feature; targets keep the smallest bucket at 8 (labels are short)."""
  return {"inputs": batching.bucket_lengths(int(feature_lengths["inputs"])),
          "targets": batching.bucket_lengths(int(feature_lengths["targets"]), smallest=8)}


class TrainBatches(batching.BatchOrder):
  """Endless text-to-text batches in batching.BatchOrder's order (one group, ordered by input length)."""

  def __init__(self, examples: TextExamples, batch_size: int, feature_lengths: Mapping[str, int], seed: int):
    super().__init__([np.arange(len(examples))], [len(x) for x in examples.inputs], batch_size, seed)
    self.examples, self.buckets = examples, feature_buckets(feature_lengths)

  def pad(self, index: np.ndarray) -> Batch:
    return pad_batch(self.examples, index, self.buckets, self.batch_size)


def eval_batches(examples: TextExamples, batch_size: int,
                 feature_lengths: Mapping[str, int]) -> Iterator[tuple]:
  """(example indices, batch) covering every example once, shortest inputs first (batching.indexed_batches)."""
  buckets = feature_buckets(feature_lengths)
  return batching.indexed_batches([len(x) for x in examples.inputs], batch_size,
                              lambda index: pad_batch(examples, index, buckets, batch_size))


def candidate_arrays(vocabulary, target_strings: Sequence[str], max_length: int) -> Dict[str, np.ndarray]:
  """The possible targets tokenized with EOS as teacher-forcing arrays [C, T'] for rank classification."""
  ids = [list(vocabulary.encode(s))[:max_length - 1] + [vocabulary.eos_id] for s in target_strings]
  targets = pad_to([np.array(x, np.int32) for x in ids], len(ids), [max(len(x) for x in ids)])
  return {"candidate_inputs": shift_right(targets), "candidate_targets": targets}
