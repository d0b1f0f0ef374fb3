"""Where tasks read their files and which vocabulary they tokenize with.

Tasks are registered once at import; these settings are read when a dataset is built,
so one registry serves any data directory, any backbone's vocab.txt and any T5
SentencePiece model. The backbone configured last (a vocab.txt for an encoder, a
SentencePiece model for T5) also tokenizes prompt initializers' texts and labels.
"""

from pathlib import Path
from typing import Optional, Tuple

# The data the project ships for its demo, in the same layout as ../shared/data.
SHIPPED_DATA_DIR = Path(__file__).resolve().parents[2] / "tasks" / "data"

# t5x's default vocabulary (T5 1.1, mT5 use others): what a T5X user expects when none is given.
DEFAULT_SENTENCEPIECE_MODEL = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"

_data_dir: Optional[Path] = None
_vocab_file: Optional[Path] = None
_sentencepiece: Tuple[str, int] = (DEFAULT_SENTENCEPIECE_MODEL, 100)
_backbone_vocabulary = "wordpiece"  # which of the two the last configured backbone uses


def set_data_dir(path) -> None:
  global _data_dir
  _data_dir = None if path in (None, "") else Path(path).expanduser()


def data_dir() -> Path:
  return _data_dir or SHIPPED_DATA_DIR


def set_vocab_file(path) -> None:
  global _vocab_file, _backbone_vocabulary
  _vocab_file = None if path is None else Path(path)
  _backbone_vocabulary = "wordpiece"


def vocab_file() -> Path:
  if _vocab_file is not None:
    return _vocab_file
  from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir  # pylint: disable=g-import-not-at-top
  return default_backbone_dir() / "vocab.txt"


def set_sentencepiece_model(path, extra_ids: int = 100) -> None:
  """The T5 vocabulary: a SentencePiece model file (local or gs://) and seqio's extra ids."""
  global _sentencepiece, _backbone_vocabulary
  _sentencepiece = (str(path or DEFAULT_SENTENCEPIECE_MODEL), int(extra_ids))
  _backbone_vocabulary = "sentencepiece"


def sentencepiece_model() -> Tuple[str, int]:
  """(model file, extra ids) of the T5 vocabulary."""
  return _sentencepiece


def backbone_vocabulary():
  """The configured backbone's seqio Vocabulary: WordPiece (encoders) or SentencePiece (T5)."""
  # pylint: disable=g-import-not-at-top
  if _backbone_vocabulary == "sentencepiece":
    from prompt_tuning_jax.vocabularies import T5_VOCABULARY
    return T5_VOCABULARY
  from prompt_tuning_jax.tokenizers import WordPieceVocabulary
  return WordPieceVocabulary(vocab_file())
