"""Orbax checkpoints of the training state: step, trainable parameters, optimizer state.

Frozen backbone weights are never written: they come from INITIAL_CHECKPOINT_PATH.
`extra` holds small JSON facts the loop needs to resume: the best metric so far and the
data iterator's state ({"data": {"seed", "batch_size", "examples", "position"}}, position =
the next batch's index; batches are a pure function of (seed, position)), which
loop.resume checks against the run's before continuing from it.

Writes are atomic: Orbax writes into a temporary directory and renames it to
checkpoints/<step> when complete, so a killed run leaves no half checkpoint under a
step name. Retention keeps the last `keep` checkpoints plus the `keep_best` best by
the eval metric. A checkpoint that cannot be read is reported by path; with
`fall_back_to_previous` it is moved aside to checkpoints/unreadable-<step> (never
deleted) and the previous one is restored instead.
"""

import shutil
from pathlib import Path
from typing import Optional, Tuple

import gin
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from prompt_tuning_jax import errors
from prompt_tuning_jax.training.steps import TrainState


class UnreadableCheckpointError(errors.CheckpointError):
  """The latest checkpoint exists but cannot be restored."""


@gin.configurable
class Checkpoints:
  """Saves to and restores from MODEL_DIR/checkpoints/<step>.

  Attributes:
    keep: the last this many checkpoints are kept.
    keep_best: additionally keep this many with the best eval score (higher is better).
    fall_back_to_previous: on an unreadable latest checkpoint, restore the previous one.
  """

  def __init__(self, model_dir, keep: int = 3, keep_best: int = 1, fall_back_to_previous: bool = False):
    self.directory = Path(model_dir).resolve() / "checkpoints"
    self.fall_back_to_previous = fall_back_to_previous
    policies = [checkpoint_managers.LatestN(n=keep)]
    if keep_best:
      policies.append(checkpoint_managers.BestN(get_metric_fn=lambda m: m["score"], reverse=False, n=keep_best,
                                                keep_checkpoints_without_metrics=False))
    self._options = ocp.CheckpointManagerOptions(
        create=True, preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies))
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self):
    return sorted(self._manager.all_steps())

  def save(self, state: TrainState, extra: dict, score: Optional[float] = None) -> None:
    """score: the eval selection metric of this state (keep-best retention ranks by it)."""
    step = int(jax.device_get(state.step))
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state._asdict()), extra=ocp.args.JsonSave(extra)),
        metrics=None if score is None else {"score": float(score)}, force=True)

  def _restore_step(self, step: int, like: TrainState) -> Tuple[TrainState, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like._asdict())
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    return TrainState(**restored["state"]), dict(restored["extra"] or {})

  def restore(self, like: TrainState) -> Tuple[TrainState, dict]:
    """Restores the latest checkpoint into the structure of `like`."""
    while True:
      step = self.latest_step()
      try:
        return self._restore_step(step, like)
      except Exception as e:  # pylint: disable=broad-except  (Orbax raises many types for unreadable data.)
        path = self.directory / str(step)
        previous = [s for s in self.all_steps() if s < step]
        if not (self.fall_back_to_previous and previous):
          hint = (f" Pass --gin.Checkpoints.fall_back_to_previous=True to resume from step {previous[-1]} "
                  "(the unreadable one is moved aside, not deleted)." if previous else
                  " There is no earlier checkpoint; move it away to start afresh.")
          raise UnreadableCheckpointError(
              f"checkpoint {path} cannot be restored ({type(e).__name__}: {str(e)[:300]}). It may be truncated, "
              f"corrupt or from a different model configuration.{hint}") from e
        aside = self.directory / f"unreadable-{step}"
        shutil.move(str(path), str(aside))
        print(f"Checkpoint {path} is unreadable; moved it to {aside} and falling back to step {previous[-1]}.",
              flush=True)
        self._manager.close()
        self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
