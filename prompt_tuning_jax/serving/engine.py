"""One compiled forward per group of served tasks: the frozen backbone with a bank of the tasks' prompts and
heads, compiled at start for a fixed set of (batch, length) buckets so no request waits for a compile.

A batch mixes the group's tasks: each row carries its task's member index as `task_ids`, which picks its
prompt and head inside the one forward (EncoderModel.eval_batch, the evaluation's own function).
"""

import itertools
import time
from typing import Dict, List, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax import trainable
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.serving import exports
from prompt_tuning_jax.tasks import families

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "task_ids")


def length_buckets(max_length: int, smallest: int = 32) -> List[int]:
  """Padded lengths 32, 64, 128, ... below max_length, then max_length: few shapes to compile, at most 2x padding."""
  out, n = [], smallest
  while n < max_length:
    out.append(n)
    n *= 2
  return out + [max_length]


def batch_buckets(max_batch: int) -> List[int]:
  """Padded batch sizes 1, 2, 4, ... below max_batch, then max_batch: a padding row costs a real row's compute,
  so at most half of a batch is padding."""
  out, n = [], 1
  while n < max_batch:
    out.append(n)
    n *= 2
  return out + [max_batch]


class TaskGroup:
  """Tasks of one signature (exports.ServedTask.signature) served by one model.

  Attributes:
    members: the tasks; member k's rows carry task id k.
    batch_sizes, lengths: the compiled buckets (a batch of n rows of longest T runs at the smallest
      bucket >= n and >= T).
  """

  def __init__(self, config: BertConfig, backbone_params, members: Sequence[exports.ServedTask], max_batch: int,
               lengths: Sequence[int] = ()):
    self.members = list(members)
    self.module = exports.group_module(config, self.members)
    self.model = EncoderModel(self.module)
    first = self.members[0]
    self.choices = len(first.label_names) if first.family == families.MULTIPLE_CHOICE else None
    self.max_length = max(m.max_length for m in self.members)
    self.lengths = sorted(set(lengths) | {self.max_length}) if lengths else length_buckets(self.max_length)
    self.lengths = [n for n in self.lengths if n <= self.max_length]
    self.batch_sizes = batch_buckets(max_batch)
    self.params = {**trainable.unflatten(exports.group_parameters(self.members, self._param_shapes())),
                   "backbone": backbone_params}
    self.params = jax.device_put(self.params)
    self._compiled: Dict[Tuple[int, ...], object] = {}

  def _param_shapes(self):
    dummy = jnp.zeros(self._shape(1, 8), jnp.int32)
    init = lambda: self.module.init(jax.random.key(0), dummy, dummy, dummy)["params"]
    return nn.meta.unbox(jax.eval_shape(init))

  def _shape(self, batch: int, length: int) -> Tuple[int, ...]:
    return (batch, length) if self.choices is None else (batch, self.choices, length)

  def compile(self) -> float:
    """Compiles the forward for every bucket; returns the seconds it took."""
    start = time.perf_counter()
    forward = jax.jit(lambda params, batch: self.model.eval_batch(params, batch)["outputs"])
    for batch, length in itertools.product(self.batch_sizes, self.lengths):
      shape = self._shape(batch, length)
      dummy = {k: jnp.zeros(shape if k != "task_ids" else (batch,), jnp.int32) for k in MODEL_INPUTS}
      self._compiled[shape] = forward.lower(self.params, dummy).compile()
    return time.perf_counter() - start

  def run(self, parts: Sequence[batching.Examples], max_batch: int) -> List[List[np.ndarray]]:
    """Each part's examples (task ids = member indices) -> per part, each example's outputs [1, ...] (float32
    logits with the evaluation's member axis). Rows are grouped by padded length and cut into batches of
    at most max_batch."""
    examples = batching.concatenate(parts)
    lengths = examples.lengths()
    bucket = np.searchsorted(self.lengths, lengths)  # Rows of one padded length batch together.
    outputs: List[np.ndarray] = [None] * len(examples)
    batches = [rows[start:start + max_batch] for b in np.unique(bucket) for rows in [np.flatnonzero(bucket == b)]
               for start in range(0, len(rows), max_batch)]
    for index in batches:
      size = next(b for b in self.batch_sizes if b >= len(index))
      batch = batching.pad_batch(examples, index, self.lengths, size)
      compiled = self._compiled[batch["input_ids"].shape]
      out = np.asarray(compiled(self.params, {k: jnp.asarray(batch[k]) for k in MODEL_INPUTS}))
      for row, i in enumerate(index):
        outputs[i] = out[row]
    per_part, start = [], 0
    for part in parts:
      per_part.append(outputs[start:start + len(part)])
      start += len(part)
    return per_part
