"""What t5x's data pipeline needs from us: the encoder feature converter and tasks built for a run's values.

`EncoderFeatureConverter` turns an encoder classification task's examples ('inputs' [T] word pieces,
'token_type_ids' [T], 'label' []) into the batches our EncoderModel reads: input_ids, token_type_ids,
attention_mask [T] padded to TASK_FEATURE_LENGTHS['inputs'], and labels, task_ids and weights [1] (seqio checks
a length of every model feature; `per_example` makes them [B] again). Unlabelled examples (inference) get
label 0. Packing is refused: one example per row is what a [CLS] head reads.

`backbone_config(backbone_dir)` and `num_labels(task_name)` give an EncoderClassifier its architecture (a
Hugging Face directory's config.json; None: the packaged MiniLM) and head width, as our trainer derives them.

`task(name, data_dir, vocabulary)` names the seqio Task a gin file gives t5x's DatasetConfigs: the
registered tasks read the shipped data with the default vocabulary, a run reads DATA_DIR with its model's
vocabulary, so the task is registered once more under a name that says which.
"""

import dataclasses
import hashlib
from typing import Mapping, Optional

import seqio
import tensorflow as tf

from prompt_tuning_jax import errors, tasks
from prompt_tuning_jax.models import bert_checkpoint
from prompt_tuning_jax.tasks import families, registry
from prompt_tuning_jax.tasks.sources import resolve_data_dir

_Spec = seqio.FeatureConverter.FeatureSpec
PER_EXAMPLE = ("labels", "task_ids", "weights")


class EncoderFeatureConverter(seqio.FeatureConverter):
  """Encoder classification features for t5x (module docstring); TASK_FEATURE_LENGTHS = {'inputs': T}."""

  TASK_FEATURES = {"inputs": _Spec(dtype=tf.int32)}
  MODEL_FEATURES = {
      "input_ids": _Spec(dtype=tf.int32),
      "token_type_ids": _Spec(dtype=tf.int32),
      "attention_mask": _Spec(dtype=tf.int32),
      "labels": _Spec(dtype=tf.int32),
      "task_ids": _Spec(dtype=tf.int32),
      "weights": _Spec(dtype=tf.float32),
  }
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, pack: bool = False, use_custom_packing_ops: bool = False, apply_length_check: bool = True,
               bos_id: int = 0, passthrough_features=None):
    if pack:
      raise errors.ConfigError("encoder classification batches cannot be packed: set pack = False in every "
                               "utils.DatasetConfig of the run (gin/t5x/rte_deep_prompt.gin does).")
    super().__init__(pack=False, use_custom_packing_ops=use_custom_packing_ops,
                     apply_length_check=apply_length_check, bos_id=bos_id, passthrough_features=passthrough_features)

  def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    length = task_feature_lengths["inputs"]

    def convert(ex):
      inputs = ex["inputs"][:length]
      padded = lambda x: tf.ensure_shape(tf.pad(x, [[0, length - tf.shape(x)[0]]]), [length])
      if "label" in ex and ex["label"].shape.rank != 0:
        raise errors.ConfigError("the t5x encoder path trains sequence classification (one label per example); "
                                 "train token, span and multiple-choice tasks with python -m prompt_tuning_jax.train.")
      types = ex["token_type_ids"][:length] if "token_type_ids" in ex else tf.zeros_like(inputs)
      return {
          "input_ids": padded(inputs),
          "token_type_ids": padded(types),
          "attention_mask": padded(tf.ones_like(inputs)),
          "labels": tf.reshape(tf.cast(ex.get("label", 0), tf.int32), [1]),
          "task_ids": tf.zeros([1], tf.int32),
          "weights": tf.ones([1], tf.float32),
      }

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    length = task_feature_lengths["inputs"]
    return {"input_ids": length, "token_type_ids": length, "attention_mask": length, **{k: 1 for k in PER_EXAMPLE}}


def per_example(batch):
  """A converted batch as our EncoderModel reads it: labels, task_ids and weights [B, 1] -> [B]."""
  return {k: v[:, 0] if k in PER_EXAMPLE else v for k, v in batch.items()}


def task(name: str, data_dir: Optional[str] = None, vocabulary: Optional[seqio.Vocabulary] = None) -> str:
  """The registered name of seqio Task `name` reading DATA_DIR (None: the shipped data) and tokenizing with
  `vocabulary`: `name` itself when that is the task seqio has, else `name` + '.' + a digest of the two, built
  and registered here under that name (t5x looks tasks up by name, also each subtask by its Task's name)."""
  built = tasks.get_task(name, data_dir=data_dir, vocabulary=vocabulary)  # Unknown names fail here, listed.
  if name not in registry.SPECS or seqio.get_mixture_or_task(name) is built:
    return name
  described = f"{resolve_data_dir(data_dir)}|{getattr(vocabulary, '_key', lambda: repr(vocabulary))()}"
  run_name = f"{name}.{hashlib.sha1(described.encode()).hexdigest()[:10]}"
  if run_name not in seqio.TaskRegistry.names():
    spec = dataclasses.replace(registry.SPECS[name], name=run_name)
    seqio.TaskRegistry.add_provider(run_name, spec.build(resolve_data_dir(data_dir), vocabulary))
  return run_name


def backbone_config(backbone_dir: Optional[str] = None):
  """The BertConfig of a Hugging Face BERT-family directory (None: the packaged all-MiniLM-L6-v2)."""
  return bert_checkpoint.load_config(bert_checkpoint.resolve_backbone_dir(backbone_dir))


def num_labels(task_name: str) -> int:
  """C, the head outputs encoder task `task_name` needs (its classes)."""
  info = tasks.info(task_name)
  if info.family != families.CLASSIFICATION:
    raise errors.ConfigError(f"the t5x encoder path trains classification tasks; {task_name!r} is "
                             f"{info.family}: train it with python -m prompt_tuning_jax.train.")
  return families.head_outputs(info.family, info.label_names)
