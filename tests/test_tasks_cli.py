"""`python -m prompt_tuning_jax.tasks`: --list names every task and mixture with splits and metric; --show prints
the first preprocessed example as text and as features; missing data is one error line."""

import seqio

from prompt_tuning_jax import tasks
from prompt_tuning_jax.tasks import __main__ as cli
from prompt_tuning_jax.tasks import mixtures
from task_fixtures import write_task_data


def test_list_names_every_task_and_mixture_with_splits_and_metric(capsys):
  assert cli.main(["--list"]) == 0
  out = capsys.readouterr().out
  for name in seqio.TaskRegistry.names():
    assert f"\n  {name} " in out, name
  for name in mixtures.MIXTURES:
    assert f"\n  {name} " in out, name
  assert "conll2005                  token_classification  train, validation, test_wsj, test_brown srl_f1 (*f1)" in out
  assert "multirc (*f1a)" in out and "files train: superglue/multirc/train.jsonl" in out


def test_show_prints_text_and_features(capsys, tmp_path):
  data_dir = write_task_data(tmp_path)
  assert cli.main(["--show", "conll2004", "--data_dir", str(data_dir), "--split", "train"]) == 0
  out = capsys.readouterr().out
  assert "tokens: [CLS] in/B-Peop ##es ok/I-Peop ##af" in out  # Labels on first pieces only.
  assert "  labels: int32[" in out and "  word_ids: int32[" in out
  assert cli.main(["--show", "copa", "--data_dir", str(data_dir)]) == 0
  out = capsys.readouterr().out
  assert "choice 1: [CLS] the glass fell off the shelf . so [SEP] the glass sang . [SEP]" in out
  assert "inputs: int32[2, 15]" in out


def test_show_without_data_names_the_files(capsys, tmp_path):
  assert cli.main(["--show", "wnut17", "--data_dir", str(tmp_path)]) == 2
  assert f"error: missing data file: looked for {tmp_path}/ner/wnut17/dev.conll" in capsys.readouterr().err
  assert tasks.info("wnut17").family == "token_classification"
