"""CoNLL-format tagging files (NER): a reader, the label sets, and word-piece encoding with one label per word.

Formats: "conll2003" (token POS chunk NER, 4 columns, -DOCSTART- lines skipped), "wnut17" (token<TAB>tag) and
"generic" (token first, tag last, any number of columns in between). Columns are split on tabs when the line
has one, else on whitespace. A blank or whitespace-only line ends a sentence (WNUT-17 train has lines holding
only a tab).

A word's label sits on its first word piece; its other pieces, [CLS] and [SEP] carry IGNORE_LABEL and weight
0, so each word is predicted exactly once and `predicted_tags` maps token predictions back to words.
"""

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from prompt_tuning_jax import errors
from prompt_tuning_jax.tasks.labels import IGNORE_LABEL, first_subword_label_weights
from prompt_tuning_jax.tasks.sources import DataError, text_lines

# Label order as in the Hugging Face / TFDS conll2003 and wnut_17 data sets.
CONLL03_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
WNUT17_TYPES = ("corporation", "creative-work", "group", "location", "person", "product")
WNUT17_LABELS = ("O",) + tuple(f"{bio}-{kind}" for kind in WNUT17_TYPES for bio in ("B", "I"))

Sentence = Tuple[Tuple[str, ...], Tuple[str, ...]]  # (tokens, tags) of equal length.

# format -> (column count or None for "at least 2", what the columns are, default label set).
FORMATS = {
    "conll2003": (4, "token POS chunk NER", CONLL03_LABELS),
    "wnut17": (2, "token<TAB>tag", WNUT17_LABELS),
    "generic": (None, "token ... tag", None),
}


def read_conll(path: Path, file_format: str = "generic",
               label_names: Optional[Sequence[str]] = None) -> List[Sentence]:
  """Sentences of a CoNLL-format file (optionally .gz) as (tokens, tags).

  Args:
    path: the file.
    file_format: a key of FORMATS.
    label_names: the allowed tags; defaults to the format's label set (none for "generic": any tag).

  Raises:
    DataError: naming file:line, on a line with the wrong number of columns or a tag outside the label set.
  """
  if file_format not in FORMATS:
    raise errors.ConfigError(f"unknown CoNLL format {file_format!r}; known: {list(FORMATS)}.")
  columns, layout, default_labels = FORMATS[file_format]
  allowed = frozenset(label_names if label_names is not None else default_labels or ())
  sentences, tokens, tags = [], [], []

  def end_sentence():
    if tokens:
      sentences.append((tuple(tokens), tuple(tags)))
      tokens.clear()
      tags.clear()

  for line_no, line in enumerate(text_lines(path), 1):  # Undecodable bytes are named by file:line there.
    line = line.rstrip("\r\n")
    if not line.strip():
      end_sentence()
      continue
    fields = line.split("\t") if "\t" in line else line.split()
    if fields[0] == "-DOCSTART-":
      end_sentence()
      continue
    bad_columns = len(fields) != columns if columns else len(fields) < 2
    if bad_columns:
      expected = columns or "at least 2"
      raise DataError(f"{path}:{line_no}: {len(fields)} column(s), expected {expected} ({layout}): {line!r}")
    if allowed and fields[-1] not in allowed:
      raise DataError(f"{path}:{line_no}: tag {fields[-1]!r} is not one of {sorted(allowed)}.")
    tokens.append(fields[0])
    tags.append(fields[-1])
  end_sentence()
  return sentences


def encode_sentence(tokens: Sequence[str], tags: Optional[Sequence[str]],
                    encode_words: Callable[[Sequence[str]], Sequence[Sequence[int]]], *, label_names: Sequence[str],
                    cls_id: int, sep_id: int, unk_id: int, max_length: int) -> Dict[str, np.ndarray]:
  """One sentence -> `[CLS] pieces [SEP]` with each word's label on its first piece.

  Args:
    tokens: the words.
    tags: their tags (None for unlabelled text: every label is IGNORE_LABEL).
    encode_words: words -> each word's word-piece ids, e.g.
      functools.partial(wordpieces.encode_words, vocab). Words are encoded separately, so pieces never
      straddle words; a word that encodes to nothing (a zero-width character) becomes [UNK] so it is still
      predicted.
    label_names: tag of each label id.
    cls_id, sep_id, unk_id: the special ids.
    max_length: T at most; longer sentences lose their last pieces (as Hugging Face's truncation=True), and
      words whose first piece is cut are never predicted (`predicted_tags` gives them "O").

  Returns:
    input_ids [T] int32, word_ids [T] int32 (word index, -1 on [CLS]/[SEP]), labels [T] int32 (the word's label
    id on its first piece, else IGNORE_LABEL), weights [T] float32 (1 on first pieces).
  """
  if tags is not None and len(tags) != len(tokens):
    raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags.")
  index = {name: i for i, name in enumerate(label_names)}
  unknown = set(tags or ()) - set(index)
  if unknown:
    raise ValueError(f"tags {sorted(unknown)} are not in label_names {list(label_names)}.")
  ids, word_ids = [cls_id], [-1]
  for w, pieces in enumerate(encode_words(list(tokens))):
    pieces = list(pieces) or [unk_id]
    ids.extend(pieces)
    word_ids.extend([w] * len(pieces))
  ids, word_ids = ids[:max_length - 1] + [sep_id], word_ids[:max_length - 1] + [-1]
  word_ids = np.asarray(word_ids, np.int32)
  weights = first_subword_label_weights(word_ids[None])[0]
  labels = np.full(word_ids.shape, IGNORE_LABEL, np.int32)
  if tags is not None:
    first = weights > 0
    labels[first] = [index[tags[w]] for w in word_ids[first]]
  else:
    weights = np.zeros_like(weights)
  return {"input_ids": np.asarray(ids, np.int32), "word_ids": word_ids, "labels": labels, "weights": weights}


def predicted_tags(token_label_ids: Sequence[int], word_ids: Sequence[int], num_words: int,
                   label_names: Sequence[str], missing: str = "O") -> List[str]:
  """Per-token predicted label ids [T] (e.g. argmax of token logits) -> one tag per word, read at the word's
  first piece. `missing` tags words that have no piece (cut by max_length)."""
  word_ids = np.asarray(word_ids)
  first = first_subword_label_weights(word_ids[None])[0] > 0
  tags = [missing] * num_words
  for w, label in zip(word_ids[first], np.asarray(token_label_ids)[first]):
    tags[int(w)] = label_names[int(label)]
  return tags
