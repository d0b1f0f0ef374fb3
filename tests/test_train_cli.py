"""The command line: t5x flag semantics, every method. Bad input: test_bad_input.py; resume: test_resume.py."""

import json

import pytest

from conftest import write_tiny_data
from prompt_tuning_jax import cli, train


def test_gin_flags_are_rewritten_to_bindings():
  args = cli.parse_args(["--gin_file=a.gin", "--gin_file=b.gin", "--gin.MODEL_DIR='runs/x'",
                           "--gin.train/DatasetConfig.shuffle=False", "--gin_search_paths=p1,p2"])
  assert args.gin_file == ["a.gin", "b.gin"]
  assert args.gin_bindings == ["MODEL_DIR = 'runs/x'", "train/DatasetConfig.shuffle = False"]
  assert args.gin_search_paths == "p1,p2"


@pytest.mark.parametrize("method", ["deep_prompt", "prefix_tuning", "lester", "ptuning", "bitfit", "finetune"])
def test_every_method_trains_from_the_command_line(method, capsys, clean_gin, tmp_path):
  data_dir, model_dir = write_tiny_data(tmp_path / "data"), tmp_path / "run"
  code = train.main(["--gin_file=gin/sst2.gin", f"--gin_file=gin/methods/{method}.gin",
                     f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{data_dir}'", "--gin.TRAIN_STEPS=4",
                     "--gin.EVAL_PERIOD=4", "--gin.BATCH_SIZE=8"])
  out, err = capsys.readouterr()
  assert code == 0, err
  report = json.loads((model_dir / "parameters.json").read_text())
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == 4 and results["export_bytes"] > report["export_tensor_bytes"]
  # The best export's predictions on the 12 dev sentences: an index, the prediction and the target each.
  lines = [json.loads(line) for line in (model_dir / "predictions" / "validation.jsonl").read_text().splitlines()]
  assert [line["idx"] for line in lines] == list(range(2, 14)) and {"label", "probabilities", "target"} <= set(lines[0])
  assert 100 * sum(line["label"] == line["target"] for line in lines) / 12 == pytest.approx(results["best_accuracy"])
  expected_share = {"deep_prompt": (0.1, 1), "prefix_tuning": (1, 20), "lester": (0.01, 0.1), "ptuning": (1, 20),
                    "bitfit": (0.05, 0.5), "finetune": (100, 101)}[method]
  assert expected_share[0] < report["share_of_backbone_percent"] < expected_share[1], report
  assert "Trainable parameters:" in out
