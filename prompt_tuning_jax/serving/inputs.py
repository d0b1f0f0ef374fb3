"""A request's inputs -> the task's examples, through exactly the preprocessing its data files go through.

An input is one row as the task's data holds it, labels left out:
  classification, multiple choice: the data file's row, e.g. {"sentence": ...} (SST-2), {"premise": ...,
    "hypothesis": ...} (RTE, CB), {"premise", "choice1", "choice2", "question"} (COPA);
  token classification: {"tokens": [words]} (SRL also "predicate": the predicate's word index);
  span extraction: {"question": ..., "context": ...} (optionally "id").
The row goes through the task source's row function (`to_features`) and the seqio task's preprocessors,
so a served input is tokenized exactly as the same row read from a file.
"""

import dataclasses
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_tuning_jax import errors, tasks
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.tasks import families, loading, qa, registry
from prompt_tuning_jax.tasks.preprocessors import qa_row
from prompt_tuning_jax.tasks.sources import host_value, rows_to_dataset

REQUEST_SPLIT = "request"


class InputError(errors.UserError):
  """An input a task cannot read (a missing field, a value of the wrong type): the client's fault (HTTP 422)."""


@dataclasses.dataclass
class Prepared:
  """One input's examples (MultiRC and ReCoRD rows give several, a long QA context several windows) and
  whether the feature length cut it."""
  examples: batching.Examples
  truncated: bool


def _feature_rows(task: str, family: str, label_names: Sequence[str], row: Mapping, where: str) -> List[dict]:
  """The request row as the task source's feature rows (labels filled with placeholders)."""
  if not isinstance(row, Mapping):
    raise InputError(f"{where} must be a JSON object with the task's fields, got {type(row).__name__}.")
  if family == families.TOKEN_CLASSIFICATION:
    tokens = row.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
      raise InputError(f"{where}: field 'tokens' must be a non-empty list of words (strings).")
    outside = "O" if "O" in label_names else label_names[0]
    feature_row = {"tokens": tokens, "tags": [outside] * len(tokens)}
    if "predicate" in registry.SPECS[task].source.feature_types:
      if not isinstance(row.get("predicate"), int) or not 0 <= row["predicate"] < len(tokens):
        raise InputError(f"{where}: field 'predicate' must be the predicate word's index (0-{len(tokens) - 1}).")
      feature_row["predicate"] = row["predicate"]
    return [feature_row]
  if family == families.SPAN_EXTRACTION:
    for key in ("question", "context"):
      if not isinstance(row.get(key), str) or not row[key].strip():
        raise InputError(f"{where}: field {key!r} must be a non-empty string.")
    return [qa_row(qa.QAExample(str(row.get("id", where)), row["question"], row["context"], (), ()))]
  source = registry.SPECS[task].source
  raw = {"label": 0, **row, "__line__": 1}  # Labels are not asked for; the row functions want one.
  try:
    out = source.to_features(raw, Path(where))
  except errors.DataError as e:
    raise InputError(str(e).replace(f"{where}:1:", f"{where}:")) from None
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    raise InputError(f"{where}: cannot be read as a {task} row ({type(e).__name__}: {e}).") from None
  return out if isinstance(out, list) else [out]


def feature_rows(task: str, family: str, label_names: Sequence[str], row: Mapping,
                 where: str = "input") -> List[dict]:
  """One request input -> the task source's feature rows, checked (fields and their types): an InputError
  names what is wrong, so a batch of checked inputs preprocesses without failing."""
  out = _feature_rows(task, family, label_names, row, where)
  if not out:
    raise InputError(f"{where}: gives no example for task {task} (e.g. a ReCoRD query without candidates).")
  try:
    rows_to_dataset(out, registry.SPECS[task].source.feature_types)
  except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
    raise InputError(f"{where}: a field has the wrong type for task {task} ({type(e).__name__}: "
                     f"{str(e).splitlines()[0]}).") from None
  return out


# Families whose preprocessors are per-example tf.data maps: traced once into a tf.function (~2 ms a call).
# The others (token tasks, QA) featurize a whole split in numpy and run through seqio per call (~80 ms).
_TRACEABLE = (families.CLASSIFICATION, families.MULTIPLE_CHOICE)
_traced: Dict[tuple, Callable] = {}


def _traced_preprocessing(task: str, max_length: int, vocabulary) -> Callable:
  """The task's preprocessors over a batch of feature columns, as one traced tf.function."""
  key = (task, max_length, id(vocabulary))
  if key not in _traced:
    spec = registry.SPECS[task]
    choices = len(registry.LABEL_NAMES[task])
    signature = {k: tf.TensorSpec([None, choices] if k == "choices" else [None], dtype)
                 for k, dtype in spec.source.feature_types.items()}
    features = spec.features(vocabulary)

    @tf.function(input_signature=[signature])
    def run(columns):
      dataset = tf.data.Dataset.from_tensor_slices(columns)
      for preprocessor in spec.preprocessors:
        dataset = preprocessor(dataset, {"inputs": max_length}, features)
      return dataset.ragged_batch(1 << 30).get_single_element()

    _traced[key] = (run, vocabulary)  # Keeps the vocabulary alive, so its id stays its own.
  return _traced[key][0]


def trace(task: str, max_length: int, vocabulary) -> None:
  """Traces the task's preprocessing ahead of its first request (a server's start), at max_length and one token
  longer (the truncation check)."""
  if tasks.info(task).family not in _TRACEABLE:
    return
  choices = len(registry.LABEL_NAMES[task])
  blank = lambda key, dtype: ([[""] * choices] if key == "choices" else [""]) if dtype == tf.string else [0]
  columns = {k: tf.constant(blank(k, dtype), dtype) for k, dtype in registry.SPECS[task].source.feature_types.items()}
  for length in (max_length, max_length + 1):
    _traced_preprocessing(task, length, vocabulary)(columns)  # The first call also optimizes the graph.


def _rows_of(columns: Mapping[str, tf.Tensor], count: int) -> List[dict]:
  """A batch of preprocessed columns -> a row (numpy, strings decoded) per example."""
  out = [{} for _ in range(count)]
  for key, value in columns.items():
    if isinstance(value, tf.RaggedTensor):
      values = [np.asarray(v, np.int32) for v in value.to_list()]
    else:
      values = [host_value(v) for v in value.numpy()]
    for row, v in zip(out, values):
      row[key] = v
  return out


def preprocess(task: str, rows: List[dict], sequence_length: Mapping[str, int], vocabulary) -> List[dict]:
  """Feature rows -> the seqio task's preprocessed examples, in order (text-to-text tasks too)."""
  spec = registry.SPECS[task]
  if task in registry.INFO and tasks.info(task).family in _TRACEABLE:
    max_length = sequence_length["inputs"]
    columns = {k: tf.constant([row[k] for row in rows], dtype) for k, dtype in spec.source.feature_types.items()}
    return _rows_of(_traced_preprocessing(task, max_length, vocabulary)(columns), len(rows))
  dataset = rows_to_dataset(rows, spec.source.feature_types)
  seqio_task = seqio.Task(spec.name, seqio.FunctionDataSource(lambda split, shuffle_files, seed=None: dataset,
                                                              splits=[REQUEST_SPLIT]),
                          output_features=spec.features(vocabulary), preprocessors=list(spec.preprocessors),
                          metric_fns=[])
  ds = seqio_task.get_dataset(dict(sequence_length), split=REQUEST_SPLIT, shuffle=False, use_cached=False)
  return list(tfds.as_numpy(ds))


def _by_input(family: str, owners: Sequence[int], rows: List[dict], count: int) -> List[List[dict]]:
  """Preprocessed rows grouped by the input they came from (a QA window names its question)."""
  out = [[] for _ in range(count)]
  for i, row in enumerate(rows):
    feature = int(row["example_index"]) if family == families.SPAN_EXTRACTION else i
    out[owners[feature]].append(row)
  return out


def _truncated(family: str, rows: List[dict], max_length: int) -> bool:
  """Whether the feature length may have cut the input: a full-length sequence (classification and choices:
  rechecked one token longer) or, for token tasks, words past the last one the input holds."""
  if family == families.TOKEN_CLASSIFICATION:
    return any(int(r["word_ids"].max(initial=-1)) + 1 < len(r["tags"]) for r in rows)
  if family == families.SPAN_EXTRACTION:
    return False  # Long contexts are read in overlapping windows, never cut.
  return any(r["inputs"].shape[-1] >= max_length for r in rows)


def _grouped(task: str, family: str, inputs: Sequence[List[dict]], max_length: int, vocabulary) -> List[List[dict]]:
  owners = [i for i, rows in enumerate(inputs) for _ in rows]
  flat = [row for rows in inputs for row in rows]
  return _by_input(family, owners, preprocess(task, flat, {"inputs": max_length}, vocabulary), len(inputs))


def prepare(task: str, family: str, inputs: Sequence[List[dict]], max_length: int, vocabulary,
            task_id: int = 0) -> List[Prepared]:
  """Inputs (each its feature_rows) -> per input its examples (task ids `task_id`) and whether max_length cut it."""
  grouped = _grouped(task, family, inputs, max_length, vocabulary)
  truncated = [_truncated(family, rows, max_length) for rows in grouped]
  recheck = [i for i, t in enumerate(truncated) if t and family in (families.CLASSIFICATION, families.MULTIPLE_CHOICE)]
  if recheck:
    longer = _grouped(task, family, [inputs[i] for i in recheck], max_length + 1, vocabulary)
    for i, rows in zip(recheck, longer):
      truncated[i] = any(r["inputs"].shape[-1] > max_length for r in rows)
  return [Prepared(loading.examples_from_rows(rows, family, task_id), t) for rows, t in zip(grouped, truncated)]
