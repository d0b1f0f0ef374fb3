"""The bad input catalogue (README.md, "Bad input"): one test per row.

Each bad input exits with status 2 and exactly one `error: ...` line that names the problem and the fix,
never a traceback, and leaves what an earlier run saved in MODEL_DIR byte for byte as it was. The row "a
global batch not divisible by the data-parallel size" needs several devices: tests/test_sharding.py's
test_batch_not_divisible_by_the_data_parallel_size_from_the_cli.
"""

import json
import os
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

import gin

from conftest import GOLDENS, REPO, write_tiny_data
from prompt_tuning_jax import cli, export, train
from prompt_tuning_jax import eval as eval_cli
from prompt_tuning_jax.tasks import sources

def previous_run(model_dir: Path) -> Dict[str, bytes]:
  """MODEL_DIR as an earlier run left it (an export, a checkpoint, results); returns {path: bytes}."""
  export.save_export(model_dir / "export" / "best.safetensors", {"prompt/prefix": np.arange(24.0).reshape(2, 12)},
                     {"task": "sst2", "step": 2})
  (model_dir / "checkpoints" / "2").mkdir(parents=True)
  (model_dir / "checkpoints" / "2" / "state.msgpack").write_bytes(bytes(range(256)))
  (model_dir / "results.json").write_text(json.dumps({"step": 2, "validation_accuracy": 50.0}))
  (model_dir / "config.gin").write_text("TRAIN_STEPS = 2\n")
  return saved_files(model_dir)


def saved_files(model_dir: Path) -> Dict[str, bytes]:
  return {str(p.relative_to(model_dir)): p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}


def fails_with_one_line(capsys, args, model_dir: Path = None, main=train.main) -> str:
  """Runs the CLI `main` (the trainer's by default) in-process on `args`; asserts status 2, one `error:` line,
  no traceback and, given the pre-populated `model_dir`, that its files are unchanged. Returns the line."""
  before = previous_run(model_dir) if model_dir is not None else None
  code = main([str(a) for a in args])
  out, err = capsys.readouterr()
  assert code == 2, out + err
  assert "Traceback" not in out + err
  lines = err.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  if model_dir is not None:
    assert saved_files(model_dir) == before
  return lines[0]


def training_args(data_dir: Path, model_dir: Path, gin_file: str = "gin/sst2.gin"):
  return [f"--gin_file={gin_file}", f"--gin.DATA_DIR='{data_dir}'", f"--gin.MODEL_DIR='{model_dir}'",
          "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8"]


def append_line(path: Path, line: str) -> None:
  path.write_text(path.read_text() + line + "\n")


@pytest.mark.parametrize("case", ["file", "unclosed bracket", "included file", "flag without quotes"])
def test_bad_gin_syntax(case, capsys, clean_gin, tmp_path):
  model_dir = tmp_path / "run"
  bad = tmp_path / "bad.gin"
  if case == "flag without quotes":
    args = ["--gin_file=gin/sst2.gin", f"--gin.MODEL_DIR='{model_dir}'", "--gin.TRAIN_STEPS=2",
            "--gin.DATA_DIR=data/glue"]
  else:
    bad.write_text(f"MODEL_DIR = '{model_dir}'\nTRAIN_STEPS = {'(3,' if case == 'unclosed bracket' else '3 +'}\n")
    top = tmp_path / "top.gin"
    top.write_text(f"include 'sst2.gin'\ninclude '{bad}'\n")
    args = [f"--gin_file={top if case == 'included file' else bad}"]
  message = fails_with_one_line(capsys, args, model_dir)
  if case == "flag without quotes":
    assert message == ("error: --gin binding `DATA_DIR = data/glue`: gin syntax error: Failed to parse token "
                       "'data'. A string value needs quotes inside the flag, e.g. --gin.MODEL_DIR=\"'runs/x'\".")
  elif case == "unclosed bracket":
    assert message == (f"error: {bad}:2 (`TRAIN_STEPS = (3,`): gin syntax error: EOF in multi-line statement "
                       "(an unclosed bracket or quote).")
  else:  # The included file, not the one on the command line, is named.
    assert message == f"error: {bad}:2 (`TRAIN_STEPS = 3 +`): gin syntax error: Expected newline."


@pytest.mark.parametrize("binding, expected", [
    ("--gin.NOT_A_THING.x=1", "error: --gin binding `NOT_A_THING.x = 1`: unknown gin binding: No configurable "
                              "matching 'NOT_A_THING'. Bind a configurable's parameter"),
    ("--gin.train.batch_sise=8", "error: --gin binding `train.batch_sise = 8`: unknown gin binding: Configurable "
                                 "'train' doesn't have a parameter named 'batch_sise'. Did you mean train.batch_size?"),
    ("--gin.DeepPrompts.length=4", "No configurable matching 'DeepPrompts'. Did you mean DeepPrompt"),
    ("in a gin file", ":3 (`DeepPrompt.lenght = 4`): unknown gin binding: Configurable 'DeepPrompt' doesn't have "
                      "a parameter named 'lenght'. Did you mean DeepPrompt.length?"),
])
def test_unknown_gin_binding(binding, expected, capsys, clean_gin, tmp_path):
  args = training_args(tmp_path / "data", tmp_path / "run", "gin/sst2_deep_prompt.gin")
  if binding == "in a gin file":
    typo = tmp_path / "typo.gin"
    typo.write_text("include 'sst2_deep_prompt.gin'\n\nDeepPrompt.lenght = 4\n")
    args = [f"--gin_file={typo}", *args[1:]]
    expected = f"error: {typo}{expected}"
  else:
    args.append(binding)
  assert expected in fails_with_one_line(capsys, args, tmp_path / "run")


def test_required_macro_unset(capsys, clean_gin, tmp_path):
  args = [a for a in training_args(tmp_path / "data", tmp_path / "run") if "TRAIN_STEPS" not in a]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message == ("error: gin macro TRAIN_STEPS is REQUIRED but was not set: pass --gin.TRAIN_STEPS=... or "
                     "bind it in a gin file.")


def test_unknown_task(capsys, clean_gin, tmp_path):
  args = [*training_args(tmp_path / "data", tmp_path / "run"), "--gin.MIXTURE_OR_TASK_NAME='sst3'"]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message.startswith("error: unknown task 'sst3'. Registered tasks (classification: axb, axg, boolq, ")
  assert " rte, sst2, " in message and "Set MIXTURE_OR_TASK_NAME to one of them" in message


def test_missing_data_files(capsys, clean_gin, tmp_path):
  data_dir = tmp_path / "data"  # Holds nothing.
  message = fails_with_one_line(capsys, training_args(data_dir, tmp_path / "run"), tmp_path / "run")
  assert message == (f"error: missing data file: looked for {data_dir}/glue/sst2/train.tsv or "
                     f"{data_dir}/glue/sst2/train.tsv.gz (and TFDS glue/sst2:2.0.0 is not prepared under "
                     f"{sources.tfds_root()})")


@pytest.mark.parametrize("task, expected", [
    ("sst2", "glue/sst2/train.tsv:74: malformed line: 3 tab-separated fields, the header has 2 "
             "(['sentence', 'label'])."),
    ("rte", "superglue/rte/train.jsonl:49: malformed JSON line (Expecting property name enclosed in double "
            "quotes)."),
])
def test_malformed_data_line(task, expected, capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")  # 72 SST-2 rows after the header (line 1), 48 RTE rows.
  if task == "sst2":
    append_line(data_dir / "glue" / "sst2" / "train.tsv", "a film\t1\tstray column")
  else:
    append_line(data_dir / "superglue" / "rte" / "train.jsonl", "{premise: 'unquoted keys'}")
  message = fails_with_one_line(capsys, training_args(data_dir, tmp_path / "run", f"gin/{task}.gin"),
                                tmp_path / "run")
  assert message == f"error: {data_dir}/{expected}"


@pytest.mark.parametrize("task, line, expected", [
    ("sst2", "a film\t7", "glue/sst2/train.tsv:74: label '7' is not one of ['negative', 'positive'] (or an index "
                          "0-1)."),
    ("rte", json.dumps({"premise": "A cat.", "hypothesis": "A pet.", "label": "maybe"}),
     "superglue/rte/train.jsonl:49: label 'maybe' is not one of ['entailment', 'not_entailment'] (or an index "
     "0-1)."),
])
def test_label_outside_the_label_set(task, line, expected, capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  append_line(data_dir / {"sst2": "glue/sst2/train.tsv", "rte": "superglue/rte/train.jsonl"}[task], line)
  message = fails_with_one_line(capsys, training_args(data_dir, tmp_path / "run", f"gin/{task}.gin"),
                                tmp_path / "run")
  assert message == f"error: {data_dir}/{expected}"


@pytest.mark.parametrize("task, file, content, split", [
    ("sst2", "glue/sst2/train.tsv", "sentence\tlabel\n", "train"),  # A header only.
    ("rte", "superglue/rte/val.jsonl", "\n", "validation"),
])
def test_empty_split(task, file, content, split, capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  (data_dir / file).write_text(content)
  message = fails_with_one_line(capsys, training_args(data_dir, tmp_path / "run", f"gin/{task}.gin"),
                                tmp_path / "run")
  assert message == (f"error: {data_dir / file}: split '{split}' has no examples (no data lines); check the file "
                     "and DATA_DIR.")


def test_empty_split_slice(capsys, clean_gin, tmp_path):
  args = [*training_args(write_tiny_data(tmp_path / "data"), tmp_path / "run"), "--gin.train.train_split='train[:0]'"]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message == ("error: split 'train[:0]' selects none of the 72 rows of 'train'; choose slice bounds that keep "
                     "at least one row, e.g. 'train[:-7]' (the trainer's train_split or eval_split).")


def test_field_of_the_wrong_type(capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  append_line(data_dir / "superglue" / "rte" / "train.jsonl",
              json.dumps({"premise": 5, "hypothesis": "A pet.", "label": "entailment"}))
  message = fails_with_one_line(capsys, training_args(data_dir, tmp_path / "run", "gin/rte.gin"), tmp_path / "run")
  assert message == (f"error: {data_dir}/superglue/rte/train.jsonl:49: field 'premise' is an integer (5), expected "
                     "a string; correct that row.")


def test_undecodable_data_file(capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  train = data_dir / "glue" / "sst2" / "train.tsv"
  train.write_bytes(train.read_bytes() + b"un film tr\xe8s bon\t1\n")  # Latin-1.
  message = fails_with_one_line(capsys, training_args(data_dir, tmp_path / "run"), tmp_path / "run")
  assert message == (f"error: {train}:74: not UTF-8 (invalid continuation byte: b'\\xe8' at byte 11 of the line); "
                     "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).")


def _cb_data(data_dir: Path, train_labels, val_labels) -> Path:
  """CB train and val files; a label of None leaves that row without its 'label' field."""
  for name, labels in (("train", train_labels), ("val", val_labels)):
    rows = [{"premise": f"Row {i} says the ferry left.", "hypothesis": "The ferry left.", "idx": i} |
            ({} if label is None else {"label": label}) for i, label in enumerate(labels)]
    (data_dir / "superglue" / "cb").mkdir(parents=True, exist_ok=True)
    (data_dir / "superglue" / "cb" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return data_dir


@pytest.mark.parametrize("split, file, line", [("train", "train.jsonl", 3), ("validation", "val.jsonl", 1)])
def test_row_without_a_label(split, file, line, capsys, clean_gin, tmp_path):
  # Read as the last class (CB 'neutral') once; now refused before anything trains. A validation file without
  # labels fails here too, not after the run; only a 'test' split may lack labels.
  labels = ["entailment", "contradiction", "neutral"] * 3
  broken = [None if i == line - 1 else x for i, x in enumerate(labels)]
  data_dir = _cb_data(tmp_path / "data", broken if split == "train" else labels,
                      [None] * 4 if split == "validation" else labels)
  args = [*training_args(data_dir, tmp_path / "run", "gin/rte.gin"), "--gin.MIXTURE_OR_TASK_NAME='cb'"]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message == (f"error: {data_dir}/superglue/cb/{file}:{line}: no 'label' field, but split {split!r} is labeled "
                     "(only test splits may lack labels); add the row's label or remove the row.")


def test_prompt_file_that_does_not_fit_the_backbone(capsys, clean_gin, tmp_path):
  # A deep prompt exported from a 2-layer, 128-wide backbone; MiniLM has 6 layers, 12 heads of 32.
  prompt_file = tmp_path / "bert_tiny_prompt.safetensors"
  export.save_export(prompt_file, {"prompt/prefix": np.zeros((2, 2, 20, 2, 64))},
                     {"task": "sst2", "backbone": "prajjwal1/bert-tiny", "hidden_size": 128, "num_hidden_layers": 2,
                      "prompt_length": 20})
  args = [*training_args(write_tiny_data(tmp_path / "data"), tmp_path / "run", "gin/sst2_deep_prompt.gin"),
          f"--gin.train.init_trainable_from='{prompt_file}'"]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message == (f"error: {prompt_file}: tensor 'prompt/prefix' has shape (2, 2, 20, 2, 64) but this model's is "
                     "(6, 2, 20, 12, 32); it was exported for prajjwal1/bert-tiny (hidden size 128, layers 2, "
                     "prompt length 20); use that backbone and prompt configuration, or a prompt exported from "
                     "this model.")


def test_backbone_without_weights(capsys, clean_gin, tmp_path):
  backbone = tmp_path / "model"
  backbone.mkdir()
  (backbone / "config.json").write_text("{}")
  args = [*training_args(tmp_path / "data", tmp_path / "run"), f"--gin.INITIAL_CHECKPOINT_PATH='{backbone}'"]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message == (f"error: No weights in backbone directory {backbone}: expected model.safetensors (found: "
                     "['config.json']). Point INITIAL_CHECKPOINT_PATH at a Hugging Face model directory with "
                     "config.json and model.safetensors.")


def test_sequences_longer_than_the_position_table(capsys, clean_gin, tmp_path):
  args = [*training_args(tmp_path / "data", tmp_path / "run", "gin/sst2_deep_prompt.gin"),
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 500}", "--gin.PROMPT_POSITION_POLICY='after_prompt'"]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message.startswith("error: TASK_FEATURE_LENGTHS['inputs']=500 with a 20-token prompt needs 520 position "
                            "ids but the backbone's position table has 512 rows")
  assert "Shorten TASK_FEATURE_LENGTHS['inputs']" in message


@pytest.mark.parametrize("case", [
    pytest.param("read-only directory", marks=pytest.mark.skipif(
        os.geteuid() == 0, reason="root writes into read-only directories; the other case covers root")),
    "a file in its path",
])
def test_unwritable_model_dir(case, capsys, clean_gin, tmp_path):
  args = training_args(write_tiny_data(tmp_path / "data"), tmp_path / "run")
  if case == "read-only directory":
    model_dir, strerror = tmp_path / "run", "Permission denied"
    before = previous_run(model_dir)
    model_dir.chmod(0o555)
    try:
      message = fails_with_one_line(capsys, args)
    finally:
      model_dir.chmod(0o755)
    assert saved_files(model_dir) == before
  else:
    (tmp_path / "runs").write_text("a file, not a directory")
    model_dir, strerror = tmp_path / "runs" / "run", "Not a directory"
    message = fails_with_one_line(capsys, [*args, f"--gin.MODEL_DIR='{model_dir}'"])
    assert (tmp_path / "runs").read_text() == "a file, not a directory"
  assert message == f"error: MODEL_DIR {model_dir} is not writable ({strerror}). Choose another --gin.MODEL_DIR."


# Settings refused by the validation pass (training/validation.py) before the data, the compile or a step:
# (bindings after training_args' on gin/sst2_deep_prompt.gin, the error line). Each fails in about a second.
ENCODER_SETTINGS = {
    "BATCH_SIZE=0": (["--gin.BATCH_SIZE=0"], "BATCH_SIZE=0 (train.batch_size) must be an integer >= 1; set "
                                             "--gin.BATCH_SIZE to the examples per training step, e.g. 32."),
    "BATCH_SIZE=-1": (["--gin.BATCH_SIZE=-1"], "BATCH_SIZE=-1 (train.batch_size) must be an integer >= 1;"),
    "TRAIN_STEPS=-5": (["--gin.TRAIN_STEPS=-5"], "TRAIN_STEPS=-5 (train.train_steps) must be an integer >= 0; set "
                                                 "--gin.TRAIN_STEPS to the total number of training steps (0 "
                                                 "evaluates"),
    "LEARNING_RATE='abc'": (["--gin.LEARNING_RATE='abc'"], "LEARNING_RATE='abc' (adamw.learning_rate) must be a number "
                                                           ">= 0; set --gin.LEARNING_RATE to a positive number, e.g. "
                                                           "1e-2 (no quotes)."),
    "LEARNING_RATE<0": (["--gin.LEARNING_RATE=-0.01"], "LEARNING_RATE=-0.01 (adamw.learning_rate) must be a number "
                                                       ">= 0"),
    "EVAL_PERIOD=0": (["--gin.EVAL_PERIOD=0"], "EVAL_PERIOD=0 (train.eval_period) must be an integer >= 1; set "
                                               "--gin.EVAL_PERIOD to the steps between evaluations"),
    "EVAL_PERIOD<0": (["--gin.EVAL_PERIOD=-3"], "EVAL_PERIOD=-3 (train.eval_period) must be an integer >= 1"),
    "log_period=0": (["--gin.train.log_period=0"], "train.log_period=0 must be an integer >= 1; set "
                                                   "--gin.train.log_period"),
    "keep_checkpoints=0": (["--gin.train.keep_checkpoints=0"], "train.keep_checkpoints=0 must be an integer >= 1"),
    "eval_batch_size=0": (["--gin.train.eval_batch_size=0"], "train.eval_batch_size=0 must be an integer >= 1 or None"),
    "feature length 0": (["--gin.TASK_FEATURE_LENGTHS={'inputs': 0}"],
                         "TASK_FEATURE_LENGTHS['inputs']=0 (train.feature_lengths) must be an integer >= 1 (tokens "
                         "per example, special tokens included); set --gin.TASK_FEATURE_LENGTHS=\"{'inputs': N}\"."),
    "no 'inputs' length": (["--gin.TASK_FEATURE_LENGTHS={'targets': 8}"],
                           "TASK_FEATURE_LENGTHS={'targets': 8} (train.feature_lengths) has no length for ['inputs']; "
                           "this task needs {'inputs': N} (lengths >= 1)."),
    "PROMPT_LENGTH=0": (["--gin.PROMPT_LENGTH=0"], "PROMPT_LENGTH=0 (DeepPrompt.length) must be an integer >= 1; set "
                                                   "--gin.PROMPT_LENGTH to the number of virtual tokens, e.g. 20 (to "
                                                   "train without a prompt use gin/methods/bitfit.gin"),
    "PROMPT_LAYERS='top 0'": (["--gin.PROMPT_LAYERS='top 0'"],
                              "PROMPT_LAYERS='top 0' (DeepPrompt.layers) selects no layer; use None (all 6), 'top k' "
                              "or 'bottom k' with 1 <= k <= 6, or a non-empty list of layer indices 0..5."),
    "RANDOM_SEED=-1": (["--gin.RANDOM_SEED=-1"], "RANDOM_SEED=-1 (train.seed) must be an integer in [0, 4294967295]"),
    "ENSEMBLE_SIZE=0": (["--gin.ENSEMBLE_SIZE=0"], "ENSEMBLE_SIZE=0 (train.ensemble_size) must be an integer >= 1"),
    "a step that cannot fit in memory": (["--gin.PROMPT_LENGTH=10000000"],
                                         "a train step needs at least "),
    # T5: the same settings through train_seq2seq, and the keys a text-to-text task needs.
    "T5 without a 'targets' length": (["t5", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}"],
                                      "TASK_FEATURE_LENGTHS={'inputs': 32} (train_seq2seq.feature_lengths) has no "
                                      "length for ['targets']; this task needs {'inputs': N, 'targets': N}"),
    "T5 PROMPT_LENGTH=0": (["t5", "--gin.PROMPT_LENGTH=0"], "PROMPT_LENGTH=0 (InputPrompt.length) must be an integer "
                                                            ">= 1; set --gin.PROMPT_LENGTH to the number of virtual "
                                                            "tokens, e.g. 20."),
    "T5 LEARNING_RATE<0": (["t5", "--gin.LEARNING_RATE=-0.3"], "LEARNING_RATE=-0.3 (adafactor.learning_rate) must be "
                                                               "a number >= 0"),
    "T5 BATCH_SIZE=0": (["t5", "--gin.BATCH_SIZE=0"], "BATCH_SIZE=0 (train_seq2seq.batch_size) must be an integer"),
    "T5 a step that cannot fit in memory": (["t5", "--gin.PROMPT_LENGTH=1000000"], "a train step needs at least "),
    "T5 scoring on an unlabeled split": (["t5", "--gin.train_seq2seq.eval_split='test'"],
                                         "train_seq2seq.eval_split='test' of 'super_glue_rte_v102' has no labels (a "
                                         "benchmark's test set: every target is '<unk>')"),
}


def t5_training_args(data_dir: Path, model_dir: Path):
  return ["--gin_file=models/t5_1_1_tiny_prompt.gin", "--gin_file=runs/prompt_finetune.gin",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{data_dir}'",
          f"--gin.INITIAL_CHECKPOINT_PATH='{GOLDENS / 't5_tiny'}'",
          "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
          "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8", "--gin.PROMPT_LENGTH=4"]


@pytest.mark.parametrize("case", list(ENCODER_SETTINGS))
def test_bad_setting_is_refused_before_anything_runs(case, capsys, clean_gin, tmp_path):
  bindings, expected = ENCODER_SETTINGS[case]
  data_dir, model_dir = write_tiny_data(tmp_path / "data"), tmp_path / "run"
  if bindings[0] == "t5":
    args = [*t5_training_args(data_dir, model_dir), *bindings[1:]]
  else:
    args = [*training_args(data_dir, model_dir, "gin/sst2_deep_prompt.gin"), *bindings]
  started = time.perf_counter()
  message = fails_with_one_line(capsys, args, model_dir)
  assert time.perf_counter() - started < 15  # Not after minutes of training or compiling.
  assert message.startswith(f"error: {expected}"), message
  if "memory" in case:  # Both numbers: what the step needs and what the machine has.
    assert " but host RAM has " in message or " per device (" in message
    assert "lower BATCH_SIZE, TASK_FEATURE_LENGTHS or PROMPT_LENGTH" in message


def test_train_steps_0_is_not_refused(capsys, clean_gin, tmp_path):
  # TRAIN_STEPS=0 evaluates the initial prompt, or one from train.init_trainable_from (README, "Import from peft"),
  # once without training: the validation pass lets it through to the data, missing here.
  args = [*training_args(tmp_path / "data", tmp_path / "run"), "--gin.TRAIN_STEPS=0"]
  assert fails_with_one_line(capsys, args, tmp_path / "run").startswith("error: missing data file: looked for ")


def test_empty_model_dir_writes_nothing_into_the_current_directory(capsys, clean_gin, tmp_path, monkeypatch):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  args = [*training_args(write_tiny_data(tmp_path / "data"), tmp_path / "run", str(REPO / "gin" / "sst2.gin")),
          "--gin.MODEL_DIR=''"]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message == ("error: MODEL_DIR='' (train.model_dir) must be a non-empty directory path (an empty one writes "
                     "into the current directory); set --gin.MODEL_DIR=\"'runs/x'\".")
  assert not list(cwd.iterdir())


@pytest.mark.parametrize("binding, expected", [
    ("--gin.BATCH_SIZE=0", "error: BATCH_SIZE=0 (evaluate_prompt.batch_size) must be an integer >= 1"),
    ("--gin.EVAL_OUTPUT_DIR=''", "error: EVAL_OUTPUT_DIR='' (evaluate_prompt.output_dir) must be a non-empty"),
    ("--gin.BEAM_SIZE=0", "error: BEAM_SIZE=0 (evaluate_prompt.beam_size) must be an integer >= 1"),
])
def test_bad_evaluation_setting(binding, expected, capsys, clean_gin, tmp_path):
  args = ["--gin_file=models/t5_1_1_tiny_prompt.gin", "--gin_file=runs/prompt_eval.gin",
          f"--gin.CHECKPOINT_PATH='{GOLDENS / 't5_tiny'}'", f"--gin.PROMPT_FILE='{tmp_path / 'p.safetensors'}'",
          f"--gin.EVAL_OUTPUT_DIR='{tmp_path / 'eval'}'", "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'",
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}", binding]
  assert fails_with_one_line(capsys, args, main=eval_cli.main).startswith(expected)
  assert not (tmp_path / "eval").exists()


# Gin composition (cli.parse_gin): a command-line macro nothing reads, two method files, a method file before
# runs/train.gin. Refused while parsing, before the trainer starts.
@pytest.mark.parametrize("files, binding, expected", [
    (["gin/sst2.gin", "gin/methods/deep_prompt.gin"], "--gin.TRIAN_STEPS=5",
     "error: --gin.TRIAN_STEPS is bound on the command line but nothing in this configuration reads it (no "
     "%TRIAN_STEPS in the gin files given). Did you mean TRAIN_STEPS"),
    (["gin/sst2.gin", "gin/methods/finetune.gin"], "--gin.PROMPT_LENGTH=4",  # Fine-tuning has no prompt.
     "error: --gin.PROMPT_LENGTH is bound on the command line but nothing in this configuration reads it"),
    (["gin/sst2.gin", "gin/methods/lester.gin", "gin/methods/deep_prompt.gin"], None,
     "error: two method files in one command: {gin}/methods/lester.gin and {gin}/methods/deep_prompt.gin; each sets "
     "what trains (the prompt, the trained parameters, LEARNING_RATE) and the later would silently replace the "
     "earlier. Keep one method file."),
    (["gin/sst2_deep_prompt.gin", "gin/methods/lester.gin"], None,  # One of them included by a file.
     "error: two method files in one command: methods/deep_prompt.gin (included by {gin}/sst2_deep_prompt.gin) and "
     "{gin}/methods/lester.gin;"),
    (["gin/methods/lester.gin", "gin/sst2.gin"], None,
     "error: the method file {gin}/methods/lester.gin comes before runs/train.gin (included by {gin}/sst2.gin), "
     "whose defaults (LEARNING_RATE, WARMUP_STEPS) would silently replace the method's; give the method file after "
     "the task or run file, e.g. --gin_file=gin/sst2.gin --gin_file=gin/methods/lester.gin."),
])
def test_gin_composition_without_surprises(files, binding, expected, capsys, clean_gin, tmp_path):
  args = [*(f"--gin_file={f}" for f in files), *training_args(tmp_path / "data", tmp_path / "run")[1:],
          *([binding] if binding else [])]
  message = fails_with_one_line(capsys, args, tmp_path / "run")
  assert message.startswith(expected.format(gin=Path.cwd() / "gin")), message


@pytest.mark.parametrize("files, bindings, learning_rate", [
    (["gin/sst2.gin", "gin/methods/lester.gin"], [], 3e-2),  # The method's, not runs/train.gin's 1e-2.
    (["gin/sst2.gin", "gin/methods/prefix_tuning.gin"], [], 1e-3),  # It includes deep_prompt.gin: one method.
    (["gin/rte_deep_prompt.gin"], [], 1e-2),
    (["gin/sst2.gin", "gin/methods/bitfit.gin"], ["LEARNING_RATE = 5e-3"], 5e-3),  # The command line wins.
    (["gin/sst2.gin", "gin/methods/deep_prompt.gin", "gin/methods/deep_prompt.gin"], [], 1e-2),  # The same file.
])
def test_method_learning_rate_applies(files, bindings, learning_rate, clean_gin):
  cli.register_configurables()
  cli.parse_gin(files, ["MODEL_DIR = 'unused'", "TRAIN_STEPS = 1", "BATCH_SIZE = 8",
                        *bindings])
  assert gin.query_parameter("adamw.learning_rate").scoped_selector == "LEARNING_RATE/gin.macro"
  assert gin.query_parameter("LEARNING_RATE/gin.macro.value") == learning_rate
