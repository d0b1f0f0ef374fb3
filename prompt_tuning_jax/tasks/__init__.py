"""Task registry. Importing this package registers every task with seqio.

`python -m prompt_tuning_jax.tasks --list` prints every task and mixture; `info(name)` gives an
encoder task's family, labels and selection metric (registry.TaskInfo).
"""

from typing import Tuple

import seqio

from prompt_tuning_jax.tasks import classification, mixtures
from prompt_tuning_jax.tasks import text_to_text  # pylint: disable=unused-import  (T5 tasks)
from prompt_tuning_jax.tasks.registry import INFO, LABEL_NAMES, TaskInfo
from prompt_tuning_jax.tasks.sources import DataError


class UnknownTaskError(ValueError):
  pass


def _unknown(name: str) -> UnknownTaskError:
  by_family = {}
  for task, task_info in sorted(INFO.items()):
    by_family.setdefault(task_info.family, []).append(task)
  listing = "; ".join(f"{family}: {', '.join(names)}" for family, names in by_family.items())
  return UnknownTaskError(
      f"unknown task {name!r}. Registered tasks ({listing}); mixtures: {', '.join(sorted(mixtures.MIXTURES))}. "
      "Set MIXTURE_OR_TASK_NAME to one of them (python -m prompt_tuning_jax.tasks --list shows them all).")


def info(name: str) -> TaskInfo:
  """The TaskInfo of encoder task `name` (family, labels, selection metric)."""
  if name not in INFO:
    if name in seqio.TaskRegistry.names():
      raise UnknownTaskError(f"task {name!r} is not an encoder task (it has no head family): the encoder trainer "
                             "cannot train it.")
    raise _unknown(name)
  return INFO[name]


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
