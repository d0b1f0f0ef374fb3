"""SQuAD and MRQA as T5 text-to-text tasks (t5/data/preprocessors.py squad; prompt_tuning/data/qa.py and
preprocessors.py mrqa), read from the encoder tasks' sources (extractive_qa.py: TFDS squad/v1.1 and mrqa/<set>
when prepared, else DATA_DIR's squad/v1.1/*.json and mrqa/{train,dev}/<Set>.jsonl(.gz)).

  squad_v010_allanswers             'question: <q> context: <c>' -> the first answer; every answer is kept
                                    ('answers') for the metric. Question, context and answers have spaces put
                                    around each ASCII punctuation mark and whitespace runs collapsed, as T5 does.
  squad_v010_allanswers_dev_split   the same on SQuAD 1.1 dev only: train = its first 24 articles, validation =
                                    the other 24 (for when the train file is not at hand; say so in results).
  mrqa_<set>_v100                   MRQA in the same format: the in-domain training sets (news_qa, trivia_qa,
                                    search_qa, hotpot_qa, natural_questions; train and validation) and the six
                                    out-of-domain sets (bio_asq, drop, duo_rc, race, relation_extraction,
                                    textbook_qa; validation only, TFDS's 'test').
  squad_to_mrqa, squad_to_<set>     mixtures: train on SQuAD, evaluate on the out-of-domain set(s).

Metric: SQuAD EM and F1 with the official normalisation, max over every gold answer (t5's squad metric).
"""

import re
from typing import Dict, List, Sequence

import seqio
import tensorflow as tf

from prompt_tuning_jax.tasks import extractive_qa, registry, t5_metrics
from prompt_tuning_jax.tasks.text_to_text import Scoring, register_text_task, text_source

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # RE2's [[:punct:]]: ASCII punctuation.
_WHITESPACE = re.compile(r"[\t\n\f\r ]+")  # RE2's \s.


def pad_punctuation(text: str) -> str:
  """T5's _pad_punctuation: a space either side of each punctuation mark, whitespace runs made one space."""
  return _WHITESPACE.sub(" ", _PUNCTUATION.sub(r" \1 ", text))


def string_join(parts: Sequence[str]) -> str:
  """T5's _string_join: joined on spaces, whitespace runs made one space."""
  return _WHITESPACE.sub(" ", " ".join(parts))


def qa_text(row: dict) -> List[dict]:
  """An encoder QA row (preprocessors.qa_row) -> 'question: <q> context: <c>' -> its first answer."""
  answers = [pad_punctuation(a) for a in row["answers"]]
  inputs = string_join(["question:", pad_punctuation(row["question"]), "context:", pad_punctuation(row["context"])])
  return [{"inputs": inputs, "targets": answers[0] if answers else "", "answers": answers, "id": row["id"]}]


def _qa_score(examples, predictions) -> Dict[str, float]:
  return t5_metrics.squad_all_answers(examples.meta["answers"], predictions)


QA_TYPES = {"answers": tf.string, "id": tf.string}
QA_SCORING = Scoring(_qa_score, "f1")
MRQA_IN_DOMAIN = tuple(config for _, config, _ in extractive_qa.MRQA_IN_DOMAIN if config != "squad")
MRQA_OUT_OF_DOMAIN = tuple(config for _, config, _ in extractive_qa.MRQA_OUT_OF_DOMAIN)

register_text_task("squad_v010_allanswers", text_source(registry.SPECS["squad_v1"].source, qa_text, QA_TYPES),
                   QA_SCORING)
register_text_task("squad_v010_allanswers_dev_split",
                   text_source(registry.SPECS["squad_v1_dev_split"].source, qa_text, QA_TYPES), QA_SCORING)
for _config in MRQA_IN_DOMAIN + MRQA_OUT_OF_DOMAIN:
  register_text_task(f"mrqa_{_config}_v100", text_source(registry.SPECS[f"mrqa_{_config}"].source, qa_text,
                                                         QA_TYPES), QA_SCORING)

seqio.MixtureRegistry.add("squad_to_mrqa", ["squad_v010_allanswers"] + [f"mrqa_{c}_v100" for c in MRQA_OUT_OF_DOMAIN],
                          default_rate=1.0)
for _config in MRQA_OUT_OF_DOMAIN:
  seqio.MixtureRegistry.add(f"squad_to_{_config}", ["squad_v010_allanswers", f"mrqa_{_config}_v100"],
                            default_rate=1.0)
