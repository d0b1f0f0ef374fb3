"""Matrix multiplies for a low-precision activation dtype (ACTIVATION_DTYPE='bfloat16'), shared by BERT and T5.

bfloat16 operands are multiplied with a float32 accumulator and result: that is the form XLA CPU runs on AMX /
AVX512-BF16 (2-4x float32's rate on this project's bench machine; a bfloat16 result takes a slower path), and GPUs
accumulate in float32 anyway. In float32 nothing here changes a single operation.
"""

import jax
import jax.numpy as jnp


def float32_dot_general(*args, **kwargs):
  """lax.dot_general with a float32 result (for nn.Dense(dot_general=...))."""
  return jax.lax.dot_general(*args, **kwargs, preferred_element_type=jnp.float32)


def same_dtype_dot_general(lhs, rhs, *args, **kwargs):
  """lax.dot_general accumulated in float32 and rounded back to the operands' dtype."""
  return jax.lax.dot_general(lhs, rhs, *args, **kwargs, preferred_element_type=jnp.float32).astype(lhs.dtype)


def einsum(spec: str, a: jax.Array, b: jax.Array, dtype) -> jax.Array:
  """jnp.einsum(spec, a, b) in float32; otherwise on `dtype` operands with a float32 result."""
  if jnp.dtype(dtype) == jnp.float32:
    return jnp.einsum(spec, a, b)
  return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)
