"""Exports a server (or an offline evaluation) can serve, and the one model that serves a group of them.

An encoder export (export.py) holds a task's prompt and head; its metadata says which task, which
backbone shape and which prompt. `read_served_task` checks it fits the backbone being served and turns
it into a `ServedTask`. Tasks with the same `signature` (prompt kind and shape, pooling, head kind,
input layout) share one `group_module`: a PromptBank of their prompts and a bank of their heads, so one
forward pass serves a batch that mixes them, each row picking its prompt and head by its member index.
"""

import dataclasses
import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from prompt_tuning_jax import errors, export, tasks, trainable
from prompt_tuning_jax.models.bert import BertConfig, check_position_table
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.bank import PromptBank
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.tasks import families

# The serving model's trainable part: what an export may hold, and where a group's bank puts it.
SERVED_PATTERNS = (r"prompt/.*", r"head/.*")
DEFAULT_MAX_LENGTH = 128


@dataclasses.dataclass(frozen=True)
class ServedTask:
  """One export, checked against the served backbone.

  Attributes:
    name: the name requests use ("sst2" in `--export sst2=path`).
    task: the registered encoder task it was trained on (its preprocessing and labels).
    family, label_names: tasks.info(task)'s.
    tensors: the export's prompt/* and head/* tensors.
    prompt: the prompt module template (DeepPrompt, InputPrompt) or None (a linear probe).
    pooling: 'cls' or 'pooler'.
    max_length: TASK_FEATURE_LENGTHS['inputs'] of the training run (longer inputs are truncated).
    path: the export file.
  """
  name: str
  task: str
  family: str
  label_names: Tuple[str, ...]
  tensors: Dict[str, np.ndarray]
  prompt: Optional[object]
  pooling: str
  max_length: int
  path: Path

  @property
  def head_kind(self) -> str:
    return families.HEAD_KIND[self.family]

  @property
  def num_labels(self) -> int:
    return families.head_outputs(self.family, self.label_names)

  @property
  def signature(self) -> tuple:
    """Tasks with equal signatures share one compiled forward. Classification and multiple choice differ in
    input layout ([B, T] vs [B, K, T]); span heads are not banked, so each QA task is its own group."""
    layout = (self.family, len(self.label_names)) if self.family == families.MULTIPLE_CHOICE else self.family
    alone = self.name if self.family == families.SPAN_EXTRACTION else None
    prompt = None if self.prompt is None else (type(self.prompt).__name__, self.prompt.length,
                                                self.prompt.position_policy, getattr(self.prompt, "layers", None))
    return (prompt, self.pooling, self.head_kind, layout, alone)


def _metadata_value(metadata: Dict[str, str], key: str, default=None):
  value = metadata.get(key)
  if value is None:
    return default
  try:
    return json.loads(value)
  except json.JSONDecodeError:
    return value


def _prompt_template(path: Path, metadata: Dict[str, str], tensors: Dict[str, np.ndarray], config: BertConfig):
  """The prompt module the export's tensors belong to (reparameterizations are collapsed in exports)."""
  kind = metadata.get("prompt_kind", "none")
  policy = metadata.get("position_policy", "from_zero")
  if kind == "none":
    return None
  if kind == "DeepPrompt":
    prefix = tensors.get("prompt/prefix")
    if prefix is None or prefix.ndim != 5:
      raise errors.CheckpointError(f"{path}: a deep-prompt export needs 'prompt/prefix' [L, 2, P, N, D]; it holds "
                                   f"{sorted(tensors)}.")
    layers = _metadata_value(metadata, "prompt_layers")
    if layers is None:  # Exports from before the layers were recorded: only all-layer prompts are unambiguous.
      if prefix.shape[0] != config.num_hidden_layers:
        raise errors.CheckpointError(f"{path}: its deep prompt covers {prefix.shape[0]} of {config.num_hidden_layers} "
                                     "layers but does not record which; re-export it with this version.")
    return DeepPrompt(length=int(prefix.shape[2]), position_policy=policy,
                      layers=None if layers is None else tuple(int(i) for i in layers), dropout_rate=0.0)
  if kind == "InputPrompt":
    prompt = tensors.get("prompt/prompt")
    if prompt is None or prompt.ndim != 2:
      raise errors.CheckpointError(f"{path}: an input-prompt export needs 'prompt/prompt' [P, H]; it holds "
                                   f"{sorted(tensors)}.")
    return InputPrompt(length=int(prompt.shape[0]), position_policy=policy)
  raise errors.ConfigError(f"{path}: prompt kind {kind!r} cannot be served from a prompt bank; serve deep prompts "
                           "(P-Tuning v2, Prefix Tuning), input prompts (Prompt Tuning) or linear probes.")


def read_served_task(name: str, path, config: BertConfig, backbone: str,
                     max_length: Optional[int] = None) -> ServedTask:
  """Export `path` as task `name`, checked to fit the backbone `config` (directory `backbone`).

  max_length: the input length served; None = the run's TASK_FEATURE_LENGTHS (DEFAULT_MAX_LENGTH for exports
  that do not record it). Raises errors.CheckpointError / ConfigError naming the file, the problem and the fix.
  """
  path = Path(path)
  if not path.exists():
    raise errors.MissingFileError(f"export {path} (task {name!r}) does not exist.")
  tensors, metadata = export.load_export(path)
  task = metadata.get("task")
  if task is None or _metadata_value(metadata, "task_family") is None:
    raise errors.CheckpointError(f"{path}: not an encoder export (no task family in its metadata); T5 prompts are "
                                 "evaluated with python -m prompt_tuning_jax.eval.")
  if len(_metadata_value(metadata, "tasks", [task])) > 1 or int(_metadata_value(metadata, "ensemble_size", 1)) > 1:
    raise errors.ConfigError(f"{path}: a mixture or ensemble export ({task}); serve exports of single-task runs.")
  shape = {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
           "num_attention_heads": config.num_attention_heads}
  mismatched = {k: (metadata[k], v) for k, v in shape.items() if k in metadata and int(metadata[k]) != v}
  if mismatched:
    raise errors.CheckpointError(f"{path}: exported for a different backbone{export.exported_for(metadata)}; the "
                                 f"served backbone {backbone} has {shape}. Serve it with that backbone "
                                 "(--backbone), or a prompt exported from this one.")
  backbone_tensors = sorted(k for k in tensors if not trainable.is_trainable(k, SERVED_PATTERNS))
  if backbone_tensors:
    raise errors.ConfigError(f"{path}: the export changes backbone parameters ({backbone_tensors[:3]}...: BitFit or "
                             "fine-tuning), but a server shares one frozen backbone; serve prompt exports.")
  info = tasks.info(task)
  feature_lengths = _metadata_value(metadata, "feature_lengths") or {}
  length = int(max_length or feature_lengths.get("inputs", DEFAULT_MAX_LENGTH))
  served = ServedTask(name, task, info.family, tuple(info.label_names), tensors,
                      _prompt_template(path, metadata, tensors, config), metadata.get("pooling", "cls"), length, path)
  module = group_module(config, [served])
  check_position_table(config, module.max_position(length), what=f"task {name!r} ({length} tokens and its prompt)")
  return served


def retarget(served: ServedTask, task: str) -> ServedTask:
  """`served` answering `task` instead (e.g. AX-b with an RTE export): same family and labels, else an error."""
  info = tasks.info(task)
  if (info.family, tuple(info.label_names)) != (served.family, served.label_names):
    raise errors.ConfigError(f"{served.path} was trained on {served.task} ({served.family}, labels "
                             f"{list(served.label_names)}); task {task!r} has {info.family}, labels "
                             f"{list(info.label_names)}.")
  return dataclasses.replace(served, task=task)


def group_module(config: BertConfig, members: Sequence[ServedTask]) -> EncoderClassifier:
  """The EncoderClassifier serving `members` (equal signatures): plain for one task, else a bank of K prompts
  and K heads with C = the largest label count (a task reads only its own first C outputs)."""
  first = members[0]
  if any(m.signature != first.signature for m in members):
    raise ValueError("group_module takes tasks of one signature.")
  module = EncoderClassifier(config=config, num_labels=max(m.num_labels for m in members), prompt=first.prompt,
                             pooling=first.pooling, head_dropout=0.0, head_kind=first.head_kind)
  if len(members) == 1:
    return module
  return module.clone(prompt=None if first.prompt is None else PromptBank(first.prompt, len(members)),
                      num_heads=len(members))


def group_parameters(members: Sequence[ServedTask], template_params) -> Dict[str, np.ndarray]:
  """The trainable parameters of group_module(members) (shapes from `template_params`, its initialised ones)
  filled from the exports: member k's prompt in the bank's members_k, its head in row k (zero-padded)."""
  expected = {k: v for k, v in trainable.flatten(template_params).items()
              if trainable.is_trainable(k, SERVED_PATTERNS)}
  out = {}
  for k, member in enumerate(members):
    for name, value in member.tensors.items():
      if len(members) == 1:
        target, index = name, ()
      elif name.startswith("prompt/"):
        target, index = name.replace("prompt/", f"prompt/members_{k}/", 1), ()
      else:
        target, index = name, (k,)
      if target not in expected:
        raise errors.CheckpointError(f"{member.path}: tensor {name!r} has no place in the served model, whose "
                                     f"trainable tensors are {sorted(expected)}.")
      slot = out.setdefault(target, np.zeros(expected[target].shape, np.float32))
      region = slot[index] if index else slot
      if value.ndim != region.ndim or any(v > r for v, r in zip(value.shape, region.shape)):
        raise errors.CheckpointError(f"{member.path}: tensor {name!r} has shape {value.shape}, the served model's "
                                     f"is {region.shape}.")
      region[tuple(slice(0, n) for n in value.shape)] = value
  missing = sorted(set(expected) - set(out))
  if missing:
    raise errors.CheckpointError(f"exports {[str(m.path) for m in members]} lack {missing}.")
  return out
