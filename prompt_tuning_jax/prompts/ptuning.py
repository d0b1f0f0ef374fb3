"""P-Tuning (Liu et al. 2021, v1): P virtual tokens from a small encoder, interleaved with the text.

`PTuningEncoder` returns the [P, H] virtual-token embeddings (Embedding -> BiLSTM -> MLP,
or Embedding -> MLP); `insert_virtual_tokens` (the combine function) places them inside
the embedded text according to a template.

Template semantics. The text is BERT input `[CLS] a [SEP] b [SEP]` (pair) or `[CLS] a [SEP]`
(single), right-padded (attention_mask 0). A template `(c0, c1)` or `(c0, c1, c2)` with
c0 + c1 + c2 = P puts c0 virtual tokens right after [CLS], c1 right after the first [SEP]
(before b) and c2 right before the last [SEP] (after b):
  pair:   [CLS] V0 a [SEP] V1 b V2 [SEP] pad
  single: [CLS] V0 a [SEP] V1 V2 pad        (b and its [SEP] are empty, so V1 and V2 both
                                             follow the first [SEP], before the padding)
The first [SEP] is the last real token with token type 0; an example is a pair when some
real token has type 1. Virtual tokens get mask 1 and the type of their segment: 0 for V0,
1 for V1 and V2 (they sit in the b segment, empty for single texts). [CLS] stays at index 0.

Positions: virtual tokens are interleaved, so the combined [B, T+P] sequence simply takes
position ids 0..T+P-1 under either position policy ('after_prompt' and 'from_zero' both
behave like 'after_prompt'); the backbone's default position ids give exactly that.
"""

import math
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax import errors
from prompt_tuning_jax.axes import with_axes

POSITION_POLICIES = ("after_prompt", "from_zero")
ENCODERS = ("lstm", "mlp")


class _LstmDirection(nn.Module):
  """One direction of one LSTM layer (torch gate order i, f, g, o; torch's uniform init)."""
  hidden: int
  reverse: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [P, I] -> [P, h]."""
    h = self.hidden
    bound = 1.0 / math.sqrt(h)
    init = lambda rng, shape: jax.random.uniform(rng, shape, jnp.float32, -bound, bound)
    wi = self.param("wi", with_axes(init, "prompt_embed", "prompt_mlp"), (x.shape[-1], 4 * h))
    wh = self.param("wh", with_axes(init, "prompt_embed", "prompt_mlp"), (h, 4 * h))
    bias = self.param("bias", with_axes(init, "prompt_mlp"), (4 * h,))
    gates_in = x @ wi + bias  # the input projection needs no recurrence: do it for all steps at once

    def step(carry, g_in):
      c, hid = carry
      i, f, g, o = jnp.split(g_in + hid @ wh, 4)
      c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      hid = jax.nn.sigmoid(o) * jnp.tanh(c)
      return (c, hid), hid

    zeros = jnp.zeros((h,), gates_in.dtype)
    _, out = jax.lax.scan(step, (zeros, zeros), gates_in, reverse=self.reverse)  # out keeps input order
    return out


class PTuningEncoder(nn.Module):
  """Attributes:
    length: P, number of virtual tokens.
    encoder: 'lstm' (Embedding(P, H) -> 2-layer BiLSTM, H//2 per direction -> Dense(H, H)
      -> ReLU -> Dense(H, H), as in the original) or 'mlp' (Embedding -> the same MLP).
    template: counts of virtual tokens (after [CLS], after the first [SEP], before the
      last [SEP]); must sum to P. See the module docstring.
    position_policy: 'after_prompt' or 'from_zero'; stored only, both give positions 0..T+P-1.
  """
  length: int
  encoder: str = "lstm"
  template: Tuple[int, ...] = (3, 3)
  position_policy: str = "after_prompt"

  @nn.compact
  def __call__(self, word_embeddings: jax.Array) -> jax.Array:
    """word_embeddings: the backbone's table [V, H] (only H is read) -> [P, H]."""
    if self.position_policy not in POSITION_POLICIES:
      raise errors.ConfigError(f"Unknown position_policy {self.position_policy!r}; use one of {POSITION_POLICIES}.")
    if self.encoder not in ENCODERS:
      raise errors.ConfigError(f"Unknown encoder {self.encoder!r}; use one of {ENCODERS}.")
    check_template(self.template, self.length)
    hidden = word_embeddings.shape[-1]
    if self.encoder == "lstm" and hidden % 2:
      raise errors.ConfigError(f"The LSTM encoder needs an even hidden size (H//2 per direction); got H={hidden}.")
    x = self.param("embedding", with_axes(nn.initializers.normal(1.0), "prompt_length", "prompt_embed"),
                   (self.length, hidden))
    if self.encoder == "lstm":
      for layer in range(2):
        x = jnp.concatenate([_LstmDirection(hidden // 2, reverse=r, name=f"lstm_{layer}_{'bwd' if r else 'fwd'}")(x)
                             for r in (False, True)], axis=-1)
    dense = lambda axes, name: nn.Dense(hidden, name=name, kernel_init=with_axes(nn.initializers.lecun_normal(), *axes),
                                        bias_init=with_axes(nn.initializers.zeros, axes[-1]))
    return dense(("prompt_mlp", "prompt_embed"), "mlp_out")(
        nn.relu(dense(("prompt_embed", "prompt_mlp"), "mlp_in")(x)))


def check_template(template: Sequence[int], length: int) -> Tuple[int, int, int]:
  """Validates a template against P and returns it as three counts (c0, c1, c2)."""
  if len(template) not in (2, 3) or any(int(c) < 0 for c in template):
    raise errors.ConfigError(f"template {tuple(template)} must be 2 or 3 non-negative counts.")
  if sum(template) != length:
    raise errors.ConfigError(f"template {tuple(template)} sums to {sum(template)}, but the prompt length is "
                             f"{length}.")
  return tuple(int(c) for c in template) + (0,) * (3 - len(template))


def insert_virtual_tokens(virtual: jax.Array, word_embeds: jax.Array, token_type_ids: jax.Array,
                          attention_mask: jax.Array, template: Sequence[int]
                          ) -> Tuple[jax.Array, jax.Array, jax.Array, int]:
  """virtual [P, H] or [B, P, H]; text [B, T, H], token types and mask [B, T] ->
  (embeds [B, T+P, H], token types [B, T+P], mask [B, T+P], cls_index 0)."""
  b, t = token_type_ids.shape
  if virtual.ndim == 2:
    virtual = jnp.broadcast_to(virtual, (b, *virtual.shape))
  c0, c1, c2 = check_template(template, virtual.shape[1])
  idx = jnp.arange(t)
  real = attention_mask > 0
  n = real.sum(-1, keepdims=True)  # [B, 1] real tokens
  # First [SEP]: last real token of type 0 (no vocabulary id needed); clamped for empty rows.
  sep = jnp.maximum(jnp.where(real & (token_type_ids == 0), idx, -1).max(-1, keepdims=True), 0)
  has_b = (real & (token_type_ids != 0)).any(-1, keepdims=True)
  last = jnp.where(has_b, n - 1, sep + 1)  # index of the last [SEP]; past the text when single
  # Where every text token and virtual token goes: a permutation of 0..T+P-1 per row.
  text_dest = idx + c0 * (idx >= 1) + c1 * (idx > sep) + c2 * (idx >= last)  # [B, T]
  starts = (jnp.ones_like(sep), sep + 1 + c0, last + c0 + c1)  # first output slot of V0, V1, V2
  virt_dest = jnp.concatenate([s + jnp.arange(c) for s, c in zip(starts, (c0, c1, c2))], axis=-1)  # [B, P]
  source = jnp.argsort(jnp.concatenate([text_dest, virt_dest], axis=-1), axis=-1)  # inverse permutation
  gather = lambda x: jnp.take_along_axis(x, source.reshape(source.shape + (1,) * (x.ndim - 2)), axis=1)
  virt_types = jnp.array([0] * c0 + [1] * (c1 + c2), token_type_ids.dtype)
  embeds = gather(jnp.concatenate([word_embeds, virtual.astype(word_embeds.dtype)], axis=1))
  types = gather(jnp.concatenate([token_type_ids, jnp.broadcast_to(virt_types, (b, c0 + c1 + c2))], axis=1))
  mask = gather(jnp.concatenate([attention_mask, jnp.ones((b, c0 + c1 + c2), attention_mask.dtype)], axis=1))
  return embeds, types, mask, 0
