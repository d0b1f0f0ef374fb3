"""`python -m prompt_tuning_jax.convert_checkpoint`: a Hugging Face T5 1.1 or BERT-family directory becomes t5x's
legacy checkpoint, read back bit-identical by our reader and (where t5x is installed) by t5x itself;
`read_parameters` reads single tensors of any layout; bad input is one `error:` line and status 2."""

import re
import subprocess
import sys

import numpy as np
import pytest
from flax import serialization, traverse_util

from conftest import GOLDENS, REPO
from prompt_tuning_jax import errors
from prompt_tuning_jax.models import bert_checkpoint, t5x_checkpoint
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from test_t5x_checkpoint import write_orbax

T5_TINY = GOLDENS / "t5_tiny"
EMBEDDING = "token_embedder/embedding"


def convert(*args):
  return subprocess.run([sys.executable, "-m", "prompt_tuning_jax.convert_checkpoint", *map(str, args)], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def t5_tiny():
  return traverse_util.flatten_dict(load_t5(T5_TINY)[1], sep="/")


@pytest.fixture(scope="module")
def converted_t5(tmp_path_factory):
  out = tmp_path_factory.mktemp("t5x") / "t5"
  result = convert("--source", T5_TINY, "--output", out, "--step", 7)
  assert result.returncode == 0, result.stderr
  return out, result.stdout


def _identical(flat, source):
  assert set(flat) == set(source)
  for k, v in source.items():
    assert flat[k].dtype == v.dtype == np.float32 and np.array_equal(flat[k], v), k


def test_t5_converts_to_t5x_legacy_layout_and_reads_back_bit_identical(converted_t5, t5_tiny):
  out, stdout = converted_t5
  assert stdout.strip() == (f"converted T5 1.1 (2+3 layers, d_model 64, vocabulary 512) from {T5_TINY}: 66 tensors, "
                            f"{sum(v.size for v in t5_tiny.values()):,} float32 parameters -> T5X checkpoint "
                            f"{out / 'checkpoint_7'}")
  assert sorted(p.name for p in out.iterdir()) == ["checkpoint_7"]  # Nothing temporary is left.
  # t5x's train state: version 3, parameters under optimizer/target by t5x's names, no optimizer state.
  state = serialization.msgpack_restore((out / "checkpoint_7" / "checkpoint").read_bytes())
  assert state["version"] == 3 and set(state["optimizer"]) == {"target", "state"}
  assert state["optimizer"]["state"] == {"step": 7}
  spec = state["optimizer"]["target"]["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert spec == {"driver": "zarr", "dtype": "float32", "kvstore": {"driver": "file",
                  "path": "target.encoder.layers_0.attention.query.kernel/"},
                  "metadata": {"chunks": [64, 48], "compressor": {"id": "gzip", "level": 1}, "shape": [64, 48]}}
  for path in (out, out / "checkpoint_7", out / "checkpoint_7" / "checkpoint"):
    flat, config, layout = t5x_checkpoint.read_checkpoint(path)
    assert config is None and layout == "T5X legacy msgpack + TensorStore (checkpoint_7)"
    _identical(flat, t5_tiny)
  params, description = t5x_checkpoint.restore_backbone(out, load_t5(T5_TINY)[0])
  assert "66 tensors loaded" in description
  _identical(traverse_util.flatten_dict(params, sep="/"), t5_tiny)


def test_bert_family_converts_and_reads_back_bit_identical(minilm, tmp_path):
  result = convert("--source", bert_checkpoint.default_backbone_dir(), "--output", tmp_path / "bert")
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("converted BERT-family encoder (6 layers, hidden size 384, vocabulary 30522)")
  assert "103 tensors, 22,713,216 float32 parameters" in result.stdout
  flat, config, _ = t5x_checkpoint.read_checkpoint(tmp_path / "bert")
  assert config is None
  _identical(flat, traverse_util.flatten_dict(minilm[1], sep="/"))
  with pytest.raises(errors.CheckpointError, match="holds a BERT-family encoder, not a T5"):
    t5x_checkpoint.restore_backbone(bert_checkpoint.default_backbone_dir(), load_t5(T5_TINY)[0])


def test_read_parameters_of_every_layout(converted_t5, t5_tiny, tmp_path, minilm):
  embedding = t5_tiny[EMBEDDING]
  orbax = write_orbax(tmp_path / "orbax", t5_tiny)
  for path in (T5_TINY, converted_t5[0], converted_t5[0] / "checkpoint_7", orbax):
    read = t5x_checkpoint.read_parameters(path, [EMBEDDING, "decoder/logits_dense/kernel"])
    assert list(read) == [EMBEDDING, "decoder/logits_dense/kernel"], path
    assert np.array_equal(read[EMBEDDING], embedding) and read[EMBEDDING].dtype == np.float32, path
    assert np.array_equal(read["decoder/logits_dense/kernel"], t5_tiny["decoder/logits_dense/kernel"]), path
  word = "embeddings/word_embeddings/embedding"
  read = t5x_checkpoint.read_parameters(bert_checkpoint.default_backbone_dir(), [word])
  assert np.array_equal(read[word], minilm[1]["embeddings"]["word_embeddings"]["embedding"])
  # A run's tree ({'backbone', 'prompt', ...}) is found as well.
  run = t5x_checkpoint.write_checkpoint({"backbone": load_t5(T5_TINY)[1], "prompt": {"prompt": np.ones((4, 64))}},
                                        tmp_path / "run", step=3)
  read = t5x_checkpoint.read_parameters(run, ["backbone/" + EMBEDDING, "prompt/prompt"])
  assert np.array_equal(read["backbone/" + EMBEDDING], embedding) and read["prompt/prompt"].shape == (4, 64)
  for path in (T5_TINY, converted_t5[0], orbax):
    with pytest.raises(errors.CheckpointError, match=r"has no parameter encoder/embedding; it has 66, e\.g\. "
                       r"decoder/decoder_norm/scale"):
      t5x_checkpoint.read_parameters(path, ["encoder/embedding"])
  with pytest.raises(errors.MissingFileError, match="does not exist"):
    t5x_checkpoint.read_parameters(tmp_path / "nowhere", [EMBEDDING])


def test_chunks_divide_the_shape_and_hold_at_most_64_mib():
  assert t5x_checkpoint._chunk_shape((512, 64), 4) == [512, 64]  # pylint: disable=protected-access
  # mT5-XXL's embedding, 4 GB.
  chunks = t5x_checkpoint._chunk_shape((250112, 4096), 4)  # pylint: disable=protected-access
  assert np.prod(chunks) * 4 <= 64 * 2**20 and 250112 % chunks[0] == 0 and 4096 % chunks[1] == 0


def test_bad_input_is_one_error_line_and_status_2(converted_t5, tmp_path):
  out = converted_t5[0]
  before = (out / "checkpoint_7" / "checkpoint").read_bytes()
  (tmp_path / "no_config").mkdir()
  cases = {(tmp_path / "nowhere", tmp_path / "o1", 0): "Hugging Face model directory .*nowhere does not exist",
           (tmp_path / "no_config", tmp_path / "o2", 0): "No config.json in .*no_config",
           (T5_TINY, out, 7): r"T5X checkpoint .*checkpoint_7 already exists and is never overwritten"}
  for (source, output, step), message in cases.items():
    result = convert("--source", source, "--output", output, "--step", step)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
  assert (out / "checkpoint_7" / "checkpoint").read_bytes() == before
  assert sorted(p.name for p in out.iterdir()) == ["checkpoint_7"]
  assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_t5x_loads_the_converted_checkpoint(converted_t5, t5_tiny):
  pytest.importorskip("t5x", reason="t5x is not installed")
  from t5x import checkpoints  # pylint: disable=g-import-not-at-top
  state = checkpoints.load_t5x_checkpoint(str(converted_t5[0]))
  assert int(state["state"]["step"]) == 7
  loaded = traverse_util.flatten_dict(state["target"], sep="/")
  _identical({k: np.asarray(v) for k, v in loaded.items()}, t5_tiny)
