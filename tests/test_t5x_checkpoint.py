"""Partial restore of a frozen T5: Hugging Face, T5X Orbax and T5X legacy (msgpack + TensorStore)
checkpoints, t5x's assignment map and fallback-to-scratch; the prompt is always new."""

import jax
import numpy as np
import pytest
from flax import serialization, traverse_util

from conftest import GOLDENS
from prompt_tuning_jax import trainable
from prompt_tuning_jax.models.bert_checkpoint import CheckpointMismatchError
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.models.t5x_checkpoint import restore_backbone
from prompt_tuning_jax.prompts.initializers import sampled_vocab
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.recipes.t5_train import load_backbone

FIXTURE = GOLDENS / "t5_tiny"


@pytest.fixture(scope="module")
def tiny():
  config, params = load_t5(FIXTURE)
  return config, traverse_util.flatten_dict(params, sep="/")


def _t5x_state(params_tree, step: int) -> dict:
  """A t5x train state as t5x's checkpointer writes it."""
  return {"version": 3, "optimizer": {"target": params_tree, "state": {"step": np.int32(step), "param_states": {}}}}


def write_orbax(model_dir, flat, step=7):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  ocp.PyTreeCheckpointer().save(model_dir / f"checkpoint_{step}",
                                _t5x_state(traverse_util.unflatten_dict(flat, sep="/"), step))
  return model_dir


def write_legacy(model_dir, flat, step=3):
  """t5x's legacy layout: 2-D arrays in zarr TensorStores named by their dotted path (relative
  specs in the msgpack), the small ones inline."""
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  step_dir = model_dir / f"checkpoint_{step}"
  step_dir.mkdir(parents=True)
  tree = {}
  for path, value in flat.items():
    if value.ndim < 2:
      tree[path] = value
      continue
    name = "target." + path.replace("/", ".")
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": name},
            "metadata": {"shape": list(value.shape), "chunks": list(value.shape), "dtype": "<f4",
                         "compressor": {"id": "gzip"}}}
    store = ts.open({**spec, "kvstore": {"driver": "file", "path": str(step_dir / name)}}, create=True).result()
    store.write(value).result()
    tree[path] = spec
  (step_dir / "checkpoint").write_bytes(
      serialization.msgpack_serialize(_t5x_state(traverse_util.unflatten_dict(tree, sep="/"), step)))
  return model_dir


@pytest.mark.parametrize("layout", ["orbax", "legacy"])
def test_t5x_layouts_give_the_checkpoint_weights(layout, tiny, tmp_path):
  config, flat = tiny
  model_dir = (write_orbax if layout == "orbax" else write_legacy)(tmp_path / layout, flat)
  for path in (model_dir, next(model_dir.glob("checkpoint_*"))):  # model dir (latest step) or the step dir
    params, description = restore_backbone(path, config)
    assert ("Orbax" if layout == "orbax" else "legacy") in description
    loaded = traverse_util.flatten_dict(params, sep="/")
    assert set(loaded) == set(flat)
    assert all(np.array_equal(loaded[k], flat[k]) for k in flat)


def test_assignment_map_and_fallback_to_scratch(tiny, tmp_path):
  config, flat = tiny
  model_dir = write_orbax(tmp_path / "ckpt", flat)
  # A pattern's replacement names the checkpoint tensor (groups work); None leaves it to fallback.
  params, description = restore_backbone(model_dir, config, [
      (r"encoder/layers_1/(.*)", r"encoder/layers_0/\1"), (r"decoder/logits_dense/kernel", None)],
                                         fallback_to_scratch=True)
  loaded = traverse_util.flatten_dict(params, sep="/")
  assert np.array_equal(loaded["encoder/layers_1/mlp/wi_0/kernel"], flat["encoder/layers_0/mlp/wi_0/kernel"])
  assert np.array_equal(loaded["decoder/layers_2/mlp/wo/kernel"], flat["decoder/layers_2/mlp/wo/kernel"])
  assert loaded["decoder/logits_dense/kernel"].shape == flat["decoder/logits_dense/kernel"].shape
  assert not np.array_equal(loaded["decoder/logits_dense/kernel"], flat["decoder/logits_dense/kernel"])
  assert "1 initialised from scratch" in description
  with pytest.raises(CheckpointMismatchError, match="lacks 1 parameter.*decoder/logits_dense/kernel.*fallback"):
    restore_backbone(model_dir, config, [(r"decoder/logits_dense/kernel", None)])
  with pytest.raises(CheckpointMismatchError, match=r"mis-shaped token_embedder/embedding -> decoder/logits_dense"):
    restore_backbone(model_dir, config, [(r"decoder/logits_dense/kernel", "token_embedder/embedding")])


def test_frozen_weights_come_from_the_checkpoint_and_the_prompt_is_new(tiny):
  config, flat = tiny
  model = PromptedT5(config, InputPrompt(length=4, initializer=sampled_vocab(population=100)))
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = EncoderDecoderModel(model).init_params(jax.random.key(0), load_backbone(model, FIXTURE, seed=0), shapes)
  trained, frozen = trainable.split_params(params, [r"prompt/.*"])
  frozen_flat = trainable.flatten(frozen)
  assert set(frozen_flat) == {f"backbone/{k}" for k in flat}
  assert all(np.array_equal(np.asarray(frozen_flat[f"backbone/{k}"]), flat[k]) for k in flat)
  prompt = np.asarray(trained["prompt"]["prompt"])
  assert list(trainable.flatten(trained)) == ["prompt/prompt"] and prompt.shape == (4, config.d_model)
  # Sampled-vocabulary init reads the loaded embeddings: every row is one of the first 100.
  embeddings = flat["token_embedder/embedding"][:100]
  assert all(np.any(np.all(embeddings == row, axis=1)) for row in prompt)


def test_checkpoint_errors_name_the_problem(tiny, tmp_path):
  config, _ = tiny
  with pytest.raises(FileNotFoundError, match="does not exist"):
    restore_backbone(tmp_path / "nowhere", config)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="neither a Hugging Face T5 directory .* nor a T5X checkpoint"):
    restore_backbone(tmp_path / "empty", config)
  with pytest.raises(ValueError, match=r"holds a different T5: d_ff=128 \(gin: 256\)"):
    restore_backbone(FIXTURE, config.replace(d_ff=256))
