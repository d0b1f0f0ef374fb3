"""BERT-family encoder (BERT, MiniLM, RoBERTa, ELECTRA, DistilBERT) in Flax linen.

Post-norm Transformer encoder matching Hugging Face `BertModel` numerics (ELECTRA adds a
projection from a narrower embedding; DistilBERT has no token types and no pooler, ELECTRA
no pooler). Deep prompts
enter through one hook: each layer's self-attention accepts an optional `prefix`
(keys and values prepended to its own keys and values, always visible).

Parameter tree (logical axes in brackets):
  embeddings/word_embeddings/embedding          [vocab, embed]
  embeddings/position_embeddings/embedding      [abspos, embed]
  embeddings/token_type_embeddings/embedding    [token_types, embed]  (not when type_vocab_size is 0)
  embeddings/layer_norm/{scale,bias}            [embed]
  embeddings_project/{kernel, bias}             (ELECTRA with embedding_size != hidden_size)
  layers_{i}/attention/{query,key,value}/kernel [embed, joined_kv]  bias [joined_kv]
  layers_{i}/attention/out/kernel               [joined_kv, embed]  bias [embed]
  layers_{i}/attention_layer_norm/{scale,bias}  [embed]
  layers_{i}/mlp/wi/kernel [embed, mlp], bias [mlp]; mlp/wo/kernel [mlp, embed], bias [embed]
  layers_{i}/mlp_layer_norm/{scale,bias}        [embed]
  pooler/{kernel [embed, embed], bias [embed]}  (not when has_pooler is False)
"""

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax import errors
from prompt_tuning_jax.axes import with_axes
from prompt_tuning_jax.dropout import Dropout
from prompt_tuning_jax.models import encoder_configs, precision

# (keys, values), each [B, P, N, D]: a deep prompt for one layer.
Prefix = Tuple[jax.Array, jax.Array]


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Architecture hyperparameters, named as in Hugging Face `config.json`."""
  vocab_size: int = 30522
  hidden_size: int = 384
  num_hidden_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  pad_token_id: int = 0
  # Position ids of real tokens start here: 0 for BERT, pad_token_id + 1 for RoBERTa.
  position_id_offset: int = 0
  # ELECTRA: word embeddings of this width, projected to hidden_size (None = hidden_size).
  embedding_size: Optional[int] = None
  # ELECTRA and DistilBERT have no pooler (no tanh dense over [CLS]).
  has_pooler: bool = True
  # Hugging Face's model_type, for messages and for exporters that target one architecture.
  model_type: str = "bert"
  # Dropout draws its masks as slices of those of a sequence this long, so a row's mask does not depend on how far
  # its batch was padded (dropout.py; what keeps a sweep's members equal to their runs alone). The trainer sets it
  # to the longest sequence the run feeds (TASK_FEATURE_LENGTHS plus an input prompt): padded that far, a mask is
  # flax's. 0: the position table's length. Not a Hugging Face field.
  dropout_length: int = 0
  # Recompute each layer's activations in the backward pass instead of keeping them
  # (less memory, about one more forward pass of compute). Not a Hugging Face field.
  remat: bool = False
  # Activation dtype: 'float32', or 'bfloat16' (ACTIVATION_DTYPE): activations and matmul inputs in bfloat16 with
  # float32 accumulation, parameters, softmax, LayerNorm, the returned states and the loss in float32.
  # Not a Hugging Face field.
  dtype: str = "float32"

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def low_precision(self) -> bool:
    return self.activation_dtype != jnp.float32

  @property
  def word_embedding_size(self) -> int:
    return self.embedding_size or self.hidden_size

  @classmethod
  def from_dict(cls, d: dict) -> "BertConfig":
    """Builds a config from a Hugging Face config dict: its model_type's keys, an error naming unknown ones
    (encoder_configs.py)."""
    kwargs = encoder_configs.bert_config_kwargs(d)
    if kwargs.get("hidden_act", "gelu") not in _ACTIVATIONS:
      raise errors.CheckpointError(f"config.json has activation {kwargs['hidden_act']!r}; supported: "
                                   f"{sorted(_ACTIVATIONS)}.")
    return cls(**kwargs)

  @classmethod
  def from_json(cls, path) -> "BertConfig":
    return cls.from_dict(json.loads(Path(path).read_text()))

  def replace(self, **kwargs) -> "BertConfig":
    return dataclasses.replace(self, **kwargs)


_ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
}


ACTIVATION_DTYPES = ("float32", "bfloat16")


def check_activation_dtype(dtype: str) -> None:
  """Raises errors.ConfigError unless `dtype` is an activation dtype the encoders run in."""
  if dtype not in ACTIVATION_DTYPES:
    raise errors.ConfigError(f"ACTIVATION_DTYPE={dtype!r} is not supported; use one of {list(ACTIVATION_DTYPES)} "
                             "(--gin.ACTIVATION_DTYPE=\"'bfloat16'\").")


def check_position_table(config: BertConfig, num_positions: int, what: str = "sequence") -> None:
  """Raises errors.ConfigError when `num_positions` ids do not fit the position table."""
  needed = num_positions + config.position_id_offset
  if needed > config.max_position_embeddings:
    raise errors.ConfigError(
        f"{what} needs {needed} position ids but the backbone's position table has "
        f"{config.max_position_embeddings} rows (max_position_embeddings). Shorten "
        "TASK_FEATURE_LENGTHS['inputs'], use a shorter prompt, or keep real tokens' "
        "positions starting at 0 (DeepPrompt position policy 'from_zero').")


def check_pooler(config: BertConfig) -> None:
  """Raises errors.ConfigError when the backbone has no pooler to pool with."""
  if not config.has_pooler:
    raise errors.ConfigError(f"the {config.model_type} backbone has no pooler (no tanh dense over [CLS] in its "
                             "checkpoint); use POOLING='cls'.")


def _dense(features, axes, name, kernel_init, config: Optional["BertConfig"] = None):
  """nn.Dense; with a low-precision config: bfloat16 inputs and kernel, float32 accumulation and result."""
  low = config is not None and config.low_precision
  return nn.Dense(
      features,
      kernel_init=with_axes(kernel_init, *axes),
      bias_init=with_axes(nn.initializers.zeros, axes[-1]),
      dtype=config.activation_dtype if low else None,
      dot_general=precision.float32_dot_general if low else None,
      name=name)


def _padding(config: "BertConfig", x) -> int:
  """How far x's sequence axis (1) falls short of the config's dropout_length (BertConfig)."""
  return max((config.dropout_length or config.max_position_embeddings) - x.shape[1], 0)


def _store(x, config: "BertConfig"):
  """An activation as it is kept between operations: in the config's activation dtype."""
  return x.astype(config.activation_dtype) if config.low_precision else x


def _layer_norm(config, name):
  return nn.LayerNorm(
      epsilon=config.layer_norm_eps,
      scale_init=with_axes(nn.initializers.ones, "embed"),
      bias_init=with_axes(nn.initializers.zeros, "embed"),
      name=name)


class Embeddings(nn.Module):
  """Word + position + token-type embeddings, LayerNorm, dropout."""
  config: BertConfig

  def setup(self):
    c = self.config
    init = nn.initializers.normal(0.02)
    width = c.word_embedding_size
    self.word_embeddings = nn.Embed(c.vocab_size, width, embedding_init=with_axes(init, "vocab", "embed"))
    self.position_embeddings = nn.Embed(
        c.max_position_embeddings, width, embedding_init=with_axes(init, "abspos", "embed"))
    if c.type_vocab_size:  # DistilBERT has none (its token_type_ids are ignored).
      self.token_type_embeddings = nn.Embed(
          c.type_vocab_size, width, embedding_init=with_axes(init, "token_types", "embed"))
    self.layer_norm = _layer_norm(c, "layer_norm")
    self.dropout = Dropout(c.hidden_dropout_prob, length_axes=(1,))

  def embed_words(self, input_ids):
    """[B, T] ids -> [B, T, H] word embeddings (no positions)."""
    return self.word_embeddings(input_ids)

  def __call__(self, word_embeds, token_type_ids, position_ids, deterministic: bool):
    """[B, T, E] word embeddings -> [B, T, E] input states (E: embedding_size, else H)."""
    x = word_embeds + self.position_embeddings(position_ids)
    if self.config.type_vocab_size:
      x = x + self.token_type_embeddings(token_type_ids)
    return self.dropout(_store(self.layer_norm(x), self.config), deterministic=deterministic,
                        padding=_padding(self.config, x))


class SelfAttention(nn.Module):
  """Multi-head self-attention with an optional always-visible key/value prefix."""
  config: BertConfig

  @nn.compact
  def __call__(self, x, mask, prefix: Optional[Prefix], deterministic: bool):
    """x: [B, T, H]; mask: [B, T] (1 = real token); prefix: ([B, P, N, D],) * 2."""
    c = self.config
    b, t, _ = x.shape
    n, d = c.num_attention_heads, c.head_dim
    init = nn.initializers.normal(0.02)
    split = lambda y: _store(y, c).reshape(b, t, n, d)
    q = split(_dense(c.hidden_size, ("embed", "joined_kv"), "query", init, c)(x))
    k = split(_dense(c.hidden_size, ("embed", "joined_kv"), "key", init, c)(x))
    v = split(_dense(c.hidden_size, ("embed", "joined_kv"), "value", init, c)(x))
    key_mask = mask.astype(bool)
    if prefix is not None:
      prefix_k, prefix_v = prefix
      k = jnp.concatenate([prefix_k.astype(k.dtype), k], axis=1)
      v = jnp.concatenate([prefix_v.astype(v.dtype), v], axis=1)
      key_mask = jnp.concatenate([jnp.ones(prefix_k.shape[:2], bool), key_mask], axis=1)
    if deterministic or c.attention_probs_dropout_prob == 0.0:
      # No dropout on the probabilities: JAX's fused attention (on CPU the same result, bit for bit in float32,
      # 15-25% faster; on a GPU JAX may pick cuDNN's kernel). It cannot drop attention probabilities.
      out = jax.nn.dot_product_attention(q, k, v, mask=key_mask[:, None, None, :], scale=1.0 / math.sqrt(d))
      return _dense(c.hidden_size, ("joined_kv", "embed"), "out", init, c)(_store(out, c).reshape(b, t, n * d))
    logits = precision.einsum("bqnd,bknd->bnqk", q, k, c.activation_dtype) / math.sqrt(d)  # float32 in either dtype
    logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    probs = _store(jax.nn.softmax(logits, axis=-1), c)
    probs = Dropout(c.attention_probs_dropout_prob, length_axes=(2, 3))(probs, deterministic=deterministic,
                                                                       padding=_padding(c, x))
    out = _store(precision.einsum("bnqk,bknd->bqnd", probs, v, c.activation_dtype), c).reshape(b, t, n * d)
    return _dense(c.hidden_size, ("joined_kv", "embed"), "out", init, c)(out)


class Mlp(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    init = nn.initializers.normal(0.02)
    h = _store(_ACTIVATIONS[c.hidden_act](_dense(c.intermediate_size, ("embed", "mlp"), "wi", init, c)(x)), c)
    return _dense(c.hidden_size, ("mlp", "embed"), "wo", init, c)(h)


class EncoderLayer(nn.Module):
  """Post-norm block: x = LN(x + Attn(x)); x = LN(x + MLP(x))."""
  config: BertConfig

  @nn.compact
  def __call__(self, x, mask, prefix: Optional[Prefix], deterministic: bool):
    c = self.config
    drop = lambda y: Dropout(c.hidden_dropout_prob, length_axes=(1,))(y, deterministic=deterministic,
                                                                     padding=_padding(c, x))
    # The residual sums and LayerNorms run in float32 (the sublayers return float32); their outputs are stored.
    x = _store(_layer_norm(c, "attention_layer_norm")(
        x + drop(SelfAttention(c, name="attention")(x, mask, prefix, deterministic))), c)
    return _store(_layer_norm(c, "mlp_layer_norm")(x + drop(Mlp(c, name="mlp")(x))), c)


class BertEncoder(nn.Module):
  """The backbone. Returns last hidden states [B, T, H] and pooled [B, H]."""
  config: BertConfig

  def setup(self):
    c = self.config
    self.embeddings = Embeddings(c)
    # `deterministic` (argument 4, counting self) switches dropout, so it must stay static.
    layer = nn.remat(EncoderLayer, static_argnums=(4,)) if c.remat else EncoderLayer
    self.layers = [layer(c) for _ in range(c.num_hidden_layers)]
    if c.word_embedding_size != c.hidden_size:
      self.embeddings_project = _dense(c.hidden_size, ("embed", "mlp"), "embeddings_project",
                                       nn.initializers.normal(0.02))
    if c.has_pooler:
      self.pooler = _dense(c.hidden_size, ("embed", "mlp"), "pooler", nn.initializers.normal(0.02))

  def embed_words(self, input_ids):
    return self.embeddings.embed_words(input_ids)

  def word_embedding_table(self):
    """[V, H] word embeddings (vocabulary-based prompt initializers read them)."""
    return self.embeddings.word_embeddings.embedding

  def pool(self, features):
    """[B, H] -> tanh(dense(features)), BERT's pooler."""
    check_pooler(self.config)
    return jnp.tanh(self.pooler(features))

  def default_position_ids(self, batch: int, length: int, start: int = 0):
    """[B, T] position ids start, start+1, ... shifted by the config's offset."""
    return self.position_ids(jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32) + start, (batch, length)),
                             num_positions=start + length)

  def position_ids(self, relative, num_positions: int):
    """Adds the config's offset to [B, T] ids in 0..num_positions-1, checking the table."""
    check_position_table(self.config, num_positions)
    return relative + self.config.position_id_offset

  def __call__(self,
               input_ids,
               token_type_ids,
               attention_mask,
               *,
               position_ids=None,
               inputs_embeds=None,
               layer_prefixes: Optional[Sequence[Optional[Prefix]]] = None,
               deterministic: bool = True):
    """Encodes a batch.

    Args:
      input_ids: [B, T] token ids (ignored when `inputs_embeds` is given).
      token_type_ids: [B, T] segment ids.
      attention_mask: [B, T], 1 for real tokens, 0 for padding.
      position_ids: [B, T]; default 0..T-1 (+ the config's offset).
      inputs_embeds: [B, T, H] word embeddings to use instead of looking up ids
        (input prompts are prepended here).
      layer_prefixes: per layer, None or (keys, values) [B, P, N, D] (deep prompts).
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      (hidden [B, T, H], pooled [B, H]); pooled = tanh(dense(hidden[:, 0])), or None without a pooler.
    """
    words = self.embed_words(input_ids) if inputs_embeds is None else inputs_embeds
    b, t = words.shape[:2]
    if position_ids is None:
      position_ids = self.default_position_ids(b, t)
    if layer_prefixes is None:
      layer_prefixes = [None] * len(self.layers)
    if len(layer_prefixes) != len(self.layers):
      raise ValueError(f"layer_prefixes has {len(layer_prefixes)} entries; the backbone has {len(self.layers)} layers.")
    x = self.embeddings(words, token_type_ids, position_ids, deterministic)
    if self.config.word_embedding_size != self.config.hidden_size:
      x = self.embeddings_project(x)
    for layer, prefix in zip(self.layers, layer_prefixes):
      x = layer(x, attention_mask, prefix, deterministic)
    x = x.astype(jnp.float32)  # heads, pooler and loss in float32 whatever the activation dtype
    return x, (self.pool(x[:, 0]) if self.config.has_pooler else None)
