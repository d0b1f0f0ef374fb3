"""Pure steps for text-to-text training and evaluation on a prompted T5: t5x's loss, scoring, decoding.

A batch (seq2seq_data.py) holds encoder_input_tokens [B, T], decoder_target_tokens [B, T']
(EOS-terminated, 0 = padding), decoder_input_tokens [B, T'] (the targets shifted right
behind the start id 0) and decoder_loss_weights [B, T'] (1 on real target tokens). State
holds only the trainable parameters (train_step.TrainState); the frozen ones are a
separate, non-donated argument, as in the encoder trainer.
"""

import functools
from typing import Callable, Union

import jax
import jax.numpy as jnp
import optax

from prompt_tuning_jax.models.decoding import beam_search, greedy_decode
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.train_step import TrainState
from prompt_tuning_jax.trainable import merge_params

# t5x's SpecialLossNormalizingFactor that divides by the number of real target tokens.
NUM_REAL_TARGET_TOKENS = "NUM_REAL_TARGET_TOKENS"


def token_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log p(target) per position [B, T'] from logits [B, T', V] (float32)."""
  logits = logits.astype(jnp.float32)
  return jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]


def cross_entropy_with_z_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                              z_loss: float = 1e-4):
  """t5x's loss: sum over tokens of weights * (-log p(target) + z_loss * logsumexp(logits)^2).

  Returns (loss, the z-loss part of it), both summed over the batch (not averaged).
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  nll = log_z - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  z = z_loss * jnp.square(log_z)
  return jnp.sum((nll + z) * weights), jnp.sum(z * weights)


def sequence_scores(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Sum of the target tokens' log-probabilities per example [B]: the rank-classification score."""
  return jnp.sum(token_log_probs(logits, targets) * weights, axis=-1)


def _normalize(loss, weights, loss_normalizing_factor: Union[None, float, str]):
  if loss_normalizing_factor is None:
    return loss
  if loss_normalizing_factor == NUM_REAL_TARGET_TOKENS:
    return loss / jnp.maximum(jnp.sum(weights), 1.0)
  return loss / loss_normalizing_factor


def make_train_step(model: PromptedT5, tx: optax.GradientTransformation, z_loss: float = 1e-4,
                    loss_normalizing_factor: Union[None, float, str] = None) -> Callable:
  """Returns train_step(state, frozen, batch, rng) -> (state, metrics) for `loop.run`.

  Metrics: loss (t5x's, divided by loss_normalizing_factor: a number, NUM_REAL_TARGET_TOKENS
  or None for the plain sum), z_loss, grad_norm, correct / count (examples whose every
  target token is the argmax: sequence accuracy under teacher forcing), tokens (input and
  target tokens, for throughput).
  """

  def train_step(state: TrainState, frozen, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]

    def loss_fn(trainable):
      logits = model.apply({"params": merge_params(trainable, frozen)}, batch["encoder_input_tokens"],
                           batch["decoder_input_tokens"], targets, enable_dropout=True, rngs={"dropout": rng})
      loss, z = cross_entropy_with_z_loss(logits, targets, weights, z_loss)
      right = jnp.all((jnp.argmax(logits, -1) == targets) | (weights == 0), axis=-1)
      real = jnp.any(weights > 0, axis=-1)
      return _normalize(loss, weights, loss_normalizing_factor), {
          "z_loss": z, "correct": jnp.sum(right & real), "count": jnp.sum(real)}

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    tokens = jnp.sum(batch["encoder_input_tokens"] > 0) + jnp.sum(weights)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "tokens": tokens, **stats}
    return TrainState(state.step + 1, trainable, opt_state), metrics

  return train_step


def make_score_fn(model: PromptedT5) -> Callable:
  """Returns score(trainable, frozen, batch) -> (loss [B], log-likelihood [B]) per example, no dropout.

  The loss is t5x's summed token loss of each example without the z-loss term.
  """

  def score(trainable, frozen, batch):
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
    logits = model.apply({"params": merge_params(trainable, frozen)}, batch["encoder_input_tokens"],
                         batch["decoder_input_tokens"], targets, enable_dropout=False)
    log_likelihood = sequence_scores(logits, targets, weights)
    return -log_likelihood, log_likelihood

  return score


def make_rank_fn(model: PromptedT5) -> Callable:
  """Returns rank(trainable, frozen, encoder_input_tokens [B, T], candidate_inputs [C, T'],
  candidate_targets [C, T']) -> scores [B, C]: each candidate target's summed token
  log-probability given each input. The input is encoded once and shared by its C candidates.
  """

  def rank(trainable, frozen, encoder_input_tokens, candidate_inputs, candidate_targets):
    variables = {"params": merge_params(trainable, frozen)}
    b, c = encoder_input_tokens.shape[0], candidate_targets.shape[0]
    encoded = model.apply(variables, encoder_input_tokens, enable_dropout=False, method=PromptedT5.encode)
    targets = jnp.tile(candidate_targets, (b, 1))
    logits = model.apply(variables, jnp.repeat(encoded, c, axis=0), jnp.repeat(encoder_input_tokens, c, axis=0),
                         jnp.tile(candidate_inputs, (b, 1)), targets, enable_dropout=False, method=PromptedT5.decode)
    return sequence_scores(logits, targets, (targets > 0).astype(jnp.float32)).reshape(b, c)

  return rank


def make_predict_fn(model: PromptedT5, max_length: int, beam_size: int = 1, alpha: float = 0.6,
                    cached: bool = True) -> Callable:
  """Returns predict(trainable, frozen, encoder_input_tokens [B, T]) -> ids [B, max_length]
  (EOS-terminated, then padding): greedy decoding, or beam search when beam_size > 1, with the
  key/value cache unless `cached` is False (decoding.py)."""
  decode: Callable = (functools.partial(greedy_decode, cached=cached) if beam_size == 1 else
                      functools.partial(beam_search, beam_size=beam_size, alpha=alpha, cached=cached))

  def predict(trainable, frozen, encoder_input_tokens):
    return decode(model, merge_params(trainable, frozen), encoder_input_tokens, max_length)

  return predict
