"""Pure train and eval steps for any model of the contract (models/base.py), and the optimizers they use.

State holds only trainable parameters and their optimizer state; the frozen
parameters are a separate, non-donated argument, so they get no gradient, no
optimizer state and are never written.
"""

from typing import Any, Callable, Dict, NamedTuple, Optional

import gin
import jax
import jax.numpy as jnp
import optax

from prompt_tuning_jax import errors
from prompt_tuning_jax.models.base import BaseModel
from prompt_tuning_jax.trainable import merge_params
from prompt_tuning_jax.training import validation


class TrainState(NamedTuple):
  step: jax.Array
  trainable: Any
  opt_state: Any


def linear_schedule(learning_rate: float, train_steps: int, warmup_steps: int = 0,
                    end_value: float = 0.0) -> optax.Schedule:
  """Linear warmup over `warmup_steps`, then linear decay to `end_value` at `train_steps`."""
  if not warmup_steps:
    return optax.linear_schedule(learning_rate, end_value, train_steps)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1)),
       optax.linear_schedule(learning_rate, end_value, max(train_steps - warmup_steps, 1))],
      [max(warmup_steps, 1)])


class DescribedTransformation(optax.GradientTransformation):
  """An optax transformation that also carries `description`, its settings (see `describe`)."""


def describe(tx: optax.GradientTransformation, **settings) -> optax.GradientTransformation:
  """`tx` with the settings that define it (optimizer name, learning-rate schedule), which checkpoints record
  so that a resume with another learning rate or schedule is refused (training/fingerprint.py)."""
  described = DescribedTransformation(*tx)
  described.description = dict(settings)
  return described


def description(tx: optax.GradientTransformation) -> Optional[Dict[str, Any]]:
  """What `describe` recorded for `tx`, or None (a transformation built elsewhere)."""
  return getattr(tx, "description", None)


def _adamw(learning_rate, train_steps: int, warmup_steps: int, weight_decay: float, end_value: float):
  return optax.adamw(linear_schedule(learning_rate, train_steps, warmup_steps, end_value), weight_decay=weight_decay)


def _adafactor(learning_rate, decay_rate: float, weight_decay_rate: float, clipping_threshold: float):
  return optax.adafactor(learning_rate, decay_rate=decay_rate, multiply_by_parameter_scale=False,
                         clipping_threshold=clipping_threshold, weight_decay_rate=weight_decay_rate)


_BUILDERS = {"adamw": _adamw, "adafactor": _adafactor}


def with_learning_rate(described: Dict[str, Any], learning_rate) -> optax.GradientTransformation:
  """The optimizer that `describe` recorded as `described` (adamw or adafactor), with `learning_rate` instead:
  a traced scalar when one compiled step trains sweep members of different learning rates (training/sweep.py).
  The same builder as `adamw` and `adafactor` themselves, so a member computes what its run alone does."""
  settings = {k: v for k, v in described.items() if k not in ("optimizer", "learning_rate")}
  return _BUILDERS[described["optimizer"]](learning_rate, **settings)


@gin.configurable
def adamw(learning_rate: float = 1e-2, train_steps: int = gin.REQUIRED, warmup_steps: int = 0,
          weight_decay: float = 0.01, end_value: float = 0.0) -> optax.GradientTransformation:
  """AdamW with linear warmup then linear decay to `end_value` (the P-Tuning v2 recipe)."""
  # gin builds the optimizer before calling the trainer: its settings are checked here, before anything runs.
  validation.check_learning_rate(learning_rate, "adamw.learning_rate")
  validation.check_int(warmup_steps, "WARMUP_STEPS", "adamw.warmup_steps", 0,
                       "set --gin.WARMUP_STEPS to the steps of linear warmup (0: none)")
  return describe(_adamw(learning_rate, train_steps, warmup_steps, weight_decay, end_value), optimizer="adamw",
                  learning_rate=learning_rate, train_steps=train_steps, warmup_steps=warmup_steps,
                  weight_decay=weight_decay, end_value=end_value)


@gin.configurable
def adafactor(learning_rate: float = 0.3, decay_rate: float = 0.8, weight_decay_rate: float = 1e-5,
              clipping_threshold: float = 1.0) -> optax.GradientTransformation:
  """t5x / Lester prompt-tuning Adafactor: constant lr, no parameter scaling."""
  validation.check_learning_rate(learning_rate, "adafactor.learning_rate")
  return describe(_adafactor(learning_rate, decay_rate, weight_decay_rate, clipping_threshold),
                  optimizer="adafactor", learning_rate=learning_rate, decay_rate=decay_rate,
                  weight_decay_rate=weight_decay_rate, clipping_threshold=clipping_threshold)


def skip_nonfinite(tx: optax.GradientTransformation, max_consecutive: Optional[int]) -> optax.GradientTransformation:
  """`tx` as is (max_consecutive None), or skipping updates whose gradients hold a NaN or an infinity.

  optax.apply_if_finite: a skipped update leaves the parameters and the inner optimizer state (its step
  count, so the learning-rate schedule, included) unchanged; the batch is not retried. After
  `max_consecutive` skipped updates in a row it gives up and applies the next non-finite one, which
  `loop.run` reports as an error before anything after it is evaluated or saved (`nonfinite_counts`).
  """
  if max_consecutive is None:
    return tx
  if max_consecutive < 1:
    raise errors.ConfigError(f"max_consecutive_nonfinite must be >= 1 to skip non-finite updates, got "
                             f"{max_consecutive}.")
  return optax.apply_if_finite(tx, max_consecutive_errors=max_consecutive)


def nonfinite_counts(opt_state) -> Optional[Dict[str, jax.Array]]:
  """{'consecutive', 'total'} non-finite updates seen by a `skip_nonfinite` optimizer (fresh device scalars,
  safe to keep after the state is donated), or None when the optimizer does not skip."""
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ApplyIfFiniteState))
           if isinstance(s, optax.ApplyIfFiniteState)]
  if not found:
    return None
  return {"consecutive": jnp.copy(found[0].notfinite_count), "total": jnp.copy(found[0].total_notfinite)}


def make_train_step(model: BaseModel, tx: optax.GradientTransformation) -> Callable:
  """Returns train_step(state, frozen, batch, rng) -> (state, metrics) for any model of the contract.

  Gradients are taken with respect to the trainable parameters only; `frozen` is merged in for the
  forward pass. Metrics: the model's loss_fn metrics (sums over the batch), 'loss' and 'grad_norm'.
  """

  def train_step(state: TrainState, frozen, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    loss_fn = lambda trainable: model.loss_fn(merge_params(trainable, frozen), batch, rng)
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), **stats}
    return TrainState(state.step + 1, trainable, opt_state), metrics

  return train_step


def make_eval_step(model: BaseModel) -> Callable:
  """Returns eval_step(trainable, frozen, batch) -> model.eval_batch's outputs (batch axis first)."""
  return lambda trainable, frozen, batch: model.eval_batch(merge_params(trainable, frozen), batch)
