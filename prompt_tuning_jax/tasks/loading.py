"""A task's split preprocessed once by seqio and kept in memory as the batching layer's examples:
data.batching.Examples for encoder tasks, data.text_batching.TextExamples for text-to-text tasks."""

from typing import List, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from prompt_tuning_jax import tasks
from prompt_tuning_jax.data import batching, text_batching
from prompt_tuning_jax.tasks import families


def preprocessed_rows(task_name: str, split: str, sequence_length: Mapping[str, int], data_dir=None,
                      vocabulary=None) -> List[dict]:
  """Every example of the split after the task's preprocessing (numpy); an empty split is a DataError."""
  task = tasks.get_task(task_name, data_dir=data_dir, vocabulary=vocabulary)
  ds = task.get_dataset(sequence_length=dict(sequence_length), split=split, shuffle=False, use_cached=False)
  rows = list(tfds.as_numpy(ds))
  if not rows:
    raise tasks.DataError(f"task {task_name!r} split {split!r} is empty.")
  return rows


# seqio output keys that batches carry, per family; every other key goes to Examples.meta.
_LABEL_KEYS = {families.TOKEN_CLASSIFICATION: ("labels",), families.SPAN_EXTRACTION: ("start_position", "end_position")}
_TOKEN_FIELDS = {families.SPAN_EXTRACTION: ("context_mask",)}


def _host_value(value):
  """A tfds.as_numpy value as plain Python for meta: bytes -> str, arrays of bytes -> lists of str."""
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.dtype == object:
    return [_host_value(v) for v in value.tolist()]
  return value.item() if isinstance(value, np.generic) else value


def examples_from_rows(rows: Sequence[dict], family: str, task_id: int = 0) -> batching.Examples:
  """Preprocessed seqio examples (numpy) of one task -> Examples."""
  label_keys, token_keys = _LABEL_KEYS.get(family, ("label",)), _TOKEN_FIELDS.get(family, ())
  column = lambda key: [row[key] for row in rows]
  if family == families.TOKEN_CLASSIFICATION:
    labels = [np.asarray(x, np.int32) for x in column("labels")]
  elif len(label_keys) == 1:
    labels = np.asarray(column("label"), np.int32)
  else:
    labels = np.stack([np.asarray(column(k), np.int32) for k in label_keys], -1)
  batched = {"inputs", "token_type_ids", *label_keys, *token_keys}
  meta = {k: [_host_value(row[k]) for row in rows] for k in rows[0] if k not in batched}
  return batching.Examples(column("inputs"), column("token_type_ids"), labels, np.full(len(rows), task_id, np.int32),
                  {k: column(k) for k in token_keys}, meta)


def load_examples(task_name: str, split: str, max_length: int, task_id: int = 0, *, data_dir=None,
                  vocabulary=None) -> batching.Examples:
  """Runs the seqio task's preprocessing once and keeps the result in memory.

  data_dir: DATA_DIR (None = tasks/data); vocabulary: the backbone's WordPiece vocabulary (None = the
  packaged MiniLM's); both as tasks.get_task takes them.
  """
  rows = preprocessed_rows(task_name, split, {"inputs": max_length}, data_dir, vocabulary)
  return examples_from_rows(rows, tasks.info(task_name).family, task_id)


def load_text_examples(task_name: str, split: str, feature_lengths: Mapping[str, int], *, data_dir=None,
                       vocabulary=None) -> text_batching.TextExamples:
  """Runs the seqio task's preprocessing once (truncating to feature_lengths) and keeps the result.

  data_dir: DATA_DIR (None = tasks/data); vocabulary: the T5 vocabulary (None = t5's default model);
  both as tasks.get_task takes them.
  """
  rows = preprocessed_rows(task_name, split, dict(feature_lengths), data_dir, vocabulary)
  text = lambda row, key: row[f"{key}_pretokenized"].decode("utf-8")
  batched = {"inputs", "targets", "inputs_pretokenized", "targets_pretokenized", "idx"}
  meta = {k: [_host_value(row[k]) for row in rows] for k in rows[0] if k not in batched}
  return text_batching.TextExamples([r["inputs"] for r in rows], [r["targets"] for r in rows], [text(r, "inputs") for r in rows],
                      [text(r, "targets") for r in rows], np.array([r.get("idx", i) for i, r in enumerate(rows)]),
                      meta=meta)
