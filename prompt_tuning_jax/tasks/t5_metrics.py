"""Postprocessors and metrics of T5's text-to-text evaluation (t5/data/postprocessors.py, t5/evaluation/metrics.py).

A decoded string becomes a label id by exact match against the task's label strings; a string that is none of
them is -1 and counts as wrong in every metric (never an error). Values are percentages. What each reproduces:
- `string_to_label`: t5's string_label_to_class_id (default -1).
- tasks/metrics.py's `accuracy` and `f1_macro`: t5's accuracy and mean_multiclass_f1 on those ids.
- `matthews_with_invalid`: sklearn's matthews_corrcoef after each invalid id is set to the wrong class (as t5's
  f1_score_with_invalid does), so a binary task stays binary.
- `multirc_grouped`: t5's mean_group_metric(all_match) per question ("em") and multirc_f1_over_all_answers ("f1a").
- `record_deduplicated`: t5's deduplicate_metric(squad): the first row of each query against all its answers.
- `squad_all_answers`: t5's squad metric (the SQuAD script's normalisation, max over every gold answer).
- `wsc_simple_label`: t5's wsc_simple postprocessor: 1 when the decoded referent matches the example's referent
  (case and determiners ignored, one word set inside the other, both or neither possessive), 0 when not, -1
  for an empty prediction.
"""

from typing import Dict, Hashable, List, Sequence

import numpy as np

from prompt_tuning_jax.tasks import metrics


def string_to_label(text: str, label_strings: Sequence[str]) -> int:
  """The index of `text` in label_strings, or -1 when it is none of them."""
  return list(label_strings).index(text) if text in label_strings else -1


def labels_of(texts: Sequence[str], label_strings: Sequence[str]) -> List[int]:
  return [string_to_label(t, label_strings) for t in texts]


def _binary_with_invalid(targets: Sequence[int], predictions: Sequence[int]):
  """Invalid predictions (not 0 or 1) replaced by the wrong class, as t5's f1_score_with_invalid."""
  targets, predictions = np.asarray(targets), np.asarray(predictions).copy()
  invalid = (predictions != 0) & (predictions != 1)
  predictions[invalid] = 1 - targets[invalid]
  return targets, predictions


def matthews_with_invalid(targets: Sequence[int], predictions: Sequence[int]) -> Dict[str, float]:
  """Matthews correlation (percent) of binary labels; 0 when a row or column of the confusion matrix is empty
  (sklearn's convention)."""
  if len(targets) != len(predictions) or not len(targets):
    raise ValueError(f"matthews needs equally many targets and predictions, got {len(targets)} and "
                     f"{len(predictions)}.")
  t, p = _binary_with_invalid(targets, predictions)
  tp, tn = float(np.sum((t == 1) & (p == 1))), float(np.sum((t == 0) & (p == 0)))
  fp, fn = float(np.sum((t == 0) & (p == 1))), float(np.sum((t == 1) & (p == 0)))
  denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return {"matthews_corr": 100.0 * ((tp * tn - fp * fn) / denominator if denominator else 0.0)}


def multirc_grouped(groups: Sequence[Hashable], targets: Sequence[int], predictions: Sequence[int]) -> Dict[str, float]:
  """{"em": exact match of every answer of a question, "f1a": F1 over all answers}; invalid ids are wrong."""
  return metrics.multirc([{"group": g, "label": t} for g, t in zip(groups, targets)], list(predictions))


def record_deduplicated(groups: Sequence[Hashable], answers: Sequence[Sequence[str]],
                        predictions: Sequence[str]) -> Dict[str, float]:
  """ReCoRD {"em", "f1"}: per query (group) its first row's prediction against all of its answers."""
  seen, golds, guesses = set(), [], []
  for group, gold, guess in zip(groups, answers, predictions):
    if group not in seen:
      seen.add(group)
      golds.append(list(gold))
      guesses.append(guess)
  return metrics.squad(golds, guesses)


def squad_all_answers(answers: Sequence[Sequence[str]], predictions: Sequence[str]) -> Dict[str, float]:
  return metrics.squad([list(a) for a in answers], list(predictions))


_DETERMINERS = frozenset({"a", "an", "few", "her", "his", "each", "every", "many", "much", "my", "our", "some",
                          "that", "the", "their", "these", "this", "those", "which", "whose", "your"})


def _clean_referent(text: str) -> str:
  return " ".join(w for w in text.strip().lower().split(" ") if w not in _DETERMINERS)


def wsc_simple_label(prediction: str, referent: str) -> int:
  """1 if the decoded `prediction` names `referent`, 0 if not, -1 for an empty prediction (never right)."""
  prediction, referent = _clean_referent(prediction), _clean_referent(referent)
  if not prediction:
    return -1
  if ("'" in prediction) != ("'" in referent):  # "Bob" is not "Bob's hat".
    return 0
  said, meant = set(prediction.split(" ")), set(referent.split(" "))
  return int(said <= meant or meant <= said)
