"""Named entity recognition: CoNLL-2003, OntoNotes 5.0, CoNLL-2004 and WNUT-17, from CoNLL-format files under
DATA_DIR/ner/ (CoNLL-2003 also from TFDS conll2003:1.0.0 when prepared; TFDS has none of the others). The file
layout is in tasks/README.md. Each word's label sits on its first sub-word; the metric is entity-level micro F1
as seqeval computes it (metrics.entity_f1).
"""

import functools
from typing import Callable, Mapping, Optional, Sequence

import tensorflow as tf

from prompt_tuning_jax.tasks import families, metrics
from prompt_tuning_jax.tasks import conll, preprocessors
from prompt_tuning_jax.tasks.features import encoder_features
from prompt_tuning_jax.tasks.registry import register
from prompt_tuning_jax.tasks.sources import TfdsOrFiles

CONLL04_LABELS = ("O", "B-Loc", "I-Loc", "B-Peop", "I-Peop", "B-Org", "I-Org", "B-Other", "I-Other")
# The 18 OntoNotes 5.0 entity types, in the order of the CoNLL-2012 NER release most copies derive from.
ONTONOTES_TYPES = ("PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "DATE", "TIME", "PERCENT", "MONEY",
                   "QUANTITY", "ORDINAL", "CARDINAL", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE")
ONTONOTES_LABELS = ("O",) + tuple(f"{bio}-{kind}" for kind in ONTONOTES_TYPES for bio in ("B", "I"))

SENTENCE_TYPES = {"tokens": tf.string, "tags": tf.string}


def sentence_row(sentence: conll.Sentence, path=None) -> dict:
  del path
  tokens, tags = sentence
  return {"tokens": list(tokens), "tags": list(tags)}


def register_tagging(name: str, files: Mapping[str, str], file_format: str, label_names: Sequence[str], *,
                     metric_fn: Callable = metrics.entity_f1, file_labels: Optional[Sequence[str]] = None,
                     to_features: Callable = sentence_row, feature_types=SENTENCE_TYPES, with_predicate: bool = False,
                     **source) -> None:
  """A token-classification task over CoNLL-format files.

  Args:
    files: split -> file under DATA_DIR.
    file_format: a key of conll.FORMATS.
    label_names: the tags the head predicts, in label-id order.
    metric_fn: entity_f1 (NER) or srl_f1 (SRL).
    file_labels: the tags a file may hold (default label_names); read_conll reports others by file and line.
    to_features: (sentence, path) -> row {'tokens', 'tags'} (+ 'predicate' with_predicate).
    with_predicate: SRL: the row's predicate word follows the sentence after [SEP].
    **source: TfdsOrFiles' tfds_name, tfds_splits, from_tfds.
  """
  reader = functools.partial(conll.read_conll, file_format=file_format,
                             label_names=tuple(file_labels or label_names))
  register(name, TfdsOrFiles(files=files, reader=reader, to_features=to_features, feature_types=feature_types,
                             **source),
           [functools.partial(preprocessors.encode_tagged, label_names=tuple(label_names),
                              with_predicate=with_predicate)],
           encoder_features, [metric_fn], family=families.TOKEN_CLASSIFICATION, metric="f1", label_names=label_names)


register_tagging("conll2003", {"train": "ner/conll2003/train.txt", "validation": "ner/conll2003/valid.txt",
                               "test": "ner/conll2003/test.txt"}, "conll2003", conll.CONLL03_LABELS,
                 tfds_name="conll2003:1.0.0", tfds_splits={"validation": "dev"},
                 from_tfds=lambda ex: {"tokens": ex["tokens"], "tags": [conll.CONLL03_LABELS[i] for i in ex["ner"]]})
register_tagging("ontonotes", {"train": "ner/ontonotes/train.conll", "validation": "ner/ontonotes/dev.conll",
                               "test": "ner/ontonotes/test.conll"}, "generic", ONTONOTES_LABELS)
register_tagging("conll2004", {"train": "ner/conll2004/train.txt", "validation": "ner/conll2004/dev.txt",
                               "test": "ner/conll2004/test.txt"}, "generic", CONLL04_LABELS)
register_tagging("wnut17", {"train": "ner/wnut17/train.conll", "validation": "ner/wnut17/dev.conll",
                            "test": "ner/wnut17/test.conll"}, "wnut17", conll.WNUT17_LABELS)
