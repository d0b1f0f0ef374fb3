"""The seqio output features of encoder tasks for a given WordPiece vocabulary (the run's backbone's)."""

from typing import Dict

import seqio
import tensorflow as tf


def encoder_features(vocabulary: seqio.Vocabulary) -> Dict[str, seqio.Feature]:
  """'inputs' [T] word pieces of `vocabulary` and 'token_type_ids' [T]."""
  return {
      "inputs": seqio.Feature(vocabulary, add_eos=False, dtype=tf.int32),
      "token_type_ids": seqio.Feature(seqio.PassThroughVocabulary(2), add_eos=False, dtype=tf.int32),
  }


def choice_features(vocabulary: seqio.Vocabulary) -> Dict[str, seqio.Feature]:
  """Multiple choice: one row per choice, [K, T]."""
  return {
      "inputs": seqio.Feature(vocabulary, add_eos=False, dtype=tf.int32, rank=2),
      "token_type_ids": seqio.Feature(seqio.PassThroughVocabulary(2), add_eos=False, dtype=tf.int32, rank=2),
  }
