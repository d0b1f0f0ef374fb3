"""Evaluation of any model of the contract, through the partitioner.

Every eval set is cut into batches by the model's batcher (shortest first, the last batch
padded); the model's `eval_batch` runs jitted with the batch split over the mesh's 'data'
axis and its outputs replicated, so every host reads all of them (multi-host: each host
contributes only its rows of a batch). The outputs are put back in example order and the
model scores them on the host (`score_examples`) with the task's metrics.
"""

from typing import Dict, List, Mapping

import numpy as np

from prompt_tuning_jax.training import partitioning, steps
from prompt_tuning_jax.models.base import BaseModel


class Evaluator:
  """`__call__(trained, frozen)` -> metrics of every eval set; `outputs(...)` -> the per-example outputs.

  With several sets (a mixture), metrics are prefixed 'task/', and the selection metric and 'loss'
  are the means over the sets.
  """

  def __init__(self, model: BaseModel, partitioner: partitioning.Partitioner, trainable_sh, frozen_sh,
               eval_sets: Mapping[str, object], batch_size: int, selection_metric: str,
               task_metric: Mapping[str, str] = None):
    self.model, self.eval_sets, self.batch_size = model, dict(eval_sets), batch_size
    self.selection_metric = selection_metric
    self.task_metric = dict(task_metric or {name: selection_metric for name in eval_sets})
    self.last_outputs: Dict[str, Dict[str, List[np.ndarray]]] = {}  # Per eval set, the last `score`'s outputs.
    self._step = partitioner.jit_eval_step(steps.make_eval_step(model), trainable_sh, frozen_sh, batch_size)

  def outputs(self, trained, frozen, examples) -> Dict[str, List[np.ndarray]]:
    """Per output name, one array per example in example order (the batch rows that padding added dropped)."""
    collected: Dict[str, List[np.ndarray]] = {}
    for index, batch in self.model.batcher.eval_batches(examples, self.batch_size):
      for name, value in self._step(trained, frozen, batch).items():
        value = np.asarray(value)
        rows = collected.setdefault(name, [None] * len(examples))
        for row, i in enumerate(index):
          rows[i] = value[row]
    return collected

  def score(self, name: str, trained, frozen) -> Dict[str, float]:
    examples = self.eval_sets[name]
    outputs = self.outputs(trained, frozen, examples)
    self.last_outputs[name] = outputs  # What the trainer's predictions of this evaluation are decoded from.
    return self.model.score_examples(name, examples, outputs)

  def __call__(self, trained, frozen) -> Dict[str, float]:
    scores = {name: self.score(name, trained, frozen) for name in self.eval_sets}
    if len(scores) == 1:
      return next(iter(scores.values()))
    out = {f"{name}/{k}": v for name, task_scores in scores.items() for k, v in task_scores.items()}
    out[self.selection_metric] = float(np.mean([s[self.task_metric[n]] for n, s in scores.items()]))
    out["loss"] = float(np.mean([s["loss"] for s in scores.values()]))
    return out
