"""Frozen T5 weights for prompt tuning, from Hugging Face or T5X checkpoints, with t5x's partial restore;
and the writer of t5x's legacy checkpoint layout (`convert_checkpoint` turns a Hugging Face directory into one).

INITIAL_CHECKPOINT_PATH (training) and CHECKPOINT_PATH (eval, infer) may name
- a Hugging Face T5 1.1 directory (config.json + model.safetensors), read by
  `t5_checkpoint.load_t5`; its config.json must describe the gin model's architecture;
- a T5X checkpoint in the Orbax layout (`checkpoint_<step>/` holding `_METADATA` and
  OCDBT data, or, as current t5x writes, its item `checkpoint_<step>/state/`): only the parameters are read (Orbax partial restore), never the optimizer
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

The reader also takes BERT-family trees (Hugging Face directories via `bert_checkpoint.load_backbone`, T5X
checkpoints of our BERT names) and a run's tree `{'backbone', 'prompt', 'head'}`; `read_parameters` reads
only some named parameters (e.g. the embedding table for a prompt initializer).

`write_checkpoint` writes what t5x's `Checkpointer.save` writes: `checkpoint_<step>/checkpoint`, the msgpack of
`{'version': 3, 'optimizer': {'target': params, 'state': {'step': step}}}`, in which every array of rank >= 1
is the TensorStore spec (JSON) of a zarr array `target.<dotted name>/` beside it (gzip, chunks of at most 64 MiB
that divide the shape, path relative to the step directory). There is no optimizer state (no 'param_states':
t5x's `load_t5x_checkpoint` fails on an empty one): t5x restores it as any pretrained checkpoint, with
`assignment_map` `(r'state/.*', None)` and `fallback_to_scratch`; an InferenceState (eval, infer) needs only the
step.
"""

import dataclasses
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from flax import traverse_util

from prompt_tuning_jax import errors
from prompt_tuning_jax.models import bert_checkpoint, t5_checkpoint
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.bert_checkpoint import CheckpointMismatchError
from prompt_tuning_jax.models.t5 import T5Config
from prompt_tuning_jax.models.t5_checkpoint import expected_param_shapes, load_t5

AssignmentMap = Sequence[Tuple[str, Optional[str]]]
# Fields a checkpoint fixes; dropout and activation dtype are the run's choice.
_ARCHITECTURE = ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_encoder_layers", "num_decoder_layers",
                 "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon",
                 "feed_forward_proj", "tie_word_embeddings", "scale_decoder_outputs")
_ORBAX_MARKERS = ("_METADATA", "manifest.ocdbt", "_CHECKPOINT_METADATA")
_T5_TYPES = ("t5", "mt5")
# Top-level names that mark a parameter tree: T5 (t5x's names), BERT (bert_checkpoint's), a run's parameters.
_PARAM_ROOTS = ({"encoder", "decoder"}, {"embeddings"}, {"backbone"})
_VERSION = 3  # t5x's checkpoint version since 2021 (bfloat16 stored natively).
_CHUNK_BYTES = 64 * 1024 * 1024  # t5x's chunk size: large enough for the file system, small enough to shard.


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
    if isinstance(node, dict) and any(root <= set(node) for root in _PARAM_ROOTS):
      return prefix
  raise errors.CheckpointError(f"no model parameters (T5's encoder/ and decoder/, BERT's embeddings/ or a run's "
                               f"backbone/) in the checkpoint tree; its top level is {sorted(tree)}.")


def _subtree(tree: dict, prefix: Sequence[str]) -> dict:
  for key in prefix:
    tree = tree[key]
  return tree


# Which parameters a read takes: None (all), a list of names (each must exist) or a predicate on the name.
Selection = Union[None, Sequence[str], Callable[[str], bool]]


def _selected(flat: dict, names: Selection, where) -> dict:
  """`flat` restricted to `names` (module-level Selection); a listed name it lacks is the user's error."""
  if names is None:
    return flat
  if callable(names):
    return {k: v for k, v in flat.items() if names(k)}
  missing = [n for n in names if n not in flat]
  if missing:
    present = sorted(flat)
    raise errors.CheckpointError(
        f"{where} has no parameter {', '.join(missing)}; it has {len(present)}, e.g. {', '.join(present[:6])}. "
        "Name parameters by their '/'-joined path as the checkpoint stores them.")
  return {n: flat[n] for n in names}


def _read_orbax(step_dir: Path, names: Selection = None) -> Dict[str, np.ndarray]:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(step_dir)
  tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
  if not isinstance(tree, dict):  # No item metadata: Orbax found no parameter tree to read.
    raise errors.CheckpointError(f"T5X checkpoint {step_dir} holds no parameter tree Orbax can read (its metadata is "
                                 f"a {type(tree).__name__}); it may be truncated or corrupt.")
  prefix = _params_prefix(tree)
  flat = _selected(traverse_util.flatten_dict(_subtree(tree, prefix), sep="/"), names, f"T5X checkpoint {step_dir}")
  if not flat:  # Nothing selected: nothing to restore.
    return {}
  # Only these leaves are read (Orbax partial restore): never the optimizer state, nor unnamed parameters.
  wanted = traverse_util.unflatten_dict({k: jax.ShapeDtypeStruct(m.shape, m.dtype) for k, m in flat.items()}, sep="/")
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


def _read_legacy(step_dir: Path, names: Selection = None) -> Dict[str, np.ndarray]:
  from flax import serialization  # pylint: disable=g-import-not-at-top
  tree = serialization.msgpack_restore((step_dir / "checkpoint").read_bytes())
  params = _subtree(tree, _params_prefix(tree))
  flat = traverse_util.flatten_dict(params, sep="/", is_leaf=lambda _, v: _is_tensorstore_spec(v))
  flat = _selected(flat, names, f"T5X checkpoint {step_dir}")  # Only the named TensorStore arrays are opened.
  return {k: _read_tensorstore(v, step_dir) if _is_tensorstore_spec(v) else np.asarray(v) for k, v in flat.items()}


def _read_t5x(path: Path, names: Selection = None) -> Tuple[Dict[str, np.ndarray], str]:
  """(flat parameters, the layout's name) of a T5X checkpoint in either layout."""
  step_dir = find_t5x_step_dir(path)
  item_dir = step_dir / "state" if (step_dir / "state" / "_METADATA").exists() else step_dir  # t5x's manager
  orbax = any((item_dir / marker).exists() for marker in _ORBAX_MARKERS)
  try:
    flat = _read_orbax(item_dir, names) if orbax else _read_legacy(item_dir, names)
  except errors.UserError:
    raise
  except (ValueError, OSError, KeyError) as e:  # Orbax, msgpack and TensorStore on a truncated or corrupt checkpoint.
    raise errors.CheckpointError(f"T5X checkpoint {step_dir} cannot be read ({type(e).__name__}: {str(e)[:300]}). "
                                 "It may be truncated or corrupt.") from e
  return flat, f"T5X Orbax ({step_dir.name})" if orbax else f"T5X legacy msgpack + TensorStore ({step_dir.name})"


def hf_model_type(model_dir: Path) -> str:
  """config.json's model_type of a Hugging Face directory ('' when it has none)."""
  config_file = Path(model_dir) / "config.json"
  if not config_file.is_file():
    raise errors.MissingFileError(f"No config.json in {model_dir}: a Hugging Face model directory holds config.json "
                                  "and model.safetensors.")
  try:
    config = json.loads(config_file.read_text())
  except ValueError as e:  # json's JSONDecodeError (or UnicodeDecodeError): the file is the user's.
    raise errors.CheckpointError(f"{config_file} is not a readable JSON config: {e}.") from e
  return str(config.get("model_type", "")) if isinstance(config, dict) else ""


def load_hf(model_dir) -> Tuple[Union[T5Config, BertConfig], dict]:
  """(config, nested float32 params) of a Hugging Face T5 1.1 (model_type t5 or mt5) or BERT-family directory."""
  model_dir = Path(model_dir).expanduser()
  if not model_dir.is_dir():
    raise errors.MissingFileError(f"Hugging Face model directory {model_dir} does not exist.")
  if hf_model_type(model_dir) in _T5_TYPES:
    return load_t5(model_dir)
  return bert_checkpoint.load_backbone(model_dir)


def _read_hf_parameters(model_dir: Path, names: Sequence[str]) -> Dict[str, np.ndarray]:
  """Only the named tensors of a Hugging Face directory, under our names, as its loader converts them."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  to_path = (t5_checkpoint.hf_name_to_t5x_path if hf_model_type(model_dir) in _T5_TYPES
             else bert_checkpoint.hf_name_to_flax_path)
  files = sorted(model_dir.glob("*.safetensors"))
  if not files:
    bert_checkpoint.read_safetensors(model_dir)  # Its error names what the directory holds.
  present, found = {}, {}
  for file in files:
    try:
      with safe_open(str(file), framework="numpy") as reader:
        for key in reader.keys():
          mapped = to_path(key)
          if mapped is not None:
            present[mapped[0]] = None
            if mapped[0] in names:
              value = reader.get_tensor(key)
              found[mapped[0]] = np.ascontiguousarray(value.T if mapped[1] else value, dtype=np.float32)
    except Exception as e:  # safetensors raises its own error types.
      raise errors.CheckpointError(f"Cannot read weights file {file}: {e}. The file is corrupt or not "
                                   "safetensors.") from e
  _selected(present, names, f"Hugging Face directory {model_dir}")
  return found


def read_parameters(path, names: Sequence[str]) -> Dict[str, np.ndarray]:
  """{name: array} of only the named parameters (e.g. 'token_embedder/embedding') of a Hugging Face directory
  (converted as its loader does: our names, float32) or a T5X checkpoint (either layout, as stored)."""
  path, names = Path(path).expanduser(), list(names)
  if not path.exists():
    raise errors.MissingFileError(f"checkpoint {path} does not exist.")
  flat = _read_hf_parameters(path, names) if (path / "config.json").exists() else _read_t5x(path, names)[0]
  return {n: flat[n] for n in names}  # In the order asked for (Orbax restores in its own).


def read_matching(path, matches: Callable[[str], bool]) -> Tuple[Dict[str, np.ndarray], str]:
  """(the parameters whose '/'-path `matches`, the layout's name) of a T5X checkpoint: only those are read
  (e.g. a run's prompt, never its frozen backbone)."""
  path = Path(path).expanduser()
  if not path.exists():
    raise errors.MissingFileError(f"checkpoint {path} does not exist.")
  return _read_t5x(path, matches)


def read_checkpoint(path) -> Tuple[Dict[str, np.ndarray], Optional[Union[T5Config, BertConfig]], str]:
  """(flat {t5x path: array}, the Hugging Face config or None, the layout's name) of a checkpoint."""
  path = Path(path).expanduser()
  if not path.exists():
    raise errors.MissingFileError(f"T5 checkpoint {path} does not exist.")
  if (path / "config.json").exists():
    config, params = load_hf(path)
    return traverse_util.flatten_dict(params, sep="/"), config, "Hugging Face"
  flat, layout = _read_t5x(path)
  return flat, None, layout


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
  if isinstance(found, BertConfig):
    raise errors.CheckpointError(f"checkpoint {path} holds a BERT-family encoder, not a T5; point it at a T5 1.1 "
                                 "directory or T5X checkpoint.")
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


def _chunk_shape(shape: Sequence[int], itemsize: int) -> list:
  """Chunks of at most 64 MiB that divide `shape`: the largest chunk dimension steps down through the divisors
  of its size until the chunk fits (a small array is one chunk)."""
  chunks = list(shape)
  while chunks and int(np.prod(chunks)) * itemsize > _CHUNK_BYTES:
    i = int(np.argmax(chunks))
    chunks[i] = next(d for d in range(chunks[i] - 1, 0, -1) if shape[i] % d == 0)
  return chunks


def _write_tensorstores(step_dir: Path, flat: Dict[Tuple[str, ...], np.ndarray]) -> dict:
  """Writes each array of rank >= 1 as a zarr array beside the msgpack; the target tree of specs and scalars."""
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  target, writes = {}, []
  for path, value in flat.items():
    value = np.asarray(value)
    if value.ndim == 0:
      target[path] = value
      continue
    name = "target." + ".".join(path)
    # Normalised as t5x stores it (ts.Spec.to_json: the directory path ends in '/', gzip level 1).
    spec = ts.Spec({"driver": "zarr", "dtype": value.dtype.name, "kvstore": {"driver": "file", "path": name},
                    "metadata": {"shape": list(value.shape), "chunks": _chunk_shape(value.shape, value.dtype.itemsize),
                                 "compressor": {"id": "gzip", "level": 1}}}).to_json()
    store = ts.open({**spec, "kvstore": {"driver": "file", "path": str(step_dir / name)}}, create=True).result()
    writes.append(store.write(value))
    target[path] = spec
  for write in writes:
    write.result()
  return traverse_util.unflatten_dict(target)


def write_checkpoint(params: dict, model_dir, step: int = 0) -> Path:
  """Writes `params` (nested {name: array}, t5x's plain names at the top) as t5x's legacy checkpoint
  `model_dir/checkpoint_<step>` (layout: module docstring) and returns that directory.

  Written into a temporary directory beside it and renamed into place, so a reader never sees half a checkpoint;
  an existing checkpoint_<step> is never overwritten (errors.NotWritableError).
  """
  from flax import serialization  # pylint: disable=g-import-not-at-top
  if int(step) < 0:
    raise errors.ConfigError(f"checkpoint step {step} is negative; t5x numbers checkpoints from 0.")
  model_dir = Path(model_dir).expanduser()
  final = model_dir / f"checkpoint_{int(step)}"
  exists = errors.NotWritableError(f"T5X checkpoint {final} already exists and is never overwritten; choose another "
                                   "output directory or step, or delete it.")
  if os.path.lexists(final):
    raise exists
  tmp = model_dir / f"{final.name}.tmp-{uuid.uuid4().hex[:12]}"
  try:
    tmp.mkdir(parents=True)
  except OSError as e:
    raise errors.NotWritableError(f"T5X model directory {model_dir} is not writable ({e.strerror or e}); choose "
                                  "another output directory.") from e
  try:
    target = _write_tensorstores(tmp, traverse_util.flatten_dict(params))
    state = {"version": _VERSION, "optimizer": {
        "target": target, "state": {"step": np.array(step, np.int32)}}}
    (tmp / "checkpoint").write_bytes(serialization.msgpack_serialize(state))
    try:
      os.rename(tmp, final)
    except OSError as e:  # Another writer made checkpoint_<step> meanwhile (rename onto a non-empty directory).
      if os.path.lexists(final):
        raise exists from e
      raise
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return final
