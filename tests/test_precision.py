"""The fast dropout masks equal flax's / jax's, and bfloat16 activations stay close to float32 (issue 21).

Tolerances of bfloat16 (8 bits of mantissa, relative rounding 2**-9 = 0.2% per stored activation) against
float32 on the same parameters: the packaged MiniLM's states within 5% of their largest magnitude after 2 of its
layers, a deep prompt's gradient pointing the same way (cosine > 0.99); the tiny T5's logits within 5% likewise.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import GOLDENS
from prompt_tuning_jax.dropout import Dropout, keep_mask
from prompt_tuning_jax.models import precision
from prompt_tuning_jax.models.bert import BertEncoder
from prompt_tuning_jax.models.t5 import T5
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from test_bad_input import fails_with_one_line, training_args


@pytest.mark.parametrize("shape", [(3,), (2, 12, 16, 36), (7, 5, 3)])
@pytest.mark.parametrize("keep", [0.9, 0.5, 1e-4])
def test_keep_mask_is_jax_bernoulli(shape, keep):
  for seed in (0, 11):
    key = jax.random.fold_in(jax.random.key(seed), 3)
    np.testing.assert_array_equal(jax.jit(lambda k: keep_mask(k, keep, shape))(key),
                                  jax.random.bernoulli(key, keep, shape))


def test_a_mask_is_a_slice_of_its_full_length_mask():
  key = jax.random.key(4)
  full = keep_mask(key, 0.9, (2, 3, 20, 25))
  np.testing.assert_array_equal(keep_mask(key, 0.9, (2, 3, 8, 13), (2, 3, 20, 25)), full[:, :, :8, :13])
  x = jax.random.normal(jax.random.key(1), (2, 20, 6))
  short = Dropout(0.5, length_axes=(1,)).apply({}, x[:, :7], deterministic=False, padding=13,
                                               rngs={"dropout": key})
  long = Dropout(0.5, length_axes=(1,)).apply({}, x, deterministic=False, rngs={"dropout": key})
  np.testing.assert_array_equal(short, long[:, :7])  # position t keeps or drops alike, however far it is padded


@pytest.mark.parametrize("broadcast_dims", [(), (-2,), (0, 2)])
def test_dropout_is_flax_dropout(broadcast_dims):
  x = jax.random.normal(jax.random.key(3), (4, 6, 10))
  rngs = {"dropout": jax.random.key(5)}
  ours = Dropout(0.3, broadcast_dims).apply({}, x, deterministic=False, rngs=rngs)
  np.testing.assert_array_equal(ours, nn.Dropout(0.3, broadcast_dims).apply({}, x, deterministic=False, rngs=rngs))
  assert 0.15 < float(jnp.mean(ours == 0)) < 0.45  # it does drop
  unsafe = jax.random.key(5, impl="unsafe_rbg")  # other key implementations go through jax.random.bernoulli
  np.testing.assert_array_equal(Dropout(0.3).apply({}, x, deterministic=False, rngs={"dropout": unsafe}),
                                nn.Dropout(0.3).apply({}, x, deterministic=False, rngs={"dropout": unsafe}))


def _relative_error(low, high):
  low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
  return float(np.max(np.abs(low - high)) / np.max(np.abs(high)))


# The dense layers' and the attention's multiplies, with their own gradients' specs ('bqnd,bnqk->bknd' is one XLA
# CPU has no bfloat16 kernel for in einsum's own layout).
MATMUL_SPECS = ["btd,de->bte", "bqnd,bknd->bnqk", "bnqk,bknd->bqnd", "bqnd,bnqk->bknd", "bnqk,bqnd->bknd"]


@pytest.mark.parametrize("spec", MATMUL_SPECS)
def test_bfloat16_matmul_and_its_gradients_stay_in_bfloat16(spec):
  sizes = dict(b=2, t=6, d=8, e=10, q=5, k=7, n=3)
  (sa, sb), sc = spec.split("->")[0].split(","), spec.split("->")[1]
  a = jax.random.normal(jax.random.key(0), [sizes[x] for x in sa])
  b = jax.random.normal(jax.random.key(1), [sizes[x] for x in sb])
  weights = jax.random.normal(jax.random.key(2), [sizes[x] for x in sc])

  def loss(fn):
    return lambda a, b: jnp.sum(fn(a, b) * weights)

  lowp = loss(lambda a, b: precision.einsum(spec, a, b, jnp.bfloat16))
  grads = jax.jit(jax.grad(lowp, argnums=(0, 1)))(a, b)
  exact = jax.grad(loss(lambda a, b: jnp.einsum(spec, a.astype(jnp.bfloat16).astype(jnp.float32),
                                                 b.astype(jnp.bfloat16).astype(jnp.float32))), argnums=(0, 1))(a, b)
  for ours, ref in zip(grads, exact):
    assert ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, ref, atol=0.02 * float(jnp.max(jnp.abs(ref))))
  # Every multiply of the forward and backward pass takes bfloat16 operands: none converts one to float32 first
  # (the slow form JAX's own transpose produces).
  hlo = jax.jit(jax.grad(lowp, argnums=(0, 1))).lower(a, b).as_text()
  operand_types = re.findall(r"dot_general .*: \((tensor<[^>]*>), (tensor<[^>]*>)\)", hlo)
  assert len(operand_types) == 2, hlo  # the two gradients (the forward product is not needed for them)
  assert all(t.endswith("xbf16>") for pair in operand_types for t in pair), operand_types


def test_bfloat16_bert_is_close_to_float32(minilm):
  config, params = minilm
  config = config.replace(num_hidden_layers=2)  # two of its layers: the same code, half the compile time
  ids = jnp.asarray(np.random.default_rng(0).integers(1000, 20000, (2, 12)), jnp.int32)
  mask = jnp.ones((2, 12), jnp.int32).at[1, 9:].set(0)
  prefix = jax.random.normal(jax.random.key(1), (2, 2, 5, config.num_attention_heads, config.head_dim))

  def loss_and_states(prefix, dtype):
    model = BertEncoder(config.replace(dtype=dtype))
    hidden, pooled = model.apply({"params": params}, ids, jnp.zeros_like(ids), mask,
                                 layer_prefixes=[(prefix[0], prefix[1])] * config.num_hidden_layers)
    return jnp.sum(pooled ** 2), (hidden, pooled)

  grad = jax.jit(jax.grad(loss_and_states, has_aux=True), static_argnums=1)
  (g32, (h32, p32)), (g16, (h16, p16)) = grad(prefix, "float32"), grad(prefix, "bfloat16")
  assert h16.dtype == jnp.float32 and p16.dtype == jnp.float32  # the head and loss see float32
  assert _relative_error(h16, h32) < 0.05
  assert _relative_error(p16, p32) < 0.05
  cosine = float(jnp.vdot(g16, g32) / jnp.linalg.norm(g16) / jnp.linalg.norm(g32))
  assert cosine > 0.99
  assert _relative_error(h32, h32 + 0.1 * jnp.abs(h32).max()) >= 0.05  # the bound can fail


def test_bfloat16_t5_is_close_to_float32():
  config, params = load_t5(GOLDENS / "t5_tiny")
  enc = jnp.array([[5, 6, 7, 8, 1, 0], [9, 10, 1, 0, 0, 0]], jnp.int32)
  dec = jnp.array([[0, 11, 12, 1], [0, 13, 1, 0]], jnp.int32)
  run = jax.jit(lambda dtype: T5(config.replace(dtype=dtype)).apply(
      {"params": params}, enc, dec, dec, enable_dropout=False), static_argnums=0)
  logits32, logits16 = run("float32"), run("bfloat16")
  assert logits16.dtype == jnp.float32
  assert _relative_error(logits16, logits32) < 0.05


def test_unknown_activation_dtype_is_one_line(capsys, clean_gin, tmp_path):
  line = fails_with_one_line(capsys, [*training_args(tmp_path / "data", tmp_path / "run"),
                                      "--gin.ACTIVATION_DTYPE='float16'"])
  assert "ACTIVATION_DTYPE='float16'" in line and "bfloat16" in line
