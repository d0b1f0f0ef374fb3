"""Evaluation and inference with an encoder export (a trained prompt and head): the gin entry points behind
`python -m prompt_tuning_jax.eval --gin_file=runs/export_eval.gin` and
`python -m prompt_tuning_jax.infer --gin_file=runs/export_infer.gin`.

  evaluate_export -> EVAL_OUTPUT_DIR/{config.gin, predictions.jsonl, metrics.json[, <benchmark file>]}
  infer_export    -> INFER_OUTPUT_DIR/{config.gin, predictions.jsonl[, <benchmark file>]}

predictions.jsonl holds a line per example (token tasks: per sentence; QA: per question) with the answer
a server gives for the same input (serving/answers.py) and, on a labeled split, its target
(predictions.prediction_lines): the reference a served answer is checked against. A split without labels
(tasks.has_labels: SuperGLUE's test sets) is predicted and not scored, and SuperGLUE tasks also get the
benchmark's submission file (tasks/submission.py: CB.jsonl, COPA.jsonl, ...). The model is the one
`python -m prompt_tuning_jax.serve` builds for a single task, batched as training evaluates
(batching.indexed_eval_batches); infer's input file goes through the server's request preprocessing
(serving/inputs.py).
"""

import json
from pathlib import Path
from typing import List, Optional, Tuple

import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax import errors, predictions, tasks
from prompt_tuning_jax.data import batching, vocabularies
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.serving import answers, engine, exports, inputs
from prompt_tuning_jax.tasks import loading, scoring, sources, submission
from prompt_tuning_jax.training import fit, safety, validation


def split_outputs(group: engine.TaskGroup, examples: batching.Examples, batch_size: int) -> List[np.ndarray]:
  """Every example's outputs [1, ...] (the evaluation's member axis) from the group's single-task model."""
  forward = jax.jit(lambda params, batch: group.model.eval_batch(params, batch)["outputs"])
  outputs: List[np.ndarray] = [None] * len(examples)
  for index, batch in batching.indexed_eval_batches(examples, batch_size, group.max_length):
    out = np.asarray(forward(group.params, {k: jnp.asarray(batch[k]) for k in engine.MODEL_INPUTS}))
    for row, i in enumerate(index):
      outputs[i] = out[row]
  return outputs


def _load(export_path, task_name: Optional[str], backbone_dir, max_length: Optional[int]):
  """(backbone config, backbone parameters, the served export answering `task_name`, vocabulary)."""
  backbone_path = resolve_backbone_dir(backbone_dir)
  config, backbone = load_backbone(backbone_path)
  served = exports.read_served_task("export", export_path, config, str(backbone_path), max_length)
  if task_name and task_name != served.task:
    served = exports.retarget(served, task_name)
  return config, backbone, served, vocabularies.wordpiece_vocabulary(backbone_path / "vocab.txt")


def check_settings(parameter: str, output_dir, batch_size, max_length) -> None:
  """The settings eval and infer of an export share, checked before anything loads."""
  validation.check_eval_settings(parameter, output_dir=output_dir, batch_size=batch_size)
  validation.check_int(max_length, "MAX_LENGTH", f"{parameter}.max_length", 1,
                       "set --gin.MAX_LENGTH to the tokens per example, or None for the training run's",
                       allow_none=True)


def _output_dir(output_dir, setting: str) -> Path:
  """The output directory, created, probed and locked (not while another run writes there, e.g. a MODEL_DIR)."""
  out = fit.prepare_model_dir(output_dir, setting)
  safety.lock_dir(out, setting)
  return out


def write_split_predictions(out: Path, task: str, examples: batching.Examples, outputs: List[np.ndarray],
                            labeled: bool) -> List[dict]:
  """out/predictions.jsonl (with targets when `labeled`) and, for a benchmark task, its submission file."""
  lines = predictions.prediction_lines(task, examples, outputs, labeled)
  predictions.write_jsonl(out / "predictions.jsonl", lines)
  name = submission.file_name(task)
  if name is not None:
    rows = submission.submission_rows(task, tasks.info(task).label_names, examples.meta, lines)
    print(f"wrote {predictions.write_jsonl(out / name, rows)} (the benchmark's submission format)", flush=True)
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
  """Scores export `export_path` on `split` of its task and writes its predictions; a split without labels
  (tasks.has_labels) is predicted only: metrics.json then says `"labeled": false` and holds no metrics.

  Args:
    export_path: PROMPT_FILE, an encoder run's export/best.safetensors.
    output_dir: EVAL_OUTPUT_DIR.
    task_name: MIXTURE_OR_TASK_NAME; None = the export's task (another task must share its labels).
    split: EVAL_SPLIT, e.g. 'validation' or SuperGLUE's unlabeled 'test'.
    backbone_dir: INITIAL_CHECKPOINT_PATH; None = the packaged MiniLM.
    max_length: TASK_FEATURE_LENGTHS['inputs']; None = the training run's.
  Returns metrics.json's dict.
  """
  check_settings("evaluate_export", output_dir, batch_size, max_length)
  out = _output_dir(output_dir, "EVAL_OUTPUT_DIR")
  config, backbone, served, vocabulary = _load(export_path, task_name, backbone_dir, max_length)
  task, labeled = served.task, tasks.has_labels(served.task, split)
  examples = loading.load_examples(task, split, served.max_length, data_dir=data_dir, vocabulary=vocabulary)
  group = engine.TaskGroup(config, backbone, [served], batch_size)
  outputs = split_outputs(group, examples, batch_size)
  metrics = {k: float(v) for k, v in scoring.score(task, examples, outputs).items()} if labeled else {}
  write_split_predictions(out, task, examples, outputs, labeled)
  result = {"task": task, "split": split, "export": str(export_path), "examples": len(examples), "labeled": labeled,
            **metrics}
  (out / "metrics.json").write_text(json.dumps(result, indent=1))
  (out / "config.gin").write_text(gin.operative_config_str())
  print(f"{task} {split}: " + (", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) if labeled else
                               f"{len(examples):,} examples without labels, predicted") +
        f"; wrote {out / 'predictions.jsonl'}", flush=True)
  return result


def read_input_file(path, task: str, family: str, label_names) -> List[Tuple[int, dict, List[dict]]]:
  """A jsonl file of inputs, one per line as a server request's `inputs` rows take them (serving/inputs.py),
  -> per input (its line number, the row, its feature rows); a line a task cannot read is an error naming file:line."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise errors.MissingFileError(f"INFER_INPUT_FILE {path} does not exist; give a jsonl file with one input per "
                                  "line.")
  rows = [(row.pop("__line__"), row) for row in sources.read_jsonl(path)]
  if not rows:
    raise errors.DataError(f"{path}: no inputs (no data lines).")
  return [(line, row, inputs.feature_rows(task, family, label_names, row, f"{path}:{line}")) for line, row in rows]


@gin.configurable
def infer_export(export_path: str = gin.REQUIRED,
                 output_dir: str = gin.REQUIRED,
                 task_name: Optional[str] = None,
                 split: str = "validation",
                 input_file: Optional[str] = None,
                 backbone_dir: Optional[str] = None,
                 data_dir: Optional[str] = None,
                 max_length: Optional[int] = None,
                 batch_size: int = 32) -> int:
  """Predicts with export `export_path`: the inputs of `split` of its task (labels, if any, ignored), or of
  `input_file` (INFER_INPUT_FILE: jsonl, an input per line as the server takes it) -> predictions.jsonl.

  A split's lines are eval's without "target" (plus the benchmark's submission file for SuperGLUE tasks); an
  input file's lines are {"line": its line number, "idx" if the input has one, the answer, "truncated": true
  where the length cut it}, the server's answers. Returns the number of lines.
  """
  check_settings("infer_export", output_dir, batch_size, max_length)
  out = _output_dir(output_dir, "INFER_OUTPUT_DIR")
  config, backbone, served, vocabulary = _load(export_path, task_name, backbone_dir, max_length)
  task, family, label_names = served.task, served.family, served.label_names
  group = engine.TaskGroup(config, backbone, [served], batch_size)
  if input_file is None:
    examples = loading.load_examples(task, split, served.max_length, data_dir=data_dir, vocabulary=vocabulary)
    lines = write_split_predictions(out, task, examples, split_outputs(group, examples, batch_size), labeled=False)
  else:
    read = read_input_file(input_file, task, family, label_names)
    prepared = inputs.prepare(task, family, [features for _, _, features in read], served.max_length, vocabulary)
    outputs = split_outputs(group, batching.concatenate([p.examples for p in prepared]), batch_size)
    lines, start = [], 0
    for (line, row, _), p in zip(read, prepared):
      answer = answers.answer(task, family, label_names, p.examples, outputs[start:start + len(p.examples)])
      start += len(p.examples)
      lines.append({"line": line, **({"idx": row["idx"]} if "idx" in row else {}), **answer,
                    **({"truncated": True} if p.truncated else {})})
    predictions.write_jsonl(out / "predictions.jsonl", lines)
  (out / "config.gin").write_text(gin.operative_config_str())
  print(f"wrote {len(lines):,} predictions to {out / 'predictions.jsonl'}", flush=True)
  return len(lines)
