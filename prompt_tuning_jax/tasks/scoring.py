"""Evaluation: the model's outputs on every example of a split, decoded by the task's family and scored by
the task's seqio metric_fns.

| family                  | decoded into                                 | metric_fns(targets, predictions)  |
|-------------------------|----------------------------------------------|-----------------------------------|
| classification, choice  | the class (choice) of highest mean           | labels, classes; or the task's    |
|                         | probability over ensemble members            | groups (MultiRC, ReCoRD)          |
| token_classification    | a tag per word, read at its first sub-word   | gold and predicted tag sequences  |
| span_extraction         | each question's best span over its windows   | gold answers, predicted texts     |

Every task also reports `loss` (mean cross-entropy of what was trained: classes, labelled tokens, or answer
start and end per window).
"""

from typing import Dict, List, Tuple

import numpy as np

from prompt_tuning_jax import tasks
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.tasks import conll, ensembles, families, qa
from prompt_tuning_jax.tasks.labels import MASKED_LOGIT


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """logits [N, C], labels [N] -> [N] nats."""
  return -ensembles.log_softmax(np.asarray(logits, np.float64))[np.arange(len(labels)), labels]


def _run_metric_fns(task_name: str, targets, predictions) -> Dict[str, float]:
  out = {}
  for fn in tasks.get_task(task_name).metric_fns:
    out |= fn(targets, predictions)
  return out


def _classification(task_name: str, examples: batching.Examples, outputs: List[np.ndarray]) -> Dict[str, float]:
  info = tasks.info(task_name)
  logits, num_labels = np.stack(outputs, 1), len(info.label_names)  # [K, n, C']
  scores, predictions = ensembles.classification_metrics(logits, examples.labels, num_labels)
  if info.targets_and_predictions is None:
    return scores | _run_metric_fns(task_name, examples.labels, predictions)
  probabilities = ensembles.mean_probabilities(logits, num_labels)
  targets, grouped = info.targets_and_predictions(examples.meta, examples.labels, predictions, probabilities)
  return scores | _run_metric_fns(task_name, targets, grouped)


def token_predictions(task_name: str, examples: batching.Examples, outputs: List[np.ndarray]) -> List[List[str]]:
  """Per example, the predicted tag of every word (words cut by the length limit: 'O')."""
  label_names = tasks.info(task_name).label_names
  return [conll.predicted_tags(out[0, :len(word_ids), :len(label_names)].argmax(-1), word_ids, len(tags), label_names)
          for out, word_ids, tags in zip(outputs, examples.meta["word_ids"], examples.meta["tags"])]


def _tokens(task_name: str, examples: batching.Examples, outputs: List[np.ndarray]) -> Dict[str, float]:
  label_names = tasks.info(task_name).label_names
  losses = []
  for out, labels in zip(outputs, examples.labels):
    logits = out[0, :len(labels), :len(label_names)]  # Member 0: token tasks train no ensembles.
    labelled = labels >= 0
    losses.append(_cross_entropy(logits[labelled], labels[labelled]))
  targets = [list(tags) for tags in examples.meta["tags"]]
  return ({"loss": float(np.concatenate(losses).mean())} |
          _run_metric_fns(task_name, targets, token_predictions(task_name, examples, outputs)))


def span_predictions(task_name: str, examples: batching.Examples,
                     outputs: List[np.ndarray]) -> Tuple[List[qa.QAExample], Dict[str, str], List[float]]:
  """(the questions, in first-window order; each question id's predicted answer text over its windows;
  each window's loss)."""
  info, meta = tasks.info(task_name), examples.meta
  position: Dict[int, int] = {}  # A question's index in the split -> its place in `questions`.
  questions, features, starts, ends, losses = [], [], [], [], []
  for i, (out, answer) in enumerate(zip(outputs, examples.labels)):
    if meta["example_index"][i] not in position:
      position[meta["example_index"][i]] = len(questions)
      questions.append(qa.QAExample(meta["id"][i], "", meta["context"][i], tuple(meta["answers"][i]), ()))
    context_mask = np.asarray(examples.token_fields["context_mask"][i])
    features.append(qa.QAFeature(position[meta["example_index"][i]], examples.input_ids[i],
                                 examples.token_type_ids[i], context_mask, np.asarray(meta["offsets"][i]),
                                 int(answer[0]), int(answer[1])))
    logits = out[0, :len(context_mask)]  # [T, 2]; member 0: span tasks train no ensembles.
    # The training loss's softmax: over the context and [CLS], where windows without the answer point.
    inside = np.concatenate([[True], context_mask[1:] > 0])
    losses.append(_cross_entropy(np.where(inside[:, None], logits, MASKED_LOGIT).T, answer).mean())
    starts.append(logits[:, 0])
    ends.append(logits[:, 1])
  return questions, qa.postprocess(questions, features, starts, ends, version_2=info.no_answer), losses


def _spans(task_name: str, examples: batching.Examples, outputs: List[np.ndarray]) -> Dict[str, float]:
  questions, predicted, losses = span_predictions(task_name, examples, outputs)
  return {"loss": float(np.mean(losses))} | _run_metric_fns(task_name, [q.answers for q in questions],
                                                             [predicted[q.qid] for q in questions])


def score(task_name: str, examples: batching.Examples, outputs: List[np.ndarray]) -> Dict[str, float]:
  """Metrics of one task's split from `predict`'s outputs: 'loss', the task's metric_fns' keys and, for
  classification, ensembles.classification_metrics' (accuracy; per member and vote for ensembles)."""
  family = tasks.info(task_name).family
  if family == families.TOKEN_CLASSIFICATION:
    return _tokens(task_name, examples, outputs)
  if family == families.SPAN_EXTRACTION:
    return _spans(task_name, examples, outputs)
  return _classification(task_name, examples, outputs)
