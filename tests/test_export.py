"""The exported prompt file round-trips and collapses the reparameterization."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from prompt_tuning_jax import export, trainable
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.models.encoder_model import EncoderModel

TINY = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32)


def test_round_trip_and_collapse(tmp_path):
  model = EncoderClassifier(TINY, 3, prompt=DeepPrompt(length=5, reparam_hidden=8))
  ids = np.ones((1, 4), np.int32)
  params = jax.tree.map(np.asarray, nn.meta.unbox(model.init(jax.random.key(0), ids, ids, ids)["params"]))
  trained, _ = trainable.split_params(params, trainable.DEEP_PROMPT_PATTERNS)
  tensors = EncoderModel(model).exportable(trained)
  assert sorted(tensors) == ["head/bias", "head/kernel", "prompt/prefix"]
  assert tensors["prompt/prefix"].shape == (2, 2, 5, 4, 4)
  size = export.save_export(tmp_path / "e" / "best.safetensors", tensors, {"task": "rte", "step": 7})
  assert size == (tmp_path / "e" / "best.safetensors").stat().st_size
  assert not list((tmp_path / "e").glob("*.tmp"))
  loaded, meta = export.load_export(tmp_path / "e" / "best.safetensors")
  assert meta["format"] == export.FORMAT and meta["task"] == "rte" and meta["step"] == "7"
  np.testing.assert_array_equal(loaded["prompt/prefix"], tensors["prompt/prefix"])
  # The collapsed table gives the same prefixes as the MLP it came from.
  np.testing.assert_allclose(DeepPrompt(length=5).apply({"params": {"prefix": loaded["prompt/prefix"]}}, 2, 2, 4, 4),
                             model.prompt.apply({"params": trained["prompt"]}, 2, 2, 4, 4), atol=1e-5)


def test_foreign_file_is_refused(tmp_path):
  save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
  with pytest.raises(ValueError, match="format None, expected 'prompt_tuning_jax.export/1'"):
    export.load_export(tmp_path / "other.safetensors")
  (tmp_path / "junk.safetensors").write_bytes(b"not a file")
  with pytest.raises(ValueError, match="not a readable safetensors prompt file"):
    export.load_export(tmp_path / "junk.safetensors")


def test_bank_members_collapse_separately():
  from prompt_tuning_jax.prompts.bank import PromptBank  # pylint: disable=g-import-not-at-top
  template = DeepPrompt(length=2, reparam_hidden=4)
  model = EncoderClassifier(TINY, 2, prompt=PromptBank(template, 2), num_heads=2)
  ids = np.ones((2, 4), np.int32)
  params = nn.meta.unbox(model.init(jax.random.key(0), ids, ids, ids, task_ids=np.array([0, 1]))["params"])
  tensors = EncoderModel(model).exportable({"prompt": params["prompt"], "head": params["head"]})
  assert sorted(tensors) == ["head/bias", "head/kernel", "prompt/members_0/prefix", "prompt/members_1/prefix"]
  assert tensors["head/kernel"].shape == (2, 16, 2)
  member_1 = template.apply({"params": params["prompt"]["members_1"]}, 1, 2, 4, 4)
  np.testing.assert_allclose(tensors["prompt/members_1/prefix"], member_1[:, :, 0], atol=1e-5)
