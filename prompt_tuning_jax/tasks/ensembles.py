"""Classification metrics from logits of one model or of an ensemble of K members.

Members are combined two ways: the mean of their probabilities (the ensemble's
prediction) and a majority vote of their argmaxes, ties broken by the mean probability.
A T5 ensemble votes on decoded strings the same way (`majority_vote_strings`).
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def majority_vote(member_predictions: np.ndarray, mean_probs: np.ndarray) -> np.ndarray:
  """member_predictions [K, n], mean_probs [n, C] -> [n]: the most voted class; among
  equally voted classes the one with the highest mean probability."""
  num_classes = mean_probs.shape[-1]
  votes = np.stack([np.bincount(p, minlength=num_classes) for p in member_predictions.T])  # [n, C]
  return np.argmax(votes + 0.5 * mean_probs, -1)  # Probabilities < 1 only break ties.


def majority_vote_strings(member_strings: Sequence[Sequence[str]], member_log_probs: np.ndarray) -> List[str]:
  """member_strings [K][n] (each member's decoded strings), member_log_probs [K, n] (each member's
  log-probability of its own string) -> [n]: the most voted string.

  Among equally voted strings the one with the highest mean probability wins, as in `majority_vote`:
  a string's mean probability is the mean over the K members of the probability each gave it, where
  a member that decoded another string counts 0 for it (it is not scored on strings it did not
  decode). Exact ties left go to the string the lowest-numbered member decoded.
  """
  probs = np.exp(np.asarray(member_log_probs, np.float64))
  out = []
  for i in range(len(member_strings[0])):
    votes: Dict[str, List[float]] = {}
    for k, strings in enumerate(member_strings):  # Dicts keep the first member's order for the last tie-break.
      votes.setdefault(strings[i], []).append(probs[k, i])
    out.append(max(votes, key=lambda s: (len(votes[s]), sum(votes[s]))))  # max keeps the first of equals.
  return out


def mean_probabilities(logits: np.ndarray, num_labels: int) -> np.ndarray:
  """logits [K, n, C'] of K members (classes beyond num_labels ignored) -> the members' mean probabilities [n, C]."""
  return np.exp(log_softmax(np.asarray(logits, np.float64)[..., :num_labels])).mean(0)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_labels: int
                           ) -> Tuple[Dict[str, float], np.ndarray]:
  """logits [K, n, C'] (K members; C' >= num_labels, extra classes ignored), labels [n].

  Returns (metrics, predictions [n]). Metrics (percent and mean nats): accuracy and loss of
  the mean-probability prediction; with K > 1 also vote_accuracy and member_{k}_accuracy.
  """
  log_probs = log_softmax(np.asarray(logits, np.float64)[..., :num_labels])  # [K, n, C]
  mean_probs = mean_probabilities(logits, num_labels)
  predictions = mean_probs.argmax(-1)
  labels = np.asarray(labels)
  out = {"accuracy": 100.0 * float(np.mean(predictions == labels)),
         "loss": float(-np.mean(np.log(mean_probs[np.arange(len(labels)), labels] + 1e-30)))}
  k = log_probs.shape[0]
  if k > 1:
    member_predictions = log_probs.argmax(-1)  # [K, n]
    out["vote_accuracy"] = 100.0 * float(np.mean(majority_vote(member_predictions, mean_probs) == labels))
    for i in range(k):
      out[f"member_{i}_accuracy"] = 100.0 * float(np.mean(member_predictions[i] == labels))
  return out, predictions
