"""What a checkpoint records about the run that wrote it, so that a resume continues the same training.

`of_run` -> {"data": a content hash of the training split's examples in their order as loaded (the arrays
the batcher holds: token ids, labels, task ids; texts are covered by their ids), "settings": the trainable
patterns (the method), every trainable parameter's shape (prompt shape, head) and the optimizer with its
learning-rate schedule (steps.describe)}. It goes into each checkpoint's `extra`; `loop.resume` compares it
with the run's and refuses a mismatch naming both values (`differences`). Checkpoints written before it
existed carry none and resume unchecked, with a printed note.
"""

import dataclasses
import hashlib
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from prompt_tuning_jax import trainable

# The setting a user changes to get each recorded value back.
SETTING_NAMES = {
    "trainable_patterns": "the method's trainable patterns",
    "parameters": "the prompt or method configuration, e.g. PROMPT_LENGTH",
    "optimizer.optimizer": "the optimizer",
    "optimizer.learning_rate": "LEARNING_RATE",
    "optimizer.train_steps": "TRAIN_STEPS: the learning-rate schedule decays to 0 there",
    "optimizer.warmup_steps": "WARMUP_STEPS",
}


def data_hash(examples: Any) -> str:
  """sha256 (first 16 hex digits) over the examples' array fields in order (`meta` and texts left out)."""
  digest = hashlib.sha256()
  for field in dataclasses.fields(examples):
    if field.name != "meta":
      _update(digest, field.name, getattr(examples, field.name))
  return digest.hexdigest()[:16]


def _update(digest, name: str, value) -> None:
  if isinstance(value, Mapping):
    for key in sorted(value):
      _update(digest, f"{name}.{key}", value[key])
    return
  if isinstance(value, np.ndarray):
    arrays = [value]
  elif isinstance(value, (list, tuple)) and all(isinstance(x, np.ndarray) for x in value):
    arrays = list(value)
  else:
    return  # Strings and other host-only facts: the token ids already cover the texts.
  shapes = np.array([d for a in arrays for d in (a.ndim, *a.shape)], np.int64)
  digest.update(name.encode() + b"\0" + shapes.tobytes())
  if arrays:
    flat = np.concatenate([a.ravel() for a in arrays])
    digest.update(str(flat.dtype).encode() + np.ascontiguousarray(flat).tobytes())


def settings(trained, trainable_patterns: Sequence[str], optimizer: Optional[dict]) -> dict:
  """The settings that change the trained function; `optimizer` from steps.description (None: not known)."""
  return {"trainable_patterns": list(trainable_patterns),
          "parameters": {k: list(np.shape(v)) for k, v in sorted(trainable.flatten(trained).items())},
          "optimizer": optimizer}


def of_run(examples, trained, trainable_patterns: Sequence[str], optimizer: Optional[dict]) -> dict:
  return {"data": data_hash(examples), "settings": settings(trained, trainable_patterns, optimizer)}


def _flat(settings_dict: Mapping[str, Any]) -> Dict[str, Any]:
  out = {}
  for key, value in settings_dict.items():
    if key == "optimizer" and isinstance(value, Mapping):
      out.update({f"optimizer.{k}": v for k, v in value.items()})
    elif key != "optimizer" or value is not None:
      out[key] = value
  return out


def setting_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> List[str]:
  """'NAME there, here (the setting)' for each recorded setting that differs; an optimizer not described on
  either side is not compared."""
  there, here = _flat(saved), _flat(current)
  if saved.get("optimizer") is None or current.get("optimizer") is None:
    there = {k: v for k, v in there.items() if not k.startswith("optimizer")}
    here = {k: v for k, v in here.items() if not k.startswith("optimizer")}
  out = []
  for key in [k for k in dict.fromkeys([*there, *here]) if there.get(k) != here.get(k)]:
    if key == "parameters":
      a, b = there.get(key) or {}, here.get(key) or {}
      changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
      shown = ", ".join(f"{k} {a.get(k)} there, {b.get(k)} here" for k in changed[:3])
      out.append(f"parameter shapes {shown}{' ...' if len(changed) > 3 else ''} ({SETTING_NAMES[key]})")
    else:
      out.append(f"{key} {there.get(key)!r} there, {here.get(key)!r} here ({SETTING_NAMES.get(key, key)})")
  return out
