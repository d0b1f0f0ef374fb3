"""One regex pattern decides what trains, what is saved per task and what is restored.

Parameter paths are '/'-joined (e.g. 'prompt/prefix', 'backbone/layers_0/mlp/wi/bias').
A parameter is trainable when its path fully matches any of the patterns (like the
prompt-tuning repo's PROMPT_REGEX). Trainable parameters get optimizer state, go into
checkpoints and exports; frozen ones come from the backbone checkpoint only.
"""

import re
from typing import Dict, Sequence, Tuple

import jax
import numpy as np
from flax import traverse_util

from prompt_tuning_jax import errors

DEEP_PROMPT_PATTERNS = (r"prompt/.*", r"head/.*")


def flatten(params) -> Dict[str, jax.Array]:
  return traverse_util.flatten_dict(params, sep="/")


def unflatten(flat: Dict[str, jax.Array]):
  return traverse_util.unflatten_dict(flat, sep="/")


def is_trainable(path: str, patterns: Sequence[str]) -> bool:
  return any(re.fullmatch(p, path) for p in patterns)


def split_params(params, patterns: Sequence[str]) -> Tuple[dict, dict]:
  """Nested params -> (trainable, frozen) nested dicts by `patterns`."""
  flat = flatten(params)
  trainable = {k: v for k, v in flat.items() if is_trainable(k, patterns)}
  if not trainable:
    raise errors.ConfigError(f"No parameter matches the trainable patterns {list(patterns)}; "
                             f"parameter paths look like {sorted(flat)[:3]}.")
  frozen = {k: v for k, v in flat.items() if k not in trainable}
  return unflatten(trainable), unflatten(frozen)


def merge_params(trainable, frozen):
  """Inverse of split_params."""
  return unflatten({**flatten(frozen), **flatten(trainable)})


def count(params) -> int:
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(params)))


def parameter_report(params, trained, exported: Dict[str, np.ndarray]) -> dict:
  """Trainable count, its share of the backbone, and the tensor bytes of `exported` (what
  the export stores for `trained`, reparameterizations collapsed)."""
  n_trainable, n_backbone = count(trained), count(params["backbone"])
  return {"trainable": n_trainable, "backbone": n_backbone, "total": count(params),
          "share_of_backbone_percent": 100.0 * n_trainable / n_backbone,
          "trainable_tensors": sorted(flatten(trained)),
          "export_tensor_bytes": int(sum(np.asarray(v).nbytes for v in exported.values()))}
