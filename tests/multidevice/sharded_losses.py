"""Prints the losses of 5 train steps on one device and on ('data', 'model') meshes, for a tiny
BERT with deep prompts and for the tiny T5 1.1 (tests/goldens/t5_tiny) with deep prompts on both
stacks, placed and jitted by the training core's own code (fit.place_state, Partitioner).

Run with XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/test_sharding.py does):
  python tests/multidevice/sharded_losses.py [--models=bert,t5] [--distributed] 8x1 4x2 2x4
prints one JSON line {"bert": {mesh: [losses]}, "t5": {...}, "seconds_per_step": {...}, "per_device_mib": {...}}.
With --distributed it is one of several processes (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)
that together hold the mesh's devices; each feeds only its own rows of every batch; "single" is not run.
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_tuning_jax import trainable
from prompt_tuning_jax.training import partitioning
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.training.steps import make_train_step
from prompt_tuning_jax.training.fit import place_state

GOLDENS = Path(__file__).resolve().parents[1] / "goldens"
CONFIG = BertConfig(vocab_size=130, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=64)
B, T, STEPS = 16, 12, 5


def bert_case():
  """(model, params, step_fn, batch): one batch, repeated, so the loss must fall."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(4, T + 1, B)
  ids = np.where(np.arange(T) < lengths[:, None], rng.integers(1, CONFIG.vocab_size, (B, T)), 0).astype(np.int32)
  batch = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": (ids != 0).astype(np.int32),
           "labels": rng.integers(0, 2, B).astype(np.int32), "task_ids": np.zeros(B, np.int32),
           "weights": np.ones(B, np.float32)}
  model = EncoderModel(EncoderClassifier(config=CONFIG, num_labels=2, prompt=DeepPrompt(length=4, reparam_hidden=32)))
  shapes = {"input_ids": (2, T)}
  params = model.get_initial_variables(jax.random.key(0), shapes)["params"]
  tx = optax.adamw(1e-2)
  return model, params, trainable.DEEP_PROMPT_PATTERNS, tx, make_train_step(model, tx), batch, shapes


def t5_case():
  config, backbone = load_t5(GOLDENS / "t5_tiny")
  model = EncoderDecoderModel(PromptedT5(config, DeepPrompt(length=3)), loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = model.init_params(jax.random.key(0), backbone, shapes)
  rng = np.random.default_rng(1)
  inputs = np.where(np.arange(10) < rng.integers(3, 11, B)[:, None], rng.integers(2, 500, (B, 10)), 0)
  targets = np.where(np.arange(4) < rng.integers(1, 5, B)[:, None], rng.integers(2, 500, (B, 4)), 0)
  batch = {"encoder_input_tokens": inputs.astype(np.int32), "decoder_target_tokens": targets.astype(np.int32),
           "decoder_input_tokens": text_batching.shift_right(targets.astype(np.int32)),
           "decoder_loss_weights": (targets > 0).astype(np.float32)}
  tx = optax.adafactor(0.3, decay_rate=0.8, multiply_by_parameter_scale=False)
  return model, params, (r"prompt/.*",), tx, make_train_step(model, tx), batch, shapes


def run(case, shape):
  """Losses of STEPS steps, seconds per step after the compiling one, MiB of frozen parameters on device 0."""
  model, params, patterns, tx, step_fn, batch = case[:6]
  trained, frozen = trainable.split_params(jax.tree.map(jnp.array, params), patterns)  # Copies: steps donate.
  devices = jax.devices()[:1] if shape is None else None
  partitioner = partitioning.Partitioner(mesh_shape=shape or (1, 1), devices=devices)
  state, frozen, state_sh, frozen_sh = place_state(partitioner, model.param_axes(case[6]), trained, frozen, tx)
  train_step = partitioner.jit_train_step(step_fn, state_sh, frozen_sh, B)
  global_batch, rng, losses = partitioner.global_batch(batch), jax.random.key(1), []
  for i in range(STEPS):
    if i == 1:
      started = time.perf_counter()
    state, metrics = train_step(state, frozen, global_batch, rng)
    losses.append(float(metrics["loss"]))
  jax.block_until_ready(state)
  frozen_mib = sum(s.data.nbytes for x in jax.tree.leaves(frozen) for s in x.addressable_shards
                   if s.device == jax.devices()[0]) / 2 ** 20
  return losses, (time.perf_counter() - started) / (STEPS - 1), frozen_mib


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("meshes", nargs="*")
  parser.add_argument("--models", default="bert,t5")
  parser.add_argument("--distributed", action="store_true")
  args = parser.parse_args()
  meshes = [tuple(int(x) for x in m.split("x")) for m in args.meshes]
  if args.distributed:
    partitioning.initialize_distributed()
  else:
    meshes = [None] + meshes
  cases = {"bert": bert_case, "t5": t5_case}
  out = {"process": jax.process_index(), "seconds_per_step": {}, "per_device_mib": {}}
  for name in args.models.split(","):
    case, out[name] = cases[name](), {}
    for shape in meshes:
      key = "single" if shape is None else "x".join(map(str, shape))
      out[name][key], seconds, mib = run(case, shape)
      out["seconds_per_step"][f"{name}/{key}"], out["per_device_mib"][f"{name}/{key}"] = seconds, mib
  print(json.dumps(out))


if __name__ == "__main__":
  main()
