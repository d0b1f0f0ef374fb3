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
import jax
import numpy as np

from prompt_tuning_jax import errors, export, predictions, trainable
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.recipes.t5_train import (PROMPT_PATTERNS, check_task, check_vocabulary, configure, contract_model,
                                          load_backbone)
from prompt_tuning_jax.training import fit, validation
from prompt_tuning_jax.training.evaluator import Evaluator


def load_prompt_file(params, path):
  """`params` with every prompt tensor taken from `path` (.safetensors export or .npy input prompt)."""
  path = Path(path).expanduser()
  if not path.exists():
    raise errors.MissingFileError(f"PROMPT_FILE {path} does not exist.")
  flat = trainable.flatten(params)
  wanted = sorted(k for k in flat if trainable.is_trainable(k, PROMPT_PATTERNS))
  if not wanted:
    raise errors.ConfigError("the gin model has no prompt to load PROMPT_FILE into; use a gin/models/*_prompt.gin "
                             "file.")
  if path.suffix == ".npy":
    value = export.load_npy(path)
    if wanted != ["prompt/prompt"] or value.shape != flat["prompt/prompt"].shape:
      raise errors.CheckpointError(f"{path} holds an array of shape {value.shape}; the model's prompt is "
                                   f"{[(k, tuple(flat[k].shape)) for k in wanted]} (set PROMPT_LENGTH to match).")
    return trainable.unflatten({**flat, "prompt/prompt": value.astype(np.float32)})
  tensors, _ = export.load_export(path)
  if sorted(k for k in tensors if trainable.is_trainable(k, PROMPT_PATTERNS)) != wanted:
    raise errors.CheckpointError(f"{path} holds prompt tensors {sorted(tensors)} but the model needs {wanted}; "
                                 "configure the prompt as in the run that exported it (exports store deep prompts "
                                 "collapsed).")
  return export.restore_matching(params, path, PROMPT_PATTERNS)


def _setup(model: PromptedT5, checkpoint_path, prompt_file, output_dir, task_name: Optional[str], data_dir,
           sentencepiece_model, extra_ids: int, feature_lengths, batch_size: int, beam_size: int,
           rank: bool, caller: str) -> Tuple[fit.Run, EncoderDecoderModel, Evaluator, dict, dict]:
  """(run, model, evaluator, trained prompt, frozen T5) for a configured eval or infer run, the parameters
  placed on the partitioner's mesh as in training (evaluation runs through the partitioner). `caller`: the gin
  entry point, for messages. `rank`: also rank-classify over the task's possible targets."""
  validation.check_eval_settings(caller, output_dir=output_dir, batch_size=batch_size, feature_lengths=feature_lengths,
                                 feature_keys=("inputs", "targets"), beam_size=beam_size)
  validation.check_prompt(model.prompt, model.config.num_encoder_layers + model.config.num_decoder_layers, hint="")
  run = fit.start(output_dir, batch_size, setting=validation.output_setting(caller))
  vocabulary = configure(sentencepiece_model, extra_ids)
  target_strings = check_task(task_name) if task_name else None
  check_vocabulary(model, vocabulary)
  (run.model_dir / "config.gin").write_text(gin.operative_config_str())
  t5 = contract_model(model, vocabulary, feature_lengths, data_dir, beam_size, target_strings if rank else None)
  shapes = t5.batcher.input_shapes()
  params = t5.init_params(jax.random.key(0), load_backbone(model, checkpoint_path, seed=0), shapes)
  trained, frozen = trainable.split_params(load_prompt_file(params, prompt_file), PROMPT_PATTERNS)
  axes, partitioner = t5.param_axes(shapes), run.partitioner
  trained_sh, frozen_sh = partitioner.shardings(trained, axes), partitioner.shardings(frozen, axes)
  evaluator = Evaluator(t5, partitioner, trained_sh, frozen_sh, {}, batch_size, "accuracy")
  return run, t5, evaluator, jax.device_put(trained, trained_sh), jax.device_put(frozen, frozen_sh)


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
  run, t5, evaluator, trained, frozen = _setup(model, checkpoint_path, prompt_file, output_dir, task_name, data_dir,
                                              sentencepiece_model, extra_ids, feature_lengths, batch_size, beam_size,
                                              rank=True, caller="evaluate_prompt")
  examples = t5.batcher.load(task_name, split)
  outputs = evaluator.outputs(trained, frozen, examples)
  scores = t5.score_examples(task_name, examples, outputs)
  out = run.model_dir
  predictions.write_jsonl(out / "predictions.jsonl", t5.prediction_rows(examples, outputs))
  result = {"task": task_name, "split": split, "examples": len(examples), "checkpoint_path": str(checkpoint_path),
            "prompt_file": str(prompt_file), "beam_size": beam_size, "metrics": scores,
            "wall_seconds": time.perf_counter() - run.started}
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
    raise errors.ConfigError("infer needs exactly one of MIXTURE_OR_TASK_NAME and INFER_INPUT_FILE.")
  run, t5, evaluator, trained, frozen = _setup(model, checkpoint_path, prompt_file, output_dir, task_name, data_dir,
                                              sentencepiece_model, extra_ids, feature_lengths, batch_size, beam_size,
                                              rank=False, caller="infer_prompt")
  examples = (t5.batcher.load(task_name, split) if task_name else
              text_batching.load_input_file(input_file, t5.vocabulary, int(feature_lengths["inputs"])))
  rows = t5.prediction_rows(examples, evaluator.outputs(trained, frozen, examples), with_targets=False)
  predictions.write_jsonl(run.model_dir / "predictions.jsonl", rows)
  print(f"wrote {len(rows):,} predictions to {run.model_dir / 'predictions.jsonl'}", flush=True)
  return len(rows)
