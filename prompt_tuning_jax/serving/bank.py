"""The served tasks over one frozen backbone: loaded once, tasks grouped by signature, one TaskGroup each.

`ServingBank.answer(items)` answers a round of requests: per task one preprocessing pass over all its
inputs, per group one forward per batch that mixes the group's tasks, then each input's answer.
"""

import dataclasses
import threading
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from prompt_tuning_jax import errors
from prompt_tuning_jax.data import vocabularies
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.serving import answers, engine, exports, inputs


@dataclasses.dataclass
class Item:
  """One request: task name, its inputs' feature rows (inputs.feature_rows) -> per input an answer dict
  (with "truncated": true where the feature length cut it)."""
  task: str
  rows: List[List[dict]]


class ServingBank:
  """Attributes:
    tasks: name -> ServedTask.
    groups: signature -> TaskGroup; tasks of equal signature share one.
    compile_seconds: time spent compiling the buckets at start (and on each added task).
  """

  def __init__(self, export_paths: Mapping[str, str], backbone_dir: Optional[str] = None, max_batch: int = 32,
               lengths: Sequence[int] = (), max_length: Optional[int] = None):
    self.backbone_path = resolve_backbone_dir(backbone_dir)
    self.config, self.backbone = load_backbone(self.backbone_path)
    self.vocabulary = vocabularies.wordpiece_vocabulary(self.backbone_path / "vocab.txt")
    self.max_batch, self.lengths, self.max_length = max_batch, tuple(lengths), max_length
    self.tasks: Dict[str, exports.ServedTask] = {}
    self.groups: Dict[tuple, engine.TaskGroup] = {}
    self.compile_seconds = 0.0
    self._lock = threading.Lock()  # Adding a task swaps groups; a round reads one consistent set.
    if not export_paths:
      raise errors.ConfigError("no export to serve: pass --export NAME=PATH (repeatable).")
    served = [self._read(name, path) for name, path in export_paths.items()]
    self._rebuild(served)

  def _read(self, name: str, path) -> exports.ServedTask:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
      raise errors.ConfigError(f"task name {name!r}: use letters, digits, '_' and '-'.")
    if name in self.tasks:
      raise errors.ConfigError(f"task {name!r} is already served (from {self.tasks[name].path}).")
    task = exports.read_served_task(name, path, self.config, str(self.backbone_path), self.max_length)
    inputs.trace(task.task, task.max_length, self.vocabulary)
    return task

  def _rebuild(self, new: Sequence[exports.ServedTask]) -> None:
    """Groups for the served tasks plus `new`; only groups that change are rebuilt and compiled."""
    tasks = {**self.tasks, **{t.name: t for t in new}}
    by_signature: Dict[tuple, List[exports.ServedTask]] = {}
    for task in tasks.values():
      by_signature.setdefault(task.signature, []).append(task)
    changed = {t.signature for t in new}
    groups = {sig: self.groups[sig] for sig in by_signature if sig not in changed and sig in self.groups}
    for sig in changed:
      group = engine.TaskGroup(self.config, self.backbone, by_signature[sig], self.max_batch, self.lengths)
      self.compile_seconds += group.compile()
      groups[sig] = group
    with self._lock:
      self.tasks, self.groups = tasks, groups

  def add(self, name: str, path) -> exports.ServedTask:
    """Serves export `path` as `name` from now on (its group is rebuilt and compiled first)."""
    task = self._read(name, path)
    self._rebuild([task])
    return task

  def group_names(self) -> List[List[str]]:
    return [[m.name for m in group.members] for group in self.groups.values()]

  def describe(self) -> List[dict]:
    """GET /v1/tasks: each task's family, labels, max length, prompt and export."""
    out = []
    for task in self.tasks.values():
      group = self.groups[task.signature]
      out.append({"name": task.name, "task": task.task, "family": task.family, "labels": list(task.label_names),
                  "max_length": task.max_length, "prompt": type(task.prompt).__name__ if task.prompt else "none",
                  "export": str(task.path), "group_size": len(group.members)})
    return out

  def answer(self, items: Sequence[Item]) -> List[List[dict]]:
    """Answers a round of requests (their tasks known): per item, an answer per input."""
    with self._lock:
      tasks, groups = self.tasks, self.groups
    prepared: Dict[int, List[inputs.Prepared]] = {}
    by_task: Dict[str, List[int]] = {}
    for i, item in enumerate(items):
      by_task.setdefault(item.task, []).append(i)
    for name, indices in by_task.items():
      task = tasks[name]
      member = [m.name for m in groups[task.signature].members].index(name)
      flat = [rows for i in indices for rows in items[i].rows]
      done = inputs.prepare(task.task, task.family, flat, task.max_length, self.vocabulary, task_id=member)
      for i in indices:
        prepared[i], done = done[:len(items[i].rows)], done[len(items[i].rows):]
    outputs: Dict[int, List[List[np.ndarray]]] = {}
    by_group: Dict[tuple, List[int]] = {}
    for i, item in enumerate(items):
      by_group.setdefault(tasks[item.task].signature, []).append(i)
    for sig, indices in by_group.items():
      parts = [p.examples for i in indices for p in prepared[i]]
      results = groups[sig].run(parts, self.max_batch)
      for i in indices:
        outputs[i], results = results[:len(prepared[i])], results[len(prepared[i]):]
    out = []
    for i, item in enumerate(items):
      task = tasks[item.task]
      out.append([{**answers.answer(task.task, task.family, task.label_names, p.examples, o),
                   **({"truncated": True} if p.truncated else {})} for p, o in zip(prepared[i], outputs[i])])
    return out
