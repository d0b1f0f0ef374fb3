"""Frozen T5 weights for prompt tuning, from Hugging Face or T5X checkpoints, with t5x's partial restore.

INITIAL_CHECKPOINT_PATH (training) and CHECKPOINT_PATH (eval, infer) may name
- a Hugging Face T5 1.1 directory (config.json + model.safetensors), read by
  `t5_checkpoint.load_t5`; its config.json must describe the gin model's architecture;
- a T5X checkpoint in the Orbax layout (`checkpoint_<step>/` holding `_METADATA` and
  OCDBT data): only the parameters are read (Orbax partial restore), never the optimizer
  state;
- a T5X checkpoint in the legacy layout (`checkpoint_<step>/checkpoint`, a msgpack tree
  whose large arrays are TensorStore specs of zarr directories beside it, with paths
  relative to the checkpoint directory).
For T5X the path may be the model directory (its latest `checkpoint_<step>` is read), a step
directory or the `checkpoint` file. The tree is t5x's train state, `{'version',
'optimizer': {'target': params, 'state': ...}}`, or the same without the 'optimizer' level;
parameter names are t5x's, as in `models/t5.py`.

Partial restore follows t5x's RestoreCheckpointConfig. `assignment_map` is a sequence of
(regex, replacement or None) over the model's parameter paths (e.g.
'encoder/layers_0/attention/query/kernel'); the first pattern that fully matches decides:
None means not loaded, a string is the checkpoint path (`re.sub` with the pattern, so
groups work). Paths no pattern matches load under their own name. With
`fallback_to_scratch` whatever is not loaded is freshly initialised instead of being an
error. The prompt lives outside the backbone (`prompt/...`), so it is always new.
"""

import dataclasses
import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import jax
import numpy as np
from flax import traverse_util

from prompt_tuning_jax import errors
from prompt_tuning_jax.models.bert_checkpoint import CheckpointMismatchError
from prompt_tuning_jax.models.t5 import T5Config
from prompt_tuning_jax.models.t5_checkpoint import expected_param_shapes, load_t5

AssignmentMap = Sequence[Tuple[str, Optional[str]]]
# Fields a checkpoint fixes; dropout and activation dtype are the run's choice.
_ARCHITECTURE = ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_encoder_layers", "num_decoder_layers",
                 "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon")
_ORBAX_MARKERS = ("_METADATA", "manifest.ocdbt", "_CHECKPOINT_METADATA")


def find_t5x_step_dir(path: Path) -> Path:
  """The `checkpoint_<step>` directory `path` names (the latest one under a model directory)."""
  if path.is_file() and path.name == "checkpoint":
    return path.parent
  steps = sorted((int(m.group(1)), p) for p in path.glob("checkpoint_*")
                 if p.is_dir() and (m := re.fullmatch(r"checkpoint_(\d+)", p.name)))
  if steps:
    return steps[-1][1]
  if any((path / marker).exists() for marker in _ORBAX_MARKERS) or (path / "checkpoint").is_file():
    return path
  raise errors.MissingFileError(
      f"{path} is neither a Hugging Face T5 directory (config.json + model.safetensors) nor a T5X checkpoint "
      "(checkpoint_<step>/ with Orbax _METADATA or a legacy msgpack 'checkpoint' file).")


def _params_prefix(tree: dict) -> Tuple[str, ...]:
  """Where the model parameters sit in a t5x state tree."""
  for prefix in (("optimizer", "target"), ("target",), ("params",), ()):
    node = tree
    for key in prefix:
      node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and "encoder" in node and "decoder" in node:
      return prefix
  raise errors.CheckpointError(f"no T5 parameters (encoder/, decoder/) in the checkpoint tree; its top level is "
                               f"{sorted(tree)}.")


def _subtree(tree: dict, prefix: Sequence[str]) -> dict:
  for key in prefix:
    tree = tree[key]
  return tree


def _read_orbax(step_dir: Path) -> Dict[str, np.ndarray]:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(step_dir)
  tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
  if not isinstance(tree, dict):  # No item metadata: Orbax found no parameter tree to read.
    raise errors.CheckpointError(f"T5X checkpoint {step_dir} holds no parameter tree Orbax can read (its metadata is "
                                 f"a {type(tree).__name__}); it may be truncated or corrupt.")
  prefix = _params_prefix(tree)
  wanted = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), _subtree(tree, prefix))
  for key in reversed(prefix):
    wanted = {key: wanted}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
  restored = checkpointer.restore(step_dir, args=ocp.args.PyTreeRestore(
      item=wanted, restore_args=restore_args, partial_restore=True))
  return traverse_util.flatten_dict(_subtree(restored, prefix), sep="/")


def _is_tensorstore_spec(value) -> bool:
  return isinstance(value, dict) and {"driver", "kvstore"} <= set(value)


def _read_tensorstore(spec: dict, step_dir: Path) -> np.ndarray:
  """One array of a legacy checkpoint: its spec's relative path resolved against the step directory."""
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  spec = {**spec, "kvstore": dict(spec["kvstore"]), "metadata": dict(spec.get("metadata", {}))}
  # As t5x reads: a checkpoint written to GCS is read from local files, and the chunking
  # and compression it was written with are taken from the stored metadata.
  spec["kvstore"] = {"driver": "file", "path": str(step_dir / spec["kvstore"]["path"])}
  for key in ("chunks", "compressor"):
    spec["metadata"].pop(key, None)
  return np.asarray(ts.open(spec, open=True).result().read().result())


def _read_legacy(step_dir: Path) -> Dict[str, np.ndarray]:
  from flax import serialization  # pylint: disable=g-import-not-at-top
  tree = serialization.msgpack_restore((step_dir / "checkpoint").read_bytes())
  params = _subtree(tree, _params_prefix(tree))
  flat = traverse_util.flatten_dict(params, sep="/", is_leaf=lambda _, v: _is_tensorstore_spec(v))
  return {k: _read_tensorstore(v, step_dir) if _is_tensorstore_spec(v) else np.asarray(v) for k, v in flat.items()}


def read_checkpoint(path) -> Tuple[Dict[str, np.ndarray], Optional[T5Config], str]:
  """(flat {t5x path: array}, the Hugging Face config or None, the layout's name) of a checkpoint."""
  path = Path(path).expanduser()
  if not path.exists():
    raise errors.MissingFileError(f"T5 checkpoint {path} does not exist.")
  if (path / "config.json").exists():
    config, params = load_t5(path)
    return traverse_util.flatten_dict(params, sep="/"), config, "Hugging Face"
  step_dir = find_t5x_step_dir(path)
  orbax = any((step_dir / marker).exists() for marker in _ORBAX_MARKERS)
  try:
    flat = _read_orbax(step_dir) if orbax else _read_legacy(step_dir)
  except errors.UserError:
    raise
  except (ValueError, OSError, KeyError) as e:  # Orbax, msgpack and TensorStore on a truncated or corrupt checkpoint.
    raise errors.CheckpointError(f"T5X checkpoint {step_dir} cannot be read ({type(e).__name__}: {str(e)[:300]}). "
                                 "It may be truncated or corrupt.") from e
  return flat, None, f"T5X Orbax ({step_dir.name})" if orbax else f"T5X legacy msgpack + TensorStore ({step_dir.name})"


def check_architecture(found: T5Config, configured: T5Config, path) -> None:
  """The checkpoint's architecture must be the gin model file's."""
  diffs = [f"{k}={getattr(found, k)} (gin: {getattr(configured, k)})" for k in _ARCHITECTURE
           if getattr(found, k) != getattr(configured, k)]
  if diffs:
    raise errors.CheckpointError(f"checkpoint {path} holds a different T5: {', '.join(diffs)}. Use the gin/models "
                                 "file of its size.")


def assign(expected: Dict[str, Tuple[int, ...]], source: Dict[str, np.ndarray],
           assignment_map: AssignmentMap = ()) -> Tuple[Dict[str, np.ndarray], list]:
  """Model path -> checkpoint array by the assignment map; returns (loaded, paths not loaded)."""
  loaded, missing, misshaped = {}, [], []
  for path, shape in expected.items():
    origin = path
    for pattern, replacement in assignment_map:
      if re.fullmatch(pattern, path):
        origin = None if replacement is None else re.sub(pattern, replacement, path)
        break
    if origin is None or origin not in source:
      missing.append(path)
    elif tuple(source[origin].shape) != tuple(shape):
      misshaped.append(f"{origin} -> {path}: checkpoint {tuple(source[origin].shape)}, model {tuple(shape)}")
    else:
      loaded[path] = source[origin]
  if misshaped:
    raise CheckpointMismatchError("T5 checkpoint does not match the model: mis-shaped " + ", ".join(misshaped))
  return loaded, missing


def restore_backbone(path, config: T5Config, assignment_map: AssignmentMap = (), fallback_to_scratch: bool = False,
                     seed: int = 0) -> Tuple[dict, str]:
  """The T5 parameters (nested, float32) for `config` from `path`, and a one-line description of what was read."""
  source, found, layout = read_checkpoint(path)
  if found is not None:
    check_architecture(found, config, path)
  expected = expected_param_shapes(config)
  loaded, missing = assign(expected, source, assignment_map)
  if missing and not fallback_to_scratch:
    raise CheckpointMismatchError(f"T5 checkpoint {path} lacks {len(missing)} parameter(s) the model needs: "
                                  f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}. Map them with "
                                  "assignment_map or set fallback_to_scratch to initialise them.")
  if missing:
    loaded |= {k: v for k, v in _fresh(config, seed).items() if k in missing}
  description = f"{layout} checkpoint {path}: {len(expected) - len(missing)} tensors loaded"
  description += f", {len(missing)} initialised from scratch" if missing else ""
  return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in loaded.items()}, sep="/"), description


def _fresh(config: T5Config, seed: int) -> Dict[str, np.ndarray]:
  """A freshly initialised T5 (t5x's fallback-to-scratch for backbone weights)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models.t5 import T5  # pylint: disable=g-import-not-at-top
  ids = np.ones((1, 2), np.int32)
  params = jax.jit(lambda rng: nn.meta.unbox(T5(config).init(rng, ids, ids, ids, enable_dropout=False)["params"]))(jax.random.key(seed))
  return traverse_util.flatten_dict(jax.device_get(params), sep="/")


def architecture(config: T5Config) -> dict:
  """The architecture fields of `config` (for export metadata)."""
  return {k: v for k, v in dataclasses.asdict(config).items() if k in _ARCHITECTURE}
