"""T5 1.1 encoder-decoder in Flax linen, with t5x's parameter names and numerics (and T5 1.0).

Pre-norm blocks: RMSNorm (in float32) -> attention with relative position bias -> dropout
-> residual; RMSNorm -> gated-GELU MLP -> dropout -> residual; a final RMSNorm per
stack. No biases, no 1/sqrt(D) on q.k (folded into the query initializer), logits in
float32 from an untied `decoder/logits_dense`. Activations run in `config.dtype`
(e.g. bfloat16); parameters are float32. T5 1.0 (`feed_forward_proj='relu'`: `wo(relu(wi x))`,
`tie_word_embeddings` and `scale_decoder_outputs`: logits = (y / sqrt(d_model)) @ embedding^T, as
transformers computes them) has no `decoder/logits_dense`.

Methods and arguments are t5x's EncoderDecoder's: `encode(encoder_input_tokens)`,
`decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens)` and
`__call__(encoder_input_tokens, decoder_input_tokens, decoder_target_tokens)`, with
`enable_dropout` (default True, as in t5x) and `decode` / `max_decode_length` for cached
decoding. Masks derive from the tokens as in t5x: the encoder sees `encoder_input_tokens > 0`,
teacher forcing `decoder_target_tokens > 0`. Packing (segment ids, positions) is not
supported: passing any raises NotImplementedError.

Deep prompts enter through one hook, as in `bert.py`: each encoder and decoder
*self*-attention accepts an optional prefix (keys, values) [B, P, N, D], concatenated in
front of its own keys and values. Prefix positions are visible to every query (in the
decoder too: they lie before the first token), get no relative-position bias (bias 0),
and never act as queries. Cross-attention takes no prefix. Input prompts enter through
`inputs_embeds` with an explicit `encoder_mask` that marks prompt positions visible;
`decode` takes the same mask, so the encoder-decoder attention sees them as well. These
extras are keyword-only; `t5_prompted.PromptedT5` wraps them in the plain t5x signatures.

Cached decoding (`decode=True`), as in t5x: each decoder self-attention keeps `cached_key`,
`cached_value` [B, L, N, D] and `cache_index` in the 'cache' collection. A first call on a
[B, L] (dummy) decoder input creates the cache; each later call takes one token [B, 1],
writes its key and value at `cache_index` and attends to the cache with row `cache_index`
of the causal mask and relative position bias. A decoder deep prompt's prefix stays in
front of the cached keys and values. The encoder-decoder attention caches the projected
encoder states, computed at the first step. `decoding.py` holds the loops.

Masks follow t5x: a padded position neither attends nor is attended to (its own output
is meaningless and should be ignored). Against t5x, two changes keep every value: token
embeddings are gathered rather than one-hot contracted, and the relative position bias
is computed once per stack rather than once per layer.

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

from prompt_tuning_jax.axes import with_axes
from prompt_tuning_jax.models import precision
from prompt_tuning_jax.dropout import Dropout

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
  # T5 1.0: 'relu' (wi, wo) instead of 1.1's 'gated-gelu' (wi_0, wi_1, wo).
  feed_forward_proj: str = "gated-gelu"
  # T5 1.0: logits from the shared embedding (no decoder/logits_dense) ...
  tie_word_embeddings: bool = False
  # ... of the decoder output scaled by 1/sqrt(d_model).
  scale_decoder_outputs: bool = False
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
  low = jnp.dtype(dtype) != jnp.float32  # bfloat16 results accumulated in float32 (models/precision.py)
  return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                  dot_general=precision.same_dtype_dot_general if low else None,
                  kernel_init=with_axes(kernel_init, *axes), name=name)


def _query_init(head_dim: int):
  def init(key, shape, dtype=jnp.float32):  # t5x folds 1/sqrt(D) into the query init.
    return _ATTENTION_INIT(key, shape, dtype) / jnp.sqrt(head_dim).astype(dtype)
  return init


def _project(config: T5Config, x, name: str, init) -> jax.Array:
  """[B, T, H] -> [B, T, N, D] by the current module's Dense `name`."""
  n, d = config.num_heads, config.d_kv
  y = _dense(n * d, ("embed", "joined_kv"), name, init, config.activation_dtype)(x).reshape(*x.shape[:2], n, d)
  return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))


class Attention(nn.Module):
  """Multi-head dot-product attention without biases or 1/sqrt(D), with an optional key/value prefix.

  With decode=True it keeps a cache in the 'cache' collection: `cached_key`, `cached_value`
  and `cache_index`. A call that finds no cache (the initialising pass, [B, L] inputs)
  creates it (zeros, index 0) and attends as usual. Afterwards each call is one step:
  - self-attention (`cross` False): the step's key and value [B, 1, N, D] are written at
    `cache_index`, and the query attends to the [B, L, N, D] cache with row `cache_index`
    of the [.., L, L] bias (causal mask and relative positions), so unwritten positions
    stay masked;
  - encoder-decoder attention (`cross` True): the projected encoder states [B, T, N, D]
    are computed at the first step (index 0) and read from the cache afterwards.
  A deep-prompt prefix goes in front of the (cached) keys and values, visible to every step.
  """
  config: T5Config
  cross: bool = False

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, bias, prefix: Optional[Prefix], deterministic: bool, decode: bool = False):
    """Attends `inputs_q` [B, Tq, H] to `inputs_kv` [B, Tk, H].

    Args:
      inputs_q: [B, Tq, H] queries' inputs (Tq = 1 in a decode step).
      inputs_kv: [B, Tk, H] keys' and values' inputs.
      bias: added to the logits, broadcastable to [B, N, Tq, Tk] (masks and position bias); in a
        self-attention decode step [.., N, L, L], of which the step's row is taken.
      prefix: None or (keys, values) [B, P, N, D], prepended with bias 0.
      deterministic: False enables dropout (needs a 'dropout' rng).
      decode: use and update the cache (class docstring).

    Returns:
      [B, Tq, H].
    """
    c = self.config
    dtype = c.activation_dtype
    q = _project(c, inputs_q, "query", _query_init(c.d_kv))
    if decode and self.cross:
      k, v = self._cached_encoder_kv(inputs_kv)
    else:
      k, v = _project(c, inputs_kv, "key", _ATTENTION_INIT), _project(c, inputs_kv, "value", _ATTENTION_INIT)
      if decode:
        k, v, bias = self._cached_self_kv(k, v, bias)
    if prefix is not None:
      prefix_k, prefix_v = prefix
      k = jnp.concatenate([prefix_k.astype(k.dtype), k], axis=1)
      v = jnp.concatenate([prefix_v.astype(v.dtype), v], axis=1)
      bias = jnp.pad(bias, [(0, 0)] * (bias.ndim - 1) + [(prefix_k.shape[1], 0)])
    if c.float32_attention_logits:
      q, k = q.astype(jnp.float32), k.astype(jnp.float32)
    logits = precision.einsum("bqnd,bknd->bnqk", q, k, q.dtype)  # float32 unless q, k are bfloat16
    # The softmax in float32 whatever the activation dtype (a no-op in float32).
    probs = jax.nn.softmax(logits.astype(jnp.float32) + bias.astype(jnp.float32)).astype(dtype)
    # t5x shares the attention dropout mask across queries.
    probs = Dropout(c.dropout_rate, broadcast_dims=(-2,))(probs, deterministic=deterministic)
    out = precision.einsum("bnqk,bknd->bqnd", probs, v, dtype).astype(dtype)
    out = out.reshape(*inputs_q.shape[:2], c.num_heads * c.d_kv)
    return _dense(inputs_q.shape[-1], ("joined_kv", "embed"), "out", _ATTENTION_INIT, dtype)(out)

  def _cache_variables(self, shape, dtype):
    """(initialised before this call?, cached_key, cached_value, cache_index) variables."""
    initialised = self.has_variable("cache", "cached_key")
    return (initialised, self.variable("cache", "cached_key", jnp.zeros, shape, dtype),
            self.variable("cache", "cached_value", jnp.zeros, shape, dtype),
            self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32)))

  def _cached_self_kv(self, k, v, bias):
    """Self-attention decode: (keys, values) [B, L, N, D] and the step's bias [.., N, 1, L]."""
    initialised, cached_k, cached_v, index = self._cache_variables(k.shape, k.dtype)
    if not initialised:
      return k, v, bias
    length = cached_k.value.shape[1]
    if k.shape[1] != 1:
      raise ValueError(f"A decode step takes one decoder token [B, 1], not {k.shape[1]}.")
    if bias.shape[-1] != length:
      raise ValueError(f"The cache holds {length} positions but the bias covers {bias.shape[-1]}: pass "
                       f"max_decode_length={length} at every decode step.")
    i = index.value
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k.astype(cached_k.value.dtype), (0, i, 0, 0))
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v.astype(cached_v.value.dtype), (0, i, 0, 0))
    index.value = i + 1
    return cached_k.value, cached_v.value, jax.lax.dynamic_slice_in_dim(bias, i, 1, axis=-2)

  def _cached_encoder_kv(self, encoded):
    """Encoder-decoder decode: the projected encoder states (keys, values) [B, T, N, D]."""
    c = self.config
    project = lambda x: (_project(c, x, "key", _ATTENTION_INIT), _project(c, x, "value", _ATTENTION_INIT))
    n, d = c.num_heads, c.d_kv
    initialised, cached_k, cached_v, index = self._cache_variables((*encoded.shape[:2], n, d), c.activation_dtype)
    if not initialised:
      return project(encoded)
    # Projected once, at the first step; nn.cond runs only the taken branch.
    k, v = nn.cond(index.value == 0, lambda mdl, x, k, v: project(x), lambda mdl, x, k, v: (k, v), self,
                   encoded, cached_k.value, cached_v.value)
    cached_k.value, cached_v.value, index.value = k, v, index.value + 1
    return k, v


FEED_FORWARD_PROJS = ("gated-gelu", "relu")


class Mlp(nn.Module):
  """wo(gelu_tanh(wi_0 x) * wi_1 x) (T5 1.1) or wo(relu(wi x)) (T5 1.0), dropout on the product."""
  config: T5Config

  @nn.compact
  def __call__(self, x, deterministic: bool):
    c = self.config
    dtype = c.activation_dtype
    if c.feed_forward_proj == "relu":
      h = nn.relu(_dense(c.d_ff, ("embed", "mlp"), "wi", _DENSE_INIT, dtype)(x))
    else:
      gate = nn.gelu(_dense(c.d_ff, ("embed", "mlp"), "wi_0", _DENSE_INIT, dtype)(x), approximate=True)
      h = gate * _dense(c.d_ff, ("embed", "mlp"), "wi_1", _DENSE_INIT, dtype)(x)
    h = Dropout(c.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    return _dense(x.shape[-1], ("mlp", "embed"), "wo", _DENSE_INIT, dtype)(h)


def _norm(config: T5Config, name: str) -> RmsNorm:
  return RmsNorm(config.layer_norm_epsilon, config.activation_dtype, name=name)


def _residual(config: T5Config, x, y, deterministic: bool):
  """x + dropout(y), the dropout mask shared along the length as in t5x."""
  return x + Dropout(config.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)


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
  def __call__(self, y, encoded, self_bias, cross_bias, prefix: Optional[Prefix], deterministic: bool,
               decode: bool = False):
    c = self.config
    h = _norm(c, "pre_self_attention_layer_norm")(y)
    attended = Attention(c, name="self_attention")(h, h, self_bias, prefix, deterministic, decode)
    y = _residual(c, y, attended, deterministic)
    h = _norm(c, "pre_cross_attention_layer_norm")(y)
    cross = Attention(c, cross=True, name="encoder_decoder_attention")(h, encoded, cross_bias, None, deterministic,
                                                                       decode)
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
    x = Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic).astype(dtype)
    for i, prefix in enumerate(layer_prefixes):
      x = EncoderLayer(c, name=f"layers_{i}")(x, bias, prefix, deterministic)
    x = RmsNorm(c.layer_norm_epsilon, dtype, name="encoder_norm")(x)
    return Dropout(c.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """Embedded decoder inputs [B, T', H] and encoder states -> float32 logits [B, T', V]."""
  config: T5Config

  @nn.compact
  def __call__(self, y, encoded, decoder_mask, encoder_decoder_mask, layer_prefixes: LayerPrefixes,
               deterministic: bool, decode: bool = False, max_decode_length: Optional[int] = None,
               embedding: Optional[jax.Array] = None):
    """decoder_mask [B, T'] or None (all real); encoder_decoder_mask [B, T', T]; with `decode`, the
    self-attention bias covers max_decode_length positions (default T'), of which each step takes a row.
    embedding [V, H]: the shared table the logits come from when the config ties them (T5 1.0)."""
    c = self.config
    dtype = c.activation_dtype
    layer_prefixes = _check_prefixes(layer_prefixes, c.num_decoder_layers, "decoder")
    t = max_decode_length if decode and max_decode_length else y.shape[1]
    relpos = RelativePositionBiases(c, name="relpos_bias")(t, bidirectional=False)
    self_mask = jnp.tril(jnp.ones((t, t), bool))[None]
    if decoder_mask is not None:
      self_mask = self_mask & decoder_mask[:, :, None] & decoder_mask[:, None, :]
    self_bias = mask_bias(self_mask, dtype) + relpos  # [B or 1, N, T', T']
    cross_bias = mask_bias(encoder_decoder_mask, dtype)  # [B, 1, T', T]
    y = Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic).astype(dtype)
    for i, prefix in enumerate(layer_prefixes):
      y = DecoderLayer(c, name=f"layers_{i}")(y, encoded, self_bias, cross_bias, prefix, deterministic, decode)
    y = RmsNorm(c.layer_norm_epsilon, dtype, name="decoder_norm")(y)
    y = Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    if c.scale_decoder_outputs:
      y = y * (c.d_model ** -0.5)
    if c.tie_word_embeddings:
      logits = jnp.einsum("btd,vd->btv", y.astype(jnp.float32), embedding.astype(jnp.float32))
    else:
      logits = _dense(c.vocab_size, ("embed", "vocab"), "logits_dense", _DENSE_INIT, jnp.float32)(y)
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


def check_no_packing(**arrays) -> None:
  """Packed examples (segment ids, positions) are not supported: refuse any that is given."""
  given = sorted(name for name, value in arrays.items() if value is not None)
  if given:
    raise NotImplementedError(f"Packing is not supported: {', '.join(given)} must be None (one example per row).")


class T5(nn.Module):
  """T5 1.1 encoder-decoder with t5x's EncoderDecoder methods: `encode`, `decode`, `__call__`.

  Beyond t5x's arguments, keyword-only extras carry the prompt hooks: `inputs_embeds` and an
  explicit `encoder_mask` (input prompts), `layer_prefixes` (deep prompts).
  """
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
             encoder_input_tokens,
             encoder_segment_ids=None,
             encoder_positions=None,
             *,
             enable_dropout: bool = True,
             encoder_mask=None,
             inputs_embeds=None,
             layer_prefixes: LayerPrefixes = None):
    """Encodes a batch.

    Args:
      encoder_input_tokens: [B, T] ids, 0 = padding (may be None when `inputs_embeds` is given).
      encoder_segment_ids, encoder_positions: packing; not supported (must be None).
      enable_dropout: True enables dropout (needs a 'dropout' rng).
      encoder_mask: [B, T], 1 where a position is visible (real tokens and prompt positions).
        Defaults to `encoder_input_tokens > 0`; required with `inputs_embeds`. Pass the same
        mask to `decode`.
      inputs_embeds: [B, T, H] embeddings to use instead of looking up ids.
      layer_prefixes: per encoder layer, None or (keys, values) [B, P, N, D] (deep prompts).

    Returns:
      Encoder states [B, T, H] in `config.dtype`.
    """
    check_no_packing(encoder_segment_ids=encoder_segment_ids, encoder_positions=encoder_positions)
    if inputs_embeds is None:
      if encoder_input_tokens is None:
        raise ValueError("encode needs encoder_input_tokens or inputs_embeds.")
      inputs_embeds = self.embed_words(encoder_input_tokens)
      if encoder_mask is None:
        encoder_mask = encoder_input_tokens > 0
    elif encoder_mask is None:
      raise ValueError("encode with inputs_embeds needs an explicit encoder_mask [B, T] (1 = visible).")
    return self.encoder(inputs_embeds, encoder_mask.astype(bool), layer_prefixes, not enable_dropout)

  def decode(self,
             encoded,
             encoder_input_tokens,
             decoder_input_tokens,
             decoder_target_tokens,
             encoder_segment_ids=None,
             decoder_segment_ids=None,
             decoder_positions=None,
             *,
             enable_dropout: bool = True,
             decode: bool = False,
             max_decode_length: Optional[int] = None,
             encoder_mask=None,
             layer_prefixes: LayerPrefixes = None):
    """Decoder pass: teacher forcing, or with `decode` one cached step.

    Args:
      encoded: [B, T, H] encoder states.
      encoder_input_tokens: [B, T] ids; the cross-attention sees `encoder_input_tokens > 0`
        unless `encoder_mask` is given (None and no mask: all visible).
      decoder_input_tokens: [B, T'] ids, starting with the start id 0 (targets shifted right);
        [B, 1], the previous token, in a decode step.
      decoder_target_tokens: [B, T']; in teacher forcing its positions > 0 are the real ones
        (None = all real). Masked positions neither attend nor are attended to; the causal
        mask applies on top. Ignored with `decode` (every decoded position is real).
      encoder_segment_ids, decoder_segment_ids, decoder_positions: packing; not supported.
      enable_dropout: True enables dropout (needs a 'dropout' rng).
      decode: use the key/value cache ('cache' collection, mutable): a first call on [B, L]
        inputs creates it, later calls each decode one position (see `Attention`).
      max_decode_length: L, the cache length; required at every decode step.
      encoder_mask: [B, T] the mask given to `encode` (input prompts' positions visible).
      layer_prefixes: per decoder layer, None or (keys, values) [B, P, N, D] for the
        self-attention.

    Returns:
      Logits [B, T', V] in float32.
    """
    check_no_packing(encoder_segment_ids=encoder_segment_ids, decoder_segment_ids=decoder_segment_ids,
                     decoder_positions=decoder_positions)
    b, t = decoder_input_tokens.shape
    if encoder_mask is None:
      encoder_mask = jnp.ones(encoded.shape[:2], bool) if encoder_input_tokens is None else encoder_input_tokens > 0
    if decode or decoder_target_tokens is None:
      decoder_mask = None
      rows = jnp.ones((b, t), bool)
    else:
      decoder_mask = rows = jnp.asarray(decoder_target_tokens) > 0
    encoder_decoder_mask = rows[:, :, None] & encoder_mask.astype(bool)[:, None, :]
    embedding = self.token_embedder.embedding if self.config.tie_word_embeddings else None
    return self.decoder(self.embed_words(decoder_input_tokens), encoded, decoder_mask, encoder_decoder_mask,
                        layer_prefixes, not enable_dropout, decode, max_decode_length, embedding)

  def __call__(self,
               encoder_input_tokens,
               decoder_input_tokens,
               decoder_target_tokens,
               encoder_segment_ids=None,
               decoder_segment_ids=None,
               encoder_positions=None,
               decoder_positions=None,
               *,
               enable_dropout: bool = True,
               decode: bool = False,
               max_decode_length: Optional[int] = None,
               encoder_mask=None,
               inputs_embeds=None,
               encoder_layer_prefixes: LayerPrefixes = None,
               decoder_layer_prefixes: LayerPrefixes = None):
    """`encode` then `decode`: logits [B, T', V] (float32). Arguments as there."""
    check_no_packing(encoder_segment_ids=encoder_segment_ids, decoder_segment_ids=decoder_segment_ids,
                     encoder_positions=encoder_positions, decoder_positions=decoder_positions)
    if inputs_embeds is None and encoder_mask is None:
      encoder_mask = encoder_input_tokens > 0
    encoded = self.encode(encoder_input_tokens, enable_dropout=enable_dropout, encoder_mask=encoder_mask,
                          inputs_embeds=inputs_embeds, layer_prefixes=encoder_layer_prefixes)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       enable_dropout=enable_dropout, decode=decode, max_decode_length=max_decode_length,
                       encoder_mask=encoder_mask, layer_prefixes=decoder_layer_prefixes)
