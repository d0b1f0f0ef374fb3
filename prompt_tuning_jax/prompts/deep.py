"""Deep prompts (P-Tuning v2): trainable key/value prefixes for every layer.

`DeepPrompt` returns the prefixes; `layer_prefixes` turns them into the per-layer
(keys, values) that `BertEncoder` concatenates inside each self-attention.
"""

import re
from typing import List, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax import errors
from prompt_tuning_jax.axes import with_axes
from prompt_tuning_jax.dropout import keep_mask

POSITION_POLICIES = ("from_zero", "after_prompt")


class DeepPrompt(nn.Module):
  """P key and P value vectors per layer and head.

  Attributes:
    length: P, prefix length.
    reparam_hidden: None for a direct table `prefix` [L, 2, P, N, D]; otherwise the
      width of the MLP reparameterization Embedding(P, H) -> Dense(H, hidden) -> tanh
      -> Dense(hidden, 2*L*H) (THUDM's `prefix_projection`).
    dropout_rate: dropout on the prefix (the backbone's hidden dropout in THUDM).
    init_stddev: stddev of the normal init of the table / embedding (torch Embedding: 1).
    position_policy: 'from_zero' keeps real tokens at positions 0..T-1; 'after_prompt'
      starts them at P, as the original P-tuning v2 code does.
    layers: which layers get prompts: None (all), a list of layer indices, or 'top k' /
      'bottom k'. The table then has L' = len(layers) rows; other layers are unchanged.
  """
  length: int
  reparam_hidden: Optional[int] = None
  dropout_rate: float = 0.1
  init_stddev: float = 1.0
  position_policy: str = "from_zero"
  layers: Union[None, str, Sequence[int]] = None

  @nn.compact
  def table(self, num_layers: int, num_heads: int, head_dim: int) -> jax.Array:
    """The deterministic prefix table [L', 2, P, N, D] (the reparameterization applied)."""
    num_layers = len(resolve_layers(self.layers, num_layers))
    p, hidden = self.length, num_heads * head_dim
    init = nn.initializers.normal(self.init_stddev)
    if self.reparam_hidden is None:
      return self.param("prefix", with_axes(init, "prompt_layers", "prompt_kv", "prompt_length", "prompt_heads", "prompt_head_dim"),
                        (num_layers, 2, p, num_heads, head_dim))
    embedding = self.param("embedding", with_axes(init, "prompt_length", "prompt_embed"), (p, hidden))
    dense = lambda features, axes, name: nn.Dense(
        features, name=name,
        kernel_init=with_axes(nn.initializers.lecun_normal(), *axes),
        bias_init=with_axes(nn.initializers.zeros, axes[-1]))
    h = jnp.tanh(dense(self.reparam_hidden, ("prompt_embed", "prompt_mlp"), "reparam_in")(embedding))
    flat = dense(2 * num_layers * hidden, ("prompt_mlp", "prompt_embed"), "reparam_out")(h)  # [P, 2*L*H]
    return flat.reshape(p, num_layers, 2, num_heads, head_dim).transpose(1, 2, 0, 3, 4)

  def __call__(self, batch_size: int, num_layers: int, num_heads: int, head_dim: int,
               deterministic: bool = True) -> jax.Array:
    """Returns prefixes [L', 2, B, P, N, D] with per-example dropout."""
    if self.position_policy not in POSITION_POLICIES:
      raise errors.ConfigError(f"Unknown position_policy {self.position_policy!r}; use one of {POSITION_POLICIES}.")
    table = self.table(num_layers, num_heads, head_dim)
    l, _, p, n, d = table.shape
    prefixes = jnp.broadcast_to(table[:, :, None], (l, 2, batch_size, p, n, d))
    return prefix_dropout(self, prefixes, self.dropout_rate, deterministic)


def prefix_dropout(module: nn.Module, prefixes: jax.Array, rate: float, deterministic: bool) -> jax.Array:
  """Dropout with an independent mask per example (the prefixes are [L', 2, B, P, N, D])."""
  if deterministic or rate == 0.0:
    return prefixes
  keep = keep_mask(module.make_rng("dropout"), 1.0 - rate, prefixes.shape)  # jax.random.bernoulli's mask, faster
  return jnp.where(keep, prefixes / (1.0 - rate), 0.0)


def resolve_layers(spec: Union[None, str, Sequence[int]], num_layers: int) -> Tuple[int, ...]:
  """None -> all layers; 'top k' -> the last k; 'bottom k' -> the first k; a list -> itself. No layer ('top 0',
  []) is a valid module (the plain backbone); the trainers refuse it (training/validation.py check_prompt)."""
  if spec is None:
    return tuple(range(num_layers))
  m = re.fullmatch(r"\s*(top|bottom)\s+(\d+)\s*", spec) if isinstance(spec, str) else None
  if m and int(m.group(2)) <= num_layers:
    k = int(m.group(2))
    return tuple(range(num_layers - k, num_layers)) if m.group(1) == "top" else tuple(range(k))
  if isinstance(spec, (list, tuple)) and all(isinstance(i, int) and 0 <= i < num_layers for i in spec):
    return tuple(sorted(set(spec)))
  raise errors.ConfigError(f"PROMPT_LAYERS={spec!r} (DeepPrompt.layers) is not a set of layers of 0..{num_layers - 1}; "
                           f"use None (all {num_layers}), 'top k' or 'bottom k' with 1 <= k <= {num_layers}, or a "
                           f"non-empty list of layer indices 0..{num_layers - 1}.")


def layer_prefixes(prefixes: jax.Array, layers: Sequence[int],
                   num_layers: int) -> List[Optional[Tuple[jax.Array, jax.Array]]]:
  """[L', 2, B, P, N, D] for `layers` -> per backbone layer None or (keys, values) [B, P, N, D]."""
  out = [None] * num_layers
  for row, layer in enumerate(layers):
    out[layer] = (prefixes[row, 0], prefixes[row, 1])
  return out


def collapse_reparameterization(prompt: DeepPrompt, prompt_params, num_layers: int, num_heads: int,
                                head_dim: int) -> jax.Array:
  """The table [L, 2, P, N, D] a trained prompt produces: what inference needs."""
  return prompt.apply({"params": prompt_params}, num_layers, num_heads, head_dim, method=DeepPrompt.table)
