"""Sequence classifier over a frozen BERT-family backbone, with an optional prompt.

Parameters: `backbone/...` (loaded from a checkpoint), `prompt/...` and `head/...`
(randomly initialised). Which of them train is decided by the trainable patterns.
The prompt is any prompt module; `_attach_prompt` picks its combine function.
"""

from typing import Optional, Union

import flax.linen as nn
import jax

from prompt_tuning_jax.models.bert import BertConfig, BertEncoder
from prompt_tuning_jax.partitioning import with_axes
from prompt_tuning_jax.prompts.deep import DeepPrompt, layer_prefixes, resolve_layers
from prompt_tuning_jax.prompts.input import InputPrompt, prepend, prompted_position_ids

POOLINGS = ("cls", "pooler")
Prompt = Union[DeepPrompt, InputPrompt]


class EncoderClassifier(nn.Module):
  """Attributes:
    config: backbone architecture.
    num_labels: C.
    prompt: a DeepPrompt or InputPrompt, or None (fine-tuning, BitFit, linear probe).
    pooling: 'cls' (final state of the real [CLS] token) or 'pooler' (the backbone's
      tanh pooler over it).
    head_dropout: dropout on the pooled state before the head.
  """
  config: BertConfig
  num_labels: int
  prompt: Optional[Prompt] = None
  pooling: str = "cls"
  head_dropout: float = 0.1

  def prompt_length(self) -> int:
    return 0 if self.prompt is None else self.prompt.length

  def max_position(self, text_length: int) -> int:
    """Position ids a text of `text_length` tokens needs (before the config's offset)."""
    if self.prompt is None:
      return text_length
    if self.prompt.position_policy == "after_prompt":
      return self.prompt.length + text_length
    return max(text_length, self.prompt.length if isinstance(self.prompt, InputPrompt) else 0)

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, deterministic: bool = True) -> jax.Array:
    """[B, T] ids, token types, mask -> logits [B, C]."""
    if self.pooling not in POOLINGS:
      raise ValueError(f"Unknown pooling {self.pooling!r}; use one of {POOLINGS}.")
    c = self.config
    backbone = BertEncoder(c, name="backbone")
    b, t = input_ids.shape
    kwargs, cls_index = {}, 0
    if isinstance(self.prompt, DeepPrompt):
      layers = resolve_layers(self.prompt.layers, c.num_hidden_layers)
      prefixes = self.prompt(b, c.num_hidden_layers, c.num_attention_heads, c.head_dim, deterministic=deterministic)
      kwargs["layer_prefixes"] = layer_prefixes(prefixes, layers, c.num_hidden_layers)
      start = self.prompt.length if self.prompt.position_policy == "after_prompt" else 0
      kwargs["position_ids"] = backbone.default_position_ids(b, t, start=start)
    elif isinstance(self.prompt, InputPrompt):
      p = self.prompt.length
      words = backbone.embed_words(input_ids)
      prompt = self.prompt(backbone.word_embedding_table())
      kwargs["inputs_embeds"], token_type_ids, attention_mask = prepend(prompt, words, token_type_ids, attention_mask)
      kwargs["position_ids"] = backbone.position_ids(
          prompted_position_ids(b, p, t, self.prompt.position_policy), self.max_position(t))
      cls_index = p
    elif self.prompt is not None:
      raise TypeError(f"EncoderClassifier cannot attach a {type(self.prompt).__name__}.")
    hidden, _ = backbone(input_ids, token_type_ids, attention_mask, deterministic=deterministic, **kwargs)
    features = hidden[:, cls_index]
    if self.pooling == "pooler":
      features = backbone.pool(features)
    features = nn.Dropout(self.head_dropout)(features, deterministic=deterministic)
    return nn.Dense(self.num_labels, name="head",
                    kernel_init=with_axes(nn.initializers.normal(0.02), "embed", "classes"),
                    bias_init=with_axes(nn.initializers.zeros, "classes"))(features)
