"""Label conventions and host-side decoding shared by task preprocessing and the model heads.

They live with the tasks (which only need numpy) so that tasks import nothing from models/;
models/heads.py imports them from here.
"""

from typing import List, Tuple

import numpy as np

from prompt_tuning_jax.data.batching import IGNORE_LABEL  # pylint: disable=unused-import  (the padding label)

MASKED_LOGIT = -1e9  # The logit of a position outside the context (span heads and their evaluation).


def first_subword_label_weights(word_ids):
  """word_ids [B, T] (word index per token, -1 for special tokens/padding) -> float32 weights [B, T].

  1 exactly where a token starts a word: word id >= 0 and different from the previous token's.
  numpy in -> numpy out (data pipeline); jax in -> jax out (jit-able).
  """
  if isinstance(word_ids, np.ndarray):
    xp = np
  else:
    import jax.numpy as xp  # pylint: disable=g-import-not-at-top  (only jax callers need it)
  previous = xp.concatenate([xp.full_like(word_ids[:, :1], -1), word_ids[:, :-1]], axis=1)
  return ((word_ids >= 0) & (word_ids != previous)).astype(xp.float32)


def best_spans(start_logits, end_logits, context_mask, n_best: int = 20,
               max_answer_length: int = 30) -> List[List[Tuple[int, int, float]]]:
  """SQuAD n-best search. logits [B, T], context_mask [B, T] -> per example, up to n_best
  (start, end, score) with score = start_logit + end_logit, best first.

  Candidates are the top n_best starts x top n_best ends inside the context with end >= start
  and end - start + 1 <= max_answer_length. (0, 0) is the no-answer span when context_mask[:, 0] = 1.
  """
  start_logits, end_logits = np.asarray(start_logits, np.float64), np.asarray(end_logits, np.float64)
  mask = np.asarray(context_mask) > 0
  results = []
  for s_log, e_log, m in zip(start_logits, end_logits, mask):
    inside = np.flatnonzero(m)
    # Stable sort on the negated logits: ties keep token order, so results are deterministic.
    starts = inside[np.argsort(-s_log[inside], kind="stable")[:n_best]]
    ends = inside[np.argsort(-e_log[inside], kind="stable")[:n_best]]
    spans = [(int(s), int(e), float(s_log[s] + e_log[e])) for s in starts for e in ends
             if s <= e and e - s + 1 <= max_answer_length]
    spans.sort(key=lambda span: (-span[2], span[0], span[1]))
    results.append(spans[:n_best])
  return results
