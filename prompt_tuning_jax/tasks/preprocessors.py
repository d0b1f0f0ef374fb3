"""seqio preprocessors: plain functions over tf.data datasets."""

from typing import Mapping, Optional

import seqio
import tensorflow as tf

from prompt_tuning_jax.tokenizers import encode_for_encoder


def tokenize_for_encoder(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                         output_features: Mapping[str, seqio.Feature], text_a: str,
                         text_b: Optional[str] = None) -> tf.data.Dataset:
  """Rows with text fields -> {'inputs' [T], 'token_type_ids' [T], 'label', 'idx'}.

  `[CLS] a [SEP] (b [SEP])`, longest-first truncation to sequence_length['inputs'].
  """
  vocab = output_features["inputs"].vocabulary
  max_length = sequence_length["inputs"]

  def encode(ex):
    ids, types = encode_for_encoder(vocab, ex[text_a], None if text_b is None else ex[text_b], max_length)
    return {"inputs": ids, "token_type_ids": types, "label": tf.cast(ex["label"], tf.int32),
            "idx": tf.cast(ex["idx"], tf.int32)}

  return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
