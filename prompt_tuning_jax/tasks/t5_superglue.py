"""SuperGLUE, its diagnostics and GLUE RTE as T5 text-to-text tasks, in T5's formats (t5/data/preprocessors.py
glue, wsc_simple, record; t5/data/glue_utils.py; prompt_tuning/data/super_glue.py).

  super_glue_boolq_v102    'boolq passage: <p> question: <q>'                     -> False | True
  super_glue_cb_v102       'cb hypothesis: <h> premise: <p>'                       -> entailment | contradiction | neutral
  super_glue_copa_v102     'copa choice1: <c1> choice2: <c2> premise: <p> question: <cause|effect>' -> choice1 | choice2
  super_glue_multirc_v102  'multirc question: <q> answer: <a> paragraph: <p>' ('<br>' -> ' ', '<b>', '</b>'
                           dropped), one example per answer option                -> False | True
  super_glue_record_v102   'record query: <q> entities: <e1>, <e2>, ... passage: <p>' ('@highlight' lines joined
                           as T5 does), one example per gold answer               -> the answer text
  super_glue_rte_v102      'rte hypothesis: <h> premise: <p>'                      -> entailment | not_entailment
  super_glue_wic_v102      'wic sentence1: <s1> sentence2: <s2> word: <w>'         -> False | True
  super_glue_wsc_v102      'wsc: <text with the pronoun marked *it*>'              -> the candidate referent
                           (T5's and the prompt-tuning repo's WSC, wsc_simple: train holds only the rows whose
                           candidate is the referent; validation and test hold all, scored by whether the
                           decoded referent matches the candidate, against the label)
  super_glue_wsc_fixed_v102  T5's marked-span form: 'wsc text: ... * the suitcase * ... # it # ...' -> False | True
  super_glue_{axb,axg}_v102  split 'test' (labeled), in RTE's format (AX-b's sentence1/sentence2 rekeyed to
                           premise/hypothesis)                                    -> entailment | not_entailment
  glue_rte_v002            'rte sentence1: <premise> sentence2: <hypothesis>' (GLUE's field names; read from the
                           SuperGLUE RTE copy, which holds the same examples)
  taskless_super_glue_<task>_v102  each super_glue task without its first input token (the task name).

Fields without an order in glue_utils are joined in sorted order, as T5 does. Unlabeled rows (test splits) have
the target '<unk>'. Metrics (t5_metrics.py): accuracy; CB also macro-F1 over its 3 classes; MultiRC exact match
per question and F1a over all answers; ReCoRD EM/F1 of each query's first row, max over its answers; AX-b
Matthews correlation; AX-g accuracy. `super_glue_v102_proportional` mixes the eight training tasks in proportion
to their sizes (seqio.mixing_rate_num_examples).
"""

import dataclasses
import functools
import re
from pathlib import Path
from typing import Dict, List, Sequence

import seqio
import tensorflow as tf

from prompt_tuning_jax.tasks import metrics, registry, t5_metrics
from prompt_tuning_jax.tasks import classification, superglue  # pylint: disable=unused-import  (encoder sources)
from prompt_tuning_jax.tasks import superglue_rows as sg
from prompt_tuning_jax.tasks.sources import DataError
from prompt_tuning_jax.tasks.superglue_rows import _get  # pylint: disable=protected-access
from prompt_tuning_jax.tasks.text_to_text import (Scoring, label_scoring, label_text, register_text_task,
                                                  text_source)

LABELED = {"label": tf.int64, "idx": tf.int32}


def glue_text(benchmark: str, keys: Sequence[str], label_strings: Sequence[str], row_keys: Sequence[str] = ()):
  """T5's glue preprocessor on an encoder row: '<benchmark> <key>: <text> ...' -> its label string. row_keys:
  where the row holds each key's text (default the keys themselves)."""

  def to_text(row: dict) -> List[dict]:
    parts = [benchmark] + [piece for key, field in zip(keys, row_keys or keys) for piece in (f"{key}:", row[field])]
    return [{"inputs": " ".join(parts), "targets": label_text(row["label"], label_strings), "label": row["label"],
             "idx": row["idx"]}]

  return to_text


def multirc_text(row: dict) -> List[dict]:
  """One answer option; the HTML markup of MultiRC's paragraphs removed as T5 does."""
  inputs = f"multirc question: {row['question']} answer: {row['answer']} paragraph: {row['paragraph']}"
  inputs = re.sub("<(/)?b>", "", inputs.replace("<br>", " "))
  return [{"inputs": inputs, "targets": label_text(row["label"], sg.BOOL_LABELS), "label": row["label"],
           "idx": row["answer_idx"], "group": f"{row['idx']}-{row['group']}"}]


# ReCoRD: per query its passage, query, entities and answers (sorted and deduplicated, as TFDS gives them).
def record_queries(row: dict, path: Path) -> List[dict]:
  """A ReCoRD jsonl line (a passage with its queries) -> one row per query."""
  line = row["__line__"]
  passage, queries = _get(row, path, line, "passage", "qas", passage=dict)
  text, spans = _get(passage, path, line, "text", "entities")
  entities = sorted({text[start:end + 1] for start, end in (_get(e, path, line, "start", "end") for e in spans)})
  out = []
  for qa in queries:
    query, query_idx = _get(qa, path, line, "query", "idx")
    answers = [_get(a, path, line, "text")[0] for a in _get(qa, path, line, "answers")[0]] if "answers" in qa else []
    out.append({"passage": text, "query": query, "entities": entities, "answers": sorted(set(answers)),
                "passage_idx": sg._idx(row, path), "query_idx": query_idx})  # pylint: disable=protected-access
  return out


def tfds_record_query(ex: dict) -> dict:
  return {"passage": ex["passage"], "query": ex["query"], "entities": list(ex["entities"]),
          "answers": list(ex["answers"]), "passage_idx": ex["idx"]["passage"], "query_idx": ex["idx"]["query"]}


def record_text(row: dict) -> List[dict]:
  """T5's record preprocessor: one example per answer ('<unk>' when there is none)."""
  passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", row["passage"])
  passage = re.sub(r"\n@highlight\n", ". ", passage)
  inputs = f"record query: {row['query']} entities: {', '.join(row['entities'])} passage: {passage}"
  group = f"{row['passage_idx']}-{row['query_idx']}"
  return [{"inputs": inputs, "targets": target, "answers": list(row["answers"]), "group": group,
           "idx": row["query_idx"]} for target in (row["answers"] or ["<unk>"])]


# Two WSC texts whose pronoun T5 finds by hand (a comma glued to it; an index pointing at the word before).
_WSC_SPECIAL = {
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite loud. '
    '"Good for him," he said. ':
        'The boy continued to whip the pony , and eventually the pony threw him over. John laughed out quite '
        'loud. "Good for X ," he said.',
    'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in an iron '
    'safe . Some day they might want to use it , but really for now, what more could they wish for?':
        'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in an '
        'iron safe . Some day they might want to use X , but really for now, what more could they wish for?',
}


def _pronoun_blanked(text: str, pronoun: str, index: int, where: str) -> str:
  """The text with its pronoun (word `index` of text.split(' '), see _pronoun_index) replaced by 'X', as T5's
  _wsc_inputs."""
  if text in _WSC_SPECIAL:
    return _WSC_SPECIAL[text]
  words, j = text.split(" "), _pronoun_index(text, pronoun, index, where)
  return " ".join([" ".join(words[:j]), "X", " ".join(words[j + 1:])])


def _pronoun_index(text: str, pronoun: str, index: int, where: str) -> int:
  """`index` if word `index` of text.split(' ') is the pronoun, else the nearest word that is (the original
  files' indices are off by a word here and there; TFDS's wsc.fixed corrected them)."""
  words = text.split(" ")
  found = [j for j in range(len(words)) if words[j] == pronoun]
  if not found:
    raise DataError(f"{where}: pronoun (span2_text) {pronoun!r} is not a word of the text {text!r}; correct "
                    "span2_text or remove the row.")
  return min(found, key=lambda k: (abs(k - index), k))


def wsc_simple_text(row: dict) -> List[dict]:
  """T5's wsc_simple: 'wsc: ' + the text with the pronoun marked '*it*' -> the candidate referent (span1)."""
  blanked = _pronoun_blanked(row["text"], row["span2_text"], row["span2_index"], f"example {row['idx']}")
  inputs = "wsc: " + re.sub(" X ", lambda _: f" *{row['span2_text']}* ", blanked)
  return [{"inputs": inputs, "targets": row["span1_text"], "label": row["label"], "idx": row["idx"]}]


def _mark_span(text: str, span: str, index: int, mark: str) -> str:
  """T5's wsc _mark_span: ' <mark> span <mark> ' around `span` when it starts word `index` (words end at
  whitespace); the text unchanged when it does not."""
  return re.sub(rf"^((?:\S+\s){{{index}}})({re.escape(span)})", lambda m: f"{m[1]}{mark} {m[2]} {mark}", text,
                count=1)


def wsc_marked_text(row: dict) -> List[dict]:
  """T5's wsc preprocessor: 'wsc text: ...' with the candidate marked '* ... *' and the pronoun '# ... #'."""
  text = _mark_span(row["text"], row["span1_text"], row["span1_index"], "*")
  index = _pronoun_index(row["text"], row["span2_text"], row["span2_index"], f"example {row['idx']}")
  span2_index = index + 2 * (row["span1_index"] < index)  # The two marks are words.
  text = _mark_span(text, row["span2_text"], span2_index, "#")
  return [{"inputs": f"wsc text: {text}", "targets": label_text(row["label"], sg.BOOL_LABELS), "label": row["label"],
           "idx": row["idx"]}]


def _wsc_score(examples, predictions) -> Dict[str, float]:
  said = [t5_metrics.wsc_simple_label(p, referent) for p, referent in zip(predictions, examples.targets_text)]
  return metrics.accuracy(examples.meta["label"], said)


def _multirc_score(examples, predictions) -> Dict[str, float]:
  return t5_metrics.multirc_grouped(examples.meta["group"], t5_metrics.labels_of(examples.targets_text, sg.BOOL_LABELS),
                                    t5_metrics.labels_of(predictions, sg.BOOL_LABELS))


def _record_score(examples, predictions) -> Dict[str, float]:
  return t5_metrics.record_deduplicated(examples.meta["group"], examples.meta["answers"], predictions)


def _encoder_source(name: str):
  return registry.SPECS[name].source


CB_F1 = functools.partial(metrics.f1_macro, labels=range(3))
# task -> (encoder source, row -> text rows, extra features, scoring, label strings)
_TASKS = {
    "boolq": (_encoder_source("boolq"), glue_text("boolq", ("passage", "question"), sg.BOOL_LABELS), LABELED,
              label_scoring(sg.BOOL_LABELS), sg.BOOL_LABELS),
    "cb": (_encoder_source("cb"), glue_text("cb", ("hypothesis", "premise"), sg.CB_LABELS), LABELED,
           label_scoring(sg.CB_LABELS, (metrics.accuracy, CB_F1)), sg.CB_LABELS),
    "copa": (_encoder_source("copa"), glue_text("copa", ("choice1", "choice2", "premise", "question"),
                                                 ("choice1", "choice2")), LABELED,
             label_scoring(("choice1", "choice2")), ("choice1", "choice2")),
    "multirc": (_encoder_source("multirc"), multirc_text, LABELED | {"group": tf.string},
                Scoring(_multirc_score, "f1a"), sg.BOOL_LABELS),
    "record": (_encoder_source("record"), record_text, {"answers": tf.string, "group": tf.string, "idx": tf.int32},
               Scoring(_record_score, "f1"), ()),
    "rte": (_encoder_source("rte"), glue_text("rte", ("hypothesis", "premise"), sg.RTE_LABELS), LABELED,
            label_scoring(sg.RTE_LABELS), sg.RTE_LABELS),
    "wic": (_encoder_source("wic"), glue_text("wic", ("sentence1", "sentence2", "word"), sg.BOOL_LABELS), LABELED,
            label_scoring(sg.BOOL_LABELS), sg.BOOL_LABELS),
    "wsc": (_encoder_source("wsc"), wsc_simple_text, LABELED, Scoring(_wsc_score, "accuracy"), ()),
    # T5's marked-span classification form of WSC (t5 registers no task for it; named after TFDS's wsc.fixed).
    "wsc_fixed": (_encoder_source("wsc"), wsc_marked_text, LABELED, label_scoring(sg.BOOL_LABELS), sg.BOOL_LABELS),
    "axb": (_encoder_source("axb"), glue_text("rte", ("hypothesis", "premise"), sg.RTE_LABELS), LABELED,
            label_scoring(sg.RTE_LABELS, (t5_metrics.matthews_with_invalid,), "matthews_corr"), sg.RTE_LABELS),
    "axg": (_encoder_source("axg"), glue_text("rte", ("hypothesis", "premise"), sg.RTE_LABELS), LABELED,
            label_scoring(sg.RTE_LABELS), sg.RTE_LABELS),
}
# ReCoRD's text rows are built per query, not per candidate entity as the encoder task's are.
_RECORD_QUERIES = {"to_features": record_queries, "from_tfds": tfds_record_query}
# T5 trains WSC on the rows whose candidate is the referent (correct_referent_only).
_WSC_TRAIN = {"keep_rows": {"train": lambda row: row["label"] == 1}}

TRAIN_TASKS = tuple(f"super_glue_{t}_v102" for t in ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"))

for _task, (_base, _to_text, _types, _scoring, _labels) in _TASKS.items():
  if _task == "record":
    _base = dataclasses.replace(_base, **_RECORD_QUERIES)
  _changes = _WSC_TRAIN if _task == "wsc" else {}
  for _prefix, _taskless in (("", False), ("taskless_", True)):
    register_text_task(f"{_prefix}super_glue_{_task}_v102", text_source(_base, _to_text, _types, taskless=_taskless,
                                                                         **_changes), _scoring, _labels)

register_text_task("glue_rte_v002", text_source(_encoder_source("rte"), glue_text(
    "rte", ("sentence1", "sentence2"), sg.RTE_LABELS, ("premise", "hypothesis")), LABELED), label_scoring(sg.RTE_LABELS), sg.RTE_LABELS)

seqio.MixtureRegistry.add("super_glue_v102_proportional", list(TRAIN_TASKS),
                          default_rate=seqio.mixing_rate_num_examples)
