"""Task registry. Importing this package registers every task with seqio."""

import seqio

from typing import Tuple

from prompt_tuning_jax.tasks import classification, mixtures
from prompt_tuning_jax.tasks.classification import LABEL_NAMES
from prompt_tuning_jax.tasks.sources import DataError


class UnknownTaskError(ValueError):
  pass


def _unknown(name: str) -> UnknownTaskError:
  return UnknownTaskError(
      f"unknown task {name!r}. Registered tasks: {', '.join(sorted(LABEL_NAMES))}; mixtures: "
      f"{', '.join(sorted(mixtures.MIXTURES))}. Set MIXTURE_OR_TASK_NAME to one of them.")


def get_task(name: str) -> seqio.Task:
  """The registered seqio Task `name`, or an error listing the known ones."""
  if name not in seqio.TaskRegistry.names():
    raise _unknown(name)
  return seqio.get_mixture_or_task(name)


def task_names(mixture_or_task: str) -> Tuple[str, ...]:
  """A mixture's task names as seqio lists them (sorted; index = task id), or (task,) for a task."""
  if mixture_or_task in seqio.MixtureRegistry.names():
    return tuple(t.name for t in seqio.get_mixture_or_task(mixture_or_task).tasks)
  return (get_task(mixture_or_task).name,)
