"""Metric functions in the seqio signature: fn(targets, predictions) -> {name: value}.

Values are percentages, as t5/seqio report them. What each one reproduces:
- `f1_macro`: t5's `mean_multiclass_f1` (sklearn `fbeta_score(beta=1, labels=..., average="macro")` with its
  default zero_division): the mean of the per-class F1 over the given labels, where a class that is absent from
  both targets and predictions counts as F1 0, not 1 and not skipped.
- `multirc`: t5's MultiRC pair, exact match per question (`mean_group_metric(all_match)`) and F1a
  (`f1_score_with_invalid` over all answer options).
- `squad`, `record`, `squad_v2`: the official SQuAD v1.1 evaluation script (normalisation, EM, token F1, max
  over golds), which the ReCoRD script copies; and the v2.0 script, which scores an unanswerable question (no
  golds) against the empty string.
- `entity_f1`: seqeval's default (conlleval-compatible, non-strict) entity-level micro P/R/F1.
- `srl_f1`: the same spans without the predicate span V, as CoNLL-2005's srl-eval.pl scores arguments.
"""

import collections
import re
import string
from typing import Dict, Hashable, List, Mapping, Sequence, Set, Tuple

import numpy as np

from prompt_tuning_jax import errors


def accuracy(targets: Sequence[int], predictions: Sequence[int]) -> Dict[str, float]:
  targets, predictions = np.asarray(targets), np.asarray(predictions)
  if targets.shape != predictions.shape or targets.size == 0:
    raise ValueError(
        f"accuracy needs equally many targets and predictions, got {targets.shape} and {predictions.shape}.")
  return {"accuracy": 100.0 * float(np.mean(targets == predictions))}


def majority_class_accuracy(targets: Sequence[int]) -> float:
  """Accuracy (percent) of always predicting the most frequent target."""
  counts = np.bincount(np.asarray(targets))
  return 100.0 * float(counts.max() / counts.sum())


def _same_length(name: str, targets: Sequence, predictions: Sequence) -> None:
  if len(targets) != len(predictions) or not len(targets):
    raise ValueError(f"{name} needs equally many targets and predictions, got {len(targets)} and {len(predictions)}.")


def _f1(true_positives: int, false_positives: int, false_negatives: int) -> float:
  """F1 in [0, 1]; 0 when there is nothing to score (sklearn's zero_division=0)."""
  denominator = 2 * true_positives + false_positives + false_negatives
  return 2 * true_positives / denominator if denominator else 0.0


def f1_macro(targets: Sequence[int], predictions: Sequence[int], *, labels: Sequence[int]) -> Dict[str, float]:
  """Unweighted mean of the per-class F1 over `labels` (CB: labels=range(3)), as t5's mean_multiclass_f1.

  Bind the label set with functools.partial for seqio. A class in `labels` that occurs in neither targets nor
  predictions contributes F1 0 (sklearn's f1_score(average='macro', labels=..., zero_division=0)).
  """
  _same_length("f1_macro", targets, predictions)
  targets, predictions = np.asarray(targets), np.asarray(predictions)
  per_class = [_f1(int(np.sum((predictions == c) & (targets == c))), int(np.sum((predictions == c) & (targets != c))),
                   int(np.sum((predictions != c) & (targets == c)))) for c in labels]
  return {"f1_macro": 100.0 * float(np.mean(per_class))}


def multirc(targets: Sequence[Mapping], predictions: Sequence[int]) -> Dict[str, float]:
  """MultiRC over answer-option rows: {"em": exact match per question, "f1a": binary F1 over all options}.

  Args:
    targets: per answer option, {"group": question id (any hashable), "label": 0 or 1}.
    predictions: per answer option, the predicted label. Anything but 0 or 1 counts as wrong (t5's
      f1_score_with_invalid), so it can never help either score.
  """
  _same_length("multirc", targets, predictions)
  labels = np.asarray([int(t["label"]) for t in targets])
  predicted = np.asarray(predictions)
  predicted = np.where((predicted == 0) | (predicted == 1), predicted, 1 - labels)
  right: Dict[Hashable, bool] = {}
  for target, label, guess in zip(targets, labels, predicted):
    right[target["group"]] = right.get(target["group"], True) and bool(label == guess)
  f1a = _f1(int(np.sum((predicted == 1) & (labels == 1))), int(np.sum((predicted == 1) & (labels == 0))),
            int(np.sum((predicted == 0) & (labels == 1))))
  return {"em": 100.0 * float(np.mean(list(right.values()))), "f1a": 100.0 * f1a}


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
  """The official SQuAD normalisation: lower-case, drop punctuation, drop articles, collapse whitespace."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  text = re.sub(r"\b(a|an|the)\b", " ", text, flags=re.UNICODE)
  return " ".join(text.split())


def _token_f1(gold: str, prediction: str) -> float:
  """The v1.1 script's F1: 0 when no token is shared (so also when either side normalises to "")."""
  gold_tokens, predicted_tokens = normalize_answer(gold).split(), normalize_answer(prediction).split()
  same = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(predicted_tokens), same / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def _token_f1_v2(gold: str, prediction: str) -> float:
  """The v2.0 script's F1: when either side normalises to "", 1 if both do, else 0."""
  if not normalize_answer(gold) or not normalize_answer(prediction):
    return float(normalize_answer(gold) == normalize_answer(prediction))
  return _token_f1(gold, prediction)


def _exact(gold: str, prediction: str) -> float:
  return float(normalize_answer(gold) == normalize_answer(prediction))


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Dict[str, float]:
  """SQuAD 1.1 {"em", "f1"} as the official v1.1 script: per question the best EM and token F1 over its golds.

  Args:
    targets: per question, its gold answer texts (at least one; unanswerable questions need `squad_v2`).
    predictions: per question, the predicted text.
  """
  _same_length("squad", targets, predictions)
  for i, golds in enumerate(targets):
    if not golds:
      raise errors.DataError(f"squad: question {i} has no gold answer; score SQuAD 2.0 with squad_v2.")
  em = sum(max(_exact(g, p) for g in golds) for golds, p in zip(targets, predictions))
  f1 = sum(max(_token_f1(g, p) for g in golds) for golds, p in zip(targets, predictions))
  return {"em": 100.0 * em / len(targets), "f1": 100.0 * f1 / len(targets)}


def squad_v2(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Dict[str, float]:
  """SQuAD 2.0 {"em", "f1"} as the official v2.0 script.

  Golds that normalise to "" are dropped; a question left with none (unanswerable: no golds) is scored against
  "", so its EM = F1 = 1 iff the prediction is empty (normalises to ""). On the rest it equals `squad` except when
  a prediction or a gold normalises to "".
  """
  _same_length("squad_v2", targets, predictions)
  em = f1 = 0.0
  for golds, prediction in zip(targets, predictions):
    golds = [g for g in golds if normalize_answer(g)] or [""]
    em += max(_exact(g, prediction) for g in golds)
    f1 += max(_token_f1_v2(g, prediction) for g in golds)
  return {"em": 100.0 * em / len(targets), "f1": 100.0 * f1 / len(targets)}


def record(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Dict[str, float]:
  """ReCoRD {"em", "f1"}: per query, the predicted entity text against every gold answer (max). The official
  ReCoRD script is the SQuAD 1.1 one, so this is `squad`."""
  return squad(targets, predictions)


def _spans(tag_sequences: Sequence[Sequence[str]]) -> List[Set[Tuple[int, str, int, int]]]:
  """Per sentence, its (sentence, type, first, last) spans as seqeval chunks them (conlleval rules: an I- tag
  after O or after another type starts a new span)."""
  # Imported here: seqeval pulls in scikit-learn, which the rest of the package does not need.
  from seqeval.metrics.sequence_labeling import get_entities  # pylint: disable=g-import-not-at-top
  return [{(i, kind, first, last) for kind, first, last in get_entities(list(tags))}
          for i, tags in enumerate(tag_sequences)]


def _micro_prf(gold: Set, predicted: Set) -> Dict[str, float]:
  tp = len(gold & predicted)
  precision = tp / len(predicted) if predicted else 0.0
  recall = tp / len(gold) if gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": 100.0 * precision, "recall": 100.0 * recall, "f1": 100.0 * f1}


def _check_tag_sequences(name: str, targets, predictions) -> None:
  _same_length(name, targets, predictions)
  for i, (gold, predicted) in enumerate(zip(targets, predictions)):
    if len(gold) != len(predicted):
      raise ValueError(f"{name}: sentence {i} has {len(gold)} gold tags and {len(predicted)} predicted tags.")


def entity_f1(targets: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> Dict[str, float]:
  """Entity-level micro {"precision", "recall", "f1"} over BIO/IOB tag sequences, one per sentence.

  Equals seqeval.metrics.{precision,recall,f1}_score in their default mode (conlleval's chunking; a span is
  right when its type, first and last word all match), with zero_division=0.
  """
  _check_tag_sequences("entity_f1", targets, predictions)
  return _micro_prf(set().union(*_spans(targets)), set().union(*_spans(predictions)))


def srl_f1(targets: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]],
           excluded: Sequence[str] = ("V",)) -> Dict[str, float]:
  """Argument-span micro {"precision", "recall", "f1"} for semantic role labelling, one BIO sequence per
  (sentence, predicate), e.g. B-ARG0 I-ARG0 B-V B-ARG1 I-ARG1.

  Spans are chunked as in `entity_f1`; the predicate's own span (type V) is left out of every count, as
  CoNLL-2005's srl-eval.pl does. Continuation (C-ARGn) and reference (R-ARGn) spans count as types of their
  own, as AllenNLP's span-based F1 does; srl-eval.pl instead scores a C- piece together with its base argument.
  """
  _check_tag_sequences("srl_f1", targets, predictions)

  def arguments(sequences):
    return {span for span in set().union(*_spans(sequences)) if span[1] not in excluded}

  return _micro_prf(arguments(targets), arguments(predictions))
