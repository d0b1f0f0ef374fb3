"""T5 1.1 encoder-decoder in Flax linen, with t5x's parameter names and numerics.

Pre-norm blocks: RMSNorm (in float32) -> attention with relative position bias -> dropout
-> residual; RMSNorm -> gated-GELU MLP -> dropout -> residual; a final RMSNorm per
stack. No biases, no 1/sqrt(D) on q.k (folded into the query initializer), logits in
float32 from an untied `decoder/logits_dense`. Activations run in `config.dtype`
(e.g. bfloat16); parameters are float32.

Deep prompts enter through one hook, as in `bert.py`: each encoder and decoder
*self*-attention accepts an optional prefix (keys, values) [B, P, N, D], concatenated in
front of its own keys and values. Prefix positions are visible to every query (in the
decoder too: they lie before the first token), get no relative-position bias (bias 0),
and never act as queries. Cross-attention takes no prefix. Input prompts enter through
`inputs_embeds` with an explicit `encoder_mask` that marks prompt positions visible;
`decode` takes the same mask, so the encoder-decoder attention sees them as well.

Masks follow t5x: a padded position neither attends nor is attended to (its own output
is meaningless and should be ignored). Against t5x, two changes keep every value: token
embeddings are gathered rather than one-hot contracted, and the relative position bias
is computed once per stack rather than once per layer. Not implemented: packing (segment
ids) and the incremental decoding cache (`greedy_decode` re-runs the decoder on a
fixed-length buffer instead).

Parameter tree (logical axes in brackets):
  token_embedder/embedding                                   [vocab, embed]
  encoder/relpos_bias/rel_embedding                          [heads, relpos_buckets]
  encoder/layers_{i}/pre_attention_layer_norm/scale          [embed]
  encoder/layers_{i}/attention/{query,key,value}/kernel      [embed, joined_kv]
  encoder/layers_{i}/attention/out/kernel                    [joined_kv, embed]
  encoder/layers_{i}/pre_mlp_layer_norm/scale                [embed]
  encoder/layers_{i}/mlp/{wi_0,wi_1}/kernel [embed, mlp];  mlp/wo/kernel [mlp, embed]
  encoder/encoder_norm/scale                                 [embed]
  decoder/relpos_bias/rel_embedding                          [heads, relpos_buckets]
  decoder/layers_{i}/{pre_self_attention_layer_norm, pre_cross_attention_layer_norm, pre_mlp_layer_norm}/scale
  decoder/layers_{i}/{self_attention, encoder_decoder_attention}/{query,key,value,out}/kernel
  decoder/layers_{i}/mlp/{wi_0,wi_1,wo}/kernel
  decoder/decoder_norm/scale                                 [embed]
  decoder/logits_dense/kernel                                [embed, vocab]
"""

import dataclasses
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax.partitioning import with_axes

# (keys, values), each [B, P, N, D]: a deep prompt for one self-attention layer.
Prefix = Tuple[jax.Array, jax.Array]
LayerPrefixes = Optional[Sequence[Optional[Prefix]]]

_MASKED = -1e10  # t5x's attention bias for masked positions.
_ATTENTION_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
_DENSE_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """T5 1.1 hyperparameters (Hugging Face names; t5x's emb_dim / head_dim / mlp_dim are d_model / d_kv / d_ff).

  The defaults are T5 1.1 small. `dtype` is the activation dtype ('float32' or
  'bfloat16'); `float32_attention_logits` computes q.k and the softmax in float32 when
  activations are bfloat16 (t5x's option of the same name).
  """
  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 6
  d_kv: int = 64
  d_ff: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  dropout_rate: float = 0.1
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"
  float32_attention_logits: bool = False

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  def replace(self, **kwargs) -> "T5Config":
    return dataclasses.replace(self, **kwargs)


if "prompt_tuning_jax.T5Config" not in gin.config._REGISTRY:  # pylint: disable=protected-access
  gin.external_configurable(T5Config, module="prompt_tuning_jax")


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """Bucket ids of key - query offsets (numpy: the shapes are static), as t5x and Hugging Face bucket them.

  Bidirectional (encoder): keys before the query use buckets [0, num_buckets/2), keys after
  it the upper half. Causal (decoder): only keys at or before the query count; later keys
  share bucket 0 (they are masked anyway). Within a half of size h, distances below h/2
  get their own bucket; longer ones share logarithmically wider buckets up to max_distance.
  """
  distance = -relative_position  # > 0 when the key precedes the query
  if bidirectional:
    num_buckets //= 2
    offset = np.where(distance < 0, num_buckets, 0)
    distance = np.abs(distance)
  else:
    offset = 0
    distance = np.maximum(distance, 0)
  exact = num_buckets // 2
  # float32 and the eps as t5x: distances at exact powers must not round down a bucket.
  log_ratio = np.log(distance.astype(np.float32) / exact + np.finfo(np.float32).eps) / np.log(max_distance / exact)
  far = np.minimum(exact + (log_ratio * (num_buckets - exact)).astype(np.int32), num_buckets - 1)
  return offset + np.where(distance < exact, distance, far)


def mask_bias(mask: jax.Array, dtype) -> jax.Array:
  """Boolean mask [..., Tq, Tk] -> additive bias [..., 1, Tq, Tk]: 0 where visible, -1e10 elsewhere."""
  return jnp.where(mask, 0.0, _MASKED).astype(dtype)[..., None, :, :]


class RmsNorm(nn.Module):
  """x * rsqrt(mean(x^2) + eps) * scale, the statistics in float32 (t5x's LayerNorm)."""
  epsilon: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32)
    y = (x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)).astype(self.dtype)
    scale = self.param("scale", with_axes(nn.initializers.ones, "embed"), (x.shape[-1],), jnp.float32)
    return y * scale.astype(self.dtype)


class RelativePositionBiases(nn.Module):
  """One (N, buckets) table per stack -> a [1, N, Tq, Tk] attention bias."""
  config: T5Config

  @nn.compact
  def __call__(self, length: int, bidirectional: bool):
    c = self.config
    positions = np.arange(length, dtype=np.int32)
    buckets = relative_position_bucket(positions[None, :] - positions[:, None], bidirectional,
                                       c.relative_attention_num_buckets, c.relative_attention_max_distance)
    init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
    table = self.param("rel_embedding", with_axes(init, "heads", "relpos_buckets"),
                       (c.num_heads, c.relative_attention_num_buckets), jnp.float32)
    return table.astype(c.activation_dtype)[:, buckets][None]


def _dense(features, axes, name, kernel_init, dtype):
  return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=with_axes(kernel_init, *axes), name=name)


class Attention(nn.Module):
  """Multi-head dot-product attention without biases or 1/sqrt(D), with an optional key/value prefix."""
  config: T5Config

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, bias, prefix: Optional[Prefix], deterministic: bool):
    """Attends `inputs_q` [B, Tq, H] to `inputs_kv` [B, Tk, H].

    Args:
      inputs_q: [B, Tq, H] queries' inputs.
      inputs_kv: [B, Tk, H] keys' and values' inputs.
      bias: added to the logits, broadcastable to [B, N, Tq, Tk] (masks and position bias).
      prefix: None or (keys, values) [B, P, N, D], prepended with bias 0.
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      [B, Tq, H].
    """
    c = self.config
    dtype = c.activation_dtype
    n, d = c.num_heads, c.d_kv

    def query_init(key, shape, dtype=jnp.float32):  # t5x folds 1/sqrt(D) into the query init.
      return _ATTENTION_INIT(key, shape, dtype) / jnp.sqrt(d).astype(dtype)

    def project(x, name, init):
      y = _dense(n * d, ("embed", "joined_kv"), name, init, dtype)(x).reshape(*x.shape[:2], n, d)
      return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))

    q = project(inputs_q, "query", query_init)
    k = project(inputs_kv, "key", _ATTENTION_INIT)
    v = project(inputs_kv, "value", _ATTENTION_INIT)
    if prefix is not None:
      prefix_k, prefix_v = prefix
      k = jnp.concatenate([prefix_k.astype(k.dtype), k], axis=1)
      v = jnp.concatenate([prefix_v.astype(v.dtype), v], axis=1)
      bias = jnp.pad(bias, [(0, 0)] * (bias.ndim - 1) + [(prefix_k.shape[1], 0)])
    if c.float32_attention_logits:
      q, k = q.astype(jnp.float32), k.astype(jnp.float32)
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k)
    probs = jax.nn.softmax(logits + bias.astype(logits.dtype)).astype(dtype)
    # t5x shares the attention dropout mask across queries.
    probs = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(probs, deterministic=deterministic)
    out = jnp.einsum("bnqk,bknd->bqnd", probs, v).reshape(*inputs_q.shape[:2], n * d)
    return _dense(inputs_q.shape[-1], ("joined_kv", "embed"), "out", _ATTENTION_INIT, dtype)(out)


class Mlp(nn.Module):
  """wo(gelu_tanh(wi_0 x) * wi_1 x), dropout on the product."""
  config: T5Config

  @nn.compact
  def __call__(self, x, deterministic: bool):
    c = self.config
    dtype = c.activation_dtype
    gate = nn.gelu(_dense(c.d_ff, ("embed", "mlp"), "wi_0", _DENSE_INIT, dtype)(x), approximate=True)
    h = gate * _dense(c.d_ff, ("embed", "mlp"), "wi_1", _DENSE_INIT, dtype)(x)
    h = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    return _dense(x.shape[-1], ("mlp", "embed"), "wo", _DENSE_INIT, dtype)(h)


def _norm(config: T5Config, name: str) -> RmsNorm:
  return RmsNorm(config.layer_norm_epsilon, config.activation_dtype, name=name)


def _residual(config: T5Config, x, y, deterministic: bool):
  """x + dropout(y), the dropout mask shared along the length as in t5x."""
  return x + nn.Dropout(config.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)


class EncoderLayer(nn.Module):
  """Self-attention then MLP, each pre-normed."""
  config: T5Config

  @nn.compact
  def __call__(self, x, bias, prefix: Optional[Prefix], deterministic: bool):
    c = self.config
    h = _norm(c, "pre_attention_layer_norm")(x)
    x = _residual(c, x, Attention(c, name="attention")(h, h, bias, prefix, deterministic), deterministic)
    h = _norm(c, "pre_mlp_layer_norm")(x)
    return _residual(c, x, Mlp(c, name="mlp")(h, deterministic), deterministic)


class DecoderLayer(nn.Module):
  """Causal self-attention, cross-attention to the encoder, MLP, each pre-normed."""
  config: T5Config

  @nn.compact
  def __call__(self, y, encoded, self_bias, cross_bias, prefix: Optional[Prefix], deterministic: bool):
    c = self.config
    h = _norm(c, "pre_self_attention_layer_norm")(y)
    y = _residual(c, y, Attention(c, name="self_attention")(h, h, self_bias, prefix, deterministic), deterministic)
    h = _norm(c, "pre_cross_attention_layer_norm")(y)
    cross = Attention(c, name="encoder_decoder_attention")(h, encoded, cross_bias, None, deterministic)
    y = _residual(c, y, cross, deterministic)
    h = _norm(c, "pre_mlp_layer_norm")(y)
    return _residual(c, y, Mlp(c, name="mlp")(h, deterministic), deterministic)


def _check_prefixes(layer_prefixes: LayerPrefixes, num_layers: int, stack: str):
  if layer_prefixes is None:
    return [None] * num_layers
  if len(layer_prefixes) != num_layers:
    raise ValueError(f"{stack} layer_prefixes has {len(layer_prefixes)} entries; the {stack} has {num_layers} layers.")
  return layer_prefixes


class Encoder(nn.Module):
  """Embedded inputs [B, T, H] -> encoder states [B, T, H]."""
  config: T5Config

  @nn.compact
  def __call__(self, x, mask, layer_prefixes: LayerPrefixes, deterministic: bool):
    c = self.config
    dtype = c.activation_dtype
    layer_prefixes = _check_prefixes(layer_prefixes, c.num_encoder_layers, "encoder")
    relpos = RelativePositionBiases(c, name="relpos_bias")(x.shape[1], bidirectional=True)
    bias = mask_bias(mask[:, :, None] & mask[:, None, :], dtype) + relpos  # [B, N, T, T]
    x = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic).astype(dtype)
    for i, prefix in enumerate(layer_prefixes):
      x = EncoderLayer(c, name=f"layers_{i}")(x, bias, prefix, deterministic)
    x = RmsNorm(c.layer_norm_epsilon, dtype, name="encoder_norm")(x)
    return nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """Embedded decoder inputs [B, T', H] and encoder states -> float32 logits [B, T', V]."""
  config: T5Config

  @nn.compact
  def __call__(self, y, encoded, decoder_mask, encoder_decoder_mask, layer_prefixes: LayerPrefixes,
               deterministic: bool):
    c = self.config
    dtype = c.activation_dtype
    layer_prefixes = _check_prefixes(layer_prefixes, c.num_decoder_layers, "decoder")
    t = y.shape[1]
    relpos = RelativePositionBiases(c, name="relpos_bias")(t, bidirectional=False)
    self_mask = jnp.tril(jnp.ones((t, t), bool))[None] & decoder_mask[:, :, None] & decoder_mask[:, None, :]
    self_bias = mask_bias(self_mask, dtype) + relpos  # [B, N, T', T']
    cross_bias = mask_bias(encoder_decoder_mask, dtype)  # [B, 1, T', T]
    y = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic).astype(dtype)
    for i, prefix in enumerate(layer_prefixes):
      y = DecoderLayer(c, name=f"layers_{i}")(y, encoded, self_bias, cross_bias, prefix, deterministic)
    y = RmsNorm(c.layer_norm_epsilon, dtype, name="decoder_norm")(y)
    y = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    logits = _dense(c.vocab_size, ("embed", "vocab"), "logits_dense", _DENSE_INIT, jnp.float32)(y)
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


class T5(nn.Module):
  """T5 1.1 encoder-decoder: `encode`, `decode`, and `__call__` for teacher forcing."""
  config: T5Config

  def setup(self):
    c = self.config
    self.token_embedder = nn.Embed(c.vocab_size, c.d_model, dtype=c.activation_dtype, param_dtype=jnp.float32,
                                   embedding_init=with_axes(nn.initializers.normal(1.0), "vocab", "embed"))
    self.encoder = Encoder(c)
    self.decoder = Decoder(c)

  def embed_words(self, tokens):
    """[B, T] ids -> [B, T, H] token embeddings (input prompts are prepended to these)."""
    return nn.with_logical_constraint(self.token_embedder(tokens), ("batch", "length", "embed"))

  def word_embedding_table(self):
    """[V, H] token embeddings (vocabulary-based prompt initializers read them)."""
    return self.token_embedder.embedding

  def encode(self,
             encoder_input_tokens=None,
             encoder_mask=None,
             *,
             inputs_embeds=None,
             layer_prefixes: LayerPrefixes = None,
             deterministic: bool = True):
    """Encodes a batch.

    Args:
      encoder_input_tokens: [B, T] ids, 0 = padding (ignored when `inputs_embeds` is given).
      encoder_mask: [B, T], 1 where a position is visible (real tokens and prompt positions).
        Defaults to `encoder_input_tokens > 0`; required with `inputs_embeds`. Pass the same
        mask to `decode`.
      inputs_embeds: [B, T, H] embeddings to use instead of looking up ids.
      layer_prefixes: per encoder layer, None or (keys, values) [B, P, N, D] (deep prompts).
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      Encoder states [B, T, H] in `config.dtype`.
    """
    if inputs_embeds is None:
      if encoder_input_tokens is None:
        raise ValueError("encode needs encoder_input_tokens or inputs_embeds.")
      inputs_embeds = self.embed_words(encoder_input_tokens)
      if encoder_mask is None:
        encoder_mask = encoder_input_tokens > 0
    elif encoder_mask is None:
      raise ValueError("encode with inputs_embeds needs an explicit encoder_mask [B, T] (1 = visible).")
    return self.encoder(inputs_embeds, encoder_mask.astype(bool), layer_prefixes, deterministic)

  def decode(self,
             encoded,
             encoder_mask,
             decoder_input_tokens,
             decoder_mask=None,
             *,
             layer_prefixes: LayerPrefixes = None,
             deterministic: bool = True):
    """Teacher-forced decoder pass.

    Args:
      encoded: [B, T, H] encoder states.
      encoder_mask: [B, T] the mask given to `encode` (None = all visible).
      decoder_input_tokens: [B, T'] ids, starting with the start id 0 (targets shifted right).
      decoder_mask: [B, T'], 1 for real target positions (t5x: decoder_target_tokens > 0);
        None = all real. Masked positions neither attend nor are attended to; the causal
        mask applies on top.
      layer_prefixes: per decoder layer, None or (keys, values) [B, P, N, D] for the
        self-attention.
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      Logits [B, T', V] in float32.
    """
    b, t = decoder_input_tokens.shape
    decoder_mask = jnp.ones((b, t), bool) if decoder_mask is None else decoder_mask.astype(bool)
    if encoder_mask is None:
      encoder_mask = jnp.ones(encoded.shape[:2], bool)
    encoder_decoder_mask = decoder_mask[:, :, None] & encoder_mask.astype(bool)[:, None, :]
    return self.decoder(self.embed_words(decoder_input_tokens), encoded, decoder_mask, encoder_decoder_mask,
                        layer_prefixes, deterministic)

  def __call__(self,
               encoder_input_tokens,
               decoder_input_tokens,
               encoder_mask=None,
               decoder_mask=None,
               *,
               inputs_embeds=None,
               encoder_layer_prefixes: LayerPrefixes = None,
               decoder_layer_prefixes: LayerPrefixes = None,
               deterministic: bool = True):
    """`encode` then `decode`: logits [B, T', V] (float32). Arguments as there."""
    if inputs_embeds is None and encoder_mask is None:
      encoder_mask = encoder_input_tokens > 0
    encoded = self.encode(encoder_input_tokens, encoder_mask, inputs_embeds=inputs_embeds,
                          layer_prefixes=encoder_layer_prefixes, deterministic=deterministic)
    return self.decode(encoded, encoder_mask, decoder_input_tokens, decoder_mask,
                       layer_prefixes=decoder_layer_prefixes, deterministic=deterministic)


def greedy_decode(model: T5, params, encoded, encoder_mask, max_length: int, *, start_id: int = 0, eos_id: int = 1,
                  pad_id: int = 0, layer_prefixes: LayerPrefixes = None) -> jax.Array:
  """Argmax decoding without a cache: each step re-runs the decoder on a [B, max_length] buffer.

  The causal mask keeps not-yet-written positions out of the step's logits, so every
  step compiles to the same program. After EOS an example emits `pad_id`.

  Args:
    model: the T5 module.
    params: its parameters (without the 'params' wrapper).
    encoded: [B, T, H] from `encode`.
    encoder_mask: [B, T] the mask given to `encode`.
    max_length: G, the number of ids to produce.
    start_id, eos_id, pad_id: T5 uses 0, 1, 0.
    layer_prefixes: decoder deep prompts, as in `decode`.

  Returns:
    [B, G] int32 ids, the start id excluded.
  """
  b = encoded.shape[0]
  tokens = jnp.full((b, max_length + 1), pad_id, jnp.int32).at[:, 0].set(start_id)

  def step(i, carry):
    tokens, done = carry
    logits = model.apply({"params": params}, encoded, encoder_mask, tokens[:, :-1], layer_prefixes=layer_prefixes,
                         method=T5.decode)
    nxt = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False), axis=-1).astype(jnp.int32)
    nxt = jnp.where(done, pad_id, nxt)
    return tokens.at[:, i + 1].set(nxt), done | (nxt == eos_id)

  tokens, _ = jax.lax.fori_loop(0, max_length, step, (tokens, jnp.zeros((b,), bool)))
  return tokens[:, 1:]
