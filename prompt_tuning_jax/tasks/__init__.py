"""Task registry. Importing this package registers every task and mixture with seqio.

Registered tasks use the defaults: the data shipped in tasks/data, the packaged MiniLM's vocab.txt
(encoder tasks) and t5's default SentencePiece model (text-to-text tasks), so `python -m
prompt_tuning_jax.tasks --list` and a t5x user's MIXTURE_OR_TASK_NAME work. A run asks for its tasks
with its own values: `get_task(name, data_dir=DATA_DIR, vocabulary=...)` (tasks.loading.load_examples and
load_text_examples pass them on); nothing is configured globally. `info(name)` gives an
encoder task's family, labels and selection metric (registry.TaskInfo), whatever the data and vocabulary.
"""

from typing import Optional, Tuple

import seqio

from prompt_tuning_jax import errors
from prompt_tuning_jax.tasks import classification, mixtures, registry
from prompt_tuning_jax.tasks import t5_qa, t5_superglue, text_to_text  # pylint: disable=unused-import  (T5 tasks)
from prompt_tuning_jax.tasks.registry import INFO, LABEL_NAMES, TaskInfo
from prompt_tuning_jax.tasks.sources import DataError, resolve_data_dir


class UnknownTaskError(errors.ConfigError):
  """MIXTURE_OR_TASK_NAME (or a task name given elsewhere) names no registered task of the right kind."""


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


def get_task(name: str, *, data_dir=None, vocabulary: Optional[seqio.Vocabulary] = None) -> seqio.Task:
  """The seqio Task `name` reading its files under `data_dir` and tokenizing with `vocabulary`, or an error
  listing the known tasks.

  data_dir: DATA_DIR; None = the data shipped in tasks/data. vocabulary: the backbone's (vocabularies.py);
  None = the task's default (packaged MiniLM WordPiece; t5's default SentencePiece). Built once per
  (name, data_dir, vocabulary); with both None it is the task seqio has registered.
  """
  if name in registry.SPECS:
    return registry.build_task(name, resolve_data_dir(data_dir), vocabulary)
  if name not in seqio.TaskRegistry.names():
    raise _unknown(name)
  if data_dir is not None or vocabulary is not None:
    raise errors.ConfigError(f"task {name!r} was registered with seqio elsewhere; it cannot be rebuilt for another "
                             "data_dir or vocabulary.")
  return seqio.get_mixture_or_task(name)


def has_labels(name: str, split: str) -> bool:
  """Whether `split` of task `name` holds labels (its source's `unlabeled` splits do not: test sets); the one
  decision every reader and writer of a split asks (sources.TfdsOrFiles.has_labels)."""
  if name not in registry.SPECS:
    raise _unknown(name)
  return registry.SPECS[name].source.has_labels(split)


def task_names(mixture_or_task: str) -> Tuple[str, ...]:
  """A mixture's task names as seqio lists them (sorted; index = task id), or (task,) for a task."""
  if mixture_or_task in seqio.MixtureRegistry.names():
    return tuple(t.name for t in seqio.get_mixture_or_task(mixture_or_task).tasks)
  return (get_task(mixture_or_task).name,)
