"""Input prompts (Lester et al. 2021): P trainable vectors prepended to the word embeddings.

`InputPrompt` returns the [P, H] prompt; `prepend` (the combine function) puts it
in front of the embedded text and extends the token types and the mask.
"""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax import errors
from prompt_tuning_jax.axes import with_axes
from prompt_tuning_jax.prompts.initializers import PromptInit, uniform

POSITION_POLICIES = ("after_prompt", "from_zero")


class InputPrompt(nn.Module):
  """Attributes:
    length: P.
    initializer: fn(rng, [P, H], word_embeddings [V, H]) -> [P, H] (prompts/initializers.py).
    position_policy: 'after_prompt' (peft; the prompt takes positions 0..P-1 and the
      text P..P+T-1) or 'from_zero' (the text keeps 0..T-1 as without a prompt, and the
      prompt also takes 0..P-1).
  """
  length: int
  initializer: PromptInit = uniform()
  position_policy: str = "after_prompt"

  @nn.compact
  def __call__(self, word_embeddings: jax.Array) -> jax.Array:
    """word_embeddings: the backbone's table [V, H] (for vocabulary-based inits) -> [P, H]."""
    if self.position_policy not in POSITION_POLICIES:
      raise errors.ConfigError(f"Unknown position_policy {self.position_policy!r}; use one of {POSITION_POLICIES}.")
    init = lambda rng, shape: self.initializer(rng, shape, jax.lax.stop_gradient(word_embeddings))
    return self.param("prompt", with_axes(init, "prompt_length", "prompt_embed"),
                      (self.length, word_embeddings.shape[-1]))


def prepend(prompt: jax.Array, word_embeds: jax.Array, token_type_ids: Optional[jax.Array],
            attention_mask: jax.Array) -> Tuple[jax.Array, Optional[jax.Array], jax.Array]:
  """prompt [P, H] or [B, P, H]; text [B, T, H] -> embeds [B, P+T, H], token types
  (0 on the prompt; None when given None, as for T5, which has none) and mask (1 on the
  prompt: prompt positions are always visible) [B, P+T]."""
  b = word_embeds.shape[0]
  if prompt.ndim == 2:
    prompt = jnp.broadcast_to(prompt, (b, *prompt.shape))
  p = prompt.shape[1]
  embeds = jnp.concatenate([prompt.astype(word_embeds.dtype), word_embeds], axis=1)
  types = (None if token_type_ids is None else
           jnp.concatenate([jnp.zeros((b, p), token_type_ids.dtype), token_type_ids], axis=1))
  mask = jnp.concatenate([jnp.ones((b, p), attention_mask.dtype), attention_mask], axis=1)
  return embeds, types, mask


def prompted_position_ids(batch: int, prompt_length: int, text_length: int, policy: str) -> jax.Array:
  """[B, P+T] position ids (before the backbone's own offset) for a prepended prompt."""
  text_start = prompt_length if policy == "after_prompt" else 0
  ids = jnp.concatenate([jnp.arange(prompt_length), jnp.arange(text_length) + text_start]).astype(jnp.int32)
  return jnp.broadcast_to(ids, (batch, prompt_length + text_length))
