"""The backbones' vocabularies as explicit seqio Vocabulary values.

  wordpiece_vocabulary(vocab_file)                an encoder's vocab.txt (tokenizers.WordPieceVocabulary);
                                                  None = the packaged MiniLM's.
  sentencepiece_vocabulary(model_file, extra_ids) a T5 SentencePiece model (local or gs://) with seqio's
                                                  extra ids; None = t5x's default model.
  backbone_vocabulary(backbone_dir)               the vocab.txt of an encoder checkpoint directory
                                                  (INITIAL_CHECKPOINT_PATH); None = the packaged MiniLM's.

Each is built once per argument (cached), so equal arguments give the same object and a vocabulary is
a cheap, hashable key (tasks.get_task caches built tasks by it). Nothing here is configured globally:
a run builds its vocabulary from its own values and passes it on. For gin, `backbone_vocabulary` and
`sentencepiece_vocabulary` are registered as configurables (the VOCABULARY macro of gin/runs/train.gin
and gin/models/t5_1_1_prompt.gin); calling them from Python never reads gin bindings.

T5 ids follow seqio: pad 0, eos 1, unk 2, then the pieces, then the extra ids `<extra_id_{k}>` counted
down from the top.
"""

import functools
from pathlib import Path
from typing import Optional

import gin
import seqio

from prompt_tuning_jax.data.tokenizers import WordPieceVocabulary

# t5x's default vocabulary (T5 1.1, mT5 use others): what a T5X user expects when none is given.
DEFAULT_SENTENCEPIECE_MODEL = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"


class SentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePieceVocabulary identified by (model file, extra ids): hashable, and compared
  without loading the model (seqio compares the loaded model protos and defines no hash)."""

  def _key(self):
    return self.sentencepiece_model_file, self.extra_ids

  def __eq__(self, other):
    # pylint: disable-next=protected-access
    return isinstance(other, SentencePieceVocabulary) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())


def _packaged_vocab_file() -> Path:
  # Imported when first tokenizing, so naming the default needs neither the models nor the package.
  from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir  # pylint: disable=g-import-not-at-top
  return default_backbone_dir() / "vocab.txt"


@functools.lru_cache(maxsize=None)
def _wordpiece(vocab_file: Optional[str]) -> WordPieceVocabulary:
  return WordPieceVocabulary(_packaged_vocab_file if vocab_file is None else vocab_file)


def wordpiece_vocabulary(vocab_file=None) -> WordPieceVocabulary:
  """The WordPiece vocabulary of `vocab_file` (None = the packaged MiniLM's vocab.txt)."""
  return _wordpiece(None if vocab_file in (None, "") else str(Path(vocab_file).expanduser()))


@functools.lru_cache(maxsize=None)
def _sentencepiece(model_file: str, extra_ids: int) -> SentencePieceVocabulary:
  return SentencePieceVocabulary(model_file, extra_ids)


def sentencepiece_vocabulary(model_file=None, extra_ids: int = 100) -> SentencePieceVocabulary:
  """The T5 vocabulary of SentencePiece `model_file` (None = DEFAULT_SENTENCEPIECE_MODEL) with `extra_ids`."""
  return _sentencepiece(str(model_file or DEFAULT_SENTENCEPIECE_MODEL), int(extra_ids))


def backbone_vocabulary(backbone_dir=None) -> WordPieceVocabulary:
  """The vocab.txt of encoder checkpoint directory `backbone_dir` (None = the packaged MiniLM)."""
  if backbone_dir in (None, "", "default"):  # As bert_checkpoint.resolve_backbone_dir reads them.
    return wordpiece_vocabulary(None)
  return wordpiece_vocabulary(Path(str(backbone_dir)).expanduser() / "vocab.txt")


# Registered copies: gin fills their arguments from bindings; the functions above stay plain.
gin.external_configurable(backbone_vocabulary, module="prompt_tuning_jax")
gin.external_configurable(sentencepiece_vocabulary, module="prompt_tuning_jax")
