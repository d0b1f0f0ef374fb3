"""Task registry. Importing this package registers every task with seqio."""

import seqio

from prompt_tuning_jax.tasks import classification
from prompt_tuning_jax.tasks.classification import LABEL_NAMES
from prompt_tuning_jax.tasks.sources import DataError


class UnknownTaskError(ValueError):
  pass


def get_task(name: str) -> seqio.Task:
  """The registered seqio Task `name`, or an error listing the known ones."""
  if name not in seqio.TaskRegistry.names():
    known = ", ".join(sorted(LABEL_NAMES))
    raise UnknownTaskError(
        f"unknown task {name!r}. Registered tasks: {known}. Set MIXTURE_OR_TASK_NAME to one of them.")
  return seqio.get_mixture_or_task(name)
