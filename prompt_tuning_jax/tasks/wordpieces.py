"""Word-level WordPiece helpers: batch encoding of words, and character offsets for extractive QA.

`FastBertTokenizer` gives no character offsets, so `tokenize_with_offsets` pre-tokenizes the text itself the way
BERT's BasicTokenizer does (drop control/format characters, split on whitespace, split off every punctuation
and CJK character), encodes each pre-token with the vocabulary's own tokenizer, and maps each word piece back
to the characters it came from: per character it knows what normalisation (lower-case, NFD, accents stripped)
turned it into, so a piece's characters are found by walking the normalised pre-token. When the pieces do not
spell the normalised pre-token (an [UNK] word), every piece gets the whole pre-token's span.
"""

import functools
import unicodedata
from pathlib import Path
from typing import List, Sequence, Tuple

import tensorflow as tf

from prompt_tuning_jax.data.tokenizers import WordPieceVocabulary

Span = Tuple[int, int]  # [start, end) character offsets.


def encode_words(vocab: WordPieceVocabulary, words: Sequence[str]) -> List[List[int]]:
  """Each word's word-piece ids, from one tokenizer call (a word that normalises to nothing gets [])."""
  if not words:
    return []
  return vocab.encode_tf(tf.constant(list(words), tf.string)).to_list()


def _is_punctuation(c: str) -> bool:
  """BERT's definition: ASCII symbols count although Unicode files some ($, ^, `) under S*."""
  cp = ord(c)
  return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or unicodedata.category(c)[0] == "P"


def _is_cjk(c: str) -> bool:
  cp = ord(c)
  return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
          or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
          or 0x2F800 <= cp <= 0x2FA1F)


def _is_space(c: str) -> bool:
  return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_dropped(c: str) -> bool:
  """Removed before tokenization (WordPieceVocabulary.normalize_tf): NUL, U+FFFD, control, format, private use."""
  return c in "\x00\ufffd" or unicodedata.category(c) in ("Cc", "Cf", "Co")


def pre_tokenize(text: str) -> List[Span]:
  """Character spans of BERT's basic tokens: whitespace separates, punctuation and CJK characters stand alone,
  dropped characters neither split nor end a token."""
  spans, start, end = [], None, None
  for i, c in enumerate(text):
    if _is_dropped(c):
      continue
    if not (_is_space(c) or _is_punctuation(c) or _is_cjk(c)):
      start, end = (i if start is None else start), i + 1
      continue
    if start is not None:
      spans.append((start, end))
      start = None
    if not _is_space(c):
      spans.append((i, i + 1))
  if start is not None:
    spans.append((start, end))
  return spans


def _normalize_char(c: str, lower_case: bool) -> str:
  if _is_dropped(c):
    return ""
  if not lower_case:
    return c
  return "".join(x for x in unicodedata.normalize("NFD", c.lower()) if unicodedata.category(x) != "Mn")


@functools.lru_cache(maxsize=4)
def _pieces(vocab_file: str) -> Tuple[str, ...]:
  return tuple(Path(vocab_file).read_text(encoding="utf-8").splitlines())


def tokenize_with_offsets(vocab: WordPieceVocabulary, text: str,
                          lower_case: bool = True) -> Tuple[List[int], List[Span]]:
  """Word-piece ids of `text` and, per id, the [start, end) characters of `text` it covers.

  The ids equal vocab.encode(text) wherever BERT's pre-tokenization above agrees with the tokenizer's (tested on
  SQuAD contexts). `lower_case` must match the vocabulary's.
  """
  spans = pre_tokenize(text)
  pieces = _pieces(vocab.vocab_file)
  ids, offsets = [], []
  for (start, end), word_ids in zip(spans, encode_words(vocab, [text[s:e] for s, e in spans])):
    normalized, origin = [], []  # origin[k]: the text index that normalised character k came from.
    for i in range(start, end):
      n = _normalize_char(text[i], lower_case)
      normalized.append(n)
      origin.extend([i] * len(n))
    texts = [pieces[t][2:] if k and pieces[t].startswith("##") else pieces[t] for k, t in enumerate(word_ids)]
    ids.extend(word_ids)
    if "".join(texts) != "".join(normalized):
      offsets.extend([(start, end)] * len(word_ids))
      continue
    position = 0
    for piece in texts:
      offsets.append((origin[position], origin[position + len(piece) - 1] + 1))
      position += len(piece)
  return ids, offsets
