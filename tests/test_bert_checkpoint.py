"""Loader errors list missing, unexpected and mis-shaped weights; names may carry `bert.`."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from prompt_tuning_jax.models.bert_checkpoint import (CheckpointMismatchError, default_backbone_dir,
                                                      load_backbone)


@pytest.fixture(scope="module")
def hf_tensors():
  return load_file(str(default_backbone_dir() / "model.safetensors"))


def _write_dir(path, tensors):
  path.mkdir()
  shutil.copy(default_backbone_dir() / "config.json", path / "config.json")
  save_file(tensors, str(path / "model.safetensors"))
  return path


def test_bert_prefix_is_accepted(tmp_path, hf_tensors, minilm):
  prefixed = {f"bert.{k}": v for k, v in hf_tensors.items()}
  prefixed["cls.predictions.bias"] = np.zeros(3, np.float32)  # MLM heads are ignored.
  _, params = load_backbone(_write_dir(tmp_path / "m", prefixed))
  np.testing.assert_array_equal(params["layers_3"]["mlp"]["wi"]["kernel"], minilm[1]["layers_3"]["mlp"]["wi"]["kernel"])
  # Linear weights are transposed from PyTorch's (out, in).
  np.testing.assert_array_equal(params["layers_0"]["mlp"]["wi"]["kernel"],
                                hf_tensors["encoder.layer.0.intermediate.dense.weight"].T)


def test_mismatches_are_listed(tmp_path, hf_tensors):
  broken = dict(hf_tensors)
  del broken["encoder.layer.2.output.dense.bias"]
  broken["encoder.layer.0.attention.self.query.weight"] = np.zeros((384, 100), np.float32)
  broken["encoder.extra.weight"] = np.zeros(2, np.float32)
  with pytest.raises(CheckpointMismatchError) as e:
    load_backbone(_write_dir(tmp_path / "m", broken))
  message = str(e.value)
  assert "missing (1): layers_2/mlp/wo/bias" in message
  assert "unexpected (1): encoder.extra.weight" in message
  assert "encoder.layer.0.attention.self.query.weight -> layers_0/attention/query/kernel" in message
  assert "checkpoint (100, 384), model (384, 384)" in message


def test_directory_without_weights(tmp_path):
  model_dir = tmp_path / "empty_model"
  model_dir.mkdir()
  (model_dir / "config.json").write_text(json.dumps({"hidden_size": 384}))
  with pytest.raises(FileNotFoundError, match=r"No weights in backbone directory .*empty_model.*model\.safetensors"):
    load_backbone(model_dir)
