"""Encoder-classification tasks RTE and SST-2 (the rest of SuperGLUE is in superglue.py).

Each task yields {'inputs', 'token_type_ids', 'label', 'idx'} for a BERT-family
encoder; `LABEL_NAMES[task]` gives the classes in label-index order.
"""

import functools
from pathlib import Path
from typing import Optional, Sequence

import tensorflow as tf

from prompt_tuning_jax.tasks import families, metrics
from prompt_tuning_jax.tasks import preprocessors
from prompt_tuning_jax.tasks.features import encoder_features
from prompt_tuning_jax.tasks.registry import LABEL_NAMES, register  # pylint: disable=unused-import
from prompt_tuning_jax.tasks.sources import TfdsOrFiles, label_index, read_jsonl, read_tsv
from prompt_tuning_jax.tasks.superglue_rows import _get, _idx, _label  # pylint: disable=protected-access


def _rte_row(row: dict, path: Path, to_label=label_index(("entailment", "not_entailment"))) -> dict:
  line = row["__line__"]
  premise, hypothesis = _get(row, path, line, "premise", "hypothesis")
  return {"premise": premise, "hypothesis": hypothesis, "label": _label(row, path, line, to_label),
          "idx": _idx(row, path)}


def _sst2_row(row: dict, path: Path, to_label=label_index(("negative", "positive"))) -> dict:
  # GLUE's test tsv has an index column and no label; a missing label is checked by the source (check_label).
  line = row["__line__"]
  (sentence,) = _get(row, path, line, "sentence", sentence=str)
  return {"sentence": sentence, "label": _label(row, path, line, to_label), "idx": _idx(row, path)}


def register_encoder_classification(name: str, source: TfdsOrFiles, label_names: Sequence[str], text_a: str,
                                    text_b: Optional[str] = None, metric_fns=(metrics.accuracy,),
                                    metric: str = "accuracy", **info) -> None:
  """A classification task over one text or a pair: `[CLS] a [SEP] (b [SEP])`."""
  register(name, source, [functools.partial(preprocessors.tokenize_for_encoder, text_a=text_a, text_b=text_b)],
           encoder_features, metric_fns, family=families.CLASSIFICATION, metric=metric, label_names=label_names,
           **info)


register_encoder_classification(
    "rte",
    TfdsOrFiles(
        tfds_name="super_glue/rte:1.0.2",
        files={"train": "superglue/rte/train.jsonl", "validation": "superglue/rte/val.jsonl",
               "test": "superglue/rte/test.jsonl"},
        reader=read_jsonl,
        to_features=_rte_row,
        feature_types={"premise": tf.string, "hypothesis": tf.string, "label": tf.int64, "idx": tf.int32},
        unlabeled_splits=("test",)),
    label_names=("entailment", "not_entailment"),
    text_a="premise", text_b="hypothesis")

register_encoder_classification(
    "sst2",
    TfdsOrFiles(
        tfds_name="glue/sst2:2.0.0",
        files={"train": "glue/sst2/train.tsv", "validation": "glue/sst2/dev.tsv"},
        reader=read_tsv,
        to_features=_sst2_row,
        feature_types={"sentence": tf.string, "label": tf.int64, "idx": tf.int32},
        unlabeled_splits=("test",)),  # GLUE's test tsv has no labels.
    label_names=("negative", "positive"),
    text_a="sentence")
