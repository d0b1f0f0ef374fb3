"""The model's outputs for one input -> the answer a client reads (JSON-ready), per task family.

| family               | answer                                                                      |
|----------------------|-----------------------------------------------------------------------------|
| classification       | {"label", "probabilities": {label: p}} (MultiRC, ReCoRD: {"rows": [...]})     |
| multiple_choice      | {"label": the chosen choice's name, "probabilities": {choice: p}}           |
| token_classification | {"tags": a tag per word, "entities": [{"type", "start", "end"}]} (word      |
|                      | indices, end exclusive)                                                     |
| span_extraction      | {"answer": the best span's text over the context's windows}                 |

Decoding is the evaluation's own (tasks/scoring.py), so a served answer is what `eval` writes for the
same example.
"""

from typing import Dict, List, Sequence

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from prompt_tuning_jax.data import batching
from prompt_tuning_jax.tasks import ensembles, families, scoring


def _class_answer(logits: np.ndarray, label_names: Sequence[str]) -> Dict[str, object]:
  """logits [C'] (C' >= C: a bank pads to its largest task) -> the label and the probabilities."""
  probabilities = np.exp(ensembles.log_softmax(np.asarray(logits[:len(label_names)], np.float64)))
  return {"label": label_names[int(np.argmax(probabilities))],
          "probabilities": {name: float(p) for name, p in zip(label_names, probabilities)}}


def entities(tags: Sequence[str]) -> List[Dict[str, object]]:
  """BIO tags per word -> [{"type", "start", "end" (exclusive word indices)}] (seqeval's chunking)."""
  return [{"type": kind, "start": start, "end": end + 1} for kind, start, end in get_entities(list(tags))]


def answer(task: str, family: str, label_names: Sequence[str], examples: batching.Examples,
           outputs: List[np.ndarray]) -> Dict[str, object]:
  """The answer to one input: its examples and their outputs ([1, ...] each, the evaluation's member axis)."""
  if family == families.TOKEN_CLASSIFICATION:
    tags = scoring.token_predictions(task, examples, outputs)[0]
    return {"tags": tags, "entities": entities(tags)}
  if family == families.SPAN_EXTRACTION:
    questions, predicted, _ = scoring.span_predictions(task, examples, outputs)
    return {"answer": predicted[questions[0].qid]}
  rows = [_class_answer(out[0], label_names) for out in outputs]
  return rows[0] if len(rows) == 1 else {"rows": rows}
