"""One task per family, a mixture of classification and multiple choice, and MRQA's domain transfer train from the
command line on tiny fixtures and report their metrics; settings no family supports fail with one clear line."""

import json

import pytest

from prompt_tuning_jax import tasks, train
from prompt_tuning_jax.recipes import encoder
from prompt_tuning_jax.tasks import registry
from task_fixtures import write_task_data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_task_data(tmp_path_factory.mktemp("data"))


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _accuracy(lines) -> float:
  return 100 * sum(line["label"] == line["target"] for line in lines) / len(lines)


def run(capsys, tmp_path, data_dir, *args):
  code = train.main(["--gin_file=gin/runs/train.gin", f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
                     f"--gin.DATA_DIR='{data_dir}'", "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2",
                     "--gin.BATCH_SIZE=4", "--gin.PROMPT_LENGTH=4", "--gin.TASK_FEATURE_LENGTHS={'inputs': 48}",
                     *args])
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.parametrize("task, method, metric, keys", [
    ("copa", "deep_prompt", "accuracy", {"accuracy", "loss"}),
    ("multirc", "deep_prompt", "f1a", {"em", "f1a", "accuracy", "loss"}),
    ("conll2004", "lester", "f1", {"precision", "recall", "f1", "loss"}),
    ("conll2005", "deep_prompt", "f1", {"precision", "recall", "f1", "loss"}),
    ("squad_v1", "deep_prompt", "f1", {"em", "f1", "loss"}),
])
def test_each_family_trains_and_reports_its_metric(task, method, metric, keys, capsys, clean_gin, tmp_path,
                                                   data_dir):
  code, out, err = run(capsys, tmp_path, data_dir, f"--gin_file=gin/tasks/{task}.gin",
                       f"--gin_file=gin/methods/{method}.gin")
  assert code == 0, err
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["selection_metric"] == metric and set(results["validation_metrics"]) == keys
  assert f"{task} validation {metric}:" in out and results[f"best_{metric}"] is not None
  # The best export's predictions on the eval split (one evaluation here: the best), with their targets.
  lines = _lines(tmp_path / "run" / "predictions" / "validation.jsonl")
  answer = {"copa": "label", "multirc": "label", "squad_v1": "answer"}.get(task, "tags")
  assert lines and all({answer, "target"} <= set(line) for line in lines)
  if task == "copa":
    assert _accuracy(lines) == pytest.approx(results["best_accuracy"])
  if answer == "tags":  # The task's own metric of the lines' tags and targets is the run's best F1.
    targets, tags = [line["target"] for line in lines], [line["tags"] for line in lines]
    f1 = [fn(targets, tags)["f1"] for fn in tasks.get_task(task).metric_fns]
    assert f1 == [pytest.approx(results["best_f1"])]


def test_superglue_mixture_batches_choices_apart_and_selects_on_the_mean_score(capsys, clean_gin, tmp_path,
                                                                               data_dir):
  code, out, err = run(capsys, tmp_path, data_dir, "--gin_file=gin/tasks/superglue.gin",
                       "--gin_file=gin/methods/deep_prompt.gin", "--gin.TRAIN_STEPS=6", "--gin.EVAL_PERIOD=6")
  assert code == 0, err
  scores = json.loads((tmp_path / "run" / "results.json").read_text())["validation_metrics"]
  own = [scores[f"{name}/{registry.INFO[name].metric}"] for name in
         ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")]
  assert scores["score"] == pytest.approx(sum(own) / 8) and "cb/f1_macro" in scores
  for name in ("cb", "copa", "rte"):  # A mixture's predictions: one file per task.
    assert _accuracy(_lines(tmp_path / "run" / "predictions" / name / "validation.jsonl")) == pytest.approx(
        scores[f"{name}/accuracy"])
  assert "Task copa (multiple_choice): 16 train" in out


def test_mrqa_transfer_trains_on_squad_and_evaluates_every_out_of_domain_set(capsys, clean_gin, tmp_path, data_dir):
  code, out, err = run(capsys, tmp_path, data_dir, "--gin_file=gin/tasks/mrqa_squad_to_out_of_domain.gin",
                       "--gin_file=gin/methods/deep_prompt.gin", "--gin.BATCH_SIZE=2")
  assert code == 0, err
  scores = json.loads((tmp_path / "run" / "results.json").read_text())["validation_metrics"]
  assert {"mrqa_bio_asq/f1", "mrqa_textbook_qa/em", "mrqa_squad/f1", "f1"} <= set(scores)
  assert "Task mrqa_drop (span_extraction): 0 train / 3 validation" in out


def test_diagnostics_evaluate_a_model_trained_on_rte(capsys, clean_gin, tmp_path, data_dir):
  code, _, err = run(capsys, tmp_path, data_dir, "--gin_file=gin/tasks/rte.gin",
                     "--gin_file=gin/methods/deep_prompt.gin", "--gin.train.eval_task_name='axb'",
                     "--gin.train.eval_split='test'")
  assert code == 0, err
  assert "accuracy" in json.loads((tmp_path / "run" / "results.json").read_text())["test_metrics"]


@pytest.mark.parametrize("args, message", [
    (["--gin_file=gin/tasks/conll2004.gin", "--gin_file=gin/methods/deep_prompt.gin", "--gin.ENSEMBLE_SIZE=2"],
     "ensembles combine class probabilities: they need a classification or multiple-choice task"),
    (["--gin_file=gin/tasks/axb.gin", "--gin_file=gin/methods/deep_prompt.gin"],
     "no task of ['axb'] has a 'train' split"),
    (["--gin_file=gin/tasks/ner.gin", "--gin_file=gin/methods/deep_prompt.gin",
      "--gin.train.eval_task_name='conll2005'"],
     "would be evaluated with a prompt or head no training example reaches"),
])
def test_unsupported_settings_fail_with_one_line(args, message, capsys, clean_gin, tmp_path, data_dir):
  code, _, err = run(capsys, tmp_path, data_dir, *args)
  assert code == 2 and message in err


def test_a_mixture_must_share_a_head_kind():
  infos = {name: registry.INFO[name] for name in ("rte", "conll2003")}
  with pytest.raises(ValueError, match=r"must share a head kind .*\('conll2003', 'token_classification'\)"):
    encoder.head_kind(infos)
