"""Orbax checkpoints of the training state: step, trainable parameters, optimizer state.

Frozen backbone weights are never written: they come from INITIAL_CHECKPOINT_PATH.
`extra` holds small JSON facts the loop needs to resume (best metric so far).
"""

from pathlib import Path
from typing import Optional, Tuple

import jax
import orbax.checkpoint as ocp

from prompt_tuning_jax.train_step import TrainState


class Checkpoints:
  """Saves to and restores from MODEL_DIR/checkpoints/<step>."""

  def __init__(self, model_dir, keep: int = 3):
    self.directory = Path(model_dir).resolve() / "checkpoints"
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, state: TrainState, extra: dict) -> None:
    step = int(jax.device_get(state.step))
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state._asdict()), extra=ocp.args.JsonSave(extra)), force=True)

  def restore(self, like: TrainState) -> Tuple[TrainState, dict]:
    """Restores the latest checkpoint into the structure of `like`."""
    step = self.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like._asdict())
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax raises many types for unreadable data.
      raise ValueError(f"checkpoint {self.directory / str(step)} cannot be restored ({type(e).__name__}: {e}). "
                       "It may be corrupt or from a different model configuration; move it away to "
                       "resume from an earlier one.") from e
    return TrainState(**restored["state"]), dict(restored["extra"] or {})

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
