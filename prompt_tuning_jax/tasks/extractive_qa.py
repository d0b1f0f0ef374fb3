"""Extractive QA: SQuAD 1.1 and 2.0, and MRQA's in-domain training sets and out-of-domain development sets.

Questions become 384-token windows with stride 128 (qa.featurize via preprocessors.featurize_qa), decoded by
n-best span search (20 starts x 20 ends, answers up to 30 tokens) back to context characters; SQuAD 2.0 also
scores a no-answer. Metrics: the official SQuAD EM and F1 (v2.0's for squad_v2), max over gold answers, which is
what MRQA's evaluation computes too.

Sources: TFDS squad/v1.1, squad/v2.0 and mrqa/<set> when prepared, else DATA_DIR's original files:
squad/v1.1/{train,dev}-v1.1.json, squad/v2.0/{train,dev}-v2.0.json and mrqa/{train,dev}/<Set>.jsonl(.gz) as the
MRQA shared task distributes them. squad_v1_dev_split trains on the first 24 articles of SQuAD 1.1 dev and
evaluates on the other 24 (for when the train file is not at hand; report it as such).
"""

import functools
from typing import List

from prompt_tuning_jax.tasks import families, metrics
from prompt_tuning_jax.tasks import preprocessors, qa
from prompt_tuning_jax.tasks.features import encoder_features
from prompt_tuning_jax.tasks.registry import register
from prompt_tuning_jax.tasks.sources import TfdsOrFiles


def tfds_squad(ex: dict) -> dict:
  answers = ex["answers"]
  example = qa.squad_example(ex["id"], ex["question"], ex["context"], answers["text"], answers["answer_start"],
                             f"TFDS squad question {ex['id']}")
  return preprocessors.qa_row(example)


def tfds_mrqa(ex: dict) -> dict:
  spans = ex["detected_answers"]["char_spans"]
  char_spans = [(s, e) for starts, ends in zip(spans["start"], spans["end"]) for s, e in zip(starts, ends)]
  example = qa.mrqa_example(ex["qid"], ex["question"], ex["context"], ex["answers"], char_spans,
                            f"TFDS mrqa question {ex['qid']}")
  return preprocessors.qa_row(example)


def register_qa(name: str, source: TfdsOrFiles, no_answer: bool = False) -> None:
  register(name, source, [preprocessors.featurize_qa], encoder_features,
           [metrics.squad_v2 if no_answer else metrics.squad], family=families.SPAN_EXTRACTION, metric="f1",
           no_answer=no_answer)


def _squad_source(files, tfds_name=None, readers=None) -> TfdsOrFiles:
  return TfdsOrFiles(files=files, reader=qa.read_squad, to_features=preprocessors.qa_row,
                     feature_types=preprocessors.QA_ROW_TYPES, tfds_name=tfds_name, from_tfds=tfds_squad,
                     readers=readers or {})


register_qa("squad_v1", _squad_source({"train": "squad/v1.1/train-v1.1.json",
                                       "validation": "squad/v1.1/dev-v1.1.json"}, "squad/v1.1:3.0.0"))
register_qa("squad_v2", _squad_source({"train": "squad/v2.0/train-v2.0.json",
                                       "validation": "squad/v2.0/dev-v2.0.json"}, "squad/v2.0:3.0.0"), no_answer=True)
register_qa("squad_v1_dev_split", _squad_source(
    {"train": "squad/v1.1/dev-v1.1.json", "validation": "squad/v1.1/dev-v1.1.json"},
    readers={"train": functools.partial(qa.read_squad, articles=slice(0, 24)),
             "validation": functools.partial(qa.read_squad, articles=slice(24, None))}))


def _mrqa_source(tfds_config: str, file_name: str, splits: List[str]) -> TfdsOrFiles:
  files = {split: f"mrqa/{'train' if split == 'train' else 'dev'}/{file_name}.jsonl" for split in splits}
  # TFDS calls the out-of-domain development sets 'test'.
  tfds_splits = {} if "train" in splits else {"validation": "test"}
  return TfdsOrFiles(files=files, reader=qa.read_mrqa, to_features=preprocessors.qa_row,
                     feature_types=preprocessors.QA_ROW_TYPES, tfds_name=f"mrqa/{tfds_config}:1.0.0",
                     tfds_splits=tfds_splits, from_tfds=tfds_mrqa)


# (task, TFDS mrqa config, file name in the MRQA release)
MRQA_IN_DOMAIN = (("mrqa_squad", "squad", "SQuAD"), ("mrqa_news_qa", "news_qa", "NewsQA"),
                  ("mrqa_trivia_qa", "trivia_qa", "TriviaQA-web"), ("mrqa_search_qa", "search_qa", "SearchQA"),
                  ("mrqa_hotpot_qa", "hotpot_qa", "HotpotQA"),
                  ("mrqa_natural_questions", "natural_questions", "NaturalQuestionsShort"))
MRQA_OUT_OF_DOMAIN = (("mrqa_bio_asq", "bio_asq", "BioASQ"), ("mrqa_drop", "drop", "DROP"),
                      ("mrqa_duo_rc", "duo_rc", "DuoRC.ParaphraseRC"), ("mrqa_race", "race", "RACE"),
                      ("mrqa_relation_extraction", "relation_extraction", "RelationExtraction"),
                      ("mrqa_textbook_qa", "textbook_qa", "TextbookQA"))

for _name, _config, _file in MRQA_IN_DOMAIN:
  register_qa(_name, _mrqa_source(_config, _file, ["train", "validation"]))
for _name, _config, _file in MRQA_OUT_OF_DOMAIN:
  register_qa(_name, _mrqa_source(_config, _file, ["validation"]))
