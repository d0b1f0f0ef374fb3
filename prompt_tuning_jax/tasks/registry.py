"""Task definitions (`TaskSpec`), their seqio registration, and what the trainer needs beyond a Task (`TaskInfo`).

A task is defined once, as a TaskSpec: its source (no data directory), preprocessors, metrics, and its
output features as a function of the vocabulary. `add(spec)` registers it with seqio built with the
defaults (SHIPPED_DATA_DIR; the spec's default vocabulary), so `seqio.get_mixture_or_task(name)` works
for t5x users and `--list`; `build_task(name, data_dir, vocabulary)` builds it for a run's values,
once per (name, data_dir, vocabulary). Registration changes no other module.

Encoder task modules register through `register`, so `SPECS[name]`, the seqio Task and `INFO[name]`
always exist together; `LABEL_NAMES[name]` gives the classes, choices or tags in label-id order.
"""

import dataclasses
import functools
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import seqio

from prompt_tuning_jax import errors
from prompt_tuning_jax.tasks import families
from prompt_tuning_jax.tasks.sources import SHIPPED_DATA_DIR, TfdsOrFiles
from prompt_tuning_jax.data.vocabularies import wordpiece_vocabulary

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


Features = Callable[[seqio.Vocabulary], Mapping[str, seqio.Feature]]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """How to build seqio Task `name` for any data directory and vocabulary.

  Attributes:
    source: the rows; its data_dir is set per build (TfdsOrFiles.at).
    features: vocabulary -> output features (features.encoder_features, text_to_text.text_to_text_features).
    default_vocabulary: () -> the vocabulary when a run gives none (the packaged MiniLM's WordPiece for
      encoder tasks, t5's default SentencePiece model for text-to-text ones).
    postprocess_fn: seqio's postprocess_fn (text-to-text tasks: what their metric_fns read from an example).
  """
  name: str
  source: TfdsOrFiles
  preprocessors: Tuple[Callable, ...]
  features: Features
  metric_fns: Tuple[Callable, ...]
  default_vocabulary: Callable[[], seqio.Vocabulary]
  postprocess_fn: Optional[Callable] = None

  def build(self, data_dir=None, vocabulary: Optional[seqio.Vocabulary] = None) -> seqio.Task:
    source = self.source.at(data_dir)
    vocabulary = self.default_vocabulary() if vocabulary is None else vocabulary
    return seqio.Task(self.name, seqio.FunctionDataSource(source, splits=source.splits),
                      output_features=self.features(vocabulary), preprocessors=list(self.preprocessors),
                      metric_fns=list(self.metric_fns), postprocess_fn=self.postprocess_fn)


SPECS: Dict[str, TaskSpec] = {}
INFO: Dict[str, TaskInfo] = {}
LABEL_NAMES: Dict[str, Tuple[str, ...]] = {}


@functools.lru_cache(maxsize=None)
def build_task(name: str, data_dir: Path, vocabulary: Optional[seqio.Vocabulary]) -> seqio.Task:
  """SPECS[name] built for `data_dir` and `vocabulary` (None = the spec's default), once per arguments
  (pass all three positionally: the cache keys on the arguments as given)."""
  return SPECS[name].build(data_dir, vocabulary)


def add(spec: TaskSpec) -> None:
  """Defines task `spec.name` and registers it with seqio, built with the defaults."""
  SPECS[spec.name] = spec
  seqio.TaskRegistry.add_provider(spec.name, build_task(spec.name, SHIPPED_DATA_DIR, None))


def register(name: str, source: TfdsOrFiles, preprocessors: Sequence[Callable], features: Features,
             metric_fns: Sequence[Callable], *, family: str, metric: str, label_names: Sequence[str] = (),
             **info) -> None:
  """Adds encoder task `name` (tokenized with a WordPiece vocabulary) and its TaskInfo."""
  if family not in families.FAMILIES:
    raise errors.ConfigError(f"task {name!r}: unknown family {family!r}; use one of {families.FAMILIES}.")
  INFO[name] = TaskInfo(family, tuple(label_names), metric, source, **info)
  LABEL_NAMES[name] = tuple(label_names)
  add(TaskSpec(name, source, tuple(preprocessors), features, tuple(metric_fns), wordpiece_vocabulary))
