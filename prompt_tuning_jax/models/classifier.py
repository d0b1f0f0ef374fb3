"""Encoder model over a frozen BERT-family backbone, with an optional prompt and one task head.

Parameters: `backbone/...` (loaded from a checkpoint), `prompt/...` and `head/...`
(randomly initialised). Which of them train is decided by the trainable patterns.
The prompt's kind picks its combine function: deep prompts enter attention as prefixes,
input prompts are prepended, P-Tuning virtual tokens are placed by a template.
The head kind picks what is read out: the [CLS] state ('sequence': classification, and
multiple choice when the inputs are [B, K, T]), every text token ('token': NER, SRL) or
start/end scores per text token ('span': extractive QA).
"""

from typing import Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax import errors
from prompt_tuning_jax.models.bert import BertConfig, BertEncoder, check_pooler
from prompt_tuning_jax.models.heads import SequenceClassificationHead, SpanExtractionHead, TokenClassificationHead
from prompt_tuning_jax.prompts.bank import PromptBank, prompt_template
from prompt_tuning_jax.prompts.deep import DeepPrompt, layer_prefixes, resolve_layers
from prompt_tuning_jax.prompts.input import InputPrompt, prepend, prompted_position_ids
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder, insert_virtual_tokens

POOLINGS = ("cls", "pooler", "first_token_pooler")
HEAD_KINDS = ("sequence", "token", "span")
Prompt = Union[DeepPrompt, InputPrompt, PTuningEncoder, PromptBank]


class EncoderClassifier(nn.Module):
  """Attributes:
    config: backbone architecture.
    num_labels: C, the head's outputs per [CLS] or token (1 for a multiple-choice task alone; unused by span heads).
    prompt: a DeepPrompt, InputPrompt, PTuningEncoder or a PromptBank of the first two,
      or None (fine-tuning, BitFit, linear probe).
    pooling: 'cls' (final state of the real [CLS] token), 'pooler' (the backbone's
      tanh pooler over it) or 'first_token_pooler' (the pooler over position 0 whatever
      sits there: with an input prompt its first virtual token, as peft's SEQ_CLS prompt
      tuning classifies; with other prompts the same as 'pooler').
    head_dropout: dropout on the pooled state before the head.
    num_heads: K > 1 gives K heads (kernel [K, H, C]); example b uses head task_ids[b]
      (multi-task: one head per task; ensembles: one per member). Span heads are never banked.
    head_kind: 'sequence', 'token' or 'span' (HEAD_KINDS); the trainer sets it from the task family.
  """
  config: BertConfig
  num_labels: int
  prompt: Optional[Prompt] = None
  pooling: str = "cls"
  head_dropout: float = 0.1
  num_heads: int = 1
  head_kind: str = "sequence"

  def prompt_length(self) -> int:
    return 0 if self.prompt is None else self.prompt.length

  def sequence_length(self, text_length: int) -> int:
    """The length of the sequence the backbone runs over for a text of `text_length` tokens (with an input
    prompt's or P-Tuning's virtual tokens)."""
    if self.prompt is None:
      return text_length
    template = prompt_template(self.prompt)
    return text_length + (template.length if isinstance(template, (InputPrompt, PTuningEncoder)) else 0)

  def max_position(self, text_length: int) -> int:
    """Position ids a text of `text_length` tokens needs (before the config's offset)."""
    if self.prompt is None:
      return text_length
    template = prompt_template(self.prompt)
    if isinstance(template, PTuningEncoder) or template.position_policy == "after_prompt":
      return template.length + text_length
    return max(text_length, template.length if isinstance(template, InputPrompt) else 0)

  @nn.compact
  def __call__(self, input_ids, token_type_ids, attention_mask, deterministic: bool = True,
               task_ids=None) -> jax.Array:
    """ids, token types and mask [B, T] ([B, K, T]: K choices each), task_ids [B] (bank member and head) ->
    'sequence' logits [B, C] ([B, K] for choices), 'token' logits [B, T, C] or 'span' logits [B, T, 2]."""
    if self.pooling not in POOLINGS:
      raise errors.ConfigError(f"Unknown pooling {self.pooling!r}; use one of {POOLINGS}.")
    if self.head_kind not in HEAD_KINDS:
      raise errors.ConfigError(f"Unknown head_kind {self.head_kind!r}; use one of {HEAD_KINDS}.")
    c = self.config
    if self.pooling != "cls":
      check_pooler(c)
    backbone = BertEncoder(c, name="backbone")
    if task_ids is None:
      task_ids = jnp.zeros((input_ids.shape[0],), jnp.int32)
    num_choices = input_ids.shape[1] if input_ids.ndim == 3 else None
    if num_choices is not None:  # Every (context, choice) pair is one sequence; choices of an example adjacent.
      input_ids, token_type_ids, attention_mask = (x.reshape(-1, x.shape[-1]) for x in
                                                   (input_ids, token_type_ids, attention_mask))
      task_ids = jnp.repeat(task_ids, num_choices)
    b, t = input_ids.shape
    template, bank = prompt_template(self.prompt), isinstance(self.prompt, PromptBank)
    kwargs, cls_index = {}, 0
    if isinstance(template, DeepPrompt):
      layers = resolve_layers(template.layers, c.num_hidden_layers)
      shape = (c.num_hidden_layers, c.num_attention_heads, c.head_dim)
      prefixes = (self.prompt.deep(task_ids, *shape, deterministic=deterministic) if bank else
                  self.prompt(b, *shape, deterministic=deterministic))
      kwargs["layer_prefixes"] = layer_prefixes(prefixes, layers, c.num_hidden_layers)
      start = template.length if template.position_policy == "after_prompt" else 0
      kwargs["position_ids"] = backbone.default_position_ids(b, t, start=start)
    elif isinstance(template, InputPrompt):
      p = template.length
      words = backbone.embed_words(input_ids)
      table = backbone.word_embedding_table()
      prompt = self.prompt.input(task_ids, table) if bank else self.prompt(table)
      kwargs["inputs_embeds"], token_type_ids, attention_mask = prepend(prompt, words, token_type_ids, attention_mask)
      kwargs["position_ids"] = backbone.position_ids(
          prompted_position_ids(b, p, t, template.position_policy), self.max_position(t))
      cls_index = p
    elif isinstance(template, PTuningEncoder):  # Virtual tokens interleaved with the text by the template.
      if self.head_kind != "sequence":
        raise errors.ConfigError(f"P-Tuning virtual tokens sit between text tokens, so a {self.head_kind!r} head "
                                 "cannot line its outputs up with the text; use a deep or input prompt for token and "
                                 "span tasks.")
      virtual = self.prompt(backbone.word_embedding_table())
      kwargs["inputs_embeds"], token_type_ids, attention_mask, cls_index = insert_virtual_tokens(
          virtual, backbone.embed_words(input_ids), token_type_ids, attention_mask, self.prompt.template)
      kwargs["position_ids"] = backbone.default_position_ids(b, t + self.prompt.length)
    elif self.prompt is not None:
      raise TypeError(f"EncoderClassifier cannot attach a {type(self.prompt).__name__}.")
    hidden, _ = backbone(input_ids, token_type_ids, attention_mask, deterministic=deterministic, **kwargs)
    heads = None if self.num_heads == 1 else self.num_heads
    if self.head_kind == "token":  # An input prompt's P states come first: drop them so outputs align with the text.
      return TokenClassificationHead(self.num_labels, self.head_dropout, size=heads, name="head")(
          hidden[:, cls_index:], deterministic, task_ids=task_ids)
    if self.head_kind == "span":
      return SpanExtractionHead(self.head_dropout, name="head")(hidden[:, cls_index:], deterministic)
    head = SequenceClassificationHead(self.num_labels, self.head_dropout, size=heads, name="head")
    if self.pooling == "first_token_pooler":
      cls_index = 0
    return head(hidden, cls_index, deterministic, pooler=None if self.pooling == "cls" else backbone.pool,
                task_ids=task_ids, num_choices=num_choices)
