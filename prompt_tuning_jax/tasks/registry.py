"""Registration of encoder tasks: the seqio Task, plus what the trainer needs beyond it (`TaskInfo`).

Every task module registers through `register`, so `seqio.get_mixture_or_task(name)` and `INFO[name]`
always exist together; `LABEL_NAMES[name]` gives the classes, choices or tags in label-id order.
"""

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import seqio

from prompt_tuning_jax import families
from prompt_tuning_jax.tasks.sources import TfdsOrFiles

# (meta, labels [n], predictions [n], probabilities [n, C]) -> (targets, predictions) for a task's metric_fns.
TargetsAndPredictions = Callable[[Mapping[str, list], Sequence[int], Sequence[int], Sequence], Tuple[list, list]]


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """Attributes:
    family: one of families.FAMILIES: picks the head, the loss and the decoder.
    label_names: classes (classification), choices (multiple choice) or tags (token classification) in
      label-id order; () for span extraction.
    metric: the selection metric: a key that the task's metric_fns return ('accuracy', 'f1', 'f1a', ...).
    source: where the rows come from (TFDS name, files), for `--list` and error messages.
    targets_and_predictions: classification tasks scored over groups of rows (MultiRC: the answer options of a
      question; ReCoRD: the candidate entities of a query) turn row predictions into the metric_fns'
      arguments; None gives (labels, predictions).
    no_answer: span extraction: predict "" when the [CLS] null score wins (SQuAD 2.0).
  """
  family: str
  label_names: Tuple[str, ...]
  metric: str
  source: TfdsOrFiles
  targets_and_predictions: Optional[TargetsAndPredictions] = None
  no_answer: bool = False


INFO: Dict[str, TaskInfo] = {}
LABEL_NAMES: Dict[str, Tuple[str, ...]] = {}


def register(name: str, source: TfdsOrFiles, preprocessors: Sequence[Callable],
             output_features: Mapping[str, seqio.Feature], metric_fns: Sequence[Callable], *, family: str,
             metric: str, label_names: Sequence[str] = (), **info) -> None:
  """Adds the seqio Task `name` and its TaskInfo."""
  if family not in families.FAMILIES:
    raise ValueError(f"task {name!r}: unknown family {family!r}; use one of {families.FAMILIES}.")
  INFO[name] = TaskInfo(family, tuple(label_names), metric, source, **info)
  LABEL_NAMES[name] = tuple(label_names)
  seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(source, splits=source.splits),
                         preprocessors=list(preprocessors), output_features=output_features,
                         metric_fns=list(metric_fns))
