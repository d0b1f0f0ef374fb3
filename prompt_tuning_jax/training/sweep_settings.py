"""SWEEP: a dict of macro -> list of values, expanded into the settings of each sweep member.

`--gin.SWEEP="{'LEARNING_RATE': [3e-3, 1e-2, 3e-2], 'RANDOM_SEED': [0, 1, 2]}"` gives 9 members (the grid,
SWEEP_MODE='grid', in row-major order: the last macro varies fastest); SWEEP_MODE='zip' pairs the i-th values
instead (every list of one length). Member k trains as the same command with its macros bound to its values
would train alone (training/sweep.py); `bound_macros` rebinds them while its optimizer and model are built.

Only the macros a member can change without leaving the shared program are sweepable (SWEEPABLE): the
frozen backbone, the data, the loop (TRAIN_STEPS, EVAL_PERIOD, BATCH_SIZE), the mesh and MODEL_DIR are
one for all members.
"""

import contextlib
import itertools
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import gin

from prompt_tuning_jax import errors

# Macro -> what it changes in a member. LEARNING_RATE and RANDOM_SEED vary inside one vmapped group; the
# others change the member's module or optimizer schedule, so members that differ in them form separate
# groups of the same compiled step (training/sweep.py).
SWEEPABLE = {
    "LEARNING_RATE": "the optimizer's learning rate",
    "RANDOM_SEED": "prompt and head initialisation, dropout and batch order",
    "WARMUP_STEPS": "the learning-rate warmup",
    "PROMPT_LENGTH": "the prompt's length",
    "PROMPT_INIT": "the prompt's initializer",
    "PROMPT_REPARAM_HIDDEN": "the deep prompt's reparameterization MLP",
    "HEAD_DROPOUT": "the dropout rate before the head",
}
# Macros that change only a member's initial values or traced hyperparameters, not its compiled step.
IN_GROUP = ("LEARNING_RATE", "RANDOM_SEED", "PROMPT_INIT")
MODES = ("grid", "zip")


def _refuse(message: str) -> None:
  raise errors.ConfigError(message)


def check_sweep(sweep: Any, mode: Any, read_macros: Optional[Sequence[str]] = None) -> None:
  """One-line ConfigErrors for a SWEEP that is not a dict of sweepable, read macros -> non-empty lists, or a
  SWEEP_MODE that is not one of MODES ('zip' needs lists of one length)."""
  sweepable = ", ".join(SWEEPABLE)
  if mode not in MODES:
    _refuse(f"SWEEP_MODE={mode!r} is not one of {MODES}; set --gin.SWEEP_MODE=\"'grid'\" (every combination) or "
            "\"'zip'\" (the i-th values together).")
  if not isinstance(sweep, Mapping) or not sweep:
    _refuse(f"SWEEP={sweep!r} must be a non-empty dict of macro -> list of values, e.g. "
            "--gin.SWEEP=\"{'LEARNING_RATE': [3e-3, 1e-2], 'RANDOM_SEED': [0, 1]}\".")
  for name, values in sweep.items():
    if name not in SWEEPABLE:
      _refuse(f"SWEEP cannot sweep {name!r}: the members share one frozen backbone, data, loop and MODEL_DIR; "
              f"sweepable macros are {sweepable}.")
    if read_macros is not None and name not in read_macros:
      _refuse(f"SWEEP sweeps {name}, but nothing in this configuration reads it (no %{name} in the gin files "
              "given); drop it from SWEEP or add the method file that reads it.")
    if not isinstance(values, (list, tuple)) or not values:
      _refuse(f"SWEEP[{name!r}]={values!r} must be a non-empty list of values, e.g. [3e-3, 1e-2].")
  lengths = {name: len(values) for name, values in sweep.items()}
  if mode == "zip" and len(set(lengths.values())) > 1:
    _refuse(f"SWEEP_MODE='zip' pairs the i-th values of every macro, but the lists have different lengths "
            f"{lengths}; give every macro as many values, or use SWEEP_MODE='grid'.")
  if "RANDOM_SEED" in sweep:
    from prompt_tuning_jax.training import validation  # pylint: disable=g-import-not-at-top
    for seed in sweep["RANDOM_SEED"]:
      validation.check_int(seed, "RANDOM_SEED", "SWEEP['RANDOM_SEED']", 0,
                           "give non-negative integers, e.g. [0, 1, 2]", maximum=validation.MAX_SEED)


def members(sweep: Mapping[str, Sequence[Any]], mode: str = "grid") -> List[Dict[str, Any]]:
  """The members' settings, {macro: value} each: every combination (grid) or the i-th values (zip)."""
  names = list(sweep)
  rows = zip(*sweep.values()) if mode == "zip" else itertools.product(*sweep.values())
  return [dict(zip(names, row)) for row in rows]


def value_label(value: Any) -> str:
  """A short printable form of a swept value (a reference's configurable name, a float as %g)."""
  if isinstance(value, float):
    return f"{value:g}"
  if callable(value) and not isinstance(value, type):
    return getattr(value, "__name__", None) or type(value).__name__
  return repr(value) if isinstance(value, str) else str(value)


def label(settings: Mapping[str, Any]) -> Dict[str, str]:
  return {name: value_label(value) for name, value in settings.items()}


def group_key(settings: Mapping[str, Any]) -> tuple:
  """Members with equal keys share one compiled module and optimizer structure (IN_GROUP varies inside)."""
  return tuple((name, value_label(value)) for name, value in settings.items() if name not in IN_GROUP)


def referenced_macros() -> List[str]:
  """The macros the parsed config reads: every `%NAME` in a binding (a macro's value included)."""
  names = set()
  for ref in gin.config.iterate_references(gin.config._CONFIG):  # pylint: disable=protected-access
    if ref.selector == "gin.macro":
      names.add("/".join(ref.scopes))
  return sorted(names)


def _macro(name: str) -> str:
  return f"{name}/gin.macro.value"


@contextlib.contextmanager
def bound_macros(settings: Mapping[str, Any]) -> Iterator[None]:
  """The gin macros of `settings` bound to their values (and restored after), so configurables called or
  references evaluated inside see one member's configuration."""
  previous = {name: gin.query_parameter(_macro(name)) for name in settings}
  try:
    with gin.unlock_config():
      for name, value in settings.items():
        gin.bind_parameter(_macro(name), value)
    yield
  finally:
    with gin.unlock_config():
      for name, value in previous.items():
        gin.bind_parameter(_macro(name), value)
