"""Sequence classifier over a frozen BERT-family backbone, with an optional deep prompt.

Parameters: `backbone/...` (frozen, loaded from a checkpoint), `prompt/...` and
`head/...` (trained, randomly initialised).
"""

from typing import Optional

import flax.linen as nn
import jax

from prompt_tuning_jax.models.bert import BertConfig, BertEncoder
from prompt_tuning_jax.partitioning import with_axes
from prompt_tuning_jax.prompts.deep import DeepPrompt, layer_prefixes

POOLINGS = ("cls", "pooler")


class EncoderClassifier(nn.Module):
  """Attributes:
    config: backbone architecture.
    num_labels: C.
    prompt: a DeepPrompt, or None for no prompt (fine-tuning, BitFit, linear probe).
    pooling: 'cls' (final [CLS] state) or 'pooler' (the backbone's tanh pooler).
    head_dropout: dropout on the pooled state before the head.
  """
  config: BertConfig
  num_labels: int
  prompt: Optional[DeepPrompt] = None
  pooling: str = "cls"
  head_dropout: float = 0.1

  def prompt_length(self) -> int:
    return 0 if self.prompt is None else self.prompt.length

  def first_position(self) -> int:
    """Position id of the first real token (before the config's own offset)."""
    if self.prompt is not None and self.prompt.position_policy == "after_prompt":
      return self.prompt.length
    return 0

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, deterministic: bool = True) -> jax.Array:
    """[B, T] ids, token types, mask -> logits [B, C]."""
    if self.pooling not in POOLINGS:
      raise ValueError(f"Unknown pooling {self.pooling!r}; use one of {POOLINGS}.")
    c = self.config
    backbone = BertEncoder(c, name="backbone")
    b, t = input_ids.shape
    prefixes = None
    if self.prompt is not None:
      prefixes = layer_prefixes(
          self.prompt(b, c.num_hidden_layers, c.num_attention_heads, c.head_dim, deterministic=deterministic))
    hidden, pooled = backbone(
        input_ids, token_type_ids, attention_mask,
        position_ids=backbone.default_position_ids(b, t, start=self.first_position()),
        layer_prefixes=prefixes, deterministic=deterministic)
    features = pooled if self.pooling == "pooler" else hidden[:, 0]
    features = nn.Dropout(self.head_dropout)(features, deterministic=deterministic)
    return nn.Dense(self.num_labels, name="head",
                    kernel_init=with_axes(nn.initializers.normal(0.02), "embed", "classes"),
                    bias_init=with_axes(nn.initializers.zeros, "classes"))(features)
