"""Exports for serving tests and the serving benchmark: prompts and heads drawn at random (what the server does
with them does not depend on how they were trained), with the metadata a training run writes."""

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from prompt_tuning_jax import export, tasks
from prompt_tuning_jax.tasks import families


def write_random_export(path: Path, task: str, config, prompt_kind: str = "DeepPrompt", length: int = 4,
                        seed: int = 0, max_length: int = 64, layers: Optional[list] = None) -> Path:
  """An export of `task` for backbone `config`: a deep ([L', 2, P, N, D]) or input ([P, H]) prompt and a head
  whose logits spread widely (std 1), so answers do not sit on near-ties."""
  rng = np.random.default_rng(seed)
  info = tasks.info(task)
  outputs = families.head_outputs(info.family, info.label_names)
  tensors: Dict[str, np.ndarray] = {"head/kernel": rng.normal(0, 1.0 / np.sqrt(config.hidden_size),
                                                              (config.hidden_size, outputs)) * 8,
                                    "head/bias": rng.normal(0, 0.5, (outputs,))}
  layers = list(range(config.num_hidden_layers)) if layers is None else layers
  if prompt_kind == "DeepPrompt":
    tensors["prompt/prefix"] = rng.normal(0, 1.0, (len(layers), 2, length, config.num_attention_heads,
                                                   config.hidden_size // config.num_attention_heads))
  else:
    tensors["prompt/prompt"] = rng.normal(0, 0.5, (length, config.hidden_size))
  metadata = {"task": task, "tasks": [task], "task_family": info.family, "ensemble_size": 1,
              "multitask_prompt": "none", "label_names": list(info.label_names), "backbone": "packaged MiniLM",
              "feature_lengths": {"inputs": max_length}, "step": 0, "metric": 0.0,
              "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
              "num_attention_heads": config.num_attention_heads, "prompt_kind": prompt_kind, "prompt_length": length,
              "position_policy": "from_zero" if prompt_kind == "DeepPrompt" else "after_prompt", "pooling": "cls",
              **({"prompt_layers": layers} if prompt_kind == "DeepPrompt" else {})}
  export.save_export(path, tensors, metadata)
  return path


def request_rows(task: str, split: str, data_dir) -> list:
  """The split's rows as a client sends them (serving/inputs.py): the file's rows without labels, a token
  task's sentences as {"tokens"}, a QA set's questions as {"id", "question", "context"}."""
  from prompt_tuning_jax.tasks import registry, sources  # pylint: disable=g-import-not-at-top
  source = registry.SPECS[task].source.at(data_dir)
  path = sources.find_file(source.files[split], source.data_dir)
  items = list(source.readers.get(split, source.reader)(path))
  family = tasks.info(task).family
  if family == families.TOKEN_CLASSIFICATION:
    return [{"tokens": list(tokens)} for tokens, _ in items]
  if family == families.SPAN_EXTRACTION:
    return [{"id": q.qid, "question": q.question, "context": q.context} for q in items]
  return [{k: v for k, v in row.items() if k not in ("label", "__line__")} for row in items]


def same_answer(served: dict, offline: dict, tolerance: float = 1e-5) -> bool:
  """Equal labels, tags, entities and answer texts; probabilities within `tolerance` (ids and the offline
  line's target aside)."""
  served, offline = ({k: v for k, v in x.items() if k not in ("idx", "id", "target")} for x in (served, offline))
  if set(served) - {"truncated"} != set(offline):
    return False
  for key, value in offline.items():
    if key == "probabilities":
      if set(value) != set(served[key]) or any(abs(value[k] - served[key][k]) > tolerance for k in value):
        return False
    elif served[key] != value:
      return False
  return True


def write_random_t5_export(path: Path, task: str, d_model: int, length: int = 4, seed: int = 0,
                           feature_lengths: Optional[dict] = None) -> Path:
  """A T5 prompt export ([P, d_model] input prompt) of text-to-text task `task`, as train_seq2seq writes it."""
  from prompt_tuning_jax.tasks import text_to_text  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  metadata = {"task": task, "tasks": [task], "label_names": list(text_to_text.TARGET_STRINGS.get(task, ())),
              "feature_lengths": feature_lengths or {"inputs": 32, "targets": 8}, "model": "t5_1_1",
              "hidden_size": d_model, "prompt_kind": "InputPrompt", "prompt_length": length, "step": 0}
  export.save_export(path, {"prompt/prompt": rng.normal(0, 0.5, (length, d_model))}, metadata)
  return path
