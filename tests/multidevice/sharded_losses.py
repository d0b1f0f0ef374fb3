"""Prints the losses of 5 deep-prompt train steps on a tiny BERT, on one device and on
('data', 'model') meshes. Run with XLA_FLAGS=--xla_force_host_platform_device_count=8
(tests/test_sharding.py does); prints one JSON line {mesh: [losses], "seconds": {...}}."""

import json
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_tuning_jax import partitioning, trainable
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.train_step import TrainState, make_train_step

CONFIG = BertConfig(vocab_size=130, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=64)
B, T, STEPS = 16, 12, 5


def batches():
  rng = np.random.default_rng(0)
  out = []
  for _ in range(STEPS):
    lengths = rng.integers(4, T + 1, B)
    ids = np.where(np.arange(T) < lengths[:, None], rng.integers(1, CONFIG.vocab_size, (B, T)), 0).astype(np.int32)
    out.append({"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": (ids != 0).astype(np.int32),
                "labels": rng.integers(0, 2, B).astype(np.int32), "task_ids": np.zeros(B, np.int32),
                "weights": np.ones(B, np.float32)})
  return out


def main(meshes):
  model = EncoderClassifier(config=CONFIG, num_labels=2, prompt=DeepPrompt(length=4, reparam_hidden=32))
  ids = jnp.ones((2, T), jnp.int32)
  boxed = model.init(jax.random.key(0), ids, ids * 0, ids)["params"]
  params = nn.meta.unbox(boxed)
  trained, frozen = trainable.split_params(params, trainable.DEEP_PROMPT_PATTERNS)
  axes = trainable.flatten(partitioning.logical_axes(boxed))
  tx = optax.adamw(1e-2)
  step_fn = make_train_step(model.apply, tx)
  data = batches()[:1] * STEPS  # One batch repeated: the loss must fall.
  results, seconds = {}, {}
  for shape in meshes:
    fresh = jax.tree.map(jnp.array, trained)  # Copies: each run donates its state.
    state = TrainState(jnp.zeros((), jnp.int32), fresh, tx.init(fresh))
    if shape is None:
      jitted, put_batch, run_frozen = jax.jit(step_fn, donate_argnums=0), (lambda b: b), frozen
    else:
      mesh = partitioning.make_mesh(mesh_shape=shape)
      shardings = lambda tree: trainable.unflatten({
          k: partitioning.param_shardings((axes[k], v.shape), mesh) for k, v in trainable.flatten(tree).items()})
      trained_sh = shardings(trained)
      run_frozen = jax.device_put(frozen, shardings(frozen))
      sharded_trained = jax.device_put(fresh, trained_sh)
      opt_sh = partitioning.optimizer_state_shardings(tx.init, sharded_trained, mesh)
      opt_state = jax.device_put(tx.init(fresh), opt_sh)
      replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
      state_sh = TrainState(replicated, trained_sh, opt_sh)
      state = TrainState(jax.device_put(state.step, replicated), sharded_trained, opt_state)
      batch_sh = partitioning.batch_sharding(mesh, B)
      jitted = jax.jit(step_fn, in_shardings=(state_sh, shardings(frozen), batch_sh, replicated),
                       out_shardings=(state_sh, replicated), donate_argnums=0)
      put_batch = lambda b, s=batch_sh: jax.device_put(b, s)
    losses = []
    rng = jax.random.key(1)
    for i, batch in enumerate(data):
      if i == 1:
        started = time.perf_counter()  # Steps after the compiling one.
      state, metrics = jitted(state, run_frozen, put_batch(batch), rng)
      losses.append(float(metrics["loss"]))
    jax.block_until_ready(state)
    key = "single" if shape is None else "x".join(map(str, shape))
    results[key], seconds[key] = losses, (time.perf_counter() - started) / (STEPS - 1)
  print(json.dumps({**results, "seconds_per_step": seconds}))


if __name__ == "__main__":
  meshes = [None] + [tuple(int(x) for x in m.split("x")) for m in sys.argv[1:]]
  main(meshes)
