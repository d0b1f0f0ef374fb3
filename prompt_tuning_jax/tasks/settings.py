"""Where tasks read their files and which vocabulary they tokenize with.

Tasks are registered once at import; these settings are read when a dataset is built,
so one registry serves any data directory and any backbone's vocab.txt.
"""

from pathlib import Path
from typing import Optional

# The data the project ships for its demo, in the same layout as ../shared/data.
SHIPPED_DATA_DIR = Path(__file__).resolve().parents[2] / "tasks" / "data"

_data_dir: Optional[Path] = None
_vocab_file: Optional[Path] = None


def set_data_dir(path) -> None:
  global _data_dir
  _data_dir = None if path in (None, "") else Path(path).expanduser()


def data_dir() -> Path:
  return _data_dir or SHIPPED_DATA_DIR


def set_vocab_file(path) -> None:
  global _vocab_file
  _vocab_file = None if path is None else Path(path)


def vocab_file() -> Path:
  if _vocab_file is not None:
    return _vocab_file
  from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir  # pylint: disable=g-import-not-at-top
  return default_backbone_dir() / "vocab.txt"
