"""T5 1.1 with an optional prompt: Prompt Tuning, Prefix Tuning and P-Tuning on an encoder-decoder.

Parameters: `backbone/...` (the T5, t5x names below it, loaded from a checkpoint and frozen)
and `prompt/...` (new). The prompt's kind picks how it enters, through the hooks `T5` owns:

- `InputPrompt` (Lester et al.): the [P, H] prompt is prepended to the embedded encoder
  input by `prompts.input.prepend`. As in the prompt-tuning repo, the prompt positions are
  always visible: the encoder mask gets P ones in front, and the same mask is the encoder
  output mask the decoder's cross-attention reads (so the encoder-decoder mask sees them).
  T5's positions are relative, so the text simply follows the prompt (`position_policy`
  has nothing to choose here).
- `PTuningEncoder` (Liu et al., v1): its [P, H] virtual tokens are prepended the same way.
  T5 inputs have no [CLS]/[SEP] segments to place them between, so the template must be
  (P, 0): all virtual tokens before the text.
- `DeepPrompt` (Li & Liang's Prefix Tuning for generation): key/value prefixes in every
  self-attention of both stacks. One table covers L = Le + Ld layers, the encoder's
  first: `DeepPrompt.layers` indexes that joint stack (e.g. [0, ..., Le - 1] prompts only
  the encoder) and an export stores it as `prompt/prefix` [Le + Ld, 2, P, N, D].
  Cross-attention takes no prefix.
"""

from typing import List, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax.models.t5 import T5, LayerPrefixes, T5Config
from prompt_tuning_jax.prompts.deep import DeepPrompt, layer_prefixes, resolve_layers
from prompt_tuning_jax.prompts.input import InputPrompt, prepend
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder, check_template

Prompt = Union[InputPrompt, PTuningEncoder, DeepPrompt]


class PromptedT5(nn.Module):
  """Attributes:
    config: the T5 architecture.
    prompt: an InputPrompt, PTuningEncoder or DeepPrompt (see the module docstring), or None.
  """
  config: T5Config
  prompt: Optional[Prompt] = None

  def setup(self):
    if self.prompt is not None and not isinstance(self.prompt, (InputPrompt, PTuningEncoder, DeepPrompt)):
      raise TypeError(f"PromptedT5 cannot attach a {type(self.prompt).__name__}.")
    p = self.prompt
    if isinstance(p, PTuningEncoder) and check_template(p.template, p.length)[1:] != (0, 0):
      raise ValueError(f"P-Tuning on T5 prepends its virtual tokens: set the template to ({p.length}, 0), "
                       f"not {tuple(p.template)}.")
    self.backbone = T5(self.config)

  def input_prompt_length(self) -> int:
    """P positions the prompt adds to the encoder input (0 for deep prompts or none)."""
    return self.prompt.length if isinstance(self.prompt, (InputPrompt, PTuningEncoder)) else 0

  def _deep_prefixes(self, batch: int, deterministic: bool) -> Tuple[LayerPrefixes, LayerPrefixes]:
    """(encoder, decoder) per-layer prefixes, each None when there is no deep prompt."""
    if not isinstance(self.prompt, DeepPrompt):
      return None, None
    c = self.config
    total = c.num_encoder_layers + c.num_decoder_layers
    prefixes = self.prompt(batch, total, c.num_heads, c.d_kv, deterministic=deterministic)
    per_layer: List = layer_prefixes(prefixes, resolve_layers(self.prompt.layers, total), total)
    return per_layer[:c.num_encoder_layers], per_layer[c.num_encoder_layers:]

  def encode(self, encoder_input_tokens: jax.Array, deterministic: bool = True) -> Tuple[jax.Array, jax.Array]:
    """[B, T] ids (0 = padding) -> (encoder states [B, P+T, H], encoder mask [B, P+T]).

    Pass the mask on to `decode`: it is what the cross-attention may see.
    """
    mask = encoder_input_tokens > 0
    if self.input_prompt_length():
      embeds, _, mask = prepend(self.prompt(self.backbone.word_embedding_table()),
                                self.backbone.embed_words(encoder_input_tokens), None, mask)
      return self.backbone.encode(None, mask, inputs_embeds=embeds, deterministic=deterministic), mask
    prefixes, _ = self._deep_prefixes(encoder_input_tokens.shape[0], deterministic)
    return self.backbone.encode(encoder_input_tokens, mask, layer_prefixes=prefixes,
                                deterministic=deterministic), mask

  def decoder_prefixes(self, batch: int, deterministic: bool = True) -> LayerPrefixes:
    """Per decoder layer None or (keys, values) [B, P, N, D]: what decoding loops pass to `T5.decode`."""
    return self._deep_prefixes(batch, deterministic)[1]

  def decode(self, encoded, encoder_mask, decoder_input_tokens, decoder_mask=None,
             deterministic: bool = True) -> jax.Array:
    """Teacher-forced decoder pass -> float32 logits [B, T', V]; arguments as `T5.decode`."""
    prefixes = self.decoder_prefixes(decoder_input_tokens.shape[0], deterministic)
    return self.backbone.decode(encoded, encoder_mask, decoder_input_tokens, decoder_mask, layer_prefixes=prefixes,
                                deterministic=deterministic)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_mask=None,
               deterministic: bool = True) -> jax.Array:
    """[B, T] inputs, [B, T'] decoder inputs (targets shifted right), [B, T'] decoder mask
    (t5x: decoder_target_tokens > 0; None = all real) -> logits [B, T', V] (float32)."""
    encoded, mask = self.encode(encoder_input_tokens, deterministic)
    if decoder_mask is not None:
      decoder_mask = jnp.asarray(decoder_mask).astype(bool)
    return self.decode(encoded, mask, decoder_input_tokens, decoder_mask, deterministic)
