"""Task data sources: TFDS when the data set is prepared, else the original files.

Both paths end in the same Python rows (a TFDS example goes through an adapter, a file
through its reader and row function), so one preprocessing chain serves both. Files are
looked up under the source's data directory (the run's DATA_DIR, given to tasks.get_task;
None = SHIPPED_DATA_DIR), optionally gzip-compressed.

Data errors name file:line: text is decoded line by line (text_lines, read_text), row functions check their
fields' JSON types (check_type), and every row built from a file is checked against the source's feature types
and, unless its split is unlabeled (a 'test' split), for its label (check_label), before any tensor is made.
"""

import csv
import dataclasses
import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from prompt_tuning_jax.errors import DataError
from prompt_tuning_jax.tasks.splits import parse as parse_split, sliceable

# The data the project ships for its demo, in the same layout as ../shared/data.
SHIPPED_DATA_DIR = Path(__file__).resolve().parents[2] / "tasks" / "data"

# What reading a data file's bytes raises when it is not UTF-8, not gzip, truncated or not readable.
_UNREADABLE = (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, PermissionError, IsADirectoryError)


# A row without a label (a test split's form); rows of a labeled split never keep it (check_label).
MISSING_LABEL = -1


def _not_utf8(path: Path, line_no: int, raw: bytes, e: UnicodeDecodeError) -> DataError:
  return DataError(f"{path}:{line_no}: not UTF-8 ({e.reason}: {raw[e.start:e.end]!r} at byte {e.start + 1} "
                   f"of the line); save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).")


def text_lines(path: Path) -> Iterable[str]:
  """The lines of a UTF-8 text file (optionally .gz; a BOM is dropped), decoded one by one so that undecodable
  bytes are a DataError naming file:line."""
  path = Path(path)
  with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
    for line_no, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise _not_utf8(path, line_no, raw, e) from None
      yield line[1:] if line_no == 1 and line.startswith("\ufeff") else line


def read_text(path: Path) -> str:
  """A whole UTF-8 text file (optionally .gz) as text; undecodable bytes are a DataError naming file:line."""
  path = Path(path)
  with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
    raw = f.read()
  try:
    return raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    start = raw.rfind(b"\n", 0, e.start) + 1
    end = raw.find(b"\n", e.start)
    line = raw[start:len(raw) if end < 0 else end]
    raise _not_utf8(path, raw.count(b"\n", 0, e.start) + 1, line,
                    UnicodeDecodeError("utf-8", line, e.start - start, e.end - start, e.reason)) from None


_JSON_TYPES = ((bool, "true/false"), (str, "a string"), (int, "an integer"), (float, "a number"),
               (list, "a list"), (dict, "an object"), (type(None), "null"))


def json_type(value) -> str:
  """The JSON name of a value's type: 'a string', 'an integer', 'a list', ..."""
  return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def check_type(value, expected: Union[type, Tuple[type, ...]], where: str, field: str):
  """`value` when it is an `expected` (str, int, list, dict or a tuple of them; a bool is not an int), else a
  DataError naming where (file:line), the field, the type found and the type expected."""
  kinds = expected if isinstance(expected, tuple) else (expected,)
  if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
    return value
  raise DataError(f"{where}: field {field!r} is {json_type(value)} ({repr(value)[:40]}), expected "
                  f"{' or '.join(json_type(kind()) for kind in kinds)}; correct that row.")


def check_label(label: int, where: str, split: str, *, labeled: bool, field: str = "label") -> int:
  """The one place that decides whether a row may lack its label: MISSING_LABEL is kept in an unlabeled split
  (a benchmark's test split, evaluated as predictions) and refused, naming where and the field, in a labeled
  one (training or validation), where it would train or score as a real class."""
  if label == MISSING_LABEL and labeled:
    raise DataError(f"{where}: no {field!r} field, but split {split!r} is labeled (only test splits may lack "
                    f"labels); add the row's label or remove the row.")
  return label


def resolve_data_dir(data_dir) -> Path:
  """DATA_DIR as a path: None (or '') is SHIPPED_DATA_DIR."""
  return SHIPPED_DATA_DIR if data_dir in (None, "") else Path(data_dir).expanduser()


def find_file(relative: str, data_dir=None) -> Path:
  """The file `relative` (or `relative`.gz) under `data_dir` (None = SHIPPED_DATA_DIR)."""
  root = resolve_data_dir(data_dir)
  candidates = [root / relative, root / (relative + ".gz")]
  for c in candidates:
    if c.exists():
      return c
  raise DataError(f"missing data file: looked for {' or '.join(str(c) for c in candidates)}")


def read_jsonl(path: Path) -> Iterable[dict]:
  for line_no, line in enumerate(text_lines(path), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:{line_no}: malformed JSON line ({e.msg}).") from e
    if not isinstance(row, dict):
      raise DataError(f"{path}:{line_no}: expected a JSON object, found {type(row).__name__}.")
    yield row | {"__line__": line_no}


def read_tsv(path: Path) -> Iterable[dict]:
  """Rows of a tab-separated file with a header line, quoting off (GLUE style)."""
  # Quoting off: one line is one record, so records count lines.
  reader = csv.reader(text_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
  header = next(reader, None)
  if header is None:
    raise DataError(f"{path}: empty file, expected a header line.")
  for line_no, fields in enumerate(reader, 2):
    if not fields:
      continue
    if len(fields) != len(header):
      raise DataError(f"{path}:{line_no}: malformed line: {len(fields)} tab-separated fields, the header has "
                      f"{len(header)} ({header}).")
    yield dict(zip(header, fields)) | {"__line__": line_no}


def tfds_root() -> Path:
  return Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))


def host_value(value):
  """A tfds.as_numpy value as plain Python: bytes -> str, arrays of strings -> lists of str, dicts and ragged
  values recursively; numeric arrays stay numpy."""
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, dict):
    return {k: host_value(v) for k, v in value.items()}
  if isinstance(value, np.ndarray) and value.dtype == object:
    return [host_value(v) for v in value.tolist()]
  if hasattr(value, "to_list"):  # A ragged value.
    return host_value(np.asarray(value.to_list(), dtype=object)) if value.dtype == tf.string else value.to_list()
  return value.item() if isinstance(value, np.generic) else value


def _column(values: Sequence, dtype: tf.DType):
  """One feature of every row: a dense tensor, or a ragged one [n, None, ...] when the rows hold lists of
  different lengths (words of a sentence, answers of a question)."""
  if not isinstance(values[0], (list, tuple, np.ndarray)):
    return tf.constant(values, dtype)
  lengths = [len(v) for v in values]
  if dtype == tf.string:
    flat = tf.constant([x for v in values for x in v], tf.string, shape=[sum(lengths)])
  else:
    flat = np.concatenate([np.asarray(v, dtype.as_numpy_dtype) for v in values])
  if len(set(lengths)) == 1:  # Equal lengths (a choice per option): dense, so the length is static.
    return tf.reshape(flat, [len(values), lengths[0], *flat.shape[1:]])
  return tf.RaggedTensor.from_row_lengths(flat, tf.constant(lengths, tf.int64))


def rows_to_dataset(rows: Sequence[Mapping], feature_types: Mapping[str, tf.DType]) -> tf.data.Dataset:
  """Python rows -> a tf.data.Dataset of their `feature_types` features, in row order."""
  return tf.data.Dataset.from_tensor_slices({k: _column([row[k] for row in rows], t)
                                             for k, t in feature_types.items()})


@sliceable  # Split names may be slices, 'train[:-1000]' (tasks/splits.py).
@dataclasses.dataclass(frozen=True)
class TfdsOrFiles:
  """A seqio dataset_fn reading TFDS `tfds_name` if prepared, else local files; both give the same rows.

  Attributes:
    files: split -> file path relative to the data directory (a .gz of it is found too).
    reader: parses a file into raw items (jsonl rows keeping '__line__', sentences, questions, ...).
    to_features: (raw item, path) -> a dict with the feature names, or a list of them (a passage's questions).
    feature_types: feature name -> tf dtype; values that are lists become [None] features.
    tfds_name: e.g. 'super_glue/rte:1.0.2'; None when TFDS has no copy of the set.
    tfds_splits: our split name -> TFDS split name.
    from_tfds: a TFDS example (host_value'd) -> a dict with the feature names, or a list of them; by default
      its `feature_types` keys.
    readers: split -> a reader replacing `reader` for that split (e.g. two halves of one file).
    data_dir: where `files` are; None = SHIPPED_DATA_DIR. Tasks define their source without one and
      `at(data_dir)` gives the source of a run's DATA_DIR.
    unlabeled_splits: splits whose rows carry no labels (a benchmark's test set): they read with
      MISSING_LABEL and are predicted, never scored. In every other split a row without its label is a
      DataError naming file:line (check_label). `has_labels` is the one place that decides.
    label_field: where a raw row holds its label, as named in that error.
    keep_rows: split -> a predicate on its built rows: only the rows it accepts are kept (T5's WSC trains on
      the correct referents only).
  """
  files: Mapping[str, str]
  reader: Callable[[Path], Iterable]
  to_features: Callable[[object, Path], Union[dict, List[dict]]]
  feature_types: Mapping[str, tf.DType]
  tfds_name: Optional[str] = None
  tfds_splits: Mapping[str, str] = dataclasses.field(default_factory=dict)
  from_tfds: Optional[Callable[[dict], Union[dict, List[dict]]]] = None
  readers: Mapping[str, Callable[[Path], Iterable]] = dataclasses.field(default_factory=dict)
  data_dir: Optional[Path] = None
  unlabeled_splits: Sequence[str] = ()
  label_field: str = "label"
  keep_rows: Mapping[str, Callable[[dict], bool]] = dataclasses.field(default_factory=dict)

  def at(self, data_dir) -> "TfdsOrFiles":
    """This source reading its files under `data_dir` (None = SHIPPED_DATA_DIR)."""
    return dataclasses.replace(self, data_dir=resolve_data_dir(data_dir))

  @property
  def splits(self) -> Sequence[str]:
    return tuple(self.files)

  def tfds_prepared(self) -> bool:
    """True when the TFDS data set is on disk (no download is ever attempted)."""
    if self.tfds_name is None:
      return False
    name, _, version = self.tfds_name.partition(":")
    return (tfds_root() / name / version / "dataset_info.json").exists()

  def has_labels(self, split: str) -> bool:
    """Whether every row of `split` (or of a slice of it, 'test[:10]') must carry its label: every split not
    declared in `unlabeled_splits`."""
    return parse_split(split)[0] not in self.unlabeled_splits

  def read_rows(self, split: str) -> List[dict]:
    """The rows of `split` from the original files, each checked against feature_types and, in a labeled
    split, for its label."""
    try:
      path = find_file(self.files[split], self.data_dir)
    except DataError as e:
      if self.tfds_name is None:
        raise
      raise DataError(f"{e} (and TFDS {self.tfds_name} is not prepared under {tfds_root()})") from None
    labeled, rows = self.has_labels(split), []
    types = {key: str if dtype == tf.string else int if dtype.is_integer else (float, int)
             for key, dtype in self.feature_types.items()}
    try:
      for item in self.readers.get(split, self.reader)(path):
        where = f"{path}:{item['__line__']}" if isinstance(item, dict) and "__line__" in item else str(path)
        for row in _flatten([self.to_features(item, path)]):
          self._check_row(row, where, split, labeled, types)
          rows.append(row)
    except _UNREADABLE as e:  # The file's bytes, not a row, are at fault.
      raise DataError(f"{path}: cannot be read ({type(e).__name__}: {e}); check the file and DATA_DIR.") from e
    if not rows:
      raise DataError(f"{path}: split {split!r} has no examples (no data lines); check the file and DATA_DIR.")
    return rows

  def tfds_rows(self, split: str) -> List[dict]:
    """The rows of `split` from the prepared TFDS data set."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    try:
      ds = tfds.load(self.tfds_name, split=self.tfds_splits.get(split, split), shuffle_files=False, download=False)
      examples = [host_value(ex) for ex in tfds.as_numpy(ds)]
    except (ValueError, OSError, tf.errors.OpError) as e:  # TFDS's and tf.data's errors for a bad prepared copy.
      raise DataError(f"TFDS {self.tfds_name} under {tfds_root()} cannot be read for split {split!r} "
                      f"({type(e).__name__}: {str(e)[:300]}).") from e
    convert = self.from_tfds or (lambda ex: {k: ex[k] for k in self.feature_types})
    rows = _flatten(convert(ex) for ex in examples)
    labeled = self.has_labels(split)
    for i, row in enumerate(rows):  # TFDS gives a missing label as -1 (its test splits).
      if "label" in row:
        check_label(row["label"], f"TFDS {self.tfds_name} split {split!r} example {i}", split, labeled=labeled)
    return rows

  def _check_row(self, row: dict, where: str, split: str, labeled: bool, types: Mapping[str, type]) -> None:
    """A row built from a file: its label (check_label) and each feature's type (`types`: feature name ->
    Python type, from feature_types), so that a wrong type is named here rather than by tf.constant ("mixed
    types")."""
    if "label" in row:
      check_label(row["label"], where, split, labeled=labeled, field=self.label_field)
    for key, expected in types.items():
      value = row[key]
      if type(value) is expected:  # pylint: disable=unidiomatic-typecheck  (the common case, fast)
        continue
      for i, v in enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]:
        check_type(v, expected, where, key if i is None else f"{key}[{i}]")

  def rows(self, split: str) -> List[dict]:
    if split not in self.files:
      raise DataError(f"unknown split {split!r}; this task has {list(self.files)}.")
    rows = self.tfds_rows(split) if self.tfds_prepared() else self.read_rows(split)
    return [row for row in rows if self.keep_rows[split](row)] if split in self.keep_rows else rows

  def __call__(self, split: str, shuffle_files: bool = False, seed: Optional[int] = None) -> tf.data.Dataset:
    del shuffle_files, seed  # Rows come in file order; the trainer shuffles batches itself.
    rows = self.rows(split)
    if not rows:  # A TFDS split can be empty; files and slices say so themselves.
      raise DataError(f"split {split!r} of TFDS {self.tfds_name} has no examples; check the prepared data set.")
    return rows_to_dataset(rows, self.feature_types)


def _flatten(items: Iterable[Union[dict, List[dict]]]) -> List[dict]:
  return [row for item in items for row in (item if isinstance(item, list) else [item])]


def label_index(label_names: Sequence[str], aliases: Optional[Dict[str, int]] = None):
  """A function mapping a raw label (name, index, bool or string of one) to its index."""
  lookup = {name: i for i, name in enumerate(label_names)} | {str(i): i for i in range(len(label_names))}
  lookup |= aliases or {}

  def to_index(value, path: Path, line: int) -> int:
    key = str(value).lower() if isinstance(value, bool) else str(value)
    if key not in lookup:
      raise DataError(f"{path}:{line}: label {value!r} is not one of {list(label_names)} (or an index "
                      f"0-{len(label_names) - 1}).")
    return lookup[key]

  return to_index
