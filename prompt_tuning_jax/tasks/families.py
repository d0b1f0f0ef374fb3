"""Task families: how a task's examples look, which head reads the encoder and which loss trains it.

| family               | inputs        | labels                                   | head                         |
|----------------------|---------------|------------------------------------------|------------------------------|
| classification       | [T]           | class []                                 | 'sequence' on [CLS]          |
| multiple_choice      | [K, T]        | index of the right choice []             | 'sequence', logit 0 a choice |
| token_classification | [T]           | tag per token [T], IGNORE_LABEL off each | 'token' on every text token  |
|                      |               | word's first sub-word                    |                              |
| span_extraction      | [T] and       | answer's first and last token [2]        | 'span': start and end scores |
|                      | context_mask  | ((0, 0): not in this window)             |                              |

Classification and multiple choice share the head kind, so a mixture may hold both (SuperGLUE with COPA);
a mixture's tasks must share a head kind. Decoding and metrics per family live in `evaluation`.
"""

from typing import Sequence

from prompt_tuning_jax import errors

CLASSIFICATION = "classification"
MULTIPLE_CHOICE = "multiple_choice"
TOKEN_CLASSIFICATION = "token_classification"
SPAN_EXTRACTION = "span_extraction"
FAMILIES = (CLASSIFICATION, MULTIPLE_CHOICE, TOKEN_CLASSIFICATION, SPAN_EXTRACTION)

HEAD_KIND = {CLASSIFICATION: "sequence", MULTIPLE_CHOICE: "sequence", TOKEN_CLASSIFICATION: "token",
             SPAN_EXTRACTION: "span"}

# In a mixture every task gets its own head when label sets differ between tasks. Answer spans mean the same in
# every QA set, so QA tasks share one head: that is also what lets a model trained on one set be evaluated on
# another (MRQA's out-of-domain sets have no training split).
PER_TASK_HEADS = {CLASSIFICATION: True, MULTIPLE_CHOICE: True, TOKEN_CLASSIFICATION: True, SPAN_EXTRACTION: False}


def head_outputs(family: str, label_names: Sequence[str]) -> int:
  """C, the head's outputs per [CLS] or token: the classes or tags; 1 per choice; 2 (start, end) for spans."""
  if family not in FAMILIES:
    raise errors.ConfigError(f"unknown task family {family!r}; use one of {FAMILIES}.")
  return {MULTIPLE_CHOICE: 1, SPAN_EXTRACTION: 2}.get(family, len(label_names))
