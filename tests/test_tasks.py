"""Tasks load from the shipped files and from ../shared/data; bad files fail clearly."""

import gzip

import pytest

from conftest import SHARED_DATA, require_shared_data
from prompt_tuning_jax import tasks
from prompt_tuning_jax.tasks.classification import _rte_row
from prompt_tuning_jax.tasks.sources import DataError, read_jsonl
from prompt_tuning_jax.tasks import loading


def test_shipped_rte_and_sst2_counts():
  rte_val = loading.load_examples("rte", "validation", 128)
  assert len(rte_val) == 277 and int((rte_val.labels == 0).sum()) == 146  # entailment
  assert len(loading.load_examples("sst2", "validation", 64)) == 872
  first = rte_val.input_ids[0]
  assert first[0] == 101 and first[-1] == 102 and len(first) <= 128


def test_shared_data_full_sizes():
  require_shared_data("glue/sst2/train.tsv", "superglue/rte/train.jsonl")
  source = tasks.get_task("sst2", data_dir=SHARED_DATA).source._dataset_fn  # pylint: disable=protected-access
  assert len(source.read_rows("train")) == 67_349
  assert len(loading.load_examples("rte", "train", 128, data_dir=SHARED_DATA)) == 2490


def test_unknown_task_lists_known():
  with pytest.raises(tasks.UnknownTaskError, match=r"unknown task 'mnli'.*rte, sst2"):
    tasks.get_task("mnli")


def test_malformed_line_and_bad_label_name_file_and_line(tmp_path):
  path = tmp_path / "val.jsonl.gz"
  with gzip.open(path, "wt") as f:
    f.write('{"premise": "a", "hypothesis": "b", "label": "entailment", "idx": 0}\n{"premise": oops\n')
  with pytest.raises(DataError, match=r"val\.jsonl\.gz:2: malformed JSON line"):
    list(read_jsonl(path))
  path = tmp_path / "train.jsonl"
  path.write_text('{"premise": "a", "hypothesis": "b", "label": "entailment"}\n'
                  '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n')
  with pytest.raises(DataError, match=r"train\.jsonl:2: label 'maybe' is not one of \['entailment', 'not_entailment'\]"):
    [_rte_row(row, path) for row in read_jsonl(path)]
