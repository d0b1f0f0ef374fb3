"""Semantic role labelling: CoNLL-2005 (WSJ and Brown test sets) and CoNLL-2012, one example per predicate.

Files (DATA_DIR/srl/, layout in tasks/README.md) hold one block per (sentence, predicate) in CoNLL column format,
token first and BIO argument tag last, the predicate tagged B-V. The model sees `[CLS] sentence [SEP] predicate
[SEP]` (the predicate word again, token type 1) and tags every word; the metric is argument-span micro F1 without
the predicate's own span (metrics.srl_f1). Tags use PropBank's ARG names as the CoNLL-2012 release does
(ARG0, ARGM-TMP, C-ARG1, R-ARG0); CoNLL-2005's short names (A0, AM-TMP, C-A1) are read as those.
TFDS has neither set.
"""

import re
from pathlib import Path
from typing import Sequence, Tuple

import tensorflow as tf

from prompt_tuning_jax.tasks import metrics
from prompt_tuning_jax.tasks import conll
from prompt_tuning_jax.tasks.ner import register_tagging
from prompt_tuning_jax.tasks.sources import DataError

_CORE = ("ARG0", "ARG1", "ARG2", "ARG3", "ARG4", "ARG5", "ARGA")
CONLL05_ARGUMENTS = _CORE + ("ARGM-ADV", "ARGM-CAU", "ARGM-DIR", "ARGM-DIS", "ARGM-EXT", "ARGM-LOC", "ARGM-MNR",
                             "ARGM-MOD", "ARGM-NEG", "ARGM-PNC", "ARGM-PRD", "ARGM-REC", "ARGM-TMP")
CONLL12_ARGUMENTS = _CORE + ("ARGM-ADJ", "ARGM-ADV", "ARGM-CAU", "ARGM-COM", "ARGM-DIR", "ARGM-DIS", "ARGM-DSP",
                             "ARGM-EXT", "ARGM-GOL", "ARGM-LOC", "ARGM-LVB", "ARGM-MNR", "ARGM-MOD", "ARGM-NEG",
                             "ARGM-PNC", "ARGM-PRD", "ARGM-PRP", "ARGM-PRR", "ARGM-PRX", "ARGM-REC", "ARGM-TMP")


def srl_labels(arguments: Sequence[str]) -> Tuple[str, ...]:
  """O, the predicate (V), then B-/I- of every argument, its continuation (C-) and reference (R-) forms."""
  kinds = [*arguments, *(f"C-{a}" for a in arguments), *(f"R-{a}" for a in arguments), "C-V"]
  return ("O", "B-V", "I-V") + tuple(f"{bio}-{kind}" for kind in kinds for bio in ("B", "I"))


CONLL05_LABELS = srl_labels(CONLL05_ARGUMENTS)
CONLL12_LABELS = srl_labels(CONLL12_ARGUMENTS)

_SHORT = re.compile(r"(?<=[BI]-)((?:[CR]-)?)A(?=[0-5A]$|M-)")  # B-A0, I-C-A1, B-AM-TMP, B-AA
_LONG = re.compile(r"(?<=[BI]-)((?:[CR]-)?)ARG")


def long_name(tag: str) -> str:
  """CoNLL-2005's short argument names as PropBank's: 'B-A0' -> 'B-ARG0', 'I-R-AM-LOC' -> 'I-R-ARGM-LOC'."""
  return _SHORT.sub(r"\1ARG", tag)


def file_labels(label_names: Sequence[str]) -> Tuple[str, ...]:
  """The tags a file may hold: the labels and their short-name forms."""
  return tuple(label_names) + tuple(_LONG.sub(r"\1A", t) for t in label_names if _LONG.search(t))


def predicate_row(sentence: conll.Sentence, path: Path) -> dict:
  """A (sentence, predicate) block -> {'tokens', 'tags' (long names), 'predicate': the B-V word's index}."""
  tokens, tags = sentence
  tags = [long_name(t) for t in tags]
  if tags.count("B-V") != 1:
    raise DataError(f"{path}: the block starting {' '.join(tokens[:6])!r} has {tags.count('B-V')} B-V tags; each "
                    "block holds one sentence with one predicate tagged B-V.")
  return {"tokens": list(tokens), "tags": tags, "predicate": tags.index("B-V")}


PREDICATE_TYPES = {"tokens": tf.string, "tags": tf.string, "predicate": tf.int32}

register_tagging("conll2005", {"train": "srl/conll2005/train.txt", "validation": "srl/conll2005/dev.txt",
                               "test_wsj": "srl/conll2005/test_wsj.txt", "test_brown": "srl/conll2005/test_brown.txt"},
                 "generic", CONLL05_LABELS, metric_fn=metrics.srl_f1, file_labels=file_labels(CONLL05_LABELS),
                 to_features=predicate_row, feature_types=PREDICATE_TYPES, with_predicate=True)
register_tagging("conll2012", {"train": "srl/conll2012/train.txt", "validation": "srl/conll2012/dev.txt",
                               "test": "srl/conll2012/test.txt"},
                 "generic", CONLL12_LABELS, metric_fn=metrics.srl_f1, file_labels=file_labels(CONLL12_LABELS),
                 to_features=predicate_row, feature_types=PREDICATE_TYPES, with_predicate=True)
