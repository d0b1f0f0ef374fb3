"""WordPiece from a model's vocab.txt as a seqio Vocabulary (tensorflow-text).

tensorflow-text lower-cases by NFKC case folding, while Hugging Face lower-cases and
then strips accents after NFD, and first drops control/format characters. We
normalise the Hugging Face way in TF ops and run `FastBertTokenizer` with its own
lower-casing off, which gives the Hugging Face ids (see tests/test_tokenizer.py).
"""

from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import seqio
import tensorflow as tf
import tensorflow_text as tf_text

from prompt_tuning_jax import errors


class WordPieceVocabulary(seqio.Vocabulary):
  """BERT WordPiece vocabulary. Ids of [PAD] must be 0 (seqio's convention).

  `vocab_file` is a path, or a function returning one (vocabularies.py names the packaged
  backbone's so), read when the vocabulary is first used.
  """

  def __init__(self, vocab_file: Union[str, Path, Callable[[], Path]], lower_case: bool = True):
    self._vocab_file = vocab_file
    self._lower_case = lower_case
    self._loaded = {}  # path -> (tokens, index, tokenizer or None)
    super().__init__(extra_ids=0)

  @property
  def vocab_file(self) -> str:
    return str(self._vocab_file() if callable(self._vocab_file) else self._vocab_file)

  def _load(self):
    path = self.vocab_file
    if path not in self._loaded:
      if not Path(path).exists():
        raise errors.MissingFileError(f"Vocabulary file {path} does not exist.")
      try:
        tokens = Path(path).read_text(encoding="utf-8").splitlines()
      except UnicodeDecodeError as e:
        raise errors.CheckpointError(f"{path} is not a UTF-8 vocabulary file ({e}).") from e
      if not tokens or tokens[0] != "[PAD]":
        found = repr(tokens[0]) if tokens else "an empty file"
        raise errors.CheckpointError(f"{path}: the first token must be [PAD] (id 0), found {found}.")
      self._loaded[path] = [tokens, {t: i for i, t in enumerate(tokens)}, None]
    return self._loaded[path]

  def token_id(self, token: str) -> int:
    index = self._load()[1]
    if token not in index:  # A vocab.txt without BERT's special tokens is not a WordPiece vocabulary.
      raise errors.CheckpointError(f"{self.vocab_file} has no {token} token; it is not a BERT WordPiece vocab.txt.")
    return index[token]

  @property
  def cls_id(self) -> int:
    return self.token_id("[CLS]")

  @property
  def sep_id(self) -> int:
    return self.token_id("[SEP]")

  @property
  def eos_id(self) -> Optional[int]:
    return None

  @property
  def unk_id(self) -> Optional[int]:
    return self.token_id("[UNK]")

  @property
  def _base_vocab_size(self) -> int:
    return len(self._load()[0])

  @property
  def tokenizer(self) -> tf_text.FastBertTokenizer:
    state = self._load()
    if state[2] is None:  # Built lazily (the table is large), eagerly: maps share it.
      with tf.init_scope():
        state[2] = self._build_tokenizer(state[0])
    return state[2]

  @staticmethod
  def _build_tokenizer(tokens) -> tf_text.FastBertTokenizer:
    return tf_text.FastBertTokenizer(
          vocab=tokens,
          token_out_type=tf.int32,
          unknown_token="[UNK]",
          lower_case_nfd_strip_accents=False,
          support_detokenization=True)

  def normalize_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Hugging Face BasicTokenizer normalisation of a string tensor."""
    s = tf.strings.regex_replace(s, r"[\t\n\r]", " ")
    s = tf.strings.regex_replace(s, r"[\x{0}\x{FFFD}\p{Cc}\p{Cf}\p{Co}]", "")
    if self._lower_case:
      s = tf.strings.lower(s, encoding="utf-8")
      s = tf_text.normalize_utf8(s, "NFD")
      s = tf.strings.regex_replace(s, r"\p{Mn}", "")
    return s

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Scalar string -> [T] ids; [n] strings -> ragged [n, None] ids."""
    s = tf.convert_to_tensor(s)
    if s.shape.rank == 0:
      return self.tokenizer.tokenize(self.normalize_tf(s[tf.newaxis]))[0]
    return self.tokenizer.tokenize(self.normalize_tf(s))

  def _encode(self, s: str) -> Sequence[int]:
    return self._encode_tf(tf.constant(s)).numpy().tolist()

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    return self.tokenizer.detokenize(ids)

  def _decode(self, ids) -> str:
    ids = [i for i in ids if i != self.pad_id]
    return self._decode_tf(tf.constant(ids, tf.int32)).numpy().decode("utf-8")

  def __eq__(self, other):
    return isinstance(other, WordPieceVocabulary) and (self.vocab_file, self._lower_case) == (
        other.vocab_file, other._lower_case)

  def __hash__(self):
    return hash((self.vocab_file, self._lower_case))


def truncate_longest_first(len_a: tf.Tensor, len_b: tf.Tensor, budget: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """Lengths kept by Hugging Face 'longest_first' truncation (one token at a time from
  the longer side; on a tie, from the second text)."""
  fits = len_a + len_b <= budget
  keep_b_when_a_longer = tf.minimum(len_b, budget // 2)
  keep_a_when_b_longer = tf.minimum(len_a, (budget + 1) // 2)
  a = tf.where(len_a >= len_b, budget - keep_b_when_a_longer, keep_a_when_b_longer)
  b = budget - a
  return tf.where(fits, len_a, a), tf.where(fits, len_b, b)


def encode_for_encoder(vocab: WordPieceVocabulary, text_a: tf.Tensor, text_b: Optional[tf.Tensor],
                       max_length: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """Text (pair) -> `[CLS] a [SEP] (b [SEP])` ids [T] and token type ids [T], T <= max_length."""
  cls = tf.constant([vocab.cls_id], tf.int32)
  sep = tf.constant([vocab.sep_id], tf.int32)
  ids_a = vocab.encode_tf(text_a)
  if text_b is None:
    ids_a = ids_a[:max_length - 2]
    ids = tf.concat([cls, ids_a, sep], 0)
    return ids, tf.zeros_like(ids)
  ids_b = vocab.encode_tf(text_b)
  keep_a, keep_b = truncate_longest_first(tf.size(ids_a), tf.size(ids_b), max_length - 3)
  first = tf.concat([cls, ids_a[:keep_a], sep], 0)
  second = tf.concat([ids_b[:keep_b], sep], 0)
  return tf.concat([first, second], 0), tf.concat([tf.zeros_like(first), tf.ones_like(second)], 0)
