"""Loads a Hugging Face T5 directory (config.json + model.safetensors) into t5x names.

Accepted: `model_type` t5 or mt5 with `feed_forward_proj` 'gated-gelu' (T5 1.1, mT5, Flan-T5,
whose configs also carry `dense_act_fn` 'gelu_new' and `is_gated_act`) or 'relu' (T5 1.0:
`DenseReluDense.wi`, `wo`). The output layer is `lm_head.weight` when the checkpoint has one,
else the shared embedding when the config ties them (`tie_word_embeddings`, Hugging Face's
default: T5 1.0, and small configs as transformers 5 writes them). The decoder output is scaled
by 1/sqrt(d_model) before it as transformers does: when `scale_decoder_outputs` says so, or, in
configs older than that key, when `tie_word_embeddings` is not false.

PyTorch Linear weights are (out, in) and become kernels (in, out); the relative position
tables are (buckets, N) in Hugging Face and (N, buckets) in t5x. `shared.weight` is the
embedding; the per-stack `embed_tokens` copies of it and the unused cross-attention
relative bias some old checkpoints carry are ignored.
"""

import json
import re
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from flax import traverse_util

from prompt_tuning_jax import errors
from prompt_tuning_jax.models import bert_checkpoint
from prompt_tuning_jax.models.bert_checkpoint import CheckpointMismatchError
from prompt_tuning_jax.models.t5 import T5Config

__all__ = ["CheckpointMismatchError", "config_from_hf", "expected_param_shapes", "load_t5", "convert_state_dict"]

_ATTENTION = {"q": "query", "k": "key", "v": "value", "o": "out"}
_IGNORED = re.compile(r"^(encoder|decoder)\.embed_tokens\.weight$"
                      r"|^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$")

# (HF name pattern, t5x path from the match, transpose?)
_RULES = (
    (r"shared\.weight", lambda m: "token_embedder/embedding", False),
    (r"lm_head\.weight", lambda m: "decoder/logits_dense/kernel", True),
    (r"(encoder|decoder)\.final_layer_norm\.weight", lambda m: f"{m[1]}/{m[1]}_norm/scale", False),
    (r"(encoder|decoder)\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
     lambda m: f"{m[1]}/relpos_bias/rel_embedding", True),
    (r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight",
     lambda m: f"encoder/layers_{m[1]}/attention/{_ATTENTION[m[2]]}/kernel", True),
    (r"encoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight",
     lambda m: f"encoder/layers_{m[1]}/pre_attention_layer_norm/scale", False),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.(wi|wi_0|wi_1|wo)\.weight",
     lambda m: f"encoder/layers_{m[1]}/mlp/{m[2]}/kernel", True),
    (r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight",
     lambda m: f"encoder/layers_{m[1]}/pre_mlp_layer_norm/scale", False),
    (r"decoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight",
     lambda m: f"decoder/layers_{m[1]}/self_attention/{_ATTENTION[m[2]]}/kernel", True),
    (r"decoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight",
     lambda m: f"decoder/layers_{m[1]}/pre_self_attention_layer_norm/scale", False),
    (r"decoder\.block\.(\d+)\.layer\.1\.EncDecAttention\.([qkvo])\.weight",
     lambda m: f"decoder/layers_{m[1]}/encoder_decoder_attention/{_ATTENTION[m[2]]}/kernel", True),
    (r"decoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight",
     lambda m: f"decoder/layers_{m[1]}/pre_cross_attention_layer_norm/scale", False),
    (r"decoder\.block\.(\d+)\.layer\.2\.DenseReluDense\.(wi|wi_0|wi_1|wo)\.weight",
     lambda m: f"decoder/layers_{m[1]}/mlp/{m[2]}/kernel", True),
    (r"decoder\.block\.(\d+)\.layer\.2\.layer_norm\.weight",
     lambda m: f"decoder/layers_{m[1]}/pre_mlp_layer_norm/scale", False),
)


def hf_name_to_t5x_path(name: str):
  """Maps one HF tensor name to (t5x path, transpose), or None when it is ignored."""
  if _IGNORED.search(name):
    return None
  for pattern, path, transpose in _RULES:
    m = re.fullmatch(pattern, name)
    if m:
      return path(m), transpose
  return name, False  # Unknown: reported as unexpected.


_FEED_FORWARD = {"gated-gelu": ("gated-gelu", "gelu_new"), "gated-gelu_new": ("gated-gelu", "gelu_new"),
                 "relu": ("relu", "relu")}  # HF feed_forward_proj -> (ours, its dense_act_fn)


def config_from_hf(d: dict, has_lm_head: bool = True) -> T5Config:
  """A T5Config from a Hugging Face config dict; errors.CheckpointError for an architecture T5 does not have
  here. has_lm_head: whether the checkpoint carries lm_head.weight (else a tied config's output is the
  shared embedding)."""
  model_type = d.get("model_type")
  if model_type not in ("t5", "mt5"):
    raise errors.CheckpointError(f"config.json has model_type {model_type!r}; the T5 loader reads 't5' or 'mt5' "
                                 "checkpoints.")
  mlp = d.get("feed_forward_proj", "relu")  # Hugging Face's default is T5 1.0's.
  if mlp not in _FEED_FORWARD or d.get("dense_act_fn", _FEED_FORWARD[mlp][1]) != _FEED_FORWARD[mlp][1]:
    raise errors.CheckpointError(
        f"config.json has feed_forward_proj {mlp!r} (dense_act_fn {d.get('dense_act_fn')!r}): supported are T5 1.1's "
        "'gated-gelu' (wi_0, wi_1, wo; gelu_new) and T5 1.0's 'relu' (wi, wo); use a T5 1.0, T5 1.1, Flan-T5 or mT5 "
        "checkpoint.")
  tied_config = d.get("tie_word_embeddings", True) is not False
  missing = [k for k in ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff", "num_layers") if k not in d]
  if missing:
    raise errors.CheckpointError(f"config.json lacks {missing}; it does not describe a T5.")
  return T5Config(
      vocab_size=d["vocab_size"],
      d_model=d["d_model"],
      num_heads=d["num_heads"],
      d_kv=d["d_kv"],
      d_ff=d["d_ff"],
      num_encoder_layers=d["num_layers"],
      num_decoder_layers=d.get("num_decoder_layers") or d["num_layers"],
      dropout_rate=d.get("dropout_rate", 0.1),
      relative_attention_num_buckets=d.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=d.get("relative_attention_max_distance", 128),
      layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-6),
      feed_forward_proj=_FEED_FORWARD[mlp][0],
      tie_word_embeddings=tied_config and not has_lm_head,
      scale_decoder_outputs=bool(d.get("scale_decoder_outputs", tied_config)))


def load_config(model_dir, has_lm_head: bool = True) -> T5Config:
  config_file = Path(model_dir) / "config.json"
  if not config_file.exists():
    raise errors.MissingFileError(f"No config.json in T5 checkpoint directory {model_dir}.")
  try:
    config = json.loads(config_file.read_text())
  except ValueError as e:  # json's JSONDecodeError (or UnicodeDecodeError): the file is the user's.
    raise errors.CheckpointError(f"{config_file} is not a readable JSON config: {e}.") from e
  return config_from_hf(config, has_lm_head)


def convert_state_dict(tensors: Dict[str, np.ndarray], expected_shapes: Dict[str, Tuple[int, ...]]):
  """Converts HF tensors to a flat {t5x path: float32 array} checked against `expected_shapes`.

  Raises CheckpointMismatchError listing missing, unexpected and mis-shaped weights.
  """
  return bert_checkpoint.convert_state_dict(tensors, expected_shapes, hf_name_to_t5x_path, what="T5", hints={
      "decoder/logits_dense/kernel": "  (no lm_head.weight: T5 1.1 keeps its output layer separate from shared.weight)"})


def expected_param_shapes(config: T5Config) -> Dict[str, Tuple[int, ...]]:
  """{t5x path: shape} of a T5, computed without allocating weights."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models.t5 import T5  # pylint: disable=g-import-not-at-top
  ids = jnp.ones((1, 2), jnp.int32)
  return bert_checkpoint.param_shapes(T5(config), ids, ids, ids, enable_dropout=False)


def load_t5(model_dir):
  """Returns (T5Config, params) for a Hugging Face T5 (1.0 or 1.1) directory.

  `params` is the nested dict for `T5` (no 'params' collection wrapper), float32.
  """
  model_dir = Path(model_dir).expanduser()
  if not model_dir.is_dir():
    raise errors.MissingFileError(f"T5 checkpoint directory {model_dir} does not exist.")
  tensors = bert_checkpoint.read_safetensors(model_dir)
  config = load_config(model_dir, has_lm_head="lm_head.weight" in tensors)
  flat = convert_state_dict(tensors, expected_param_shapes(config))
  return config, traverse_util.unflatten_dict(flat, sep="/")
