"""Metric functions in the seqio signature: fn(targets, predictions) -> {name: value}.

Values are percentages, as t5/seqio report them.
"""

from typing import Dict, Sequence

import numpy as np


def accuracy(targets: Sequence[int], predictions: Sequence[int]) -> Dict[str, float]:
  targets, predictions = np.asarray(targets), np.asarray(predictions)
  if targets.shape != predictions.shape or targets.size == 0:
    raise ValueError(f"accuracy needs equally many targets and predictions, got {targets.shape} and {predictions.shape}.")
  return {"accuracy": 100.0 * float(np.mean(targets == predictions))}


def majority_class_accuracy(targets: Sequence[int]) -> float:
  """Accuracy (percent) of always predicting the most frequent target."""
  counts = np.bincount(np.asarray(targets))
  return 100.0 * float(counts.max() / counts.sum())
