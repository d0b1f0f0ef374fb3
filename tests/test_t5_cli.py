"""The T5 path from the command line: train the tiny T5's prompt with the prompt-tuning gin layout,
then eval and infer from the exported prompt."""

import json

import gin
import pytest

from conftest import GOLDENS, write_tiny_data
from prompt_tuning_jax import eval as eval_cli
from prompt_tuning_jax import infer as infer_cli
from prompt_tuning_jax import train

MODEL = "--gin_file=models/t5_1_1_tiny_prompt.gin"
TASK = "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'"
CHECKPOINT = GOLDENS / "t5_tiny"
# One eval batch of the 10 validation examples: fewer programs to compile.
COMMON = ["--gin.PROMPT_LENGTH=4", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}", "--gin.BATCH_SIZE=16"]


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _run(main, args):
  """main(args) with a fresh gin config, cleared again afterwards."""
  gin.clear_config()
  try:
    return main(args)
  finally:
    gin.clear_config()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(data dir, model dir, exit code) of a 6-step training run."""
  root = tmp_path_factory.mktemp("t5_cli")
  data_dir, model_dir = write_tiny_data(root / "data"), root / "run"
  code = _run(train.main, [MODEL, "--gin_file=runs/prompt_finetune.gin", f"--gin.MODEL_DIR='{model_dir}'", TASK,
                           f"--gin.DATA_DIR='{data_dir}'", f"--gin.INITIAL_CHECKPOINT_PATH='{CHECKPOINT}'",
                           "--gin.TRAIN_STEPS=6", "--gin.EVAL_PERIOD=6", *COMMON, "--gin.BATCH_SIZE=8",
                           "--gin.train_seq2seq.eval_batch_size=16"])
  return data_dir, model_dir, code


def _shared(data_dir, model_dir):
  export = model_dir / "export" / "best.safetensors"
  return [MODEL, f"--gin.CHECKPOINT_PATH='{CHECKPOINT}'", f"--gin.PROMPT_FILE='{export}'",
          f"--gin.DATA_DIR='{data_dir}'", TASK, *COMMON]


def test_train_writes_the_encoder_trainers_outputs(trained):
  _, model_dir, code = trained
  assert code == 0
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == 6 and results["trainable"] == 4 * 64 and results["trainable_tensors"] == ["prompt/prompt"]
  assert {"accuracy", "rank_accuracy", "loss"} <= set(results["validation_metrics"])
  for name in ("config.gin", "parameters.json", "metrics.jsonl", "tensorboard", "checkpoints/6",
               "export/best.safetensors"):
    assert (model_dir / name).exists(), name
  assert "launch.trainer = @train_seq2seq" in (model_dir / "config.gin").read_text()


def test_eval_from_the_export_reproduces_the_training_evaluation(trained, tmp_path, capsys):
  data_dir, model_dir, _ = trained
  code = _run(eval_cli.main, ["--gin_file=runs/prompt_eval.gin", f"--gin.EVAL_OUTPUT_DIR='{tmp_path}'",
                              *_shared(data_dir, model_dir)])
  assert code == 0, capsys.readouterr().err
  scores = json.loads((tmp_path / "metrics.json").read_text())
  assert scores["examples"] == 10
  assert scores["metrics"] == json.loads((model_dir / "results.json").read_text())["validation_metrics"]
  predictions = _lines(tmp_path / "predictions.jsonl")
  assert len(predictions) == 10 and {"target", "prediction", "rank_prediction", "rank_scores"} <= set(predictions[0])
  # The trainer wrote the same lines for its best (here: only) evaluation.
  keys = ("idx", "inputs", "target", "prediction", "rank_prediction")
  trained_lines = _lines(model_dir / "predictions" / "validation.jsonl")
  assert [[line[k] for k in keys] for line in trained_lines] == [[line[k] for k in keys] for line in predictions]


def test_infer_decodes_every_input(trained, tmp_path, capsys):
  data_dir, model_dir, _ = trained
  code = _run(infer_cli.main, ["--gin_file=runs/prompt_infer.gin", f"--gin.INFER_OUTPUT_DIR='{tmp_path}'",
                               "--gin.BEAM_SIZE=2", *_shared(data_dir, model_dir)])
  assert code == 0, capsys.readouterr().err
  inferred = _lines(tmp_path / "predictions.jsonl")
  assert len(inferred) == 10 and set(inferred[0]) == {"idx", "inputs", "prediction"}
  assert inferred[0]["inputs"].startswith("rte hypothesis: ")


def test_missing_prompt_file_is_one_error_line(capsys, tmp_path):
  code = _run(eval_cli.main, [MODEL, "--gin_file=runs/prompt_eval.gin", f"--gin.CHECKPOINT_PATH='{CHECKPOINT}'",
                              f"--gin.PROMPT_FILE='{tmp_path / 'none.safetensors'}'",
                              f"--gin.EVAL_OUTPUT_DIR='{tmp_path / 'eval'}'", TASK, *COMMON])
  assert code == 2
  assert f"error: PROMPT_FILE {tmp_path / 'none.safetensors'} does not exist" in capsys.readouterr().err


def test_unknown_task_lists_the_text_to_text_tasks(capsys, tmp_path):
  code = _run(train.main, [MODEL, "--gin_file=runs/prompt_finetune.gin", f"--gin.MODEL_DIR='{tmp_path}'",
                           "--gin.MIXTURE_OR_TASK_NAME='rte_t5'", f"--gin.INITIAL_CHECKPOINT_PATH='{CHECKPOINT}'",
                           "--gin.TRAIN_STEPS=1", *COMMON])
  assert code == 2
  err = capsys.readouterr().err
  assert "unknown task 'rte_t5'. Text-to-text tasks: glue_rte_v002, mrqa_bio_asq_v100, " in err
  assert ", squad_v010_allanswers, " in err and ", super_glue_wsc_v102, taskless_super_glue_axb_v102, " in err
