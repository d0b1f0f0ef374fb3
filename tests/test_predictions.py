"""Predictions of encoder exports from the command line: SuperGLUE test sets (no labels) through `eval` into the
benchmark's submission files, `infer` on a split and on a jsonl file of inputs, the submission formats of the
grouped tasks, and a trainer refusing to select on a split without labels."""

import json

import gin
import numpy as np
import pytest

from prompt_tuning_jax import eval as eval_cli
from prompt_tuning_jax import infer as infer_cli
from prompt_tuning_jax import tasks
from prompt_tuning_jax.tasks import submission
from prompt_tuning_jax.tasks import superglue_rows as sg
from serving_fixtures import write_random_export
from task_fixtures import write_task_data
from test_bad_input import fails_with_one_line, training_args

MAX_LENGTH = 48
CB_TEST = [{"premise": "Ana said the bus was late. It was not.", "hypothesis": "the bus was late", "idx": 0},
           {"premise": "Did Tom think the shop had closed?", "hypothesis": "the shop had closed", "idx": 1},
           {"premise": "Lee knew the river had flooded.", "hypothesis": "the river had flooded", "idx": 2},
           {"premise": "I doubt the cake was burnt.", "hypothesis": "the cake was burnt", "idx": 3},
           {"premise": "She hoped the train would come.", "hypothesis": "the train would come", "idx": 4}]
COPA_TEST = [{"premise": f"The {thing} fell off the shelf.", "choice1": f"The {thing} broke.",
              "choice2": f"The {thing} sang.", "question": question, "idx": i}
             for i, (thing, question) in enumerate([("cup", "effect"), ("lamp", "cause"), ("vase", "effect")])]


def _jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _run(main, args):
  gin.clear_config()
  try:
    return main([str(a) for a in args])
  finally:
    gin.clear_config()


@pytest.fixture(scope="module")
def exports(tmp_path_factory, minilm):
  """(data dir with CB and COPA test.jsonl without labels, {task: a random export})."""
  root = tmp_path_factory.mktemp("predictions")
  data = write_task_data(root / "data")
  _jsonl(data / "superglue" / "cb" / "test.jsonl", CB_TEST)
  _jsonl(data / "superglue" / "copa" / "test.jsonl", COPA_TEST)
  config, _ = minilm
  return data, {task: write_random_export(root / f"{task}.safetensors", task, config, seed=i, max_length=MAX_LENGTH)
                for i, task in enumerate(("cb", "copa"))}


def _evaluate(capsys, out, data, export, split="test"):
  code = _run(eval_cli.main, ["--gin_file=runs/export_eval.gin", f"--gin.PROMPT_FILE='{export}'",
                              f"--gin.EVAL_OUTPUT_DIR='{out}'", f"--gin.DATA_DIR='{data}'",
                              f"--gin.EVAL_SPLIT='{split}'", "--gin.BATCH_SIZE=8"])
  assert code == 0, capsys.readouterr().err
  return _lines(out / "predictions.jsonl")


def test_cb_and_copa_test_sets_come_out_of_eval_in_the_submission_format(exports, capsys, tmp_path):
  data, paths = exports
  assert not tasks.has_labels("cb", "test") and tasks.has_labels("cb", "validation")
  cb = _evaluate(capsys, tmp_path / "cb", data, paths["cb"])
  assert json.loads((tmp_path / "cb" / "metrics.json").read_text()) == {
      "task": "cb", "split": "test", "export": str(paths["cb"]), "examples": 5, "labeled": False}
  assert [line["idx"] for line in cb] == [0, 1, 2, 3, 4] and not any("target" in line for line in cb)
  submitted = _lines(tmp_path / "cb" / "CB.jsonl")
  assert [set(row) for row in submitted] == [{"idx", "label"}] * 5
  assert [row["idx"] for row in submitted] == [row["idx"] for row in CB_TEST]  # The test file's order.
  for row, line in zip(submitted, cb):  # A label string, the class of highest probability.
    assert row["label"] == line["label"] == max(line["probabilities"], key=line["probabilities"].get)
    assert row["label"] in sg.CB_LABELS

  copa = _evaluate(capsys, tmp_path / "copa", data, paths["copa"])
  submitted = _lines(tmp_path / "copa" / "COPA.jsonl")
  assert [row["idx"] for row in submitted] == [0, 1, 2]
  assert [row["label"] for row in submitted] == [["choice1", "choice2"].index(line["label"]) for line in copa]
  assert all(isinstance(row["label"], int) for row in submitted)

  # A labeled split is scored, and each line carries its target; the submission file follows the same lines.
  validation = _evaluate(capsys, tmp_path / "cb_val", data, paths["cb"], split="validation")
  metrics = json.loads((tmp_path / "cb_val" / "metrics.json").read_text())
  assert metrics["labeled"] is True and "f1_macro" in metrics
  targets = [line["target"] for line in validation]
  assert targets == ["contradiction", "neutral", "entailment", "contradiction", "neutral", "entailment",
                     "contradiction", "neutral"]
  assert metrics["accuracy"] == pytest.approx(100 * np.mean([line["label"] == line["target"] for line in validation]))


def test_infer_predicts_an_encoder_export_on_a_split_and_on_an_input_file(exports, capsys, tmp_path):
  data, paths = exports
  split_args = ["--gin_file=runs/export_infer.gin", f"--gin.PROMPT_FILE='{paths['cb']}'", f"--gin.DATA_DIR='{data}'",
                "--gin.BATCH_SIZE=8"]
  assert _run(infer_cli.main, [*split_args, f"--gin.INFER_OUTPUT_DIR='{tmp_path / 'split'}'",
                               "--gin.INFER_SPLIT='test'"]) == 0, capsys.readouterr().err
  on_split = _lines(tmp_path / "split" / "predictions.jsonl")
  assert [line["idx"] for line in on_split] == [0, 1, 2, 3, 4]
  assert (tmp_path / "split" / "CB.jsonl").exists()

  inputs = tmp_path / "inputs.jsonl"  # Rows as the server takes them: the second has no idx, a blank line between.
  inputs.write_text(json.dumps(CB_TEST[3]) + "\n\n" + json.dumps({k: CB_TEST[1][k] for k in ("premise", "hypothesis")})
                    + "\n" + json.dumps({"premise": "word " * 80, "hypothesis": "x"}) + "\n")
  assert _run(infer_cli.main, [*split_args, f"--gin.INFER_OUTPUT_DIR='{tmp_path / 'file'}'",
                               f"--gin.INFER_INPUT_FILE='{inputs}'"]) == 0, capsys.readouterr().err
  on_file = _lines(tmp_path / "file" / "predictions.jsonl")
  assert [(line["line"], line.get("idx"), line.get("truncated")) for line in on_file] == [
      (1, 3, None), (3, None, None), (4, None, True)]
  for line, same in ((on_file[0], on_split[3]), (on_file[1], on_split[1])):  # The same rows, the same answers.
    assert line["label"] == same["label"]
    assert all(abs(line["probabilities"][k] - same["probabilities"][k]) < 1e-5 for k in sg.CB_LABELS)

  inputs.write_text(json.dumps({"premise": "no hypothesis"}) + "\n")
  assert _run(infer_cli.main, [*split_args, f"--gin.INFER_OUTPUT_DIR='{tmp_path / 'bad'}'",
                               f"--gin.INFER_INPUT_FILE='{inputs}'"]) == 2
  assert f"error: {inputs}:1: missing field(s) ['hypothesis']" in capsys.readouterr().err


def test_grouped_tasks_submit_per_passage_and_per_query():
  meta = {"idx": [7, 7, 7, 8], "group": [0, 0, 1, 2], "answer_idx": [0, 1, 2, 3]}
  lines = [{"label": label} for label in ("True", "False", "True", "False")]
  assert submission.submission_rows("multirc", sg.BOOL_LABELS, meta, lines) == [
      {"idx": 7, "passage": {"questions": [{"idx": 0, "answers": [{"idx": 0, "label": 1}, {"idx": 1, "label": 0}]},
                                           {"idx": 1, "answers": [{"idx": 2, "label": 1}]}]}},
      {"idx": 8, "passage": {"questions": [{"idx": 2, "answers": [{"idx": 3, "label": 0}]}]}}]
  meta = {"group": [5, 5, 5, 6], "entity": ["Arlo", "Wren", "Lund", "Arlo"]}
  lines = [{"probabilities": {"False": 1 - p, "True": p}} for p in (0.2, 0.7, 0.4, 0.1)]
  assert submission.submission_rows("record", sg.BOOL_LABELS, meta, lines) == [{"idx": 5, "label": "Wren"},
                                                                                {"idx": 6, "label": "Arlo"}]
  assert [submission.file_name(t) for t in ("boolq", "axb", "wsc", "sst2")] == ["BoolQ.jsonl", "AX-b.jsonl",
                                                                                "WSC.jsonl", None]


def test_training_refuses_to_select_on_a_split_without_labels(capsys, clean_gin, tmp_path):
  data = write_task_data(tmp_path / "data")
  line = fails_with_one_line(capsys, ["--gin_file=gin/runs/train.gin",
                                      *training_args(data, tmp_path / "run", "gin/tasks/cb.gin"),
                                      "--gin_file=gin/methods/deep_prompt.gin", "--gin.train.eval_split='test'"],
                             tmp_path / "run")
  assert "train.eval_split='test' of ['cb'] has no labels" in line and "--gin.EVAL_SPLIT=" in line
