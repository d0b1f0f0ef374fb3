"""Matrix multiplies for a low-precision activation dtype (ACTIVATION_DTYPE='bfloat16'), shared by BERT and T5.

bfloat16 operands are multiplied with a float32 accumulator and result: that is the form XLA CPU runs on AMX /
AVX512-BF16 (2-4x float32's rate on this project's bench machine; a bfloat16 result takes a slower path), and GPUs
accumulate in float32 anyway. The backward pass keeps that form: JAX's own transpose of such a multiply pairs the
float32 cotangent with the bfloat16 operand, which XLA runs as a float32 multiply (measured 113 GFLOP/s against
395 forward), so `matmul_einsum` rounds the cotangent to bfloat16 first, as mixed-precision training does.

In float32 nothing here changes a single operation.
"""

import functools
import math
import string

import jax
import jax.numpy as jnp


def _indices(spec: str):
  """'A,B->C' -> ('A', 'B', 'C')."""
  inputs, output = spec.split("->")
  a, b = inputs.split(",")
  return a, b, output


def _matmul(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """jnp.einsum(spec, a, b, preferred_element_type=float32); a batched one as [batch, M, K] x [batch, K, N].

  XLA CPU runs a bfloat16 x bfloat16 = float32 dot only in the layouts its fast libraries take; for some batched
  ones (e.g. 'bqnd,bnqk->bknd', which the attention's backward pass needs) it falls back to a dot that has no such
  kernel and fails. Transposing both operands into the one plain layout first works for every spec. Unbatched
  specs (the dense layers) work as they are, and run faster without the transposes (measured 650 against 465
  GFLOP/s for the MLP's input gradient).
  """
  sa, sb, sc = _indices(spec)
  if any(x not in sb + sc for x in sa) or any(x not in sa + sc for x in sb):
    raise ValueError(f"{spec!r} sums an index out of one operand; only (batched) matrix multiplies are supported.")
  batch = [x for x in sa if x in sb and x in sc]
  if not batch:
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
  contract = [x for x in sa if x in sb and x not in sc]
  free_a, free_b = [x for x in sa if x not in sb], [x for x in sb if x not in sa]
  size = {**dict(zip(sa, a.shape)), **dict(zip(sb, b.shape))}
  numel = lambda axes: math.prod(size[x] for x in axes)
  a = jnp.transpose(a, [sa.index(x) for x in batch + free_a + contract]).reshape(
      numel(batch), numel(free_a), numel(contract))
  b = jnp.transpose(b, [sb.index(x) for x in batch + contract + free_b]).reshape(
      numel(batch), numel(contract), numel(free_b))
  out = jax.lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))), preferred_element_type=jnp.float32)
  order = batch + free_a + free_b
  return jnp.transpose(out.reshape([size[x] for x in order]), [order.index(x) for x in sc])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def matmul_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """jnp.einsum(spec, a, b) accumulated in float32, with a float32 result; its gradients are products of the
  operands' own dtype (the cotangent rounded to it).

  `spec` is 'A,B->C' where every index of A and of B appears in one of the other two (a matrix multiply,
  batched or not), so each operand's gradient is again such an einsum: 'C,B->A' and 'A,C->B'.
  """
  return _matmul(spec, a, b)


def _matmul_einsum_fwd(spec, a, b):
  return matmul_einsum(spec, a, b), (a, b)


def _matmul_einsum_bwd(spec, residuals, g):
  a, b = residuals
  sa, sb, sc = _indices(spec)
  da = _matmul(f"{sc},{sb}->{sa}", g.astype(b.dtype), b)
  db = _matmul(f"{sa},{sc}->{sb}", a, g.astype(a.dtype))
  return da.astype(a.dtype), db.astype(b.dtype)


matmul_einsum.defvjp(_matmul_einsum_fwd, _matmul_einsum_bwd)


def dot_general_spec(lhs_ndim: int, rhs_ndim: int, dimension_numbers) -> str:
  """The einsum spec of lax.dot_general's `dimension_numbers` (output: batch, lhs free, rhs free dims)."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  letters = iter(string.ascii_letters)
  lhs = [next(letters) for _ in range(lhs_ndim)]
  rhs = [None] * rhs_ndim
  for i, j in zip(tuple(lhs_contract) + tuple(lhs_batch), tuple(rhs_contract) + tuple(rhs_batch)):
    rhs[j] = lhs[i]
  rhs = [r if r is not None else next(letters) for r in rhs]
  shared = set(lhs_contract) | set(lhs_batch)
  out = ([lhs[i] for i in lhs_batch] + [x for i, x in enumerate(lhs) if i not in shared]
         + [x for j, x in enumerate(rhs) if j not in set(rhs_contract) | set(rhs_batch)])
  return f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"


def float32_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """lax.dot_general with a float32 result (for nn.Dense(dot_general=...)), low-precision in both passes."""
  del precision, preferred_element_type  # Always float32 accumulation; XLA CPU ignores precision.
  return matmul_einsum(dot_general_spec(lhs.ndim, rhs.ndim, dimension_numbers), lhs, rhs)


def same_dtype_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """lax.dot_general accumulated in float32 and rounded back to the operands' dtype."""
  return float32_dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type).astype(lhs.dtype)


def einsum(spec: str, a: jax.Array, b: jax.Array, dtype) -> jax.Array:
  """jnp.einsum(spec, a, b) in float32; otherwise on `dtype` operands with a float32 result.

  (The attention's batched products transposed into [B*N, M, K] x [B*N, K, N] first, as `_matmul` does, ran
  2x faster alone in float32 but not faster in the whole train step, measured: float32 keeps jnp.einsum.)
  """
  if jnp.dtype(dtype) == jnp.float32:
    return jnp.einsum(spec, a, b)
  return matmul_einsum(spec, a.astype(dtype), b.astype(dtype))
