"""Evaluation and inference with a trained prompt on a frozen T5: the gin entry points behind
`python -m prompt_tuning_jax.eval` and `python -m prompt_tuning_jax.infer`.

Both load the frozen T5 from CHECKPOINT_PATH (a Hugging Face or T5X checkpoint) and the
prompt from PROMPT_FILE: an export (`export/best.safetensors` of a training run, any prompt
kind) or a .npy [P, H] input prompt as the prompt-tuning repo saves them. The model (size and
prompt kind) comes from the same gin model file the training used.

  evaluate_prompt -> EVAL_OUTPUT_DIR/{config.gin, predictions.jsonl, metrics.json}
  infer_prompt    -> INFER_OUTPUT_DIR/{config.gin, predictions.jsonl}
"""

import json
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import gin
import numpy as np

from prompt_tuning_jax import export, seq2seq_data, trainable
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.t5_trainer import (PROMPT_PATTERNS, Evaluator, check_task, check_vocabulary, configure,
                                          load_params)
from prompt_tuning_jax.trainer import prepare_model_dir


def load_prompt_file(params, path):
  """`params` with every prompt tensor taken from `path` (.safetensors export or .npy input prompt)."""
  path = Path(path).expanduser()
  if not path.exists():
    raise FileNotFoundError(f"PROMPT_FILE {path} does not exist.")
  flat = trainable.flatten(params)
  wanted = sorted(k for k in flat if trainable.is_trainable(k, PROMPT_PATTERNS))
  if not wanted:
    raise ValueError("the gin model has no prompt to load PROMPT_FILE into; use a gin/models/*_prompt.gin file.")
  if path.suffix == ".npy":
    value = np.load(path)
    if wanted != ["prompt/prompt"] or value.shape != flat["prompt/prompt"].shape:
      raise ValueError(f"{path} holds an array of shape {value.shape}; the model's prompt is "
                       f"{[(k, tuple(flat[k].shape)) for k in wanted]} (set PROMPT_LENGTH to match).")
    return trainable.unflatten({**flat, "prompt/prompt": value.astype(np.float32)})
  tensors, _ = export.load_export(path)
  if sorted(k for k in tensors if trainable.is_trainable(k, PROMPT_PATTERNS)) != wanted:
    raise ValueError(f"{path} holds prompt tensors {sorted(tensors)} but the model needs {wanted}; configure the "
                     "prompt as in the run that exported it (exports store deep prompts collapsed).")
  return export.restore_matching(params, path, PROMPT_PATTERNS)


def _setup(model: PromptedT5, checkpoint_path, prompt_file, output_dir, task_name: Optional[str],
           sentencepiece_model, extra_ids: int) -> Tuple[Path, Optional[tuple], dict, dict, object]:
  """(output dir, target strings, trained prompt, frozen T5, T5 vocabulary) for a configured eval or infer run."""
  out = prepare_model_dir(output_dir)
  vocabulary = configure(sentencepiece_model, extra_ids)
  target_strings = check_task(task_name) if task_name else None
  check_vocabulary(model, vocabulary)
  (out / "config.gin").write_text(gin.operative_config_str())
  params = load_prompt_file(load_params(model, checkpoint_path, seed=0), prompt_file)
  trained, frozen = trainable.split_params(params, PROMPT_PATTERNS)
  return out, target_strings, trained, frozen, vocabulary


def _write_jsonl(path: Path, rows) -> None:
  path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


@gin.configurable
def evaluate_prompt(checkpoint_path: str = gin.REQUIRED,
                    prompt_file: str = gin.REQUIRED,
                    output_dir: str = gin.REQUIRED,
                    task_name: str = gin.REQUIRED,
                    feature_lengths: Dict[str, int] = gin.REQUIRED,
                    model: PromptedT5 = gin.REQUIRED,
                    split: str = "validation",
                    batch_size: int = 32,
                    sentencepiece_model: Optional[str] = None,
                    extra_ids: int = 100,
                    data_dir: Optional[str] = None,
                    beam_size: int = 1) -> dict:
  """Scores a trained prompt on `split` of `task_name`: decoding metrics, rank classification, loss.

  Writes predictions.jsonl (idx, inputs, target, prediction, and rank_prediction with
  rank_scores when the task lists its targets) and metrics.json. Returns metrics.json's dict.
  """
  started = time.perf_counter()
  out, target_strings, trained, frozen, vocabulary = _setup(model, checkpoint_path, prompt_file, output_dir,
                                                            task_name, sentencepiece_model, extra_ids)
  examples = seq2seq_data.load_text_examples(task_name, split, feature_lengths, data_dir=data_dir,
                                             vocabulary=vocabulary)
  evaluator = Evaluator(model, task_name, examples, feature_lengths, batch_size, target_strings, beam_size,
                        vocabulary=vocabulary)
  scores, predictions = evaluator(trained, frozen)
  _write_jsonl(out / "predictions.jsonl", predictions)
  result = {"task": task_name, "split": split, "examples": len(examples), "checkpoint_path": str(checkpoint_path),
            "prompt_file": str(prompt_file), "beam_size": beam_size, "metrics": scores,
            "wall_seconds": time.perf_counter() - started}
  (out / "metrics.json").write_text(json.dumps(result, indent=1))
  print(f"{task_name} {split} ({len(examples):,} examples): "
        + " ".join(f"{k} {v:.2f}" for k, v in scores.items()) + f"\nwrote {out / 'predictions.jsonl'} and "
        f"{out / 'metrics.json'}", flush=True)
  return result


@gin.configurable
def infer_prompt(checkpoint_path: str = gin.REQUIRED,
                 prompt_file: str = gin.REQUIRED,
                 output_dir: str = gin.REQUIRED,
                 feature_lengths: Dict[str, int] = gin.REQUIRED,
                 model: PromptedT5 = gin.REQUIRED,
                 task_name: Optional[str] = None,
                 split: str = "validation",
                 input_file: Optional[str] = None,
                 batch_size: int = 32,
                 sentencepiece_model: Optional[str] = None,
                 extra_ids: int = 100,
                 data_dir: Optional[str] = None,
                 beam_size: int = 1) -> int:
  """Decodes the inputs of `split` of `task_name`, or of `input_file` (one text per line, used
  as is: include any task prefix), to predictions.jsonl (idx, inputs, prediction). Returns the count."""
  if (task_name is None) == (input_file is None):
    raise ValueError("infer needs exactly one of MIXTURE_OR_TASK_NAME and INFER_INPUT_FILE.")
  out, _, trained, frozen, vocabulary = _setup(model, checkpoint_path, prompt_file, output_dir, task_name,
                                               sentencepiece_model, extra_ids)
  examples = (seq2seq_data.load_text_examples(task_name, split, feature_lengths, data_dir=data_dir,
                                              vocabulary=vocabulary) if task_name else
              seq2seq_data.load_input_file(input_file, vocabulary, int(feature_lengths["inputs"])))
  evaluator = Evaluator(model, task_name, examples, feature_lengths, batch_size, None, beam_size, with_targets=False,
                        vocabulary=vocabulary)
  _, predictions = evaluator(trained, frozen)
  _write_jsonl(out / "predictions.jsonl", predictions)
  print(f"wrote {len(predictions):,} predictions to {out / 'predictions.jsonl'}", flush=True)
  return len(predictions)
