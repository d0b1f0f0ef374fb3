"""predictions.jsonl for encoder tasks: a line per example with its id fields, its answer and its target.

One function serves every writer of encoder predictions: `python -m prompt_tuning_jax.eval` and `infer` on an
export (recipes/export_eval.py) and the trainer (MODEL_DIR/predictions/, training/fit.py). A line is

  {"idx" or "id": the example's id, <the answer>, "target": the gold answer in the answer's form}

with the answer exactly as the server gives it (serving/answers.py):

| family               | answer                                      | target                          |
|----------------------|---------------------------------------------|---------------------------------|
| classification       | "label" (a class name), "probabilities"     | the gold class name             |
| multiple_choice      | "label" (a choice name), "probabilities"    | the gold choice name            |
| token_classification | "tags" (a tag per word), "entities"         | the gold tags                   |
| span_extraction      | "answer" (text; one line per question)      | the gold answer texts           |

"target" is left out on a split without labels (tasks.has_labels: benchmark test sets). An ensemble's line
holds the members' mean probabilities, the prediction the evaluation scores.
"""

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import numpy as np

from prompt_tuning_jax import tasks
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.serving import answers
from prompt_tuning_jax.tasks import ensembles, families

ID_FIELDS = ("idx", "id")


def subset(examples: batching.Examples, index: Sequence[int]) -> batching.Examples:
  """The examples at `index` (in that order), every field and meta key kept."""
  labels = examples.labels
  return batching.Examples([examples.input_ids[i] for i in index], [examples.token_type_ids[i] for i in index],
                           [labels[i] for i in index] if isinstance(labels, list) else labels[list(index)],
                           examples.task_ids[list(index)],
                           {k: [v[i] for i in index] for k, v in examples.token_fields.items()},
                           {k: [v[i] for i in index] for k, v in examples.meta.items()})


def answer_units(family: str, examples: batching.Examples) -> List[List[int]]:
  """The example indices behind each line: one example, or a question's windows (span extraction)."""
  if family != families.SPAN_EXTRACTION:
    return [[i] for i in range(len(examples))]
  units: Dict[int, List[int]] = {}
  for i, question in enumerate(examples.meta["example_index"]):
    units.setdefault(question, []).append(i)
  return list(units.values())


def _combined(output: np.ndarray, num_labels: int) -> np.ndarray:
  """Outputs [K, C'] of K ensemble members -> [1, C] logits whose softmax is the members' mean probability."""
  return np.log(ensembles.mean_probabilities(np.asarray(output)[:, None], num_labels))


def _target(family: str, label_names: Sequence[str], part: batching.Examples):
  """The gold answer of one line's examples, in the answer's form."""
  if family == families.TOKEN_CLASSIFICATION:
    return list(part.meta["tags"][0])
  if family == families.SPAN_EXTRACTION:
    return list(part.meta["answers"][0])
  label = int(part.labels[0])
  return label_names[label] if label >= 0 else None


def prediction_lines(task_name: str, examples: batching.Examples, outputs: List[np.ndarray],
                     labeled: bool = True) -> List[dict]:
  """A line per example (QA: per question) of `task_name`'s `examples` from their outputs ([K, ...] each, the
  evaluation's member axis; K > 1: an ensemble). `labeled`: add each line's "target"."""
  info = tasks.info(task_name)
  family, label_names = info.family, info.label_names
  sequence = family in (families.CLASSIFICATION, families.MULTIPLE_CHOICE)
  lines = []
  for index in answer_units(family, examples):
    part = subset(examples, index)
    outs = [_combined(outputs[i], len(label_names)) if sequence and outputs[i].shape[0] > 1 else outputs[i]
            for i in index]
    ids = {k: examples.meta[k][index[0]] for k in ID_FIELDS if k in examples.meta}
    line = {**ids, **answers.answer(task_name, family, label_names, part, outs)}
    if labeled:
      line["target"] = _target(family, label_names, part)
    lines.append(line)
  return lines


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
  """Writes `rows` one JSON object a line (UTF-8, not ASCII-escaped), creating the directory."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # A temporary name, then a rename: a run stopped mid-write leaves the previous file, not half of one.
  partial = path.with_name(path.name + ".partial")
  partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
  os.replace(partial, path)
  return path
