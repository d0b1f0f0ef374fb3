"""Evaluation of an encoder export (a trained prompt and head) on a task's split: the gin entry point behind
`python -m prompt_tuning_jax.eval --gin_file=runs/export_eval.gin`.

  evaluate_export -> EVAL_OUTPUT_DIR/{config.gin, predictions.jsonl, metrics.json}

predictions.jsonl holds a line per example (token tasks: per sentence; QA: per question) with the answer
a server gives for the same input (serving/answers.py): the reference a served answer is checked against.
The model is the one `python -m prompt_tuning_jax.serve` builds for a single task, batched as training
evaluates (batching.indexed_eval_batches).
"""

import json
from pathlib import Path
from typing import Dict, List, Optional

import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax.data import batching, vocabularies
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.serving import answers, engine, exports
from prompt_tuning_jax.tasks import families, loading, scoring
from prompt_tuning_jax.training import validation


def split_outputs(group: engine.TaskGroup, examples: batching.Examples, batch_size: int) -> List[np.ndarray]:
  """Every example's outputs [1, ...] (the evaluation's member axis) from the group's single-task model."""
  forward = jax.jit(lambda params, batch: group.model.eval_batch(params, batch)["outputs"])
  outputs: List[np.ndarray] = [None] * len(examples)
  for index, batch in batching.indexed_eval_batches(examples, batch_size, group.max_length):
    out = np.asarray(forward(group.params, {k: jnp.asarray(batch[k]) for k in engine.MODEL_INPUTS}))
    for row, i in enumerate(index):
      outputs[i] = out[row]
  return outputs


def prediction_lines(task: exports.ServedTask, examples: batching.Examples, outputs: List[np.ndarray]) -> List[dict]:
  """A line per example (QA: per question, over its windows): its id fields and its answer."""
  meta = examples.meta
  if task.family == families.SPAN_EXTRACTION:
    units: Dict[int, List[int]] = {}
    for i, question in enumerate(meta["example_index"]):
      units.setdefault(question, []).append(i)
    groups = list(units.values())
  else:
    groups = [[i] for i in range(len(examples))]
  lines = []
  for index in groups:
    part = batching.Examples([examples.input_ids[i] for i in index], [examples.token_type_ids[i] for i in index],
                             [examples.labels[i] for i in index] if isinstance(examples.labels, list) else
                             examples.labels[index], None,
                             {k: [v[i] for i in index] for k, v in examples.token_fields.items()},
                             {k: [v[i] for i in index] for k, v in meta.items()})
    ids = {k: meta[k][index[0]] for k in ("idx", "id") if k in meta}
    lines.append({**ids, **answers.answer(task.task, task.family, task.label_names, part, [outputs[i] for i in index])})
  return lines


@gin.configurable
def evaluate_export(export_path: str = gin.REQUIRED,
                    output_dir: str = gin.REQUIRED,
                    task_name: Optional[str] = None,
                    split: str = "validation",
                    backbone_dir: Optional[str] = None,
                    data_dir: Optional[str] = None,
                    max_length: Optional[int] = None,
                    batch_size: int = 32) -> dict:
  """Scores export `export_path` on `split` of its task and writes its predictions.

  Args:
    export_path: PROMPT_FILE, an encoder run's export/best.safetensors.
    output_dir: EVAL_OUTPUT_DIR.
    task_name: MIXTURE_OR_TASK_NAME; None = the export's task (another task must share its labels).
    backbone_dir: INITIAL_CHECKPOINT_PATH; None = the packaged MiniLM.
    max_length: TASK_FEATURE_LENGTHS['inputs']; None = the training run's.
  Returns metrics.json's dict.
  """
  validation.check_eval_settings("evaluate_export", output_dir=output_dir, batch_size=batch_size)
  validation.check_int(max_length, "MAX_LENGTH", "evaluate_export.max_length", 1,
                       "set --gin.MAX_LENGTH to the tokens per example, or None for the training run's",
                       allow_none=True)
  backbone_path = resolve_backbone_dir(backbone_dir)
  config, backbone = load_backbone(backbone_path)
  served = exports.read_served_task("export", export_path, config, str(backbone_path), max_length)
  task = task_name or served.task
  if task != served.task:
    served = exports.retarget(served, task)
  vocabulary = vocabularies.wordpiece_vocabulary(backbone_path / "vocab.txt")
  examples = loading.load_examples(task, split, served.max_length, data_dir=data_dir, vocabulary=vocabulary)
  group = engine.TaskGroup(config, backbone, [served], batch_size)
  outputs = split_outputs(group, examples, batch_size)
  metrics = {k: float(v) for k, v in scoring.score(task, examples, outputs).items()}
  out = Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "predictions.jsonl", "w") as f:
    for line in prediction_lines(served, examples, outputs):
      f.write(json.dumps(line) + "\n")
  result = {"task": task, "split": split, "export": str(export_path), "examples": len(examples), **metrics}
  (out / "metrics.json").write_text(json.dumps(result, indent=1))
  (out / "config.gin").write_text(gin.operative_config_str())
  print(f"{task} {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
  return result
