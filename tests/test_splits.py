"""Slices of a split for held-out hyperparameter selection: sizes, disjointness, determinism (tasks/splits.py)."""

import pytest

from conftest import write_tiny_data
from prompt_tuning_jax import tasks
from prompt_tuning_jax.recipes import encoder
from prompt_tuning_jax.tasks import splits
from prompt_tuning_jax.tasks import loading


def test_slice_indices_by_hand():
  rows = list(range(10))
  assert splits.take(rows, splits.parse("train[:-3]")[1]) == [0, 1, 2, 3, 4, 5, 6]
  assert splits.take(rows, splits.parse("train[-3:]")[1]) == [7, 8, 9]
  assert splits.take(rows, splits.parse("train[2:4]")[1]) == [2, 3]
  assert splits.take(rows, splits.parse("train[:80%]")[1]) == [0, 1, 2, 3, 4, 5, 6, 7]
  assert splits.take(rows, splits.parse("train[80%:]")[1]) == [8, 9]
  assert splits.take(rows, splits.parse("train[:]")[1]) == rows
  assert splits.parse("validation") == ("validation", None)
  assert splits.parse("train[:-1000]")[0] == "train"
  # 10,000 rows (the shipped SST-2 subsample): 90% is 9,000, the last 1,000 are the rest.
  assert len(splits.parse("train[:90%]")[1].indices(10_000)) == 9_000
  assert list(splits.parse("train[-1000:]")[1].indices(10_000)) == list(range(9_000, 10_000))


@pytest.mark.parametrize("name", ["train[]", "train[5]", "train[1:2:3]", "train[a:]", "train[:150%]", "train[:-5"])
def test_malformed_slices_name_the_syntax(name):
  with pytest.raises(ValueError, match="train"):
    splits.parse(name)


def test_split_names_hold_slices_of_their_splits():
  names = splits.SplitNames(("train", "validation"))
  assert "train" in names and "train[:-10]" in names and "validation[50%:]" in names
  assert "test" not in names and "test[:10]" not in names and 3 not in names
  assert tuple(names) == ("train", "validation")


@pytest.fixture
def tiny_data(tmp_path):
  return write_tiny_data(tmp_path / "data")  # 72 SST-2 train rows, 48 RTE train rows


def test_task_slices_are_disjoint_complete_and_deterministic(tiny_data):
  source = tasks.info("sst2").source.at(tiny_data)
  full, fit, held_out = source.rows("train"), source.rows("train[:-12]"), source.rows("train[-12:]")
  assert (len(full), len(fit), len(held_out)) == (72, 60, 12)
  key = lambda row: (row["idx"], row["sentence"])  # idx is the file line: unique per row.
  assert not {key(r) for r in fit} & {key(r) for r in held_out}
  assert [key(r) for r in fit + held_out] == [key(r) for r in full]
  assert [key(r) for r in source.rows("train[-12:]")] == [key(r) for r in held_out]
  assert [r["idx"] for r in source.rows("train[:10%]")] == [r["idx"] for r in full[:7]]


def test_trainer_loads_and_accepts_slices(tiny_data):
  assert len(loading.load_examples("rte", "train[:-10]", 128, data_dir=tiny_data)) == 38
  assert len(loading.load_examples("rte", "train[-10:]", 128, data_dir=tiny_data)) == 10
  assert encoder.split_tasks(["sst2"], "train[:-12]", "train[-12:]", shared=True) == (["sst2"], ["sst2"])
  with pytest.raises(ValueError, match="no task"):
    encoder.split_tasks(["sst2"], "test[:5]", "validation", shared=True)
