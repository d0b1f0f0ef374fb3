"""One project error type for bad input (prompt_tuning_jax/errors.py).

A UserError ends a command-line run with status 2 and one `error:` line; any other exception (a KeyError or
OSError from a bug) is not caught and keeps its traceback. Third-party errors that user input causes (a
corrupt file, an unreadable checkpoint) are wrapped where they arise, so they too are UserErrors.
"""

import errno
import inspect
import re
from pathlib import Path
from typing import List

import gin
import pytest

from conftest import write_tiny_data
from prompt_tuning_jax import cli, errors, export, tasks
from prompt_tuning_jax.models import bert_checkpoint, t5_checkpoint, t5x_checkpoint
from prompt_tuning_jax.recipes import encoder
from prompt_tuning_jax.training import checkpoints, fit, loop, validation

_RAISED: List[BaseException] = []  # What `raising_trainer` raises: set by each test.


@gin.configurable("raising_trainer", module="test_errors")
def raising_trainer():
  """A trainer that fails inside the run, as a bug (or, with a UserError, bad input) would."""
  raise _RAISED[-1]


def run_raising(capsys, error: BaseException) -> int:
  _RAISED.append(error)
  return cli.run_cli(cli.launch, ["--gin.launch.trainer=@raising_trainer"])


def error_lines(capsys) -> List[str]:
  out, err = capsys.readouterr()
  return [line for line in (out + err).splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("error", [KeyError("best_step"), OSError(errno.EIO, "Input/output error"),
                                   ValueError("an internal invariant"), FileNotFoundError(2, "No such file")],
                         ids=["KeyError", "OSError", "ValueError", "FileNotFoundError"])
def test_a_programming_error_in_the_run_keeps_its_traceback(error, capsys, clean_gin):
  with pytest.raises(type(error)) as raised:
    run_raising(capsys, error)
  assert not isinstance(raised.value, errors.UserError)
  assert any(entry.name == "raising_trainer" for entry in raised.traceback)  # Where it was raised.
  assert error_lines(capsys) == []


def test_an_oserror_from_a_function_the_real_run_calls_is_not_a_user_error(monkeypatch, capsys, clean_gin,
                                                                           tmp_path):
  """The encoder trainer runs for real (backbone, data) until a function it calls fails as a bug would."""
  def broken_describe_data(*args):
    raise OSError(errno.EIO, "Input/output error", str(tmp_path / "not-user-input"))
  monkeypatch.setattr(encoder, "describe_data", broken_describe_data)
  args = ["--gin_file=gin/sst2.gin", f"--gin.DATA_DIR='{write_tiny_data(tmp_path / 'data')}'",
          f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--gin.TRAIN_STEPS=2", "--gin.BATCH_SIZE=8"]
  with pytest.raises(OSError, match="Input/output error") as raised:
    cli.run_cli(cli.launch, args)
  assert any(entry.name == "broken_describe_data" for entry in raised.traceback)
  assert error_lines(capsys) == []


@pytest.mark.parametrize("kind", [errors.ConfigError, errors.DataError, errors.MissingFileError,
                                  errors.NotWritableError, errors.CheckpointError, errors.TrainingError,
                                  tasks.UnknownTaskError, loop.NonFiniteLossError])
def test_a_user_error_in_the_run_is_one_line_and_status_2(kind, capsys, clean_gin):
  code = run_raising(capsys, kind("data/x.tsv:3: a bad row.\n  Fix the file."))
  out, err = capsys.readouterr()
  assert code == 2 and "Traceback" not in out + err
  # gin's note of the configurable call it went through is left out.
  assert err.splitlines() == ["error: data/x.tsv:3: a bad row. Fix the file."], err


def test_a_gin_flag_without_a_value_is_one_line_and_status_2(capsys, clean_gin):
  assert cli.main(["--gin.TRAIN_STEPS"]) == 2
  assert error_lines(capsys) == ["error: --gin.TRAIN_STEPS needs a value: --gin.TRAIN_STEPS=VALUE"]


def _error_classes(module) -> list:
  return [c for _, c in inspect.getmembers(module, inspect.isclass)
          if issubclass(c, BaseException) and c.__module__ == module.__name__]


def test_every_project_error_class_is_a_user_error():
  kinds = _error_classes(errors)
  assert {c.__name__ for c in kinds} == {"UserError", "ConfigError", "DataError", "MissingFileError",
                                         "NotWritableError", "CheckpointError", "TrainingError"}
  project = [tasks.UnknownTaskError, tasks.DataError, loop.NonFiniteLossError, loop.DataPositionMismatchError,
             bert_checkpoint.CheckpointMismatchError, checkpoints.UnreadableCheckpointError]
  for cls in kinds + project:
    assert issubclass(cls, errors.UserError), cls
  # Each kind is also the built-in it replaces, so code catching that keeps working.
  for kind, builtin in [(errors.ConfigError, ValueError), (errors.DataError, ValueError),
                        (errors.MissingFileError, FileNotFoundError), (errors.NotWritableError, PermissionError),
                        (errors.CheckpointError, ValueError), (errors.TrainingError, FloatingPointError),
                        (loop.NonFiniteLossError, FloatingPointError)]:
    assert issubclass(kind, builtin), kind


def _garbage(path: Path) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"\x00\xffnot what the reader expects\n")
  return path


def _through_a_file(tmp_path: Path) -> Path:
  (tmp_path / "runs").write_text("a file, not a directory")
  return tmp_path / "runs" / "run"


def _gin_file(tmp_path: Path, text: str) -> str:
  (tmp_path / "run.gin").write_text(text)
  return str(tmp_path / "run.gin")


def _t5x_orbax_without_metadata(tmp_path: Path) -> Path:
  _garbage(tmp_path / "t5x" / "checkpoint_5" / "_METADATA")
  return tmp_path / "t5x"


# Third-party errors caused by what the user gave, each wrapped where it arises: (kind, call, message part).
WRAPPED = {
    "corrupt safetensors prompt": (errors.CheckpointError, lambda p: export.load_export(_garbage(p / "x.safetensors")),
                                   "not a readable safetensors prompt file"),
    "corrupt .npy prompt": (errors.CheckpointError, lambda p: export.load_npy(_garbage(p / "x.npy")),
                            "not a readable .npy prompt file"),
    "missing .npy prompt": (errors.MissingFileError, lambda p: export.load_npy(p / "none.npy"), "does not exist"),
    "corrupt backbone weights": (errors.CheckpointError, lambda p: bert_checkpoint.read_safetensors(
        _garbage(p / "m" / "model.safetensors").parent), "The file is corrupt or not safetensors"),
    "backbone config.json not JSON": (errors.CheckpointError,
                                      lambda p: bert_checkpoint.load_config(_garbage(p / "m" / "config.json").parent),
                                      "is not a readable JSON config"),
    "T5 config.json not JSON": (errors.CheckpointError,
                                lambda p: t5_checkpoint.load_config(_garbage(p / "m" / "config.json").parent),
                                "is not a readable JSON config"),
    "T5 config.json without sizes": (errors.CheckpointError, lambda p: t5_checkpoint.config_from_hf(
        {"model_type": "t5", "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}), "lacks ['vocab_size'"),
    "corrupt legacy T5X checkpoint": (errors.CheckpointError, lambda p: t5x_checkpoint.read_checkpoint(
        _garbage(p / "t5x" / "checkpoint_3" / "checkpoint").parents[1]), "cannot be read (ExtraData"),
    "T5X Orbax checkpoint without metadata": (errors.CheckpointError, lambda p: t5x_checkpoint.read_checkpoint(
        _t5x_orbax_without_metadata(p)), "holds no parameter tree Orbax can read"),
    "MODEL_DIR through a file": (errors.NotWritableError, lambda p: fit.prepare_model_dir(_through_a_file(p)),
                                 "is not writable (Not a directory)"),
    "missing gin include": (errors.MissingFileError, lambda p: cli.parse_gin(
        [_gin_file(p, "include 'nowhere/none.gin'\n")], []), "Unable to open file: nowhere/none.gin"),
    "TASK_FEATURE_LENGTHS without targets": (errors.ConfigError, lambda p: validation.check_feature_lengths(
        {"inputs": 8}, ("inputs", "targets"), "feature_lengths"), "has no length for ['targets']"),
}


@pytest.mark.parametrize("case", WRAPPED)
def test_third_party_errors_from_user_input_are_wrapped_at_their_source(case, clean_gin, tmp_path):
  kind, call, message = WRAPPED[case]
  with pytest.raises(kind, match=re.escape(message)):
    call(tmp_path)


@pytest.mark.parametrize("case", ["not gzip", "not UTF-8"])
def test_an_unreadable_data_file_is_a_data_error(case, tmp_path):
  from prompt_tuning_jax.tasks import loading  # pylint: disable=g-import-not-at-top
  sst2 = tmp_path / "glue" / "sst2"
  sst2.mkdir(parents=True)
  if case == "not gzip":
    path = sst2 / "train.tsv.gz"
    path.write_bytes(b"sentence\tlabel\na film\t1\n")
  else:
    path = sst2 / "train.tsv"
    path.write_bytes(b"sentence\tlabel\nun film tr\xe8s bon\t1\n")
  with pytest.raises(errors.DataError, match=rf"{path}(: cannot be read \(BadGzipFile|:2: not UTF-8)"):
    loading.preprocessed_rows("sst2", "train", {"inputs": 16}, data_dir=tmp_path)


def test_a_vocabulary_without_the_special_tokens_is_a_checkpoint_error(tmp_path):
  from prompt_tuning_jax.data import tokenizers  # pylint: disable=g-import-not-at-top
  (tmp_path / "vocab.txt").write_text("[PAD]\nhello\n")
  with pytest.raises(errors.CheckpointError, match=r"has no \[CLS\] token"):
    tokenizers.WordPieceVocabulary(str(tmp_path / "vocab.txt")).cls_id
  (tmp_path / "vocab.txt").write_text("")
  with pytest.raises(errors.CheckpointError, match="the first token must be \\[PAD\\] \\(id 0\\), found an empty file"):
    tokenizers.WordPieceVocabulary(str(tmp_path / "vocab.txt")).cls_id


def test_a_file_that_is_not_a_sentencepiece_model_is_a_config_error(tmp_path):
  from prompt_tuning_jax.data import vocabularies  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models.t5 import T5Config  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models.t5_prompted import PromptedT5  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.recipes import t5_train  # pylint: disable=g-import-not-at-top
  vocabulary = vocabularies.sentencepiece_vocabulary(str(_garbage(tmp_path / "bad.model")), 100)
  with pytest.raises(errors.ConfigError, match=r"bad\.model cannot be read .*point SENTENCEPIECE_MODEL at a"):
    t5_train.check_vocabulary(PromptedT5(T5Config()), vocabulary)


def test_gin_errors_are_config_errors(clean_gin, tmp_path):
  with pytest.raises(errors.ConfigError, match="gin syntax error"):
    cli.parse_gin([_gin_file(tmp_path, "TRAIN_STEPS = 3 +\n")], [])
  gin.clear_config()
  with pytest.raises(errors.ConfigError, match="unknown gin binding"):
    cli.parse_gin([], ["NOT_A_THING.x = 1"])
