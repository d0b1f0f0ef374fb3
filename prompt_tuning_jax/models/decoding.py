"""Greedy decoding and beam search for a `PromptedT5`, with or without the key/value cache.

Both encode once, compute the prompt's decoder prefixes once and loop with jax.lax (one
compiled program). Cached (the default), each step feeds one token [B, 1] to
`T5.decode(decode=True)`, whose 'cache' collection holds the keys and values of the
positions before it (`init_cache` makes it). Uncached, each step re-runs the decoder on a
[B, G] buffer; the causal mask keeps positions not yet written out of the step's logits.
Both give the same tokens. After EOS an example emits padding.

Beam search keeps K beams per example. A beam that has emitted EOS stays in the beam with
its score and is extended only by padding at no cost; the final choice ranks the K beams by
log-probability / ((5 + length) / 6) ** alpha (the length penalty t5x and GNMT use; length
counts the EOS). With K = 1 it is greedy decoding. Cached, each step reorders the cache by
parent beam.

`params` is the PromptedT5's parameter tree without the 'params' wrapper: backbone/... and,
with a prompt, prompt/.... With a prompt bank, `prompt_ids` [B] picks each example's prompt
(None: member 0).
"""

import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import traverse_util

from prompt_tuning_jax.models.t5 import T5, LayerPrefixes
from prompt_tuning_jax.models.t5_prompted import PromptedT5

_NEG = -1e9  # a score no real hypothesis reaches, without inf arithmetic

# step(tokens [B, G + 1], i, state) -> (logits [B, V] of the position after token i, state)
Step = Callable[[jax.Array, jax.Array, Optional[dict]], Tuple[jax.Array, Optional[dict]]]


def init_cache(backbone: T5, params, encoded, encoder_mask, max_length: int,
               layer_prefixes: LayerPrefixes = None) -> dict:
  """The zero cache `T5.decode(decode=True)` steps start from, [B, max_length] positions.

  It is what t5x's initialising call returns (decode=True on a [B, L] dummy decoder input,
  mutable=['cache']: zeros, index 0), computed from shapes only.

  Args:
    backbone: the T5.
    params: its parameters (without the 'params' wrapper).
    encoded: [B, T, H] encoder states; encoder_mask [B, T].
    max_length: L, the number of positions to decode.
    layer_prefixes: decoder deep prompts, as in `T5.decode`.
  """
  dummy = jnp.zeros((encoded.shape[0], max_length), jnp.int32)

  def initialise(params, encoded, encoder_mask, layer_prefixes):
    return backbone.apply({"params": params}, encoded, None, dummy, dummy, enable_dropout=False, decode=True,
                          max_decode_length=max_length, encoder_mask=encoder_mask, layer_prefixes=layer_prefixes,
                          mutable=["cache"], method=T5.decode)[1]["cache"]

  shapes = jax.eval_shape(initialise, params, encoded, encoder_mask, layer_prefixes)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _prepare(model: PromptedT5, params, encoder_input_tokens, copies: int = 1, prompt_ids=None):
  """(encoded [B*K, P+T, H], encoder mask [B*K, P+T], decoder prefixes [B*K, P', N, D] per layer),
  each example repeated K = `copies` times (beams of one example adjacent)."""
  variables = {"params": params}
  encoded = model.apply(variables, encoder_input_tokens, enable_dropout=False, prompt_ids=prompt_ids,
                        method=PromptedT5.encode)
  mask = model.apply(variables, encoder_input_tokens, method=PromptedT5.encoder_mask)
  prefixes = model.apply(variables, encoder_input_tokens.shape[0], enable_dropout=False, prompt_ids=prompt_ids,
                         method=PromptedT5.decoder_prefixes)
  if copies > 1:
    repeat = lambda x: jnp.repeat(x, copies, axis=0)
    encoded, mask = repeat(encoded), repeat(mask)
    if prefixes is not None:
      prefixes = [None if p is None else (repeat(p[0]), repeat(p[1])) for p in prefixes]
  return encoded, mask, prefixes


def _decoder_step(model: PromptedT5, params, encoded, encoder_mask, prefixes: LayerPrefixes, max_length: int,
                  cached: bool) -> Tuple[Optional[dict], Step]:
  """(initial state, step): the decoder as one step of a loop (the `Step` type above)."""
  backbone = T5(model.config)
  variables = {"params": params["backbone"]}
  decode = functools.partial(backbone.apply, method=T5.decode, enable_dropout=False, encoder_mask=encoder_mask,
                             layer_prefixes=prefixes)
  if not cached:
    def step(tokens, i, state):
      logits = decode(variables, encoded, None, tokens[:, :-1], None)  # [B, G, V], all positions real
      return jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False), state

    return None, step

  def cached_step(tokens, i, cache):
    token = jax.lax.dynamic_slice_in_dim(tokens, i, 1, axis=1)  # [B, 1]
    logits, state = decode({**variables, "cache": cache}, encoded, None, token, token, decode=True,
                           max_decode_length=max_length, mutable=["cache"])
    return logits[:, 0], state["cache"]

  return init_cache(backbone, params["backbone"], encoded, encoder_mask, max_length, prefixes), cached_step


def _reorder(cache: Optional[dict], parent: jax.Array) -> Optional[dict]:
  """The cache rows [B*K, ...] of each new beam's parent. The encoder-decoder caches are left as they are:
  parents are beams of the same example, whose rows there are equal."""
  if cache is None:
    return None
  flat = traverse_util.flatten_dict(cache)
  return traverse_util.unflatten_dict({
      path: x if x.ndim == 0 or "encoder_decoder_attention" in path else x[parent] for path, x in flat.items()})


def greedy_decode(model: PromptedT5, params, encoder_input_tokens, max_length: int, *, cached: bool = True,
                  start_id: int = 0, eos_id: int = 1, pad_id: int = 0, prompt_ids=None) -> jax.Array:
  """Argmax decoding.

  Args:
    model: the PromptedT5.
    params: its parameters (without the 'params' wrapper).
    encoder_input_tokens: [B, T] ids, 0 = padding.
    max_length: G, the number of ids to produce.
    cached: use the key/value cache (module docstring); False re-runs the decoder on the buffer.
    start_id, eos_id, pad_id: T5 uses 0, 1, 0.
    prompt_ids: [B] a prompt bank's member per example (None: member 0; ignored without a bank).

  Returns:
    [B, G] int32 ids, the start id excluded, `pad_id` after EOS.
  """
  encoded, mask, prefixes = _prepare(model, params, encoder_input_tokens, prompt_ids=prompt_ids)
  state, step = _decoder_step(model, params, encoded, mask, prefixes, max_length, cached)
  b = encoded.shape[0]
  tokens = jnp.full((b, max_length + 1), pad_id, jnp.int32).at[:, 0].set(start_id)

  def body(i, carry):
    tokens, done, state = carry
    logits, state = step(tokens, i, state)
    nxt = jnp.where(done, pad_id, jnp.argmax(logits, axis=-1).astype(jnp.int32))
    return tokens.at[:, i + 1].set(nxt), done | (nxt == eos_id), state

  tokens, _, _ = jax.lax.fori_loop(0, max_length, body, (tokens, jnp.zeros((b,), bool), state))
  return tokens[:, 1:]


def beam_search(model: PromptedT5, params, encoder_input_tokens, max_length: int, *, beam_size: int = 4,
                alpha: float = 0.6, cached: bool = True, start_id: int = 0, eos_id: int = 1,
                pad_id: int = 0, prompt_ids=None) -> jax.Array:
  """Returns the best of `beam_size` beams, [B, G] int32 ids (start id excluded, pad after EOS).

  Args: as `greedy_decode`; `alpha` the length penalty exponent (0 = plain log-probability).
  """
  b, k = encoder_input_tokens.shape[0], beam_size
  encoded, mask, prefixes = _prepare(model, params, encoder_input_tokens, copies=k, prompt_ids=prompt_ids)
  state, step = _decoder_step(model, params, encoded, mask, prefixes, max_length, cached)
  tokens = jnp.full((b * k, max_length + 1), pad_id, jnp.int32).at[:, 0].set(start_id)
  # Only beam 0 is alive at first, so the K beams do not start as K copies of one hypothesis.
  scores = jnp.tile(jnp.array([0.0] + [_NEG] * (k - 1), jnp.float32), b)
  offsets = (jnp.arange(b) * k)[:, None]

  def body(i, carry):
    tokens, scores, done, state = carry
    logits, state = step(tokens, i, state)
    log_probs = jax.nn.log_softmax(logits)
    vocab = log_probs.shape[-1]
    finished_row = jnp.full((vocab,), _NEG).at[pad_id].set(0.0)
    log_probs = jnp.where(done[:, None], finished_row, log_probs)
    best, index = jax.lax.top_k((scores[:, None] + log_probs).reshape(b, k * vocab), k)  # [B, K]
    parent = (index // vocab + offsets).reshape(-1)
    token = (index % vocab).reshape(-1).astype(jnp.int32)
    return (tokens[parent].at[:, i + 1].set(token), best.reshape(-1), done[parent] | (token == eos_id),
            _reorder(state, parent))

  done = jnp.zeros((b * k,), bool)
  tokens, scores, done, _ = jax.lax.fori_loop(0, max_length, body, (tokens, scores, done, state))
  out = tokens[:, 1:]
  is_eos = out == eos_id
  length = jnp.where(is_eos.any(-1), jnp.argmax(is_eos, axis=-1) + 1, max_length)
  normalized = (scores / ((5.0 + length) / 6.0) ** alpha).reshape(b, k)
  return out.reshape(b, k, max_length)[jnp.arange(b), jnp.argmax(normalized, axis=-1)]
