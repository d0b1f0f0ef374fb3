"""Dropout with the masks of `flax.linen.Dropout`, drawn several times faster on CPU.

jax draws threefry bits on CPU through a rolled loop (five XLA while-loop iterations, each a pass over the whole
[B, N, T, K] counter arrays in memory); on the attention probabilities that was a quarter of a P-Tuning v2 train
step (scripts/profile_step.py). `keep_mask` computes the same Threefry-2x32 hash of the same counters, unrolled, so
XLA fuses it into one loop with the compare (and often with the select that applies it): the masks are bit for bit
those of `jax.random.bernoulli(key, keep_prob, shape)` (tests/test_precision.py). Keys of another implementation
(USE_HARDWARE_RNG's 'unsafe_rbg') and a non-partitionable threefry config go through `jax.random.bernoulli` itself.

Masks that do not depend on padding: given a `canonical_shape` (the shape with every sequence axis at its full
length), element (i0, i1, ...) hashes its index in that canonical array, so position t
of a row draws the same bit whether the batch is padded to 16 or to 128 (the mask is a slice of the canonical
one). A sweep pads every member's batch to the longest member's (training/sweep.py); this is what keeps each
member equal to its run alone. With canonical_shape = shape it is the plain mask above. The BERT-family encoder
draws its hidden and attention masks this way, over BertConfig.dropout_length (the run's longest sequence); T5's and the per-token heads'
masks still follow the padded shape (no sweep pads those), and the other heads' and the prompts' have no padded
axis.
"""

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
  return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array):
  """Threefry-2x32 with 20 rounds (Salmon et al. 2011), unrolled; key words k1, k2 (scalars), counters x0, x1."""
  ks = (k1, k2, k1 ^ k2 ^ _PARITY)
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = _rotate_left(x1, r) ^ x0
    x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _fast_path(key: jax.Array, size: int) -> bool:
  if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape:
    return False
  return ("threefry2x32" in str(jax.random.key_impl(key)) and jax.config.jax_threefry_partitionable
          and size < 2 ** 32)


def _flat_index(shape: Sequence[int], canonical_shape: Sequence[int]) -> jax.Array:
  """uint32 [shape]: each element's flat (row-major) index in an array of `canonical_shape` >= shape."""
  if tuple(shape) == tuple(canonical_shape):
    return jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  index, stride = jnp.zeros(shape, jnp.uint32), 1
  for axis in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
    stride *= canonical_shape[axis]
  return index


def keep_mask(key: jax.Array, keep_prob: float, shape: Sequence[int],
              canonical_shape: Optional[Sequence[int]] = None) -> jax.Array:
  """Bool [shape]: True with probability `keep_prob`, equal to jax.random.bernoulli(key, keep_prob, shape);
  with `canonical_shape` (>= shape on every axis), equal to that of canonical_shape sliced to `shape`."""
  shape = tuple(int(d) for d in shape)
  canonical = shape if canonical_shape is None else tuple(max(int(c), s) for c, s in zip(canonical_shape, shape))
  size = math.prod(canonical)
  if not _fast_path(key, size):
    return jax.random.bernoulli(key, keep_prob, shape)
  k1, k2 = jax.random.key_data(key)
  # jax's partitionable bits: element i hashes the counter pair (i >> 32, i & 0xffffffff) = (0, i) and keeps the
  # xor of the two output words.
  counts = _flat_index(shape, canonical)
  y0, y1 = threefry2x32(k1, k2, jnp.zeros_like(counts), counts)
  bits = y0 ^ y1
  # jax.random.uniform keeps the top 23 bits m as the float m / 2**23, and bernoulli keeps it when that is below
  # float32(keep_prob): m < ceil(p * 2**23), i.e. bits < ceil(p * 2**23) * 2**9, one integer compare.
  threshold = math.ceil(float(np.float32(keep_prob)) * 2 ** 23) * 2 ** 9
  if threshold >= 2 ** 32:
    return jnp.ones(shape, bool)
  return bits < np.uint32(threshold)


def dropout(inputs: jax.Array, rate: float, key: jax.Array, broadcast_dims: Sequence[int] = (),
            length_axes: Sequence[int] = (), padding: int = 0) -> jax.Array:
  """inputs / (1 - rate) where the mask keeps them, else 0 (flax's nn.Dropout numerics).

  `length_axes`: sequence axes, each `padding` positions short of its full length; their masks are drawn as
  slices of the full-length mask (keep_mask's canonical_shape), the same however the batch was padded.
  """
  if rate == 1.0:
    return jnp.zeros_like(inputs)
  keep_prob = 1.0 - rate
  broadcast = [d % inputs.ndim for d in broadcast_dims]
  shape = [1 if i in broadcast else s for i, s in enumerate(inputs.shape)]
  lengths = [d % inputs.ndim for d in length_axes]
  canonical = [s + padding if i in lengths and i not in broadcast else s for i, s in enumerate(shape)]
  mask = jnp.broadcast_to(keep_mask(key, keep_prob, shape, canonical), inputs.shape)
  return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))


class Dropout(nn.Module):
  """A drop-in for `flax.linen.Dropout` (same rng stream 'dropout', same masks), faster on CPU.

  With `length_axes` and a call's `padding` > 0, the masks along those axes do not depend on how far the batch
  was padded (`dropout`)."""
  rate: float
  broadcast_dims: Sequence[int] = ()
  length_axes: Sequence[int] = ()

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool, padding: int = 0) -> jax.Array:
    if self.rate == 0.0 or deterministic:
      return inputs
    return dropout(inputs, self.rate, self.make_rng("dropout"), self.broadcast_dims, self.length_axes, padding)
