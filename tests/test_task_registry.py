"""Every task of the registry is a seqio Task that loads from its original files (tiny fixtures here, published
sizes on ../shared/data) or from TFDS, with the same rows either way; data errors name what they looked for."""

import json
from unittest import mock

import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from conftest import SHARED_DATA, require_shared_data
from prompt_tuning_jax import tasks
from prompt_tuning_jax.tasks import families
from prompt_tuning_jax.data.batching import IGNORE_LABEL
from prompt_tuning_jax.tasks import conll, extractive_qa, preprocessors, qa, srl
from prompt_tuning_jax.tasks import superglue_rows as sg
from prompt_tuning_jax.data.vocabularies import wordpiece_vocabulary
from prompt_tuning_jax.tasks.sources import DataError, TfdsOrFiles, host_value
from prompt_tuning_jax.tasks import loading
from task_fixtures import FIXTURES, write_task_data

C, M, T, S = families.CLASSIFICATION, families.MULTIPLE_CHOICE, families.TOKEN_CLASSIFICATION, families.SPAN_EXTRACTION
TV, TVT = ("train", "validation"), ("train", "validation", "test")
PRF = {"precision", "recall", "f1"}
TASKS = {  # name -> (family, splits, selection metric, the metric_fns' keys)
    "boolq": (C, TVT, "accuracy", {"accuracy"}), "cb": (C, TVT, "accuracy", {"accuracy", "f1_macro"}),
    "copa": (M, TVT, "accuracy", {"accuracy"}), "multirc": (C, TVT, "f1a", {"em", "f1a"}),
    "record": (C, TVT, "f1", {"em", "f1"}), "rte": (C, TVT, "accuracy", {"accuracy"}),
    "wic": (C, TVT, "accuracy", {"accuracy"}), "wsc": (C, TVT, "accuracy", {"accuracy"}),
    "axb": (C, ("test",), "accuracy", {"accuracy"}), "axg": (C, ("test",), "accuracy", {"accuracy"}),
    "squad_v1": (S, TV, "f1", {"em", "f1"}), "squad_v2": (S, TV, "f1", {"em", "f1"}),
    "squad_v1_dev_split": (S, TV, "f1", {"em", "f1"}),
    "conll2003": (T, TVT, "f1", PRF), "ontonotes": (T, TVT, "f1", PRF), "conll2004": (T, TVT, "f1", PRF),
    "wnut17": (T, TVT, "f1", PRF), "conll2005": (T, ("train", "validation", "test_wsj", "test_brown"), "f1", PRF),
    "conll2012": (T, TVT, "f1", PRF),
    **{name: (S, TV, "f1", {"em", "f1"}) for name, _, _ in extractive_qa.MRQA_IN_DOMAIN},
    **{name: (S, ("validation",), "f1", {"em", "f1"}) for name, _, _ in extractive_qa.MRQA_OUT_OF_DOMAIN},
}
MIXTURES = {"ner": {"conll2003", "conll2004", "ontonotes", "wnut17"}, "srl": {"conll2005", "conll2012"},
            "superglue": {"boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"},
            "qa": {"squad_v1", "squad_v2", "mrqa_news_qa", "mrqa_trivia_qa", "mrqa_search_qa", "mrqa_hotpot_qa",
                   "mrqa_natural_questions"},
            "mrqa_squad_to_out_of_domain": {"mrqa_squad", *(name for name, _, _ in extractive_qa.MRQA_OUT_OF_DOMAIN)}}


BACKBONE_VOCABULARY = wordpiece_vocabulary()  # What the tasks tokenize with when given no vocabulary.


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
  return write_task_data(tmp_path_factory.mktemp("data"))


def test_every_task_and_mixture_is_registered():
  for name, (family, splits, metric, keys) in TASKS.items():
    task, info = seqio.get_mixture_or_task(name), tasks.info(name)
    assert (info.family, tuple(task.splits), info.metric) == (family, splits, metric), name
    assert metric in keys
  for name, members in MIXTURES.items():
    assert set(tasks.task_names(name)) == members, name


def _decode(ids):
  return BACKBONE_VOCABULARY.decode([int(i) for i in ids])


def test_superglue_fixtures_load_through_the_registered_tasks(fixture_dir):
  copa = loading.load_examples("copa", "train", 64, data_dir=fixture_dir)
  assert len(copa) == 16 and copa.input_ids[0].shape[0] == 2 and copa.labels.tolist()[:2] == [0, 1]
  first, second = copa.input_ids[0]
  assert _decode(first) == "[CLS] the glass fell off the shelf . so [SEP] the glass broke . [SEP]"
  assert _decode(second[second > 0]) == "[CLS] the glass fell off the shelf . so [SEP] the glass sang . [SEP]"
  multirc = loading.load_examples("multirc", "validation", 64, data_dir=fixture_dir)
  assert len(multirc) == 20 and len(set(multirc.meta["group"])) == 8  # 4 passages x 2 questions.
  record = loading.load_examples("record", "validation", 64, data_dir=fixture_dir)
  assert len(record) == 4 * 2 * 4 and record.meta["answers"][0] == ["Wren Island"]
  assert {len(loading.load_examples(n, s, 64, data_dir=fixture_dir))
          for n, s in (("boolq", "train"), ("cb", "train"), ("wic", "train"), ("wsc", "train"))} == {8}
  assert [len(loading.load_examples(n, "test", 64, data_dir=fixture_dir)) for n in ("axb", "axg")] == [1, 1]


def test_tagging_fixtures_put_labels_on_first_sub_words(fixture_dir):
  for name, sample in (("conll2004", "conll2004_sample.txt"), ("ontonotes", "ontonotes_sample.conll")):
    examples = loading.load_examples(name, "train", 64, data_dir=fixture_dir)
    sentences = conll.read_conll(FIXTURES / sample)
    assert len(examples) == 4 * len(sentences)
    labels, word_ids, tags = examples.labels[0], examples.meta["word_ids"][0], examples.meta["tags"][0]
    assert tags == list(sentences[0][1])
    first = labels != IGNORE_LABEL
    assert [tasks.LABEL_NAMES[name][i] for i in labels[first]] == tags
    assert word_ids[first].tolist() == list(range(len(tags)))


def test_srl_appends_the_predicate_and_reads_short_argument_names(fixture_dir):
  examples = loading.load_examples("conll2005", "train", 64, data_dir=fixture_dir)
  assert examples.meta["tags"][1] == ["O", "O", "B-ARG0", "I-ARG0", "B-V", "B-ARG1", "I-ARG1", "B-ARGM-TMP",
                                      "I-ARGM-TMP", "O"]  # The file says A0, AM-TMP.
  ids, types, labels = examples.input_ids[1], examples.token_type_ids[1], examples.labels[1]
  assert _decode(ids) == "[CLS] officials said the committee approved the plan on monday . [SEP] approved [SEP]"
  assert types.tolist() == [0] * 12 + [1, 1] and (labels[12:] == IGNORE_LABEL).all()
  conll2012 = loading.load_examples("conll2012", "train", 64, data_dir=fixture_dir)
  assert set(conll2012.meta["tags"][0]) >= {"B-C-ARG1", "B-ARGM-TMP"}


def test_qa_fixtures_become_windows_and_the_dev_split_halves_by_article(fixture_dir):
  v2 = loading.load_examples("squad_v2", "train", 40, data_dir=fixture_dir)
  assert v2.labels.shape == (len(v2), 2) and len(set(v2.meta["example_index"])) == 2 * 6
  assert len(v2) > 12  # 40-token windows: a context takes several.
  assert v2.token_fields["context_mask"][0].shape == v2.input_ids[0].shape
  halves = [set(loading.load_examples("squad_v1_dev_split", split, 384, data_dir=fixture_dir).meta["id"])
            for split in TV]
  assert {q.split("_")[1] for q in halves[0]} == {str(i) for i in range(24)} and not halves[0] & halves[1]
  assert len(loading.load_examples("mrqa_bio_asq", "validation", 384, data_dir=fixture_dir)) == 3


def test_missing_files_name_the_files_and_the_tfds_data_set(tmp_path):
  with pytest.raises(DataError, match=rf"looked for {tmp_path}/ner/conll2003/valid.txt or "
                                      rf"{tmp_path}/ner/conll2003/valid.txt.gz \(and TFDS conll2003:1.0.0 is not"):
    loading.load_examples("conll2003", "validation", 64, data_dir=tmp_path)
  with pytest.raises(DataError, match=rf"looked for {tmp_path}/srl/conll2012/dev.txt or .*dev.txt.gz$"):
    loading.load_examples("conll2012", "validation", 64, data_dir=tmp_path)


def test_srl_block_without_one_predicate_is_reported(tmp_path):
  (tmp_path / "b.txt").write_text("It\tB-A0\nrains\tO\n")
  with pytest.raises(DataError, match=r"b\.txt: the block starting 'It rains' has 0 B-V tags"):
    srl.predicate_row(conll.read_conll(tmp_path / "b.txt")[0], tmp_path / "b.txt")
  assert srl.long_name("I-R-AM-LOC") == "I-R-ARGM-LOC" and srl.long_name("B-AA") == "B-ARGA"
  assert srl.long_name("B-ARG0") == "B-ARG0" and "B-C-A1" in srl.file_labels(srl.CONLL05_LABELS)


def test_tfds_examples_give_the_rows_the_files_give():
  path = FIXTURES / "superglue"
  wsc = sg.read_rows(path / "wsc.jsonl", sg.wsc_row)[0]
  tfds_wsc = {"text": wsc["text"], "span1_index": wsc["span1_index"], "span1_text": wsc["span1_text"],
              "span2_index": wsc["span2_index"], "span2_text": wsc["span2_text"], "label": 1, "idx": wsc["idx"]}
  assert sg.tfds_wsc(tfds_wsc)["text_a"] == wsc["text_a"]
  multirc = sg.read_rows(path / "multirc.jsonl", sg.multirc_rows)[2]
  tfds_multirc = {"paragraph": multirc["paragraph"], "question": multirc["question"], "answer": multirc["answer"],
                  "label": 1, "idx": {"paragraph": 0, "question": 1, "answer": 2}}
  assert sg.tfds_multirc(tfds_multirc) == multirc
  record = sg.read_rows(path / "record.jsonl", sg.record_rows)
  (line,) = [json.loads(x) for x in (path / "record.jsonl").read_text().splitlines()]
  tfds_record = {"passage": line["passage"]["text"], "query": line["qas"][0]["query"], "answers": ["Wren Island"],
                 "entities": sorted({r["entity"] for r in record}), "idx": {"passage": 3, "query": 7}}
  assert sg.tfds_record(tfds_record) == record
  copa = sg.read_rows(path / "copa.jsonl", sg.copa_row)[1]
  assert sg.from_tfds(sg.copa_row)({k: copa[k] for k in ("premise", "choice1", "choice2", "question", "idx")}
                                   | {"label": 1}) == copa
  conll03 = tasks.info("conll2003").source.from_tfds({"tokens": ["Ada", "met", "Oslo"], "ner": np.array([1, 0, 5])})
  assert conll03 == {"tokens": ["Ada", "met", "Oslo"], "tags": ["B-PER", "O", "B-LOC"]}
  squad = qa.read_squad(FIXTURES / "squad_v2_sample.json")[1]
  tfds_squad = {"id": squad.qid, "question": squad.question, "context": squad.context,
                "answers": {"text": list(squad.answers), "answer_start": np.array([s for s, _ in squad.answer_spans])}}
  assert extractive_qa.tfds_squad(tfds_squad) == preprocessors.qa_row(squad)
  mrqa = qa.read_mrqa(FIXTURES / "mrqa_sample.jsonl")[1]
  tfds_mrqa = {"qid": mrqa.qid, "question": mrqa.question, "context": mrqa.context, "answers": list(mrqa.answers),
               "detected_answers": {"text": ["3,555 km²"], "char_spans": {"start": [np.array([101])],
                                                                          "end": [np.array([109])]}}}
  assert extractive_qa.tfds_mrqa(tfds_mrqa) == preprocessors.qa_row(mrqa)
  assert host_value({"a": b"x", "b": np.array([b"y", b"z"], dtype=object), "c": np.int32(3)}) == {
      "a": "x", "b": ["y", "z"], "c": 3}


def test_a_prepared_tfds_data_set_is_read_instead_of_files():
  with mock.patch.object(TfdsOrFiles, "tfds_prepared", lambda self: True), tfds.testing.mock_data(num_examples=5):
    boolq = loading.load_examples("boolq", "validation", 32)
    rte = loading.load_examples("rte", "train", 32)
  assert len(boolq) == len(rte) == 5 and set(boolq.labels) <= {0, 1}


@pytest.mark.parametrize("name, split, size", [
    ("conll2003", "train", 14_041), ("conll2003", "validation", 3_250), ("conll2003", "test", 3_453),
    ("wnut17", "train", 3_394), ("wnut17", "validation", 1_009), ("wnut17", "test", 1_287),
    ("wsc", "train", 554), ("wsc", "validation", 104), ("boolq", "validation", 3_270), ("wic", "validation", 638),
    ("multirc", "validation", 4_848), ("axb", "test", 1_104), ("axg", "test", 356),
    ("rte", "test", 3_000), ("wsc", "test", 146),  # Unlabeled test sets: read without labels.
])
def test_registered_tasks_load_the_published_sizes(name, split, size):
  require_shared_data(tasks.info(name).source.files[split])
  examples = loading.load_examples(name, split, 128, data_dir=SHARED_DATA)
  assert len(examples) == size
  if name == "multirc":
    assert len(set(examples.meta["group"])) == 953
  if not tasks.has_labels(name, split):
    assert set(examples.labels.tolist()) == {-1}


def test_squad_dev_split_halves_cover_the_dev_set():
  require_shared_data("squad/v1.1/dev-v1.1.json")
  halves = [loading.load_examples("squad_v1_dev_split", split, 384, data_dir=SHARED_DATA) for split in TV]
  root = json.loads((SHARED_DATA / "squad/v1.1/dev-v1.1.json").read_text())
  per_article = [sum(len(p["qas"]) for p in article["paragraphs"]) for article in root["data"]]
  counts = [len(set(h.meta["id"])) for h in halves]
  assert counts == [sum(per_article[:24]), sum(per_article[24:])] and sum(counts) == 10_570
