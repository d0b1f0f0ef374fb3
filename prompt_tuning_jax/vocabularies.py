"""The T5 vocabulary: seqio's SentencePieceVocabulary on the model file the run configures.

Text-to-text tasks are registered at import, before gin says which SentencePiece model
the run uses; `T5_VOCABULARY` reads it (and the number of extra ids) from
`tasks.settings.sentencepiece_model()` whenever it loads, as the encoder tasks'
WordPiece vocabulary follows the configured vocab.txt. Ids follow T5: pad 0, eos 1,
unk 2, then the pieces, then the extra ids `<extra_id_{k}>` counted down from the top.
"""

import seqio

from prompt_tuning_jax.tasks import settings


class ConfiguredSentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio.SentencePieceVocabulary whose model file and extra ids are the configured ones at use time."""

  def __init__(self):
    super().__init__(*settings.sentencepiece_model())

  def _model_context(self):
    # The one hook seqio loads through: switch model when the configuration changed.
    # seqio caches loaded models per (file, extra ids), so switching back is free.
    configured = settings.sentencepiece_model()
    if (self._sentencepiece_model_file, self._extra_ids) != configured:
      self._sentencepiece_model_file, self._extra_ids = configured
      self._model = None
    return super()._model_context()

  @property
  def sentencepiece_model_file(self) -> str:
    return settings.sentencepiece_model()[0]

  @property
  def extra_ids(self) -> int:
    return settings.sentencepiece_model()[1]


T5_VOCABULARY = ConfiguredSentencePieceVocabulary()
