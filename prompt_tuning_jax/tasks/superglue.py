"""SuperGLUE in encoder form (RTE is registered in classification.py), with AX-b and AX-g for evaluation.

Each task reads TFDS super_glue/<config>:1.0.2 when prepared, else DATA_DIR's superglue/<task>/{train,val,test}.jsonl
(AX-b and AX-g: superglue/rte/AX-{b,g}.jsonl, split 'test' as in TFDS, labeled). 'test' is SuperGLUE's unlabeled
test set (sources.TfdsOrFiles.unlabeled): it is predicted, in the submission format (tasks/submission.py). Rows are built by superglue_rows, whose
docstring gives each text layout. Metrics as published: accuracy; CB also macro-F1 over its three classes;
MultiRC exact match per question and F1 over all answer options; ReCoRD max-over-gold EM and F1 of each query's
best-scored entity.
"""

import functools

import tensorflow as tf

from prompt_tuning_jax.tasks import families, metrics
from prompt_tuning_jax.tasks import preprocessors, superglue_rows as sg
from prompt_tuning_jax.tasks.classification import register_encoder_classification
from prompt_tuning_jax.tasks.features import choice_features
from prompt_tuning_jax.tasks.registry import register
from prompt_tuning_jax.tasks.sources import TfdsOrFiles, read_jsonl

PAIR_TYPES = {"text_a": tf.string, "text_b": tf.string, "label": tf.int64, "idx": tf.int32}


def _source(task: str, to_rows, feature_types, tfds_config=None, from_tfds=None, files=None,
            **labels) -> TfdsOrFiles:
  """The task's jsonl files; by default train, validation and the unlabeled test set (SuperGLUE's test.jsonl).
  labels: TfdsOrFiles' unlabeled_splits (default: the test set), label_field."""
  labels.setdefault("unlabeled_splits", ("test",))
  files = files or {"train": f"superglue/{task}/train.jsonl", "validation": f"superglue/{task}/val.jsonl",
                    "test": f"superglue/{task}/test.jsonl"}
  return TfdsOrFiles(files=files, reader=read_jsonl, to_features=to_rows, feature_types=feature_types,
                     tfds_name=f"super_glue/{tfds_config or task}:1.0.2", from_tfds=from_tfds or sg.from_tfds(to_rows),
                     **labels)


def _multirc_targets(meta, labels, predictions, probabilities):
  """Answer-option rows -> metrics.multirc's targets (question group and label per option) and predictions."""
  del probabilities
  return [{"group": g, "label": int(y)} for g, y in zip(meta["group"], labels)], list(predictions)


def _record_targets(meta, labels, predictions, probabilities):
  """Candidate rows -> per query its golds and its entity with the highest P(True)."""
  del labels, predictions
  rows = [{"group": g, "entity": e, "answers": tuple(a)} for g, e, a in zip(meta["group"], meta["entity"],
                                                                           meta["answers"])]
  return sg.record_targets_and_predictions(rows, [p[1] for p in probabilities])


register_encoder_classification("boolq", _source("boolq", sg.boolq_row, PAIR_TYPES), sg.BOOL_LABELS, "text_a",
                                "text_b")
register_encoder_classification("cb", _source("cb", sg.cb_row, PAIR_TYPES), sg.CB_LABELS, "text_a", "text_b",
                                metric_fns=(metrics.accuracy, functools.partial(metrics.f1_macro, labels=range(3))))
register_encoder_classification("wic", _source("wic", sg.wic_row, PAIR_TYPES), sg.BOOL_LABELS, "text_a", "text_b")
register_encoder_classification(
    "wsc", _source("wsc", sg.wsc_row, {"text_a": tf.string, "label": tf.int64, "idx": tf.int32},
                   tfds_config="wsc.fixed", from_tfds=sg.tfds_wsc), sg.BOOL_LABELS, "text_a")
register_encoder_classification(
    "multirc", _source("multirc", sg.multirc_rows, PAIR_TYPES | {"group": tf.int32}, from_tfds=sg.tfds_multirc,
                       label_field="passage.questions[].answers[].label"),
    sg.BOOL_LABELS, "text_a", "text_b", metric_fns=(metrics.multirc,), metric="f1a",
    targets_and_predictions=_multirc_targets)
register_encoder_classification(
    "record", _source("record", sg.record_rows,
                      PAIR_TYPES | {"group": tf.int32, "entity": tf.string, "answers": tf.string},
                      from_tfds=sg.tfds_record, label_field="qas[].answers"),
    sg.BOOL_LABELS, "text_a", "text_b", metric_fns=(metrics.record,), metric="f1",
    targets_and_predictions=_record_targets)
# Diagnostics: evaluate a model trained on RTE (train.eval_task_name='axb', train.eval_split='test'); their
# 'test' split is labeled.
register_encoder_classification("axb", _source("axb", sg.ax_b_row, PAIR_TYPES,
                                               files={"test": "superglue/rte/AX-b.jsonl"}, unlabeled_splits=()),
                                sg.RTE_LABELS, "text_a", "text_b")
register_encoder_classification("axg", _source("axg", sg.ax_g_row, PAIR_TYPES,
                                               files={"test": "superglue/rte/AX-g.jsonl"}, unlabeled_splits=()),
                                sg.RTE_LABELS, "text_a", "text_b")

register("copa", _source("copa", sg.copa_row, {"text_a": tf.string, "choices": tf.string, "label": tf.int64,
                                               "idx": tf.int32}),
         [preprocessors.tokenize_choices], choice_features, [metrics.accuracy], family=families.MULTIPLE_CHOICE,
         metric="accuracy", label_names=("choice1", "choice2"))
