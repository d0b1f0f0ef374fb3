"""Export of a trained prompt and head to one small safetensors file.

Format (`prompt_tuning_jax.export/1`):
  tensors:  '/'-joined parameter paths -> float32 arrays, exactly the trainable
            parameters with any reparameterization collapsed (a DeepPrompt with an MLP
            is stored as its table `prompt/prefix` [L, 2, P, N, D]).
  metadata (all strings): format, task, label_names (JSON list), step, metric,
            backbone (directory), hidden_size, num_hidden_layers, num_attention_heads,
            prompt_kind, prompt_length, prompt_layers (deep prompts: the layer indices),
            position_policy, pooling, feature_lengths (encoder runs: TASK_FEATURE_LENGTHS).
Load with `load_export(path)` -> (tensors, metadata).
"""

import json
import os
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
from safetensors.numpy import load_file, save_file

from prompt_tuning_jax import errors
from prompt_tuning_jax.training import safety

FORMAT = "prompt_tuning_jax.export/1"


def save_export(path, tensors: Dict[str, np.ndarray], metadata: Dict[str, object]) -> int:
  """Writes atomically (temp file + rename) and returns the file size in bytes."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = {"format": FORMAT, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
  tmp = path.with_name(path.name + ".tmp")
  arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}
  # A full disk is one line and leaves the previous export in place (the rename never happens).
  needed = sum(a.nbytes for a in arrays.values()) + len(json.dumps(meta)) + 128 * (len(arrays) + 1)
  kept = "the previous export is kept" if path.exists() else "nothing was exported"
  safety.check_free_space(path, needed, kept)
  with safety.disk_full(path, needed, kept, cleanup=lambda: tmp.unlink(missing_ok=True)):
    save_file(arrays, str(tmp), metadata=meta)
  os.replace(tmp, path)
  return path.stat().st_size


def load_export(path) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  try:
    with safe_open(str(path), "np") as f:
      metadata = f.metadata() or {}
    tensors = load_file(str(path)) if metadata.get("format") == FORMAT else {}
  except Exception as e:  # safetensors raises its own error types (and OSError for a missing file).
    raise errors.CheckpointError(f"{path} is not a readable safetensors prompt file: {e}") from e
  if metadata.get("format") != FORMAT:
    raise errors.CheckpointError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}.")
  return tensors, metadata


def load_npy(path) -> np.ndarray:
  """A prompt saved as .npy (the prompt-tuning repo's format); a file numpy cannot read is a CheckpointError."""
  try:
    return np.load(path, allow_pickle=False)
  except FileNotFoundError as e:
    raise errors.MissingFileError(f"prompt file {path} does not exist.") from e
  except (OSError, ValueError) as e:  # numpy's errors for a file that is not an array.
    raise errors.CheckpointError(f"{path} is not a readable .npy prompt file: {e}") from e


def restore_matching(params, path, patterns: Sequence[str]):
  """`params` with the tensors of export `path` whose names match `patterns` put in place.

  This is the partial restore behind MPT-2 and prompt transfer: e.g. patterns
  ('prompt/.*',) start a task's prompt from a multi-task run's shared prompt while the
  head is initialised afresh. Names and shapes must fit the model; errors name both.
  """
  from prompt_tuning_jax import trainable  # pylint: disable=g-import-not-at-top
  tensors, metadata = load_export(path)
  chosen = {k: v for k, v in tensors.items() if trainable.is_trainable(k, patterns)}
  if not chosen:
    raise errors.CheckpointError(f"{path}: no tensor matches {list(patterns)}; it holds {sorted(tensors)}.")
  flat = trainable.flatten(params)
  for name, value in chosen.items():
    if name not in flat:
      expected = sorted(k for k in flat if trainable.is_trainable(k, patterns))
      raise errors.CheckpointError(f"{path}: tensor {name!r} is not a parameter of this model, which has {expected} "
                                   "there. Configure the prompt as in the run that exported it (e.g. "
                                   "PROMPT_REPARAM_HIDDEN=None: exports store deep prompts collapsed).")
    if tuple(value.shape) != tuple(flat[name].shape):
      raise errors.CheckpointError(f"{path}: tensor {name!r} has shape {tuple(value.shape)} but this model's is "
                                   f"{tuple(flat[name].shape)}{exported_for(metadata)}; use that backbone and "
                                   "prompt configuration, or a prompt exported from this model.")
  return trainable.unflatten({**flat, **{k: np.asarray(v, flat[k].dtype) for k, v in chosen.items()}})


def exported_for(metadata: Dict[str, str]) -> str:
  """'; it was exported for <backbone> (hidden size H, layers L, prompt length P)' from the export's metadata."""
  sizes = [f"{what} {metadata[k]}" for k, what in (("hidden_size", "hidden size"), ("num_hidden_layers", "layers"),
                                                   ("prompt_length", "prompt length")) if k in metadata]
  if "backbone" not in metadata and not sizes:
    return ""
  return f"; it was exported for {metadata.get('backbone', 'a model')}" + (f" ({', '.join(sizes)})" if sizes else "")
