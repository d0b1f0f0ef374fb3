"""A bank of K prompts of one kind, chosen per example: mixed-task batches and ensembles.

Members are independent copies of a template prompt (`members_0` ... `members_{K-1}`),
so member k's parameters are exactly those of a single prompt and can be exported
or loaded on their own. One jit-compiled forward pass serves a batch whose examples
use different members.
"""

from typing import Optional, Union

import flax.linen as nn
import jax.numpy as jnp

from prompt_tuning_jax.prompts.deep import DeepPrompt, prefix_dropout
from prompt_tuning_jax.prompts.input import InputPrompt


class PromptBank(nn.Module):
  """Attributes:
    prompt: the template (a DeepPrompt or InputPrompt); members share its settings.
    size: K, the number of members.
  """
  prompt: Union[DeepPrompt, InputPrompt]
  size: int

  def setup(self):
    self.members = [self.prompt.clone(parent=None, name=None) for _ in range(self.size)]

  @property
  def length(self) -> int:
    return self.prompt.length

  @property
  def position_policy(self) -> str:
    return self.prompt.position_policy

  def deep(self, prompt_ids, num_layers: int, num_heads: int, head_dim: int, deterministic: bool = True):
    """prompt_ids [B] -> prefixes [L', 2, B, P, N, D], example b from member prompt_ids[b]."""
    tables = jnp.stack([m.table(num_layers, num_heads, head_dim) for m in self.members])  # [K, L', 2, P, N, D]
    prefixes = jnp.moveaxis(jnp.take(tables, prompt_ids, axis=0), 0, 2)
    return prefix_dropout(self, prefixes, self.prompt.dropout_rate, deterministic)

  def input(self, prompt_ids, word_embeddings):
    """prompt_ids [B], word_embeddings [V, H] -> prompts [B, P, H]."""
    return jnp.take(jnp.stack([m(word_embeddings) for m in self.members]), prompt_ids, axis=0)


def prompt_template(prompt: Optional[nn.Module]) -> Optional[nn.Module]:
  """The single prompt behind `prompt`: a bank's template, else the prompt itself (or None)."""
  return prompt.prompt if isinstance(prompt, PromptBank) else prompt
