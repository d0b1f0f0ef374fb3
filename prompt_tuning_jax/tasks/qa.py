"""Extractive QA (SQuAD 1.1/2.0, MRQA): readers, sliding windows with character offsets, and answer decoding.

Windows follow Hugging Face's run_qa (`tokenizer(question, context, truncation="only_second", max_length=384,
stride=128, return_overflowing_tokens=True)`): `[CLS] question [SEP] context window [SEP]`, consecutive windows
share `stride` context tokens and the last one reaches the end of the context. Questions longer than
`max_question_length` pieces are cut (BERT's run_squad default, 64), so every window has room to move on.
Character offsets come from wordpieces.tokenize_with_offsets (FastBertTokenizer has none).

Decoding follows run_qa's postprocessing: per example, the best start + end score over all its windows among the
top n_best starts x n_best ends inside the context (tasks/labels.py best_spans); for SQuAD 2.0 the null score is the
smallest [CLS] start + end score over the windows, and the answer is "" when it beats the best span by more than
`null_threshold`.
"""

import collections
import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from prompt_tuning_jax import errors
from prompt_tuning_jax.tasks import wordpieces
from prompt_tuning_jax.tasks.labels import best_spans
from prompt_tuning_jax.tasks.sources import DataError, check_type, read_jsonl, read_text
from prompt_tuning_jax.data.tokenizers import WordPieceVocabulary

Span = Tuple[int, int]  # [start, end) characters of the context.


@dataclasses.dataclass(frozen=True)
class QAExample:
  """One question about one context.

  Attributes:
    qid: the question's id.
    question: its text.
    context: the passage the answer is taken from.
    answers: gold answer texts for evaluation; empty for an unanswerable (SQuAD 2.0) question.
    answer_spans: where answers occur in the context; training labels use the first.
  """
  qid: str
  question: str
  context: str
  answers: Tuple[str, ...]
  answer_spans: Tuple[Span, ...]


@dataclasses.dataclass(frozen=True)
class QAFeature:
  """One window of one example. Arrays are unpadded, T <= max_length.

  Attributes:
    example_index: index of its example in the list given to `featurize`.
    input_ids: [T] `[CLS] question [SEP] window [SEP]`.
    token_type_ids: [T] 0 up to the first [SEP], 1 after.
    context_mask: [T] 1 on the window's context tokens. Windows without the answer are labelled [CLS], so
      set context_mask[0] = 1 for heads.span_loss (its no-answer position) when training on them.
    offsets: [T, 2] each context token's [start, end) characters in the context; -1 elsewhere.
    start_position, end_position: the first answer's first and last token, both 0 ([CLS]) when it is not
      wholly inside the window or there is none.
  """
  example_index: int
  input_ids: np.ndarray
  token_type_ids: np.ndarray
  context_mask: np.ndarray
  offsets: np.ndarray
  start_position: int
  end_position: int


# The JSON type of each SQuAD / MRQA field read ('id' and 'qid' may be numbers; they become strings).
FIELD_TYPES = {"data": list, "paragraphs": list, "context": str, "qas": list, "question": str, "answers": list,
               "text": str, "answer_start": int, "id": (str, int), "qid": (str, int), "detected_answers": list,
               "char_spans": list}


def _field(obj: dict, key: str, where: str):
  """obj[key] of its FIELD_TYPES type, or a DataError naming where and the field."""
  if not isinstance(obj, dict) or key not in obj:
    raise DataError(f"{where}: missing field {key!r}.")
  return check_type(obj[key], FIELD_TYPES.get(key, object), where, key)


def _checked_span(context: str, start: int, end: int, text: Optional[str], where: str) -> Span:
  """[start, end) if it lies in the context (and spells `text`, when given), else a DataError."""
  if not (0 <= start < end <= len(context)) or (text is not None and context[start:end] != text):
    raise DataError(f"{where}: answer {text!r} is not at characters [{start}, {end}) of the context "
                    f"(found {context[max(start, 0):max(end, 0)]!r}).")
  return start, end


def squad_example(qid: str, question: str, context: str, texts: Sequence[str], starts: Sequence[int],
                  where: str) -> QAExample:
  """A SQuAD question (from the json file or TFDS squad) with its answers checked against the context."""
  spans = tuple(_checked_span(context, int(s), int(s) + len(t), t, where) for s, t in zip(starts, texts))
  return QAExample(str(qid), question, context, tuple(texts), spans)


def read_squad(path: Path, articles: slice = slice(None)) -> List[QAExample]:
  """Questions of a SQuAD 1.1 or 2.0 json file (optionally .gz), in file order; `articles` selects articles
  (e.g. slice(0, 24): the first 24).

  SQuAD 2.0 questions with is_impossible get no answers (their plausible_answers are ignored). Errors name the
  file and the question's place, e.g. `data[3].paragraphs[5].qas[2]`.
  """
  try:
    root = json.loads(read_text(Path(path)))
  except json.JSONDecodeError as e:
    raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg}).") from e
  examples = []
  data = _field(root, "data", str(path))
  for a in range(len(data))[articles]:
    for p, paragraph in enumerate(_field(data[a], "paragraphs", f"{path}: data[{a}]")):
      context = _field(paragraph, "context", f"{path}: data[{a}].paragraphs[{p}]")
      for q, qa in enumerate(_field(paragraph, "qas", f"{path}: data[{a}].paragraphs[{p}]")):
        where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
        answers = [] if qa.get("is_impossible", False) else _field(qa, "answers", where)
        texts = [_field(ans, "text", where) for ans in answers]
        starts = [_field(ans, "answer_start", where) for ans in answers]
        examples.append(squad_example(_field(qa, "id", where), _field(qa, "question", where), context, texts, starts,
                                      where))
  return examples


def mrqa_example(qid: str, question: str, context: str, answers: Sequence[str],
                 char_spans: Sequence[Tuple[int, int]], where: str) -> QAExample:
  """An MRQA question (from the jsonl file or TFDS mrqa); char_spans are every detected answer's (start, last)
  with inclusive ends, as MRQA stores them, made exclusive here."""
  spans = tuple(_checked_span(context, int(start), int(last) + 1, None, where) for start, last in char_spans)
  return QAExample(str(qid), question, context, tuple(answers), spans)


def read_mrqa(path: Path) -> List[QAExample]:
  """Questions of an MRQA shared-task jsonl(.gz) file: a header line, then one context per line with its qas.

  `answers` are the gold texts; `answer_spans` are every detected answer's char_spans, so training labels use
  the first detected occurrence.
  """
  examples = []
  for i, row in enumerate(read_jsonl(Path(path))):
    where = f"{path}:{row['__line__']}"
    if i == 0:
      _field(row, "header", where)
      continue
    context = _field(row, "context", where)
    for qa in _field(row, "qas", where):
      spans = [span for detected in _field(qa, "detected_answers", where)
               for span in _field(detected, "char_spans", where)]
      answers = [check_type(a, str, where, "answers[]") for a in _field(qa, "answers", where)]
      examples.append(mrqa_example(_field(qa, "qid", where), _field(qa, "question", where), context, answers,
                                   spans, where))
  if not examples:
    raise DataError(f"{path}: no questions (expected a header line, then contexts with qas).")
  return examples


def windows(num_tokens: int, budget: int, stride: int) -> List[Tuple[int, int]]:
  """[start, stop) context-token ranges: `budget` tokens each, `stride` shared by neighbours, as the tokenizers
  library's overflow (starts 0, budget - stride, ...; the last window reaches num_tokens)."""
  if budget <= stride:
    raise errors.ConfigError(f"a window of {budget} context tokens cannot overlap its neighbour by "
                             f"stride={stride}.")
  spans, start = [], 0
  while True:
    stop = min(start + budget, num_tokens)
    spans.append((start, stop))
    if stop >= num_tokens:
      return spans
    start += budget - stride


def _label(offsets: np.ndarray, first: int, last: int, answer: Span) -> Tuple[int, int]:
  """Answer tokens among context tokens first..last (inclusive), or (0, 0) when it is not wholly inside.

  As run_qa, except at whitespace: the start token is the first whose end passes the answer's start and the end
  token the last that begins before the answer's end, so stray spaces at an answer's edges take no extra word.
  """
  start_char, end_char = answer
  if first > last or not (offsets[first, 0] <= start_char and offsets[last, 1] >= end_char):
    return 0, 0
  context = np.arange(first, last + 1)
  starts = context[offsets[first:last + 1, 1] > start_char]
  ends = context[offsets[first:last + 1, 0] < end_char]
  if not starts.size or not ends.size:
    return 0, 0
  return int(starts[0]), int(max(starts[0], ends[-1]))


def featurize(examples: Sequence[QAExample], vocab: WordPieceVocabulary, max_length: int = 384, stride: int = 128,
              max_question_length: int = 64) -> List[QAFeature]:
  """Examples -> windows (one or more per example, in example order) with start/end labels."""
  cls, sep = vocab.cls_id, vocab.sep_id
  questions = wordpieces.encode_words(vocab, [ex.question for ex in examples])
  tokenized: Dict[str, Tuple[List[int], np.ndarray]] = {}  # SQuAD asks several questions per context.
  features = []
  for i, (example, question) in enumerate(zip(examples, questions)):
    if example.context not in tokenized:
      ids, offsets = wordpieces.tokenize_with_offsets(vocab, example.context)
      tokenized[example.context] = ids, np.asarray(offsets, np.int32).reshape(-1, 2)
    context_ids, context_offsets = tokenized[example.context]
    question = question[:max_question_length]
    head = len(question) + 2
    for start, stop in windows(len(context_ids), max_length - head - 1, stride):
      n = stop - start
      offsets = np.full((head + n + 1, 2), -1, np.int32)
      offsets[head:head + n] = context_offsets[start:stop]
      positions = _label(offsets, head, head + n - 1, example.answer_spans[0]) if example.answer_spans else (0, 0)
      features.append(QAFeature(
          example_index=i,
          input_ids=np.asarray([cls, *question, sep, *context_ids[start:stop], sep], np.int32),
          token_type_ids=np.asarray([0] * head + [1] * (n + 1), np.int32),
          context_mask=np.asarray([0] * head + [1] * n + [0], np.int32),
          offsets=offsets, start_position=positions[0], end_position=positions[1]))
  return features


def postprocess(examples: Sequence[QAExample], features: Sequence[QAFeature], start_logits, end_logits, *,
                n_best: int = 20, max_answer_length: int = 30, version_2: bool = False,
                null_threshold: float = 0.0) -> Dict[str, str]:
  """Per question id, the predicted answer text ("" for no answer).

  Args:
    examples: as given to `featurize`.
    features: its output.
    start_logits, end_logits: per feature, [T'] scores with T' >= its length (padding is ignored).
    n_best: starts and ends considered per window.
    max_answer_length: in tokens.
    version_2: allow no answer (SQuAD 2.0).
    null_threshold: predict "" when null score - best span score exceeds it.
  """
  per_example = collections.defaultdict(list)
  for f, feature in enumerate(features):
    per_example[feature.example_index].append(f)
  predictions = {}
  for e, example in enumerate(examples):
    best_score, best_text, null_score = -np.inf, "", np.inf
    for f in per_example[e]:
      feature = features[f]
      length = len(feature.input_ids)
      starts = np.asarray(start_logits[f], np.float64)[:length]
      ends = np.asarray(end_logits[f], np.float64)[:length]
      null_score = min(null_score, starts[0] + ends[0])
      spans = best_spans(starts[None], ends[None], feature.context_mask[None], n_best, max_answer_length)[0]
      if spans and spans[0][2] > best_score:
        first, last, best_score = spans[0]
        best_text = example.context[feature.offsets[first, 0]:feature.offsets[last, 1]]
    if version_2 and null_score - best_score > null_threshold:
      best_text = ""
    predictions[example.qid] = best_text
  return predictions
