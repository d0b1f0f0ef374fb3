"""Every reader's data errors name file:line: undecodable bytes, a field of the wrong type, a row without its
label in a labeled split (tasks/sources.py check_label); a test split keeps label-less rows. Readers are called
directly on tiny files; the command-line rows are in test_bad_input.py."""

import dataclasses
import gzip
import json
import re
from pathlib import Path

import pytest
import tensorflow as tf

from prompt_tuning_jax.tasks import conll, qa, registry, sources
from prompt_tuning_jax.tasks.sources import MISSING_LABEL, DataError

LATIN1 = "caf\xe9".encode("latin-1")  # Not UTF-8: 0xe9 starts a 3-byte sequence that 'Z' does not continue.


def _jsonl(path: Path, rows) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def _source(task: str, data_dir: Path, test_file: str = None):
  """The task's source reading data_dir, with a 'test' split on `test_file` (relative) when given."""
  source = registry.SPECS[task].source.at(data_dir)
  return dataclasses.replace(source, files={**source.files, "test": test_file}) if test_file else source


@pytest.mark.parametrize("write, reader, line", [
    (lambda p: p.write_bytes(b'{"a": "ok"}\n{"a": "' + LATIN1 + b'Z"}\n'), sources.read_jsonl, 2),
    (lambda p: p.write_bytes(b"sentence\tlabel\nok\t1\n" + LATIN1 + b"Z\t0\n"), sources.read_tsv, 3),
    (lambda p: p.write_bytes(b"Ada B-PER\n\nOslo " + LATIN1 + b"Z\n"), conll.read_conll, 3),
    (lambda p: p.write_bytes(b'{"data": [\n{"title": "' + LATIN1 + b'Z"}]}'), qa.read_squad, 2),
    (lambda p: gzip.open(p, "wb").write(b'{"header": {}}\n{"context": "' + LATIN1 + b'Z"}\n'), qa.read_mrqa, 2),
])
def test_undecodable_bytes_name_file_and_line(write, reader, line, tmp_path):
  path = tmp_path / ("data.jsonl.gz" if reader is qa.read_mrqa else "data")
  write(path)
  with pytest.raises(DataError, match=rf"^{path}:{line}: not UTF-8 \(invalid continuation byte: b'\\xe9' at byte "
                                      r"\d+ of the line\); save the file as UTF-8"):
    list(reader(path))


def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path):
  path = tmp_path / "bom.tsv"
  path.write_bytes("\ufeffsentence\tlabel\nok\t1\n".encode("utf-8"))
  assert [row["sentence"] for row in sources.read_tsv(path)] == ["ok"]


_PAIR = {"premise": "The ferry left.", "hypothesis": "A boat left.", "label": "entailment", "idx": 0}
_COPA = {"premise": "The vase fell.", "choice1": "It broke.", "choice2": "It sang.", "question": "effect", "idx": 0,
         "label": 0}


@pytest.mark.parametrize("task, file, row, message", [
    ("cb", "superglue/cb/train.jsonl", _PAIR | {"hypothesis": 3.5}, "field 'hypothesis' is a number (3.5), expected a "
                                                                    "string"),
    ("rte", "superglue/rte/train.jsonl", _PAIR | {"premise": ["a", "b"]}, "field 'premise' is a list (['a', 'b']), "
                                                                          "expected a string"),
    ("copa", "superglue/copa/train.jsonl", _COPA | {"choice2": None}, "field 'choice2' is null (None), expected a "
                                                                      "string"),
    ("boolq", "superglue/boolq/train.jsonl", {"question": "is it", "passage": {"text": "x"}, "label": True},
     "field 'passage' is an object ({'text': 'x'}), expected a string"),
    ("wic", "superglue/wic/train.jsonl", {"word": "bank", "sentence1": "a bank", "sentence2": "the bank", "start1": "x",
                                          "end1": 6, "start2": 4, "end2": 8, "label": True},
     "field 'start1' is a string ('x'), expected an integer"),
    ("wsc", "superglue/wsc/train.jsonl", {"text": "Mark told Pete he won.", "label": True, "target": {
        "span1_text": "Pete", "span1_index": True, "span2_text": "he", "span2_index": 3}},
     "field 'span1_index' is true/false (True), expected an integer"),
    ("multirc", "superglue/multirc/train.jsonl", {"idx": 0, "passage": {"text": "P.", "questions": [
        {"question": "Q?", "idx": 0, "answers": [{"text": 42, "idx": 0, "label": 1}]}]}},
     "field 'text' is an integer (42), expected a string"),
    ("record", "superglue/record/train.jsonl", {"idx": 0, "passage": {"text": "Oslo is big.", "entities": [
        {"start": 0, "end": 3}]}, "qas": [{"query": 7, "idx": 0, "answers": []}]},
     "field 'query' is an integer (7), expected a string"),
    ("rte", "superglue/rte/train.jsonl", _PAIR | {"idx": "seven"}, "field 'idx' is a string ('seven'), expected an "
                                                                   "integer"),
])
def test_a_field_of_the_wrong_type_is_named_with_both_types(task, file, row, message, tmp_path):
  _jsonl(tmp_path / file, [row])
  with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / file}:1: {message}; correct that row.")):
    _source(task, tmp_path).rows("train")


def test_squad_and_mrqa_fields_of_the_wrong_type(tmp_path):
  squad = tmp_path / "squad.json"
  squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "Oslo.", "qas": [
      {"id": "q1", "question": "Where?", "answers": [{"text": "Oslo", "answer_start": "0"}]}]}]}]}))
  with pytest.raises(DataError, match=r"qas\[0\]: field 'answer_start' is a string \('0'\), expected an integer"):
    qa.read_squad(squad)
  mrqa = _jsonl(tmp_path / "mrqa.jsonl", [{"header": {}}, {"context": "Oslo.", "qas": [
      {"qid": "q1", "question": "Where?", "answers": [5], "detected_answers": []}]}])
  with pytest.raises(DataError, match=rf"{mrqa}:2: field 'answers\[\]' is an integer \(5\), expected a string"):
    qa.read_mrqa(mrqa)


def test_a_feature_of_the_wrong_type_is_caught_before_tensorflow(tmp_path):
  # A row function that passes a value through unchecked: the source names the row and the feature, instead of
  # tf.constant's "Can't convert Python sequence with mixed types to Tensor."
  path = _jsonl(tmp_path / "rows.jsonl", [{"text": "fine"}, {"text": 12}])
  source = sources.TfdsOrFiles(files={"train": "rows.jsonl"}, reader=sources.read_jsonl,
                               to_features=lambda row, path: {"text": row["text"]},
                               feature_types={"text": tf.string}).at(tmp_path)
  with pytest.raises(DataError, match=rf"^{path}:2: field 'text' is an integer \(12\), expected a string"):
    source(split="train")


_MULTIRC = {"idx": 0, "passage": {"text": "P.", "questions": [
    {"question": "Q?", "idx": 0, "answers": [{"text": "A", "idx": 0, "label": 1}]}]}}
_RECORD = {"idx": 0, "passage": {"text": "Oslo is big.", "entities": [{"start": 0, "end": 3}]},
           "qas": [{"query": "@placeholder is big.", "idx": 0, "answers": [{"text": "Oslo"}]}]}


def _without_label(task: str, row: dict) -> dict:
  row = json.loads(json.dumps(row))
  if task == "multirc":
    del row["passage"]["questions"][0]["answers"][0]["label"]
  elif task == "record":
    del row["qas"][0]["answers"]
  else:
    del row["label"]
  return row


def _write(path: Path, rows) -> None:
  if path.suffix == ".tsv":  # GLUE: a test file has no label column.
    columns = [k for k in ("index", "sentence", "label") if k in rows[-1]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(columns) + "\n" + "".join("\t".join(str(r[k]) for k in columns) + "\n" for r in rows))
  else:
    _jsonl(path, rows)


@pytest.mark.parametrize("task, file, row, field", [
    ("copa", "superglue/copa/train.jsonl", _COPA, "label"),  # It trained as choice2.
    ("cb", "superglue/cb/train.jsonl", _PAIR, "label"),  # It trained as 'neutral'.
    ("sst2", "glue/sst2/train.tsv", {"index": 0, "sentence": "a good film", "label": 1}, "label"),
    ("multirc", "superglue/multirc/train.jsonl", _MULTIRC, "passage.questions[].answers[].label"),
    ("record", "superglue/record/train.jsonl", _RECORD, "qas[].answers"),
    ("super_glue_rte_v102", "superglue/rte/train.jsonl", _PAIR, "label"),  # The T5 task reads RTE's files.
])
def test_a_row_without_its_label_is_refused_in_a_labeled_split_and_kept_in_a_test_split(task, file, row, field,
                                                                                        tmp_path):
  unlabeled = _without_label(task, row)
  test_file = Path(file).with_name("test" + Path(file).suffix)
  _write(tmp_path / test_file, [unlabeled, unlabeled])
  source = _source(task, tmp_path, str(test_file))
  assert {r["label"] for r in source.rows("test")} == {MISSING_LABEL}
  _write(tmp_path / file, [row, unlabeled])
  with pytest.raises(DataError, match="^" + re.escape(
      f"{tmp_path / file}:2: no {field!r} field, but split 'train' is labeled (only test splits may lack labels); "
      "add the row's label or remove the row.")):
    source.rows("train[:5]")


def test_check_label_is_the_one_policy():
  assert sources.check_label(MISSING_LABEL, "f:1", "test", labeled=False) == MISSING_LABEL
  assert sources.check_label(0, "f:1", "train", labeled=True) == 0
  with pytest.raises(DataError, match="^f:1: no 'label' field, but split 'validation' is labeled"):
    sources.check_label(MISSING_LABEL, "f:1", "validation", labeled=True)
  rte, axb = registry.SPECS["rte"].source, registry.SPECS["axb"].source
  assert rte.has_labels("train") and rte.has_labels("validation[:10]") and not rte.has_labels("test")
  assert axb.has_labels("test")  # The diagnostics' 'test' split is labeled: it is scored.
