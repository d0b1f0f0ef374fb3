"""After training steps the frozen parameters are bit-identical to the checkpoint and every
trainable one moved, for each method's trainable pattern."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_params
from prompt_tuning_jax import trainable
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.models.bert_checkpoint import load_backbone
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.training.steps import TrainState, adamw, make_train_step

BITFIT = (r"backbone/.*/bias", r"head/.*")
METHODS = {
    "p_tuning_v2": (DeepPrompt(length=4), trainable.DEEP_PROMPT_PATTERNS),
    "prefix_tuning": (DeepPrompt(length=4, reparam_hidden=16), trainable.DEEP_PROMPT_PATTERNS),
    "lester": (InputPrompt(length=4), trainable.DEEP_PROMPT_PATTERNS),
    "bitfit": (None, BITFIT),
}


@pytest.fixture(scope="module")
def reloaded():
  """Backbone weights read from disk again, not the arrays the models used."""
  return trainable.flatten(load_backbone()[1])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_only_trainable_parameters_change(method, minilm, reloaded):
  config, backbone = minilm
  prompt, patterns = METHODS[method]
  model = EncoderClassifier(config, num_labels=2, prompt=prompt)
  params = init_params(model, backbone, seed=0)
  trained, frozen = trainable.split_params(params, patterns)
  tx = adamw(learning_rate=1e-2, train_steps=10)
  state = TrainState(jnp.zeros((), jnp.int32), trained, tx.init(trained))
  # Frozen parameters carry no optimizer state: Adam keeps 2 moments of the trainable ones only.
  assert trainable.count(state.opt_state) <= 2 * trainable.count(trained) + 8
  initial = trainable.flatten(jax.device_get(trained))

  rng = np.random.default_rng(0)
  ids = [rng.integers(1000, 3000, rng.integers(5, 30)).astype(np.int32) for _ in range(16)]
  examples = batching.Examples(ids, [np.zeros_like(x) for x in ids], rng.integers(0, 2, 16).astype(np.int32))
  batches = batching.TrainBatches(examples, batch_size=8, max_length=32, seed=0)
  step = jax.jit(make_train_step(EncoderModel(model), tx), donate_argnums=0)
  for s in range(3):
    state, metrics = step(state, frozen, batches.batch(s), jax.random.key(0))
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 3

  for path, value in trainable.flatten(frozen).items():
    assert np.array_equal(np.asarray(value), reloaded[path.removeprefix("backbone/")]), path
  after = trainable.flatten(state.trainable)
  for path, before in initial.items():
    if path.startswith("backbone/pooler/"):
      continue  # Not on the forward path with [CLS] pooling, so it gets no gradient.
    assert not np.array_equal(before, np.asarray(after[path])), f"{path} did not train"
  if method == "bitfit":
    assert all(p.endswith("/bias") or p.startswith("head/") for p in after) and len(after) > 30
