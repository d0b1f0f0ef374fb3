"""Text-to-text tasks for T5, named as the prompt-tuning repo names them.

  super_glue_rte_v102           inputs  'rte sentence1: <premise> sentence2: <hypothesis>'
                                targets 'entailment' | 'not_entailment'
  taskless_super_glue_rte_v102  the same inputs without the task name 'rte'

They read what the encoder task `rte` reads (TFDS super_glue/rte:1.0.2 when prepared, else
DATA_DIR's superglue/rte/{train,val}.jsonl) through the same source and row function.
Output features 'inputs' and 'targets' are SentencePiece ids with EOS appended (the run's
T5 vocabulary, given to tasks.get_task; t5's default model when registered);
'*_pretokenized' keep the strings and 'idx' the example id.
`TARGET_STRINGS[task]` lists the possible targets (rank classification scores each), and the
metric is accuracy on the decoded strings.

Note: the field names follow GLUE RTE (sentence1/sentence2), as this project's issue asks;
T5's own super_glue_rte_v102 preprocessor joins the TFDS fields in sorted order
('rte hypothesis: ... premise: ...'). A prompt trained on one does not transfer to the other.
"""

import dataclasses
import functools
from typing import Dict, Optional, Sequence, Tuple

import seqio
import tensorflow as tf

from prompt_tuning_jax.tasks import metrics
from prompt_tuning_jax.tasks import classification, registry  # classification registers 'rte' first
from prompt_tuning_jax.tasks.sources import TfdsOrFiles
from prompt_tuning_jax.data.vocabularies import sentencepiece_vocabulary


def text_to_text_features(vocabulary: seqio.Vocabulary) -> Dict[str, seqio.Feature]:
  """'inputs' and 'targets': ids of the T5 `vocabulary` with EOS appended."""
  return {"inputs": seqio.Feature(vocabulary, add_eos=True, dtype=tf.int32),
          "targets": seqio.Feature(vocabulary, add_eos=True, dtype=tf.int32)}


TARGET_STRINGS: Dict[str, Tuple[str, ...]] = {}


def score_strings(task_name: str, examples, predictions: Sequence[str]) -> Dict[str, float]:
  """The task's metrics (percent) of the decoded `predictions` [n] against `examples.targets_text` [n]:
  what evaluation reports for decoded strings (and, prefixed 'rank_', for rank-classification choices)."""
  from prompt_tuning_jax import tasks  # pylint: disable=g-import-not-at-top  (tasks imports this module)
  scores: Dict[str, float] = {}
  for fn in tasks.get_task(task_name).metric_fns:
    scores |= fn(list(examples.targets_text), list(predictions))
  return scores


def to_text(dataset: tf.data.Dataset, task_prefix: Optional[str], fields: Sequence[Tuple[str, str]],
            label_names: Sequence[str]) -> tf.data.Dataset:
  """Rows {field..., 'label', 'idx'} -> {'inputs', 'targets', 'idx'} strings in T5's format.

  inputs: '<task_prefix> <name>: <text> <name>: <text> ...' for (name, row key) in `fields`
  (no prefix when task_prefix is None); targets: label_names[label].
  """
  names = tf.constant(list(label_names))

  def convert(ex):
    parts = [task_prefix] if task_prefix else []
    for name, key in fields:
      parts += [f"{name}:", ex[key]]
    return {"inputs": tf.strings.join(parts, separator=" "), "targets": tf.gather(names, ex["label"]),
            "idx": tf.cast(ex["idx"], tf.int32)}

  return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def register_text_to_text(name: str, source: TfdsOrFiles, task_prefix: Optional[str],
                          fields: Sequence[Tuple[str, str]], label_names: Tuple[str, ...]) -> None:
  TARGET_STRINGS[name] = label_names
  to_strings = functools.partial(to_text, task_prefix=task_prefix, fields=fields, label_names=label_names)
  registry.add(registry.TaskSpec(
      name, source, (to_strings, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim),
      text_to_text_features, (metrics.accuracy,), sentencepiece_vocabulary))


# The encoder task's TFDS-or-files source and row function, without its unlabeled test split (targets need labels).
_RTE_SOURCE = dataclasses.replace(registry.SPECS["rte"].source,
                                  files={k: v for k, v in registry.SPECS["rte"].source.files.items() if k != "test"})
_RTE_FIELDS = (("sentence1", "premise"), ("sentence2", "hypothesis"))

register_text_to_text("super_glue_rte_v102", _RTE_SOURCE, "rte", _RTE_FIELDS, classification.LABEL_NAMES["rte"])
register_text_to_text("taskless_super_glue_rte_v102", _RTE_SOURCE, None, _RTE_FIELDS,
                      classification.LABEL_NAMES["rte"])
