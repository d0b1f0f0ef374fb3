"""SuperGLUE jsonl rows -> encoder features: the raw fields (TFDS super_glue names) plus ready-to-encode text.

Every function takes (row, path), a row of sources.read_jsonl (it carries '__line__'), and returns one feature
dict or, for MultiRC and ReCoRD, a list of them. Each dict holds "text_a" (and "text_b" for pairs), "label"
(sources.MISSING_LABEL when the row has none, as in the test splits; the source refuses that in a labeled split)
and "idx". Fields are checked for their JSON type (FIELD_TYPES): a DataError names file:line, the field, the type
found and the type expected. Text layouts follow THUDM/P-tuning-v2's SuperGLUE
code where it has one:
- BoolQ (question, passage); CB, AX-g (premise, hypothesis); AX-b (sentence1, sentence2): as given. AX-b and
  AX-g are RTE-form diagnostics (entailment / not_entailment), evaluation only.
- COPA: text_a = f"{premise} {'because' if question == 'cause' else 'so'}" and "choices" (choice1, choice2):
  multiple choice over the pairs (text_a, choices[k]).
- MultiRC: one row per answer option, text_a = paragraph, text_b = f"{question} {answer}", "group" = the
  question's idx (unique in a split), so the rows themselves are metrics.multirc targets.
- ReCoRD: one row per candidate entity (TFDS: entity texts deduplicated and sorted, "@highlight\\n" -> "- "),
  text_a = passage, text_b = query with @placeholder replaced by the entity, label = entity is a gold answer,
  "group" = the query's idx; `record_targets_and_predictions` picks each query's best-scored entity.
- WiC: the target word marked with '*' in both sentences from the start/end offsets
  ("an emerging professional *class*."); P-tuning v2 prefixes "word: " instead.
- WSC: span1 (the candidate referent) marked '*...*' and span2 (the pronoun) '#...#' in the text, words taken as
  text.split() as the span indices are. P-tuning v2 marks only the pronoun ('*'); marking both lets a
  classifier see which pair is asked about.
"""

import re
from pathlib import Path
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

from prompt_tuning_jax.tasks.sources import MISSING_LABEL, DataError, check_type, label_index, read_jsonl

BOOL_LABELS = ("False", "True")
CB_LABELS = ("entailment", "contradiction", "neutral")
RTE_LABELS = ("entailment", "not_entailment")

_bool_label = label_index(BOOL_LABELS, aliases={"false": 0, "true": 1})
_choice_label = label_index(("choice1", "choice2"))


# The JSON type of each SuperGLUE field ('passage' is a string in BoolQ and an object in MultiRC and ReCoRD:
# callers name it).
FIELD_TYPES = {"question": str, "premise": str, "hypothesis": str, "sentence1": str, "sentence2": str,
               "choice1": str, "choice2": str, "word": str, "text": str, "query": str, "span1_text": str,
               "span2_text": str, "questions": list, "answers": list, "entities": list, "qas": list, "target": dict,
               "idx": int, "start": int, "end": int, "start1": int, "end1": int, "start2": int, "end2": int,
               "span1_index": int, "span2_index": int}


def _get(obj: dict, path: Path, line: int, *keys: str, **types: type) -> list:
  """obj[key] for each key (obj: the row or a dict nested in it), each of its type (`types`, else FIELD_TYPES),
  or a DataError naming file:line and the field."""
  missing = list(keys) if not isinstance(obj, dict) else [k for k in keys if k not in obj]
  if missing:
    raise DataError(f"{path}:{line}: missing field(s) {missing}.")
  return [_typed(obj[k], types.get(k, FIELD_TYPES.get(k, object)), f"{path}:{line}", k) for k in keys]


def _typed(value, expected: type, where: str, field: str):
  """check_type, except that an integer may be written as a string of digits (AX-b's idx is "0")."""
  if expected is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
    return int(value)
  return check_type(value, expected, where, field)


def _label(obj: dict, path: Path, line: int, to_index) -> int:
  """The row's label index; MISSING_LABEL without one (sources.check_label refuses that in labeled splits)."""
  return to_index(obj["label"], path, line) if "label" in obj else MISSING_LABEL


def _idx(row: dict, path: Path) -> int:
  """The row's idx field, else its line number."""
  return _get(row, path, row["__line__"], "idx")[0] if "idx" in row else row["__line__"]


def boolq_row(row: dict, path: Path) -> dict:
  question, passage = _get(row, path, row["__line__"], "question", "passage", passage=str)
  return {"question": question, "passage": passage, "text_a": question, "text_b": passage,
          "label": _label(row, path, row["__line__"], _bool_label), "idx": _idx(row, path)}


def _entailment_row(row: dict, path: Path, to_label, fields=("premise", "hypothesis")) -> dict:
  """A (premise, hypothesis) pair read from `fields`, in RTE form."""
  premise, hypothesis = _get(row, path, row["__line__"], *fields)
  return {"premise": premise, "hypothesis": hypothesis, "text_a": premise, "text_b": hypothesis,
          "label": _label(row, path, row["__line__"], to_label), "idx": _idx(row, path)}


def cb_row(row: dict, path: Path, to_label=label_index(CB_LABELS)) -> dict:
  return _entailment_row(row, path, to_label)


def ax_b_row(row: dict, path: Path, to_label=label_index(RTE_LABELS)) -> dict:
  """AX-b (sentence1, sentence2) in RTE form: premise, hypothesis."""
  return _entailment_row(row, path, to_label, ("sentence1", "sentence2"))


def ax_g_row(row: dict, path: Path, to_label=label_index(RTE_LABELS)) -> dict:
  return _entailment_row(row, path, to_label)


def copa_row(row: dict, path: Path) -> dict:
  line = row["__line__"]
  premise, choice1, choice2, question = _get(row, path, line, "premise", "choice1", "choice2", "question")
  if question not in ("cause", "effect"):
    raise DataError(f"{path}:{line}: question {question!r} is not 'cause' or 'effect'.")
  label = _label(row, path, line, _choice_label)
  return {"premise": premise, "question": question, "choice1": choice1, "choice2": choice2,
          "text_a": f"{premise} {'because' if question == 'cause' else 'so'}", "choices": (choice1, choice2),
          "label": label, "idx": _idx(row, path)}


def multirc_option(paragraph: str, question: str, answer: str, label: int, group: int, idx: int,
                   answer_idx: int) -> dict:
  """The row of one answer option (from a jsonl passage or a TFDS example, which is one option already)."""
  return {"paragraph": paragraph, "question": question, "answer": answer, "text_a": paragraph,
          "text_b": f"{question} {answer}", "label": label, "group": int(group), "idx": int(idx),
          "answer_idx": int(answer_idx)}


def multirc_rows(row: dict, path: Path) -> List[dict]:
  """A passage with its questions -> one row per answer option."""
  line = row["__line__"]
  (passage,) = _get(row, path, line, "passage", passage=dict)
  paragraph, questions = _get(passage, path, line, "text", "questions")
  rows = []
  for question in questions:
    text, answers, group = _get(question, path, line, "question", "answers", "idx")
    for answer in answers:
      answer_text, answer_idx = _get(answer, path, line, "text", "idx")
      rows.append(multirc_option(paragraph, text, answer_text, _label(answer, path, line, _bool_label), group,
                                 _idx(row, path), answer_idx))
  return rows


def record_candidates(passage: str, entities: Sequence[str], query: str, answers: Optional[Sequence[str]],
                      group: int, idx: int, where: str) -> List[dict]:
  """One query -> a row per candidate entity (deduplicated, sorted); answers None: unlabelled (label -1)."""
  if "@placeholder" not in query:
    raise DataError(f"{where}: query {query!r} has no @placeholder.")
  passage_text = passage.replace("@highlight\n", "- ")
  answers = None if answers is None else tuple(sorted(set(answers)))
  return [{"passage": passage_text, "query": query, "entity": entity, "text_a": passage_text,
           "text_b": query.replace("@placeholder", entity), "label": -1 if answers is None else int(entity in answers),
           "answers": answers or (), "group": int(group), "idx": int(idx)} for entity in sorted(set(entities))]


def record_rows(row: dict, path: Path) -> List[dict]:
  """A passage with its queries -> one row per (query, candidate entity)."""
  line = row["__line__"]
  (passage, queries) = _get(row, path, line, "passage", "qas", passage=dict)
  text, entities = _get(passage, path, line, "text", "entities")
  spans = [_get(e, path, line, "start", "end") for e in entities]
  candidates = [text[start:end + 1] for start, end in spans]  # Entity ends are inclusive.
  rows = []
  for qa in queries:
    query, group = _get(qa, path, line, "query", "idx")
    answers = None
    if "answers" in qa:  # A test split's queries have none.
      answers = [_get(a, path, line, "text")[0] for a in _get(qa, path, line, "answers")[0]]
    rows.extend(record_candidates(text, candidates, query, answers, group, _idx(row, path), f"{path}:{line}"))
  return rows


def record_targets_and_predictions(rows: Sequence[dict],
                                   scores: Sequence[float]) -> Tuple[List[Tuple[str, ...]], List[str]]:
  """ReCoRD candidate rows and their scores (e.g. the "true" logit) -> per query, in first-seen order, its gold
  answers and its highest-scored entity (the first on a tie): the arguments of metrics.record."""
  best: Dict[Hashable, Tuple[float, str, Tuple[str, ...]]] = {}
  for row, score in zip(rows, scores):
    if row["group"] not in best or score > best[row["group"]][0]:
      best[row["group"]] = (float(score), row["entity"], row["answers"])
  return [answers for _, _, answers in best.values()], [entity for _, entity, _ in best.values()]


def _mark(sentence: str, start: int, end: Optional[int], mark: str) -> str:
  end = len(sentence) if end is None else end
  return f"{sentence[:start]}{mark}{sentence[start:end]}{mark}{sentence[end:]}"


def wic_row(row: dict, path: Path) -> dict:
  word, s1, s2, start1, end1, start2, end2 = _get(row, path, row["__line__"], "word", "sentence1", "sentence2",
                                                  "start1", "end1", "start2", "end2")
  for sentence, start, end in ((s1, start1, end1), (s2, start2, end2)):
    if not 0 <= start < end <= len(sentence):
      raise DataError(f"{path}:{row['__line__']}: offsets [{start}, {end}) lie outside {sentence!r}.")
  return {"word": word, "sentence1": s1, "sentence2": s2, "start1": start1, "end1": end1, "start2": start2,
          "end2": end2, "text_a": _mark(s1, start1, end1, "*"),
          "text_b": _mark(s2, start2, end2, "*"), "label": _label(row, path, row["__line__"], _bool_label),
          "idx": _idx(row, path)}


def _mark_words(words: List[str], index: int, span_text: str, mark: str, where: str) -> None:
  """Wraps span_text in `mark` inside words[index:index + n] (n = its word count), in place. Case and trailing
  punctuation may differ ("The lake" vs "the lake", "him" vs "him,"); an index that is off (one val row has
  "it" one word early) is corrected to the nearest place where the span occurs as whole words."""
  needle = " ".join(span_text.split())  # One train span holds a newline where the text has a space.
  n = len(needle.split())
  pattern = re.compile(rf"(?<!\w){re.escape(needle)}(?!\w)", re.IGNORECASE)  # Whole words: "it" not in "with".
  for j in sorted(range(len(words) - n + 1), key=lambda j: (abs(j - index), j)):
    segment = " ".join(words[j:j + n])
    found = pattern.search(segment)
    if found:
      words[j:j + n] = _mark(segment, found.start(), found.end(), mark).split(" ")
      return
  # Not in the text as written (one test span, "Kamenev and Zinoviev", is discontinuous): trust the index.
  if not 0 <= index <= len(words) - n:
    raise DataError(f"{where}: span {span_text!r} is not in the text and index {index} is outside its words.")
  words[index:index + n] = _mark(" ".join(words[index:index + n]), 0, None, mark).split(" ")


def wsc_row(row: dict, path: Path) -> dict:
  line = row["__line__"]
  text, target = _get(row, path, line, "text", "target")
  where = f"{path}:{line}"
  span1, index1, span2, index2 = _get(target, path, line, "span1_text", "span1_index", "span2_text", "span2_index")
  words = text.split()
  _mark_words(words, index1, span1, "*", where)
  _mark_words(words, index2, span2, "#", where)
  return {"text": text, "span1_text": span1, "span1_index": index1, "span2_text": span2, "span2_index": index2,
          "text_a": " ".join(words), "label": _label(row, path, line, _bool_label), "idx": _idx(row, path)}


def read_rows(path: Path, to_rows) -> List[dict]:
  """All feature rows of a jsonl file: `to_rows` applied to each line, lists flattened."""
  rows = []
  for row in read_jsonl(Path(path)):
    out = to_rows(row, Path(path))
    rows.extend(out if isinstance(out, list) else [out])
  return rows


# TFDS super_glue examples -> the rows above. TFDS keeps the jsonl field names except where noted, gives labels
# as class indices (-1: none) and has already split MultiRC into answer options and ReCoRD into queries.
TFDS_PATH = Path("<tfds super_glue>")


def from_tfds(to_row):
  """An adapter for the tasks whose TFDS fields are the jsonl ones: (TFDS example) -> to_row(jsonl-like row)."""

  def convert(ex: dict):
    row = {k: v for k, v in ex.items() if not (k == "label" and v == -1)} | {"__line__": ex["idx"]}
    return to_row(row, TFDS_PATH)

  return convert


def tfds_wsc(ex: dict) -> dict:
  """TFDS puts the target's fields at the top level."""
  target = {k: ex[k] for k in ("span1_index", "span1_text", "span2_index", "span2_text")}
  row = {"text": ex["text"], "target": target, "idx": ex["idx"], "__line__": ex["idx"]}
  return wsc_row(row | ({"label": ex["label"]} if ex["label"] != -1 else {}), TFDS_PATH)


def tfds_multirc(ex: dict) -> dict:
  idx = ex["idx"]
  return multirc_option(ex["paragraph"], ex["question"], ex["answer"], int(ex["label"]), idx["question"],
                        idx["paragraph"], idx["answer"])


def tfds_record(ex: dict) -> List[dict]:
  idx = ex["idx"]
  return record_candidates(ex["passage"], ex["entities"], ex["query"], ex["answers"] or None, idx["query"],
                           idx["passage"], f"{TFDS_PATH}: query {idx['query']}")
