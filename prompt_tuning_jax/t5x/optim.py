"""The prompt-only optimizer and the partitioning and factoring rules of our parameter axes, for t5x.

t5x differentiates and updates the whole parameter tree. `prompt_only(optimizer, patterns)` wraps a t5x
optimizer (e.g. `adafactor.Adafactor`) in t5x's MultiOptimizer over the parameters whose '/'-joined path
fully matches one of `patterns` (our trainable-parameter patterns, trainable.py): those get optimizer state
and updates, every other parameter is returned untouched (bit-identical: no weight decay, no state). The
learning rate t5x's trainer logs (`learning_rate_fn(step)`) is the one passed to `apply_gradient`, and
MultiOptimizer hands it to the wrapped optimizer, so the logged rate is the applied one.

`TrainableOptax(transform, patterns)` does the same for an optax transformation given without its
learning-rate scaling (`adamw_direction()`: AdamW's), scaled by the learning rate t5x's trainer passes, so
an optax optimizer too applies the logged rate (t5x's own OptaxWrapper ignores it and applies the rate baked
into the transformation). `linear_decay` is P-Tuning v2's schedule for the trainer's learning_rate_fn.

`axis_rules()` adds our logical axes (prompt, head and encoder-only axes, axes.py) to t5x's
`standard_logical_axis_rules` (as its `additional_rules`); `factor_rules()` extends t5x's Adafactor
`standard_logical_factor_rules` with them, so Adafactor factors a [P, H] prompt as it factors an embedding.
"""

from typing import Iterator, Sequence

import flax
import jax
import optax
from flax import traverse_util
from t5x import adafactor, optimizers

from prompt_tuning_jax import axes, trainable
from prompt_tuning_jax.training import steps

# Our axes' Adafactor roles: rows of a prompt table are like vocabulary rows, its width like 'embed'.
_FACTOR_ROLES = {
    "prompt_length": adafactor.FactorDim.COLUMN,
    "prompt_embed": adafactor.FactorDim.ROW,
    "prompt_mlp": adafactor.FactorDim.COLUMN,
    "prompt_layers": adafactor.FactorDim.BATCH,
    "prompt_kv": adafactor.FactorDim.BATCH,
    "prompt_heads": adafactor.FactorDim.COLUMN,
    "prompt_head_dim": adafactor.FactorDim.COLUMN,
    "classes": adafactor.FactorDim.COLUMN,
    "tasks": adafactor.FactorDim.BATCH,
    "token_types": adafactor.FactorDim.COLUMN,
    "abspos": adafactor.FactorDim.COLUMN,
}


class PatternTraversal:
  """A flax-style Traversal (what t5x's MultiOptimizer iterates) over the leaves of a nested dict whose
  '/'-joined path fully matches one of `patterns`, in path order."""

  def __init__(self, patterns: Sequence[str]):
    self.patterns = tuple(patterns)

  def iterate(self, tree) -> Iterator:
    flat = traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")
    for path in sorted(flat):
      if trainable.is_trainable(path, self.patterns):
        yield flat[path]


def prompt_only(optimizer: optimizers.OptimizerDef, patterns: Sequence[str] = (r"prompt/.*",)) -> optimizers.OptimizerDef:
  """`optimizer` applied to the parameters matching `patterns` only; the rest stay as restored."""
  return optimizers.MultiOptimizer([(PatternTraversal(patterns), optimizer)])


class TrainableOptax(optimizers.OptaxWrapper):
  """An optax `transform` without learning-rate scaling, on the parameters matching `patterns` only: the
  others get no state and come back untouched; updates are scaled by t5x's learning rate (module docstring)."""

  def __init__(self, transform: optax.GradientTransformation, patterns: Sequence[str] = trainable.DEEP_PROMPT_PATTERNS):
    super().__init__(transform)
    self.patterns = tuple(patterns)

  def init_state(self, params):
    trained, _ = trainable.split_params(params, self.patterns)
    return optimizers.OptimizerState(step=0, param_states=self.optax_optimizer.init(trained))

  def apply_gradient(self, hyper_params, params, state, grads):
    trained, frozen = trainable.split_params(params, self.patterns)
    directions, param_states = self.optax_optimizer.update(trainable.split_params(grads, self.patterns)[0],
                                                          state.param_states, trained)
    updates = jax.tree.map(lambda d: -hyper_params.learning_rate * d, directions)  # optax's scale_by_learning_rate
    new_params = trainable.merge_params(optax.apply_updates(trained, updates), frozen)
    if isinstance(params, flax.core.FrozenDict):  # The train state's type, which its sharding tree has.
      new_params = flax.core.freeze(new_params)
    return new_params, optimizers.OptimizerState(step=state.step + 1, param_states=param_states)

  def derive_logical_axes(self, optimizer, param_logical_axes):
    """The optimizer with its target's leaves replaced by their logical axes and its state's by theirs."""
    trained_axes, _ = trainable.split_params(param_logical_axes, self.patterns)
    state_axes = optimizers.OptaxStatePartitionRules.derive_optax_logical_axes(optimizer.state.param_states,
                                                                               trained_axes)
    logical = jax.tree.map(lambda _: None, optimizer.state_dict())
    logical["target"] = param_logical_axes
    logical["state"]["param_states"] = flax.serialization.to_state_dict(state_axes)
    return optimizer.restore_state(flax.core.unfreeze(logical))


def adamw_direction(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                    weight_decay: float = 0.01) -> optax.GradientTransformation:
  """optax.adamw without its final learning-rate scaling (TrainableOptax applies t5x's rate)."""
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), optax.add_decayed_weights(weight_decay))


def linear_decay(learning_rate: float, train_steps: int, warmup_steps: int = 0) -> optax.Schedule:
  """P-Tuning v2's learning rate (warmup, then linear decay to 0), as our trainer's adamw schedules it."""
  return steps.linear_schedule(learning_rate, train_steps, warmup_steps)


def axis_rules():
  """Rules for our axes that t5x's standard_logical_axis_rules lacks (pass as its additional_rules)."""
  from t5x import partitioning  # pylint: disable=g-import-not-at-top
  known = {name for name, _ in partitioning.standard_logical_axis_rules()}
  return tuple((name, mesh) for name, mesh in axes.LOGICAL_AXIS_RULES if name not in known)


def factor_rules():
  """t5x's standard Adafactor factor rules plus our prompt and head axes."""
  return flax.core.freeze({**adafactor.standard_logical_factor_rules(), **_FACTOR_ROLES})
