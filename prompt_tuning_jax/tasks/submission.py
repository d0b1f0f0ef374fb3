"""Predictions in a benchmark's submission format: SuperGLUE's per-task jsonl files.

SuperGLUE's grader takes one file per task, named as below, with a line {"idx": N, "label": ...} per test
example (MultiRC: per passage, its questions and answer options). The label forms follow the jiant toolkit's
writer (nyu-mll/jiant, jiant/scripts/benchmarks/benchmarks.py and each task's super_glue_format_preds), which
produces the benchmark's own sample submission:

| task  | file          | label                                    |
|-------|---------------|------------------------------------------|
| BoolQ | BoolQ.jsonl   | "true" / "false"                         |
| CB    | CB.jsonl      | "entailment" / "contradiction" / "neutral" |
| COPA  | COPA.jsonl    | 0 (choice1) / 1 (choice2)                |
| RTE, AX-b, AX-g | RTE.jsonl, AX-b.jsonl, AX-g.jsonl | "entailment" / "not_entailment" |
| WiC   | WiC.jsonl     | "true" / "false"                         |
| WSC   | WSC.jsonl     | "True" / "False"                         |
| MultiRC | MultiRC.jsonl | {"idx": passage, "passage": {"questions": [{"idx": q, "answers": [{"idx": a, "label": 0/1}]}]}} |
| ReCoRD | ReCoRD.jsonl | the query's best-scored entity text, "idx" the query's |

Lines come in the split's order (the test file's), one per test example.
"""

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from prompt_tuning_jax.tasks import superglue_rows as sg

# (line of predictions.jsonl, the task's label names) -> the submitted label.
Label = Callable[[dict, Sequence[str]], object]

_as_is: Label = lambda line, names: line["label"]
_lower: Label = lambda line, names: line["label"].lower()
_choice_index: Label = lambda line, names: names.index(line["label"])

PER_EXAMPLE: Dict[str, Tuple[str, Label]] = {
    "boolq": ("BoolQ.jsonl", _lower), "cb": ("CB.jsonl", _as_is), "copa": ("COPA.jsonl", _choice_index),
    "rte": ("RTE.jsonl", _as_is), "axb": ("AX-b.jsonl", _as_is), "axg": ("AX-g.jsonl", _as_is),
    "wic": ("WiC.jsonl", _lower), "wsc": ("WSC.jsonl", _as_is),
}
GROUPED = {"multirc": "MultiRC.jsonl", "record": "ReCoRD.jsonl"}


def file_name(task: str) -> Optional[str]:
  """The benchmark's file for `task` (e.g. 'CB.jsonl'), None when the task has no submission format."""
  return PER_EXAMPLE[task][0] if task in PER_EXAMPLE else GROUPED.get(task)


def _multirc(meta: Mapping[str, list], lines: Sequence[dict]) -> List[dict]:
  """Answer-option lines -> a line per passage, its questions and options in the split's order."""
  passages: Dict[int, Dict[int, List[dict]]] = {}
  for passage, question, answer, line in zip(meta["idx"], meta["group"], meta["answer_idx"], lines):
    passages.setdefault(passage, {}).setdefault(question, []).append(
        {"idx": int(answer), "label": int(line["label"] == sg.BOOL_LABELS[1])})
  return [{"idx": int(p), "passage": {"questions": [{"idx": int(q), "answers": a} for q, a in questions.items()]}}
          for p, questions in passages.items()]


def _record(meta: Mapping[str, list], lines: Sequence[dict]) -> List[dict]:
  """Candidate lines -> per query (in first-seen order) the entity of highest P(True)."""
  rows = [{"group": g, "entity": e, "answers": ()} for g, e in zip(meta["group"], meta["entity"])]
  _, best = sg.record_targets_and_predictions(rows, [line["probabilities"][sg.BOOL_LABELS[1]] for line in lines])
  return [{"idx": int(group), "label": entity} for group, entity in zip(dict.fromkeys(meta["group"]), best)]


def submission_rows(task: str, label_names: Sequence[str], meta: Mapping[str, list],
                    lines: Sequence[dict]) -> List[dict]:
  """The benchmark's lines for `task` from its predictions.jsonl lines (one per example, in example order) and
  the examples' meta (idx; MultiRC's group and answer_idx; ReCoRD's group and entity)."""
  if task == "multirc":
    return _multirc(meta, lines)
  if task == "record":
    return _record(meta, lines)
  label = PER_EXAMPLE[task][1]
  return [{"idx": int(idx), "label": label(line, label_names)} for idx, line in zip(meta["idx"], lines)]
