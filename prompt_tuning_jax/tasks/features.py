"""The seqio output features of encoder tasks, tokenized with the configured backbone's WordPiece vocabulary."""

import seqio
import tensorflow as tf

from prompt_tuning_jax.tasks import settings
from prompt_tuning_jax.tokenizers import WordPieceVocabulary

# Follows the configured backbone's vocab.txt (settings.set_vocab_file).
BACKBONE_VOCABULARY = WordPieceVocabulary(settings.vocab_file)

ENCODER_FEATURES = {
    "inputs": seqio.Feature(BACKBONE_VOCABULARY, add_eos=False, dtype=tf.int32),
    "token_type_ids": seqio.Feature(seqio.PassThroughVocabulary(2), add_eos=False, dtype=tf.int32),
}

# Multiple choice: one row per choice, [K, T].
CHOICE_FEATURES = {
    "inputs": seqio.Feature(BACKBONE_VOCABULARY, add_eos=False, dtype=tf.int32, rank=2),
    "token_type_ids": seqio.Feature(seqio.PassThroughVocabulary(2), add_eos=False, dtype=tf.int32, rank=2),
}
