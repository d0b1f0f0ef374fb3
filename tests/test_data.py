"""Batches are a pure function of (seed, step), padded to a few buckets."""

import numpy as np

from prompt_tuning_jax.data import batching


def _examples(n=10):
  ids = [np.arange(1, 3 + i, dtype=np.int32) for i in range(n)]
  return batching.Examples(ids, [np.zeros_like(x) for x in ids], np.arange(n, dtype=np.int32) % 2)


def test_bucket_lengths():
  assert batching.bucket_lengths(128) == [16, 24, 32, 48, 64, 96, 128]
  assert batching.bucket_lengths(100) == [16, 24, 32, 48, 64, 96, 100]
  assert batching.bucket_lengths(16) == [16]


def test_train_batches_are_deterministic_and_cover_each_epoch():
  a, b = batching.TrainBatches(_examples(), 3, 32, seed=7), batching.TrainBatches(_examples(), 3, 32, seed=7)
  for step in (5, 0, 4, 11):  # Any order: a resumed run sees the same batches.
    np.testing.assert_array_equal(a.batch(step)["input_ids"], b.batch(step)["input_ids"])
  seen = np.concatenate([a.batch(s)["attention_mask"].sum(1) for s in range(3)])  # 3 steps = one epoch of 9.
  assert len(set(seen.tolist())) == 9
  batch = a.batch(0)
  assert batch["input_ids"].shape == (3, 16)
  np.testing.assert_array_equal(batch["attention_mask"], batch["input_ids"] != 0)


def test_eval_batches_pad_the_last_batch_with_zero_weight():
  batches = list(batching.eval_batches(_examples(10), 4, 32))
  assert [b["weights"].sum() for b in batches] == [4, 4, 2]
  assert batches[-1]["input_ids"].shape[0] == 4
  order = batching.eval_order(_examples(10))
  np.testing.assert_array_equal(np.concatenate([b["labels"][:int(b["weights"].sum())] for b in batches]),
                                (np.arange(10) % 2)[order])


def test_length_grouping_reduces_padding():
  rng = np.random.default_rng(0)
  ids = [np.ones(rng.integers(3, 60), np.int32) for _ in range(640)]
  examples = batching.Examples(ids, [np.zeros_like(x) for x in ids], np.zeros(640, np.int32))
  grouped = batching.TrainBatches(examples, 32, 64, seed=0)
  plain = batching.TrainBatches(examples, 32, 64, seed=0, group_batches=1)
  cells = lambda b: sum(b.batch(s)["input_ids"].size for s in range(b.steps_per_epoch))
  assert cells(grouped) < 0.8 * cells(plain)
  seen = np.concatenate([grouped.epoch_batches(3).ravel()])
  assert sorted(seen.tolist()) == list(range(640))  # Every example once per epoch.
