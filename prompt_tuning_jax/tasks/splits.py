"""Slices of a task's splits, TFDS-style: 'train[:-1000]' and 'train[-1000:]' cut one split into two parts.

Hyperparameters are chosen on a part of the training data that training never sees, so the validation split is
read once per final configuration. Any registered split takes a slice in brackets:

  train[:-1000]   all but the last 1000 rows        train[-1000:]   the last 1000 rows
  train[:90%]     the first 90% (rounded)           train[90%:]     the rest
  train[100:200]  rows 100..199

Bounds are Python slice bounds (negative counts from the end, a missing bound is the start or end) or whole
percentages of the split's size; a slice never has a step. Rows are cut in the source's order (the file's, or
TFDS's), before any preprocessing, so `name[:k]` and `name[k:]` are disjoint, together hold every row of `name`,
and are the same rows on every run. Rows are what the source yields: a sentence or pair for classification, a
sentence for NER and a question for QA (so QA slices can share a passage; squad_v1_dev_split splits by article).

`sliceable` adds this to a source class (tasks/sources.py TfdsOrFiles): its `splits` then also holds every
slice of its splits (the trainer checks `train_split in source.splits`), and its `rows(split)` cuts the rows of
the named split.
"""

import re
from typing import List, NamedTuple, Optional, Sequence, Tuple

from prompt_tuning_jax import errors

_SLICED = re.compile(r"(?P<base>[^\[\]]+)\[(?P<spec>[^\[\]]*)\]")
_BOUND = re.compile(r"\s*(?P<value>-?\d+)\s*(?P<percent>%?)\s*")


class SplitSlice(NamedTuple):
  """Bounds of a slice: (value, is_percent) or None for an open end."""
  start: Optional[Tuple[int, bool]]
  stop: Optional[Tuple[int, bool]]

  def indices(self, size: int) -> range:
    """The row indices of the slice in a split of `size` rows."""
    bound = lambda b: None if b is None else (round(b[0] * size / 100) if b[1] else b[0])
    return range(size)[slice(bound(self.start), bound(self.stop))]


def _bound(text: str, name: str) -> Optional[Tuple[int, bool]]:
  if not text.strip():
    return None
  m = _BOUND.fullmatch(text)
  if m is None or (m.group("percent") and not -100 <= int(m.group("value")) <= 100):
    raise errors.ConfigError(f"split {name!r}: bad slice bound {text!r}; use an integer or a percentage "
                             "-100%..100%, e.g. 'train[:-1000]', 'train[90%:]'.")
  return int(m.group("value")), bool(m.group("percent"))


def parse(name: str) -> Tuple[str, Optional[SplitSlice]]:
  """'train[:-1000]' -> ('train', its SplitSlice); 'train' -> ('train', None). A malformed slice raises
  errors.ConfigError naming the syntax."""
  if "[" not in name and "]" not in name:
    return name, None
  m = _SLICED.fullmatch(name)
  if m is None or m.group("spec").count(":") != 1:
    raise errors.ConfigError(f"split {name!r}: a slice is 'split[start:stop]', e.g. 'train[:-1000]', "
                             "'train[-1000:]', 'train[:90%]'.")
  start, stop = m.group("spec").split(":")
  return m.group("base"), SplitSlice(_bound(start, name), _bound(stop, name))


def take(rows: Sequence, part: Optional[SplitSlice]) -> List:
  """The rows of the slice (all rows for None), in their order."""
  return list(rows) if part is None else [rows[i] for i in part.indices(len(rows))]


class SplitNames(tuple):
  """A source's split names; `in` also accepts any slice of them ('train[:-1000]' in SplitNames(('train',)))."""

  def __contains__(self, name) -> bool:
    if not isinstance(name, str):
      return False
    return tuple.__contains__(self, parse(name)[0])


def sliceable(cls):
  """Class decorator for a data source with `splits` (names) and `rows(split)` (a list of rows): both then
  understand slices of those names (module docstring)."""
  names, rows = cls.splits, cls.rows

  def sliced_splits(self) -> Sequence[str]:
    return SplitNames(names.fget(self))

  def sliced_rows(self, split: str) -> List:
    base, part = parse(split)
    every = rows(self, base)
    selected = take(every, part)
    if not selected and every:  # An empty split names its file itself; an empty slice is a setting.
      raise errors.ConfigError(f"split {split!r} selects none of the {len(every)} rows of {base!r}; choose slice "
                               f"bounds that keep at least one row, e.g. '{base}[:-{max(len(every) // 10, 1)}]' "
                               "(the trainer's train_split or eval_split).")
    return selected

  sliced_splits.__doc__ = (names.__doc__ or "") + " Slices of them are accepted too (tasks/splits.py)."
  sliced_rows.__doc__ = (rows.__doc__ or "") + " A slice of a split gives those rows of it (tasks/splits.py)."
  cls.splits, cls.rows = property(sliced_splits), sliced_rows
  return cls

