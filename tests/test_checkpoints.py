"""Checkpoint retention, unreadable checkpoints, and the loop stopping on a non-finite loss."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prompt_tuning_jax.training import loop
from prompt_tuning_jax.training.checkpoints import Checkpoints, UnreadableCheckpointError
from prompt_tuning_jax.training.metric_writer import MetricWriter
from prompt_tuning_jax.training.steps import TrainState


def state_at(step: int) -> TrainState:
  return TrainState(jnp.asarray(step), {"w": jnp.full((3,), float(step))}, {})


def save_five(model_dir, **kwargs) -> Checkpoints:
  checkpoints = Checkpoints(model_dir, **kwargs)
  for step, score in [(1, 50.0), (2, 80.0), (3, 60.0), (4, 55.0), (5, 52.0)]:
    checkpoints.save(state_at(step), {"best_step": step}, score=score)
  checkpoints.close()
  return checkpoints


def test_keeps_the_last_n_and_the_best(tmp_path):
  checkpoints = save_five(tmp_path, keep=2, keep_best=1)
  assert sorted(os.listdir(checkpoints.directory)) == ["2", "4", "5"]  # Step 2 scored best.
  checkpoints = save_five(tmp_path / "b", keep=3, keep_best=0)
  assert sorted(os.listdir(checkpoints.directory)) == ["3", "4", "5"]


def test_unreadable_latest_checkpoint_is_named_and_can_fall_back(tmp_path):
  directory = save_five(tmp_path, keep=2, keep_best=1).directory
  for path in glob.glob(str(directory / "5" / "state" / "**"), recursive=True):
    if os.path.isfile(path) and "ocdbt" in path:
      with open(path, "r+b") as f:
        f.truncate(10)  # A disk that filled up mid-write, or a bad copy.
  like, broken = state_at(0), Checkpoints(tmp_path)
  with pytest.raises(UnreadableCheckpointError, match=rf"checkpoint {directory / '5'} cannot be restored.*"
                                                        r"fall_back_to_previous=True to resume from step 4"):
    broken.restore(like)
  broken.close()
  assert sorted(os.listdir(directory)) == ["2", "4", "5"]  # The failed restore deleted nothing.

  fallback = Checkpoints(tmp_path, fall_back_to_previous=True)
  state, extra = fallback.restore(like)
  fallback.close()
  assert int(state.step) == 4 and extra == {"best_step": 4}
  np.testing.assert_array_equal(state.trainable["w"], 4.0)
  assert sorted(os.listdir(directory)) == ["2", "4", "unreadable-5"]  # Moved aside, not deleted.


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  tx = optax.sgd(0.1)

  @jax.jit
  def train_step(state, frozen, batch, rng):
    del frozen, rng
    loss, grads = jax.value_and_grad(lambda p: jnp.sum((p["w"] - batch["x"]) ** 2))(state.trainable)
    updates, opt_state = tx.update(grads, state.opt_state)
    one = jnp.ones(())
    return (TrainState(state.step + 1, optax.apply_updates(state.trainable, updates), opt_state),
            {"loss": loss, "correct": one, "count": one, "tokens": one, "grad_norm": optax.global_norm(grads)})

  trainable = {"w": jnp.zeros((2,))}
  checkpoints, writer = Checkpoints(tmp_path), MetricWriter(tmp_path)
  batch_at = lambda step: {"x": np.full((2,), np.nan if step == 6 else 1.0, np.float32)}  # Step 7 goes bad.
  with pytest.raises(loop.NonFiniteLossError, match=r"loss is nan at step 7; training stopped and the last good "
                                                    r"checkpoint \(step 5\) is kept"):
    loop.run(TrainState(jnp.zeros((), jnp.int32), trainable, tx.init(trainable)), train_step=train_step,
             frozen={}, batch_at=batch_at, rng=jax.random.key(0), train_steps=20, eval_period=5, log_period=2,
             evaluate=lambda t: {"accuracy": float(-jnp.sum(t["w"]))}, export=lambda *a: None,
             checkpoints=checkpoints, writer=writer, extra={})
  checkpoints.close()
  writer.close()
  assert sorted(os.listdir(checkpoints.directory)) == ["5"]
