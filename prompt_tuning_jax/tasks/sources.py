"""Task data sources: TFDS when the data set is prepared, else the original files.

A source reads rows with the TFDS feature names, so one preprocessing chain serves
both. Files are looked up under the data directory (settings.data_dir(), the
DATA_DIR gin macro), optionally gzip-compressed.
"""

import csv
import dataclasses
import gzip
import io
import json
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import tensorflow as tf

from prompt_tuning_jax.tasks import settings


class DataError(ValueError):
  """Bad or missing task data; the message names the file (and line)."""


def _open_text(path: Path):
  raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
  return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def find_file(relative: str) -> Path:
  """The file `relative` (or `relative`.gz) under the data directory."""
  root = settings.data_dir()
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
        raise DataError(f"{path}:{line_no}: {len(fields)} fields, the header has {len(header)} ({header}).")
      yield dict(zip(header, fields)) | {"__line__": line_no}


@dataclasses.dataclass(frozen=True)
class TfdsOrFiles:
  """A seqio dataset_fn reading TFDS `tfds_name` if prepared, else local files.

  Attributes:
    tfds_name: e.g. 'super_glue/rte:1.0.2'.
    files: split -> file path relative to the data directory.
    reader: parses a file into raw row dicts (keeps '__line__').
    to_features: raw row -> dict with the TFDS feature names (raise DataError if bad).
    feature_types: TFDS feature name -> tf dtype.
    tfds_splits: our split name -> TFDS split name.
  """
  tfds_name: str
  files: Mapping[str, str]
  reader: Callable[[Path], Iterable[dict]]
  to_features: Callable[[dict, Path], dict]
  feature_types: Mapping[str, tf.DType]
  tfds_splits: Mapping[str, str] = dataclasses.field(default_factory=dict)

  @property
  def splits(self) -> Sequence[str]:
    return tuple(self.files)

  def tfds_prepared(self) -> bool:
    """True when the TFDS data set is on disk (no download is ever attempted)."""
    name, _, version = self.tfds_name.partition(":")
    root = Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))
    return (root / name / version / "dataset_info.json").exists()

  def read_rows(self, split: str) -> List[dict]:
    path = find_file(self.files[split])
    rows = [self.to_features(row, path) for row in self.reader(path)]
    if not rows:
      raise DataError(f"{path}: split '{split}' is empty.")
    return rows

  def __call__(self, split: str, shuffle_files: bool = False, seed: Optional[int] = None) -> tf.data.Dataset:
    if split not in self.files:
      raise DataError(f"unknown split {split!r}; this task has {list(self.files)}.")
    if self.tfds_prepared():
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      ds = tfds.load(self.tfds_name, split=self.tfds_splits.get(split, split), shuffle_files=shuffle_files,
                     download=False, read_config=tfds.ReadConfig(shuffle_seed=seed))
      return ds.map(lambda ex: {k: ex[k] for k in self.feature_types})
    rows = self.read_rows(split)
    columns = {k: tf.constant([row[k] for row in rows], dtype=t) for k, t in self.feature_types.items()}
    return tf.data.Dataset.from_tensor_slices(columns)


def label_index(label_names: Sequence[str], aliases: Optional[Dict[str, int]] = None):
  """A function mapping a raw label (name, index, bool or string of one) to its index."""
  lookup = {name: i for i, name in enumerate(label_names)} | {str(i): i for i in range(len(label_names))}
  lookup |= aliases or {}

  def to_index(value, path: Path, line: int) -> int:
    key = str(value).lower() if isinstance(value, bool) else str(value)
    if key not in lookup:
      raise DataError(f"{path}:{line}: label {value!r} is not one of {list(label_names)}.")
    return lookup[key]

  return to_index
