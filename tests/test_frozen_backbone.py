"""After training steps the backbone is bit-identical to the checkpoint; prompt and head moved."""

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax import data, trainable
from prompt_tuning_jax.models.bert_checkpoint import load_backbone
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.train_step import TrainState, adamw, make_train_step
from prompt_tuning_jax.trainer import init_params


def test_only_prompt_and_head_change(minilm):
  config, backbone = minilm
  model = EncoderClassifier(config, num_labels=2, prompt=DeepPrompt(length=4, reparam_hidden=16))
  params = init_params(model, backbone, seed=0)
  trained, frozen = trainable.split_params(params, trainable.DEEP_PROMPT_PATTERNS)
  assert set(trained) == {"prompt", "head"} and set(frozen) == {"backbone"}
  tx = adamw(learning_rate=1e-2, train_steps=10)
  state = TrainState(jnp.zeros((), jnp.int32), trained, tx.init(trained))
  # The backbone carries no optimizer state: Adam keeps 2 moments of the trainable params only.
  assert trainable.count(state.opt_state) <= 2 * trainable.count(trained) + 8
  initial_trained = jax.device_get(trained)

  rng = np.random.default_rng(0)
  ids = [rng.integers(1000, 3000, rng.integers(5, 30)).astype(np.int32) for _ in range(16)]
  examples = data.Examples(ids, [np.zeros_like(x) for x in ids], rng.integers(0, 2, 16).astype(np.int32))
  batches = data.TrainBatches(examples, batch_size=8, max_length=32, seed=0)
  step = jax.jit(make_train_step(model.apply, tx), donate_argnums=0)
  for s in range(4):
    state, metrics = step(state, frozen, batches.batch(s), jax.random.key(0))
  assert np.isfinite(float(metrics["loss"]))

  _, reloaded = load_backbone()  # Fresh from disk, not the arrays the model used.
  for path, value in trainable.flatten(frozen["backbone"]).items():
    assert np.array_equal(np.asarray(value), trainable.flatten(reloaded)[path]), path
  for path, before in trainable.flatten(initial_trained).items():
    assert not np.array_equal(before, np.asarray(trainable.flatten(state.trainable)[path])), f"{path} did not train"
  assert int(state.step) == 4
