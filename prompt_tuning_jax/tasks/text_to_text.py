"""Text-to-text tasks for T5: what they share, and their one scoring entry point `score_strings`.

The tasks themselves are registered by t5_superglue.py (SuperGLUE, AX-b, AX-g, GLUE RTE) and t5_qa.py (SQuAD,
MRQA), in T5's formats and under the names the T5 and prompt-tuning codebases give them. Each reads what the
encoder task of the same data reads (TFDS when prepared, else DATA_DIR's files) through the same source, reader
and row function (`text_source` maps those rows to strings), so both paths see the same examples.

Output features 'inputs' and 'targets' are SentencePiece ids with EOS appended (the run's T5 vocabulary, given to
tasks.get_task; t5's default model when registered); '*_pretokenized' keep the strings, 'idx' the example id
where the data has one, and the features a task's metric needs (e.g. 'group', 'answers', 'label') pass through
to TextExamples.meta. Unlabeled rows (test splits) get the target '<unk>', as in T5.
`TARGET_STRINGS[task]` lists the label strings of every classification task (rank classification scores each);
open tasks (ReCoRD, SQuAD, MRQA, WSC's referent) have none. `SCORING[task]` is how `score_strings` scores it.
"""

import dataclasses
import re
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import seqio
import tensorflow as tf

from prompt_tuning_jax import errors
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.tasks import metrics, registry, t5_metrics
from prompt_tuning_jax.tasks.sources import MISSING_LABEL, DataError, TfdsOrFiles, host_value
from prompt_tuning_jax.data.vocabularies import sentencepiece_vocabulary

UNKNOWN_TARGET = "<unk>"  # T5's target for a row without a label.

# The features every text row has; tasks add the ones their metric reads.
TEXT_TYPES = {"inputs": tf.string, "targets": tf.string}


def text_to_text_features(vocabulary: seqio.Vocabulary) -> Dict[str, seqio.Feature]:
  """'inputs' and 'targets': ids of the T5 `vocabulary` with EOS appended."""
  return {"inputs": seqio.Feature(vocabulary, add_eos=True, dtype=tf.int32),
          "targets": seqio.Feature(vocabulary, add_eos=True, dtype=tf.int32)}


def label_text(label: int, label_strings: Sequence[str]) -> str:
  """label_strings[label], or '<unk>' for a row without a label."""
  return UNKNOWN_TARGET if label == MISSING_LABEL else label_strings[label]


def remove_first_token(text: str) -> str:
  """The text without its first space-delimited token (the prompt-tuning repo's taskless_ tasks:
  'rte hypothesis: ...' -> 'hypothesis: ...')."""
  return re.sub(r"^[^ ]* ", "", text, count=1)


# A row of the encoder source (its reader and row function, or its TFDS adapter) -> text rows.
ToText = Callable[[dict], List[dict]]


def text_source(base: TfdsOrFiles, to_text: ToText, extra_types: Mapping[str, tf.DType], taskless: bool = False,
                **changes) -> TfdsOrFiles:
  """`base` read as before, each of its rows mapped by `to_text` to text rows {'inputs', 'targets', *extra_types}.

  taskless: drop the inputs' first token (the task name); changes: other TfdsOrFiles fields (keep_rows, ...).
  """
  base_tfds = base.from_tfds or (lambda ex: {k: ex[k] for k in base.feature_types})

  def convert(rows) -> List[dict]:
    out = [text for row in (rows if isinstance(rows, list) else [rows]) for text in to_text(row)]
    if taskless:
      out = [dict(text, inputs=remove_first_token(text["inputs"])) for text in out]
    return out

  def from_file(item, path: Path) -> List[dict]:
    rows = base.to_features(item, path)  # Its errors name file:line themselves.
    try:
      return convert(rows)
    except DataError as e:
      line = item.get("__line__") if isinstance(item, dict) else None
      raise DataError(f"{path}{f':{line}' if line else ''}: {e}") from None

  def from_tfds(ex: dict) -> List[dict]:
    return convert(base_tfds(ex))

  return dataclasses.replace(base, to_features=from_file, from_tfds=from_tfds,
                             feature_types={**TEXT_TYPES, **extra_types}, **changes)


@dataclasses.dataclass(frozen=True)
class Scoring:
  """How a task's decoded strings are scored.

  Attributes:
    score: (examples, predictions) -> metrics in percent (t5_metrics.py); examples: data.text_batching.TextExamples.
    metric: the selection metric among score's keys.
  """
  score: Callable[[object, List[str]], Dict[str, float]]
  metric: str


TARGET_STRINGS: Dict[str, Tuple[str, ...]] = {}
SCORING: Dict[str, Scoring] = {}


def label_scoring(label_strings: Sequence[str], metric_fns: Sequence[Callable] = (metrics.accuracy,),
                  metric: str = "accuracy") -> Scoring:
  """Targets and predictions mapped to label ids (unknown strings: -1, wrong), then each of metric_fns."""

  def score(examples, predictions):
    targets = t5_metrics.labels_of(examples.targets_text, label_strings)
    predicted = t5_metrics.labels_of(predictions, label_strings)
    out = {}
    for fn in metric_fns:
      out |= fn(targets, predicted)
    return out

  return Scoring(score, metric)


def _seqio_scoring(name: str, meta_keys: Sequence[str]) -> Tuple[Callable, Callable]:
  """(postprocess_fn, metric_fn) for seqio (t5x's evaluation): targets carry the target string and the
  features score_strings reads; the metric scores the decoded strings with score_strings."""

  def postprocess(output, example=None, is_target=False):
    if not is_target:
      return output
    return {"target": host_value(example["targets_pretokenized"]),
            **{k: host_value(example[k]) for k in meta_keys if k in example}}

  def score_strings_metric(targets, predictions):
    n = len(targets)
    meta = {k: [t[k] for t in targets] for k in meta_keys if n and k in targets[0]}
    examples = text_batching.TextExamples([None] * n, [None] * n, [""] * n, [t["target"] for t in targets],
                                          np.arange(n), meta=meta)
    return score_strings(name, examples, predictions)

  return postprocess, score_strings_metric


def register_text_task(name: str, source: TfdsOrFiles, scoring: Scoring, target_strings: Sequence[str] = ()) -> None:
  """Adds text-to-text task `name` (tokenized with the run's SentencePiece vocabulary) and its scoring; seqio
  (t5x) scores it with score_strings too."""
  if target_strings:
    TARGET_STRINGS[name] = tuple(target_strings)
  SCORING[name] = scoring
  postprocess, metric = _seqio_scoring(name, [k for k in source.feature_types if k not in ("inputs", "targets")])
  registry.add(registry.TaskSpec(name, source, (seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim),
                                 text_to_text_features, (metric,), sentencepiece_vocabulary, postprocess))


def score_strings(task_name: str, examples, predictions: Sequence[str]) -> Dict[str, float]:
  """Metrics (percent) of `predictions`, one decoded string per example of `examples` (TextExamples), as T5's
  evaluation computes them: postprocessed to labels where the task has them (unknown strings count as wrong).
  A text-to-text task registered elsewhere is scored by its own seqio metric_fns on the strings. The seqio tasks
  registered here score with this function too (their postprocess_fn keeps what it reads)."""
  predictions = list(predictions)
  if len(predictions) != len(examples):
    raise ValueError(f"{task_name}: {len(predictions)} predictions for {len(examples)} examples.")
  if task_name in SCORING:
    return SCORING[task_name].score(examples, predictions)
  from prompt_tuning_jax import tasks  # pylint: disable=g-import-not-at-top  (the package imports this module)
  out = {}
  for fn in tasks.get_task(task_name).metric_fns:
    out |= fn(examples.targets_text, predictions)
  return out


def selection_metric(task_name: str) -> str:
  """The metric that picks a text-to-text task's best checkpoint (accuracy for tasks registered elsewhere)."""
  return SCORING[task_name].metric if task_name in SCORING else "accuracy"


def check_labeled(task_name: str, split: str, setting: str) -> None:
  """A ConfigError when `split` of text-to-text task `task_name` has no labels (its targets are '<unk>'), so
  that training cannot train or score on it; `setting` names the gin binding."""
  if task_name in registry.SPECS and not registry.SPECS[task_name].source.has_labels(split):
    raise errors.ConfigError(f"{setting}={split!r} of {task_name!r} has no labels (a benchmark's test set: every "
                             "target is '<unk>'), so training cannot train or score on it. Use 'train' / "
                             "'validation' and decode the test set with python -m prompt_tuning_jax.infer.")
