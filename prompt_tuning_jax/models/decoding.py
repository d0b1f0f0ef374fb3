"""Beam search for T5, the companion of `t5.greedy_decode` (same fixed-length buffer, no cache).

Each step re-runs the decoder on a [B*K, G] buffer; the causal mask keeps positions not yet
written out of the step's logits, so every step is one compiled program. A beam that has
emitted EOS stays in the beam with its score and is extended only by padding at no cost;
the final choice ranks the K beams by log-probability / ((5 + length) / 6) ** alpha (the
length penalty t5x and GNMT use; length counts the EOS). With K = 1 this is greedy decoding.
"""

import jax
import jax.numpy as jnp

from prompt_tuning_jax.models.t5 import T5, LayerPrefixes

_NEG = -1e9  # a score no real hypothesis reaches, without inf arithmetic


def beam_search(model: T5, params, encoded, encoder_mask, max_length: int, *, beam_size: int = 4,
                alpha: float = 0.6, start_id: int = 0, eos_id: int = 1, pad_id: int = 0,
                layer_prefixes: LayerPrefixes = None) -> jax.Array:
  """Returns the best of `beam_size` beams, [B, G] int32 ids (start id excluded, pad after EOS).

  Args: as `t5.greedy_decode`; `encoded` [B, T, H], `encoder_mask` [B, T], decoder
  `layer_prefixes` [B, P, N, D] per layer (repeated K times here), `alpha` the length
  penalty exponent (0 = plain log-probability).
  """
  b, k = encoded.shape[0], beam_size
  repeat = lambda x: jnp.repeat(x, k, axis=0)  # [B, ...] -> [B*K, ...], beams of one example adjacent
  encoded, encoder_mask = repeat(encoded), repeat(encoder_mask)
  if layer_prefixes is not None:
    layer_prefixes = [None if p is None else (repeat(p[0]), repeat(p[1])) for p in layer_prefixes]
  tokens = jnp.full((b * k, max_length + 1), pad_id, jnp.int32).at[:, 0].set(start_id)
  # Only beam 0 is alive at first, so the K beams do not start as K copies of one hypothesis.
  scores = jnp.tile(jnp.array([0.0] + [_NEG] * (k - 1), jnp.float32), b)
  offsets = (jnp.arange(b) * k)[:, None]

  def step(i, carry):
    tokens, scores, done = carry
    logits = model.apply({"params": params}, encoded, encoder_mask, tokens[:, :-1], layer_prefixes=layer_prefixes,
                         method=T5.decode)
    log_probs = jax.nn.log_softmax(jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False))
    vocab = log_probs.shape[-1]
    finished_row = jnp.full((vocab,), _NEG).at[pad_id].set(0.0)
    log_probs = jnp.where(done[:, None], finished_row, log_probs)
    best, index = jax.lax.top_k((scores[:, None] + log_probs).reshape(b, k * vocab), k)  # [B, K]
    parent = (index // vocab + offsets).reshape(-1)
    token = (index % vocab).reshape(-1).astype(jnp.int32)
    return tokens[parent].at[:, i + 1].set(token), best.reshape(-1), done[parent] | (token == eos_id)

  done = jnp.zeros((b * k,), bool)
  tokens, scores, done = jax.lax.fori_loop(0, max_length, step, (tokens, scores, done))
  out = tokens[:, 1:]
  is_eos = out == eos_id
  length = jnp.where(is_eos.any(-1), jnp.argmax(is_eos, axis=-1) + 1, max_length)
  normalized = (scores / ((5.0 + length) / 6.0) ** alpha).reshape(b, k)
  return out.reshape(b, k, max_length)[jnp.arange(b), jnp.argmax(normalized, axis=-1)]
