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
deleted) and the previous one is restored instead. A readable checkpoint of another run
(other data or settings: `restore`'s check; arrays of other shapes) is refused as it is
(ResumeMismatchError): falling back would move every valid checkpoint aside.
"""

import shutil
from pathlib import Path
from typing import Callable, Optional, Tuple

import gin
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from prompt_tuning_jax import errors
from prompt_tuning_jax.training import safety
from prompt_tuning_jax.training.steps import TrainState


class UnreadableCheckpointError(errors.CheckpointError):
  """The latest checkpoint exists but cannot be restored."""


class ResumeMismatchError(errors.CheckpointError):
  """The latest checkpoint is readable but was written by a run of other data or settings: resuming is refused
  (and falling back to an earlier checkpoint of that run would not help)."""


def _name(path) -> str:
  """'trainable/prompt/prefix' for a pytree path."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


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
    """score: the eval selection metric of this state (keep-best retention ranks by it).

    Waits for the write, so a full disk is reported here (safety.DiskFullError naming the checkpoint and the
    bytes it needs) and the checkpoints before it stay as they were."""
    step = int(jax.device_get(state.step))
    path = self.directory / str(step)
    needed = sum(int(x.nbytes) for x in jax.tree.leaves(state)) + (64 << 10)  # Arrays + Orbax's metadata files.
    last = self.latest_step()
    kept = f"the previous checkpoint (step {last}) is kept" if last is not None else "no checkpoint was written"
    safety.check_free_space(path, needed, kept)
    with safety.disk_full(path, needed, kept, cleanup=lambda: self._remove_partial(step)):
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state._asdict()), extra=ocp.args.JsonSave(extra)),
          metrics=None if score is None else {"score": float(score)}, force=True)
      self._manager.wait_until_finished()

  def _remove_partial(self, step: int) -> None:
    """Deletes what a failed save of `step` left under a temporary name (never a finished checkpoint)."""
    for partial in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
      shutil.rmtree(partial, ignore_errors=True)

  def read_extra(self, step: int) -> dict:
    """The small JSON facts saved with `step` (data position, fingerprint), without its arrays."""
    restored = self._manager.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))
    return dict(restored["extra"] or {})

  def shape_differences(self, step: int, like: TrainState) -> Optional[list]:
    """[(path, shape there, shape here)] where checkpoint `step`'s arrays differ from `like`'s in path or
    shape ([] when they agree), or None when its metadata cannot be read."""
    try:
      metadata = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state").item_metadata
      saved = {_name(p): tuple(m.shape) for p, m in jax.tree_util.tree_leaves_with_path(metadata)}
    except Exception:  # pylint: disable=broad-except  (unreadable metadata: an unreadable checkpoint)
      return None
    if not saved:  # No metadata file (Orbax warns and returns nothing): unreadable, not another shape.
      return None
    here = {_name(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(like._asdict())}
    return [(k, saved.get(k), here.get(k)) for k in sorted(set(saved) | set(here)) if saved.get(k) != here.get(k)]

  def _restore_step(self, step: int, like: TrainState) -> Tuple[TrainState, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like._asdict())
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    return TrainState(**restored["state"]), dict(restored["extra"] or {})

  def restore(self, like: TrainState, check: Optional[Callable[[int, dict], None]] = None) -> Tuple[TrainState, dict]:
    """Restores the latest checkpoint into the structure of `like`.

    check(step, extra): called with the checkpoint's JSON facts before its arrays are read; it raises
    ResumeMismatchError for a checkpoint of another run's data or settings. Such a mismatch, and arrays of
    other shapes than `like`'s (a changed PROMPT_LENGTH or method), are refused as they are: falling back
    is only for checkpoints that cannot be read.
    """
    while True:
      step = self.latest_step()
      try:
        extra = self.read_extra(step)
      except Exception as e:  # pylint: disable=broad-except  (Orbax raises many types for unreadable data.)
        self._unreadable(step, e)
        continue
      if check is not None:
        check(step, extra)
      try:
        return self._restore_step(step, like)
      except Exception as e:  # pylint: disable=broad-except  (Orbax raises many types for unreadable data.)
        differences = self.shape_differences(step, like)
        if differences:
          shown = "; ".join(f"{k}: {there} there, {here} here" for k, there, here in differences[:3])
          more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
          raise ResumeMismatchError(
              f"checkpoint {self.directory / str(step)} holds parameters of another shape than this run's: "
              f"{shown}{more}. It was written with another prompt or method configuration (e.g. PROMPT_LENGTH); "
              "set it back, or start the new run in another MODEL_DIR.") from e
        self._unreadable(step, e)

  def _unreadable(self, step: int, e: Exception) -> None:
    """Raises UnreadableCheckpointError for `step`, or with fall_back_to_previous moves it aside."""
    path = self.directory / str(step)
    previous = [s for s in self.all_steps() if s < step]
    if not (self.fall_back_to_previous and previous):
      hint = (f" Pass --gin.Checkpoints.fall_back_to_previous=True to resume from step {previous[-1]} "
              "(the unreadable one is moved aside, not deleted)." if previous else
              " There is no earlier checkpoint; move it away to start afresh.")
      raise UnreadableCheckpointError(
          f"checkpoint {path} cannot be restored ({type(e).__name__}: {str(e)[:300]}). It may be truncated or "
          f"corrupt.{hint}") from e
    aside = self.directory / f"unreadable-{step}"
    shutil.move(str(path), str(aside))
    print(f"Checkpoint {path} is unreadable; moved it to {aside} and falling back to step {previous[-1]}.",
          flush=True)
    self._manager.close()
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def close(self) -> None:
    # A save that failed on a full disk may report again here: still the one line, not Orbax's traceback.
    with safety.disk_full(self.directory, None, "the checkpoints before the failed one are kept"):
      self._manager.wait_until_finished()
      self._manager.close()
