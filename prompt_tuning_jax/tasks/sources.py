"""Task data sources: TFDS when the data set is prepared, else the original files.

Both paths end in the same Python rows (a TFDS example goes through an adapter, a file
through its reader and row function), so one preprocessing chain serves both. Files are
looked up under the source's data directory (the run's DATA_DIR, given to tasks.get_task;
None = SHIPPED_DATA_DIR), optionally gzip-compressed.
"""

import csv
import dataclasses
import gzip
import io
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


def _open_text(path: Path):
  raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
  return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


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
  with _open_text(path) as f:
    for line_no, line in enumerate(f, 1):
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
  with _open_text(path) as f:
    reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
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
    unlabeled: the splits whose rows carry no labels (a benchmark's test set): they read without one (label
      -1) and are predicted, never scored. Every other split is labeled. `has_labels` is the one place that
      decides.
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
  unlabeled: Tuple[str, ...] = ()

  def has_labels(self, split: str) -> bool:
    """Whether `split` (or a slice of it, 'test[:10]') holds labels: every split not declared `unlabeled`."""
    return parse_split(split)[0] not in self.unlabeled

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

  def read_rows(self, split: str) -> List[dict]:
    """The rows of `split` from the original files."""
    try:
      path = find_file(self.files[split], self.data_dir)
    except DataError as e:
      if self.tfds_name is None:
        raise
      raise DataError(f"{e} (and TFDS {self.tfds_name} is not prepared under {tfds_root()})") from None
    try:
      rows = _flatten(self.to_features(item, path) for item in self.readers.get(split, self.reader)(path))
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
    return _flatten(convert(ex) for ex in examples)

  def rows(self, split: str) -> List[dict]:
    if split not in self.files:
      raise DataError(f"unknown split {split!r}; this task has {list(self.files)}.")
    return self.tfds_rows(split) if self.tfds_prepared() else self.read_rows(split)

  def __call__(self, split: str, shuffle_files: bool = False, seed: Optional[int] = None) -> tf.data.Dataset:
    del shuffle_files, seed  # Rows come in file order; the trainer shuffles batches itself.
    return rows_to_dataset(self.rows(split), self.feature_types)


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
