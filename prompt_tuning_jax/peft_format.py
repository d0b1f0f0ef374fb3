"""Our export <-> a peft adapter (`adapter_config.json` + `adapter_model.safetensors`), numpy only.

peft (0.21) SEQ_CLS adapters for a Hugging Face `BertForSequenceClassification`:
  PREFIX_TUNING  `prompt_embeddings` [P, L*2*H]: for each virtual token, layer l's keys then values,
                 each [N, D] (peft views it as [P, 2L, N, D]; row 2l is layer l's keys, 2l+1 its values).
                 Real tokens' position ids start at P (BertEmbeddings offsets them by the cache length),
                 the logits come from the pooler: our `after_prompt` + `pooler`.
  PROMPT_TUNING  `prompt_embeddings` [P, H], prepended to the word embeddings (positions 0..P-1, token
                 type 0); the pooler reads position 0, the first virtual token: our `after_prompt` +
                 `first_token_pooler`.
  both           the head `base_model.classifier.{weight [C, H], bias [C]}` (peft's modules_to_save).
Our export holds `prompt/prefix` [L, 2, P, N, D] or `prompt/prompt` [P, H] and `head/{kernel [H, C], bias [C]}`.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from prompt_tuning_jax import errors

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
HEAD = ("base_model.classifier.weight", "base_model.classifier.bias")
PEFT_TYPES = {"DeepPrompt": "PREFIX_TUNING", "InputPrompt": "PROMPT_TUNING"}
# What peft computes, per prompt kind: (position policy, poolings that read what peft's head reads).
PEFT_SETTINGS = {"DeepPrompt": ("after_prompt", ("pooler", "first_token_pooler")),
                 "InputPrompt": ("after_prompt", ("first_token_pooler",))}
FIX = {"DeepPrompt": "PROMPT_POSITION_POLICY='after_prompt' POOLING='pooler'",
       "InputPrompt": "PROMPT_POSITION_POLICY='after_prompt' POOLING='first_token_pooler'"}


def unmatched_settings(tensors: Dict[str, np.ndarray], metadata: Dict[str, str]) -> List[str]:
  """The export's settings with which peft cannot give the same logits (empty: it can)."""
  kind = metadata.get("prompt_kind")
  if kind not in PEFT_TYPES:
    return [f"prompt kind {kind!r} (peft's SEQ_CLS has deep prompts and input prompts: {sorted(PEFT_TYPES)})"]
  problems = []
  if metadata.get("model_type", "bert") != "bert":
    problems.append(f"backbone model_type {metadata['model_type']!r} (BertForSequenceClassification only)")
  if metadata.get("head_kind", "sequence") != "sequence":
    problems.append(f"head kind {metadata['head_kind']!r} (SEQ_CLS needs a sequence classification head)")
  kernel = tensors.get("head/kernel")
  if kernel is None or kernel.ndim != 2:
    problems.append(f"head/kernel of shape {None if kernel is None else kernel.shape} (one head [H, C]; not a bank "
                    "of per-task or ensemble heads)")
  policy, poolings = PEFT_SETTINGS[kind]
  if metadata.get("position_policy") != policy:
    problems.append(f"position_policy {metadata.get('position_policy')!r} (peft starts the text at P: {policy!r})")
  if metadata.get("pooling") not in poolings:
    problems.append(f"pooling {metadata.get('pooling')!r} (peft classifies from the pooler over position 0: "
                    f"{' or '.join(map(repr, poolings))})")
  if kind == "DeepPrompt":
    prefix = tensors.get("prompt/prefix")
    layers = int(metadata.get("num_hidden_layers", -1))
    if prefix is None or prefix.ndim != 5 or prefix.shape[0] != layers:
      problems.append(f"prompt/prefix of shape {None if prefix is None else prefix.shape} (peft prefixes every one "
                      f"of the {layers} layers, one prompt: [L, 2, P, N, D])")
  elif tensors.get("prompt/prompt") is None or tensors["prompt/prompt"].ndim != 2:
    problems.append("prompt/prompt is not one [P, H] prompt (a bank of prompts has no peft form)")
  return problems


def to_peft(tensors: Dict[str, np.ndarray], metadata: Dict[str, str],
            base_model: Optional[str] = None) -> Tuple[dict, Dict[str, np.ndarray]]:
  """(adapter_config, adapter tensors) of an export; errors.ConfigError naming every setting peft cannot match."""
  problems = unmatched_settings(tensors, metadata)
  if problems:
    kind = metadata.get("prompt_kind")
    fix = f"retrain with {FIX[kind]}" if kind in FIX else "use a deep or input prompt"
    raise errors.ConfigError(f"this export cannot give the same logits in peft: {'; '.join(problems)}. To export it, "
                             f"{fix}.")
  kind = metadata["prompt_kind"]
  hidden, layers = int(metadata["hidden_size"]), int(metadata["num_hidden_layers"])
  heads = int(metadata["num_attention_heads"])
  if kind == "DeepPrompt":
    prefix = tensors["prompt/prefix"]  # [L, 2, P, N, D] -> [P, L, 2, N, D] -> [P, L*2*N*D]
    embeddings = prefix.transpose(2, 0, 1, 3, 4).reshape(prefix.shape[2], -1)
    extra = {"encoder_hidden_size": hidden, "prefix_projection": False, "init_weights": None}
  else:
    embeddings = tensors["prompt/prompt"]
    extra = {"prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
             "tokenizer_kwargs": None}
  config = {
      "peft_type": PEFT_TYPES[kind], "task_type": "SEQ_CLS", "num_virtual_tokens": int(embeddings.shape[0]),
      "token_dim": hidden, "num_layers": layers, "num_attention_heads": heads, "num_transformer_submodules": 1,
      "modules_to_save": ["classifier", "score"], "inference_mode": True, "auto_mapping": None, "revision": None,
      "base_model_name_or_path": base_model or metadata.get("backbone"), **extra}
  adapter = {"prompt_embeddings": embeddings, HEAD[0]: tensors["head/kernel"].T, HEAD[1]: tensors["head/bias"]}
  return config, {k: np.ascontiguousarray(v, np.float32) for k, v in adapter.items()}


def from_peft(config: dict, adapter: Dict[str, np.ndarray], where: str = "adapter") -> Tuple[
    Dict[str, np.ndarray], Dict[str, object]]:
  """(export tensors, export metadata) of a peft SEQ_CLS prefix or prompt-tuning adapter."""
  kind = {v: k for k, v in PEFT_TYPES.items()}.get(config.get("peft_type"))
  problems = []
  if kind is None:
    problems.append(f"peft_type {config.get('peft_type')!r} (supported: {sorted(PEFT_TYPES.values())})")
  if config.get("task_type") != "SEQ_CLS":
    problems.append(f"task_type {config.get('task_type')!r} (supported: 'SEQ_CLS')")
  if config.get("num_transformer_submodules", 1) != 1:
    problems.append(f"num_transformer_submodules {config['num_transformer_submodules']} (an encoder has 1)")
  missing = [k for k in ("prompt_embeddings", *HEAD) if k not in adapter]
  if missing:
    problems.append(f"no tensors {missing} (it holds {sorted(adapter)})")
  if problems:
    raise errors.CheckpointError(f"{where}: cannot import this peft adapter: {'; '.join(problems)}.")
  p, hidden = int(config["num_virtual_tokens"]), int(config["token_dim"])
  layers, heads = int(config["num_layers"]), int(config["num_attention_heads"])
  embeddings = adapter["prompt_embeddings"]
  width = 2 * layers * hidden if kind == "DeepPrompt" else hidden
  if embeddings.shape != (p, width):
    raise errors.CheckpointError(f"{where}: prompt_embeddings has shape {embeddings.shape}, but its config "
                                 f"(num_virtual_tokens {p}, num_layers {layers}, token_dim {hidden}) needs "
                                 f"{(p, width)}.")
  if kind == "DeepPrompt":
    prompt = {"prompt/prefix": embeddings.reshape(p, layers, 2, heads, hidden // heads).transpose(1, 2, 0, 3, 4)}
  else:
    prompt = {"prompt/prompt": embeddings}
  kernel = adapter[HEAD[0]].T
  tensors = {**prompt, "head/kernel": kernel, "head/bias": adapter[HEAD[1]]}
  policy, poolings = PEFT_SETTINGS[kind]
  metadata = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "prompt_kind": kind, "prompt_length": p, "position_policy": policy, "pooling": poolings[0], "model_type": "bert", "head_kind": "sequence",
              "backbone": str(config.get("base_model_name_or_path")), "num_labels": int(kernel.shape[1]),
              "imported_from": f"peft {config.get('peft_version', '?')} {config['peft_type']}"}
  return {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, metadata


def write_adapter(out_dir, config: dict, adapter: Dict[str, np.ndarray]) -> Path:
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  save_file(adapter, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
  return out_dir


def read_adapter(adapter_dir) -> Tuple[dict, Dict[str, np.ndarray]]:
  """(adapter_config, tensors) of a peft adapter directory; a missing or unreadable file is a UserError."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  adapter_dir = Path(adapter_dir)
  missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (adapter_dir / name).exists()]
  if missing:
    raise errors.MissingFileError(f"{adapter_dir} is not a peft adapter directory: no {' or '.join(missing)} "
                                  "(save one with PeftModel.save_pretrained).")
  try:
    config = json.loads((adapter_dir / CONFIG_FILE).read_text())
    tensors = load_file(str(adapter_dir / WEIGHTS_FILE))
  except Exception as e:  # json's and safetensors' own error types: the files are the user's.
    raise errors.CheckpointError(f"{adapter_dir}: unreadable peft adapter ({e}).") from e
  return config, tensors
