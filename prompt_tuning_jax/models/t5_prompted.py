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

A `PromptBank` of K input or deep prompts gives each row its own prompt: every method takes
`prompt_ids` [B] (keyword; None = member 0), the member row b uses (task id in a mixed-task
batch, member id in an ensemble). Member k alone gives exactly what a PromptedT5 with member
k's prompt gives (its parameters are those of a single prompt).

The methods have t5x's EncoderDecoder signatures: `encode(encoder_input_tokens)` -> states
[B, P+T, H], `decode(encoded, encoder_input_tokens, decoder_input_tokens,
decoder_target_tokens)` and `__call__(encoder_input_tokens, decoder_input_tokens,
decoder_target_tokens)` -> logits, with `enable_dropout` and, for cached decoding, `decode` and
`max_decode_length` (see `t5.py`). The encoder mask is rebuilt from the tokens wherever it is
needed (`encoder_mask`: P ones in front for input prompts). `decoding.py` decodes with it.
"""

from typing import List, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax import errors
from prompt_tuning_jax.models.t5 import T5, LayerPrefixes, T5Config, check_no_packing
from prompt_tuning_jax.prompts.bank import PromptBank, prompt_template
from prompt_tuning_jax.prompts.deep import DeepPrompt, layer_prefixes, resolve_layers
from prompt_tuning_jax.prompts.input import InputPrompt, prepend
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder, check_template

Prompt = Union[InputPrompt, PTuningEncoder, DeepPrompt, PromptBank]


class PromptedT5(nn.Module):
  """Attributes:
    config: the T5 architecture.
    prompt: an InputPrompt, PTuningEncoder or DeepPrompt (see the module docstring), a PromptBank of
      input or deep prompts (one per row by `prompt_ids`), or None.
  """
  config: T5Config
  prompt: Optional[Prompt] = None

  def setup(self):
    p = prompt_template(self.prompt)
    if p is not None and not isinstance(p, (InputPrompt, PTuningEncoder, DeepPrompt)):
      raise TypeError(f"PromptedT5 cannot attach a {type(p).__name__}.")
    if isinstance(self.prompt, PromptBank) and isinstance(p, PTuningEncoder):
      raise errors.ConfigError("a bank of prompts (ENSEMBLE_SIZE > 1 or MULTITASK_PROMPT='per_task') needs input or "
                               "deep prompts, not P-Tuning; use gin/models/t5_1_1_*_prompt.gin or a deep prompt.")
    if isinstance(p, PTuningEncoder) and check_template(p.template, p.length)[1:] != (0, 0):
      raise errors.ConfigError(f"P-Tuning on T5 prepends its virtual tokens: set the template to ({p.length}, 0), "
                               f"not {tuple(p.template)}.")
    self.backbone = T5(self.config)

  def input_prompt_length(self) -> int:
    """P positions the prompt adds to the encoder input (0 for deep prompts or none)."""
    p = prompt_template(self.prompt)
    return p.length if isinstance(p, (InputPrompt, PTuningEncoder)) else 0

  def _bank_ids(self, batch: int, prompt_ids) -> Optional[jax.Array]:
    """[B] member ids for a bank (None given: member 0), None without a bank."""
    if not isinstance(self.prompt, PromptBank):
      return None
    return jnp.zeros((batch,), jnp.int32) if prompt_ids is None else jnp.asarray(prompt_ids, jnp.int32)

  def _deep_prefixes(self, batch: int, enable_dropout: bool, prompt_ids=None) -> Tuple[LayerPrefixes, LayerPrefixes]:
    """(encoder, decoder) per-layer prefixes, each None when there is no deep prompt."""
    template = prompt_template(self.prompt)
    if not isinstance(template, DeepPrompt):
      return None, None
    c = self.config
    total = c.num_encoder_layers + c.num_decoder_layers
    ids, shape = self._bank_ids(batch, prompt_ids), (total, c.num_heads, c.d_kv)
    prefixes = (self.prompt(batch, *shape, deterministic=not enable_dropout) if ids is None else
                self.prompt.deep(ids, *shape, deterministic=not enable_dropout))
    per_layer: List = layer_prefixes(prefixes, resolve_layers(template.layers, total), total)
    return per_layer[:c.num_encoder_layers], per_layer[c.num_encoder_layers:]

  def encoder_mask(self, encoder_input_tokens: jax.Array) -> jax.Array:
    """[B, T] ids -> [B, P+T] bool: what the encoder and the cross-attention see (prompt positions always)."""
    mask = encoder_input_tokens > 0
    p = self.input_prompt_length()
    return jnp.concatenate([jnp.ones((mask.shape[0], p), bool), mask], axis=1) if p else mask

  def encode(self, encoder_input_tokens: jax.Array, encoder_segment_ids=None, encoder_positions=None, *,
             enable_dropout: bool = True, prompt_ids=None) -> jax.Array:
    """[B, T] ids (0 = padding), prompt_ids [B] (a bank's members) -> encoder states [B, P+T, H]
    (P = `input_prompt_length()`).

    Segment ids and positions (packing) are not supported. The states of padded positions
    are meaningless; `decode` masks them again from `encoder_input_tokens`.
    """
    check_no_packing(encoder_segment_ids=encoder_segment_ids, encoder_positions=encoder_positions)
    mask = self.encoder_mask(encoder_input_tokens)
    if self.input_prompt_length():
      table, ids = self.backbone.word_embedding_table(), self._bank_ids(encoder_input_tokens.shape[0], prompt_ids)
      prompt = self.prompt(table) if ids is None else self.prompt.input(ids, table)
      embeds, _, _ = prepend(prompt, self.backbone.embed_words(encoder_input_tokens), None, encoder_input_tokens > 0)
      return self.backbone.encode(None, enable_dropout=enable_dropout, encoder_mask=mask, inputs_embeds=embeds)
    prefixes, _ = self._deep_prefixes(encoder_input_tokens.shape[0], enable_dropout, prompt_ids)
    return self.backbone.encode(encoder_input_tokens, enable_dropout=enable_dropout, encoder_mask=mask,
                                layer_prefixes=prefixes)

  def decoder_prefixes(self, batch: int, *, enable_dropout: bool = True, prompt_ids=None) -> LayerPrefixes:
    """Per decoder layer None or (keys, values) [B, P, N, D]: what decoding loops pass to `T5.decode`."""
    return self._deep_prefixes(batch, enable_dropout, prompt_ids)[1]

  def decode(self, encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
             encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None, *,
             enable_dropout: bool = True, decode: bool = False, max_decode_length: Optional[int] = None,
             prompt_ids=None) -> jax.Array:
    """Decoder pass -> float32 logits [B, T', V], as `T5.decode`: `encoded` [B, P+T, H] from `encode`,
    `encoder_input_tokens` [B, T] (the mask is rebuilt from them, prompt positions visible),
    decoder inputs and targets [B, T'] ([B, 1] per cached step with `decode`; targets ignored there)."""
    check_no_packing(encoder_segment_ids=encoder_segment_ids, decoder_segment_ids=decoder_segment_ids,
                     decoder_positions=decoder_positions)
    prefixes = self.decoder_prefixes(decoder_input_tokens.shape[0], enable_dropout=enable_dropout,
                                     prompt_ids=prompt_ids)
    return self.backbone.decode(encoded, None, decoder_input_tokens, decoder_target_tokens,
                                enable_dropout=enable_dropout, decode=decode, max_decode_length=max_decode_length,
                                encoder_mask=self.encoder_mask(encoder_input_tokens), layer_prefixes=prefixes)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens, encoder_segment_ids=None,
               decoder_segment_ids=None, encoder_positions=None, decoder_positions=None, *,
               enable_dropout: bool = True, decode: bool = False,
               max_decode_length: Optional[int] = None, prompt_ids=None) -> jax.Array:
    """[B, T] inputs, [B, T'] decoder inputs (targets shifted right) and targets (positions > 0
    are real) -> logits [B, T', V] (float32). With `decode` the decoder runs cached (`T5.decode`)."""
    check_no_packing(encoder_segment_ids=encoder_segment_ids, decoder_segment_ids=decoder_segment_ids,
                     encoder_positions=encoder_positions, decoder_positions=decoder_positions)
    encoded = self.encode(encoder_input_tokens, enable_dropout=enable_dropout, prompt_ids=prompt_ids)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       enable_dropout=enable_dropout, decode=decode, max_decode_length=max_decode_length,
                       prompt_ids=prompt_ids)
