"""The model contract (models/base.py, t5x's BaseModel shape) on both implementations: t5x's params_axes
collection beside the parameters, and loss_fn / score_batch / predict_batch_with_aux / eval_batch agreeing
with each other on a real batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from conftest import GOLDENS
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt

BERT = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                  max_position_embeddings=24)
T5_SHAPES = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}


@pytest.fixture(scope="module")
def encoder():
  model = EncoderModel(EncoderClassifier(config=BERT, num_labels=3, prompt=DeepPrompt(length=2)))
  return model, model.get_initial_variables(jax.random.key(0), {"input_ids": (1, 6)})


@pytest.fixture(scope="module")
def t5():
  config, backbone = load_t5(GOLDENS / "t5_tiny")
  model = EncoderDecoderModel(PromptedT5(config, InputPrompt(length=2)), max_decode_length=4)
  return model, model.init_params(jax.random.key(0), backbone, T5_SHAPES), model.get_initial_variables(
      jax.random.key(0), T5_SHAPES)


def _check_params_axes(variables, axes):
  """Every parameter has t5x's `<name>_axes` entry naming the same logical axes as its box."""
  params = traverse_util.flatten_dict(variables["params"], sep="/")
  named = traverse_util.flatten_dict(variables["params_axes"], sep="/")
  assert set(named) == {f"{path}_axes" for path in params}
  for path, value in params.items():
    assert len(named[f"{path}_axes"].names) == value.ndim, path
    assert tuple(named[f"{path}_axes"].names) == tuple(axes[path]), path


def test_initial_variables_carry_t5x_params_axes(encoder, t5):
  model, variables = encoder
  _check_params_axes(variables, model.param_axes({"input_ids": (1, 6)}))
  model, _, variables = t5
  _check_params_axes(variables, model.param_axes(T5_SHAPES))
  assert any(path.startswith("prompt/") for path in traverse_util.flatten_dict(variables["params_axes"], sep="/"))


def test_encoder_contract_methods_agree(encoder):
  model, variables = encoder
  ids = np.array([[1, 5, 7, 2, 0, 0], [1, 9, 2, 0, 0, 0]], np.int32)
  batch = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": (ids > 0).astype(np.int32),
           "labels": np.array([2, 0], np.int32), "task_ids": np.zeros(2, np.int32), "weights": np.ones(2, np.float32)}
  params = variables["params"]
  loss, metrics = model.loss_fn(params, batch, None)
  scores = model.score_batch(params, batch)
  predictions, aux = model.predict_batch_with_aux(params, batch)
  logits = aux["outputs"][:, 0]  # [B, C]: member 0 of a single model.
  assert scores.shape == (2,) and predictions.shape == (2,) and int(metrics["count"]) == 2
  assert float(loss) == pytest.approx(-float(jnp.mean(scores)), rel=1e-5)  # without dropout
  np.testing.assert_array_equal(predictions, np.argmax(logits, -1))
  assert int(metrics["correct"]) == int(np.sum(predictions == batch["labels"]))
  assert int(metrics["tokens"]) == int(batch["attention_mask"].sum())


def test_encoder_decoder_contract_methods_agree(t5):
  model, params, _ = t5
  targets = np.array([[5, 9, 1, 0], [7, 1, 0, 0]], np.int32)
  batch = {"encoder_input_tokens": np.array([[4, 8, 15, 1, 0], [16, 23, 42, 9, 1]], np.int32),
           "decoder_target_tokens": targets, "decoder_input_tokens": text_batching.shift_right(targets),
           "decoder_loss_weights": (targets > 0).astype(np.float32)}
  loss, metrics = model.loss_fn(params, batch, None)
  scores = model.score_batch(params, batch)
  predictions, _ = model.predict_batch_with_aux(params, batch)
  outputs = model.eval_batch(params, batch)
  assert scores.shape == (2,) and predictions.shape == (2, 4) and int(metrics["count"]) == 2
  np.testing.assert_allclose(outputs["loss"], -scores, rtol=1e-6)
  np.testing.assert_array_equal(outputs["predictions"], predictions)
  # t5x's loss is the summed token loss plus the z-loss term.
  assert float(loss) == pytest.approx(-float(jnp.sum(scores)) + float(metrics["z_loss"]), rel=1e-5)
  assert int(metrics["tokens"]) == int((batch["encoder_input_tokens"] > 0).sum() + (targets > 0).sum())
