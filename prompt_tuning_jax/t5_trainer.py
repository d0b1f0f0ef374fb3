"""Prompt tuning a frozen T5 1.1 on a text-to-text task: the gin entry point `train_seq2seq`.

`python -m prompt_tuning_jax.train` reaches it when the run file binds
`launch.trainer = @train_seq2seq` (gin/runs/prompt_finetune.gin). It shares the encoder
trainer's loop (`loop.run`), checkpoints and outputs: MODEL_DIR gets config.gin,
parameters.json, metrics.jsonl, tensorboard/, checkpoints/<step>/, export/best.safetensors
and results.json. The frozen T5 comes from INITIAL_CHECKPOINT_PATH (t5x_checkpoint.py);
the prompt is new (t5x's fallback-to-scratch) and is all that trains, is checkpointed and
is exported. Evaluation decodes greedily (or with beam search) and, when the task lists its
possible targets, also ranks them (rank classification).
"""

import json
import time
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import gin
import jax
import numpy as np
import optax
import seqio

from prompt_tuning_jax import export, loop, metrics, partitioning, seq2seq, seq2seq_data, tasks, trainable
from prompt_tuning_jax.checkpoints import Checkpoints
from prompt_tuning_jax.metric_writer import MetricWriter, format_duration
from prompt_tuning_jax.models import t5x_checkpoint
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.deep import DeepPrompt, collapse_reparameterization
from prompt_tuning_jax.tasks import text_to_text
from prompt_tuning_jax.train_step import adafactor, skip_nonfinite
from prompt_tuning_jax.trainer import compile_train_step, init_params, place_state, prepare_model_dir
from prompt_tuning_jax.vocabularies import T5_VOCABULARY

PROMPT_PATTERNS = (r"prompt/.*",)
T5_CALL = {"enable_dropout": False}  # how initialisation calls the PromptedT5 (dummy inputs, no dropout)


def configure(data_dir: Optional[str], sentencepiece_model: Optional[str], extra_ids: int) -> None:
  """Points the task registry at DATA_DIR and the T5 vocabulary at its SentencePiece model."""
  tasks.settings.set_data_dir(data_dir)
  if sentencepiece_model and "://" not in str(sentencepiece_model) and not Path(sentencepiece_model).exists():
    raise FileNotFoundError(f"SentencePiece model {sentencepiece_model} does not exist (SENTENCEPIECE_MODEL).")
  tasks.settings.set_sentencepiece_model(sentencepiece_model, extra_ids)


def check_task(task_name: str) -> Optional[Tuple[str, ...]]:
  """The task's possible targets (None when open-ended); errors for unknown and non-text-to-text tasks."""
  if task_name not in seqio.TaskRegistry.names():
    raise tasks.UnknownTaskError(f"unknown task {task_name!r}. Text-to-text tasks: "
                                 f"{', '.join(sorted(text_to_text.TARGET_STRINGS))}. Set MIXTURE_OR_TASK_NAME to one.")
  task = tasks.get_task(task_name)
  if not {"inputs", "targets"} <= set(task.output_features):
    raise ValueError(f"task {task_name!r} is not text-to-text (it has features {sorted(task.output_features)}); "
                     f"T5 tasks: {', '.join(sorted(text_to_text.TARGET_STRINGS))}.")
  return text_to_text.TARGET_STRINGS.get(task_name)


def check_vocabulary(model: PromptedT5) -> None:
  """The configured SentencePiece ids (extra ids included) must fit the model's embedding; T5 pads
  its vocabulary to a multiple of 128, so fewer ids than rows is normal."""
  if T5_VOCABULARY.vocab_size > model.config.vocab_size:
    raise ValueError(f"the SentencePiece vocabulary {tasks.settings.sentencepiece_model()[0]} has "
                     f"{T5_VOCABULARY.vocab_size} ids (with extra ids) but the model's embedding has "
                     f"{model.config.vocab_size} rows.")


def load_params(model: PromptedT5, checkpoint_path, seed: int, assignment_map: t5x_checkpoint.AssignmentMap = (),
                fallback_to_scratch: bool = False) -> dict:
  """The frozen T5 from `checkpoint_path` plus a freshly initialised prompt (vocabulary inits see the loaded
  embeddings)."""
  backbone, description = t5x_checkpoint.restore_backbone(checkpoint_path, model.config, assignment_map,
                                                          fallback_to_scratch, seed)
  print(f"Frozen T5 from {description}.", flush=True)
  return init_params(model, backbone, seed, model_kwargs=T5_CALL)


def exportable(model: PromptedT5, trained) -> Dict[str, np.ndarray]:
  """Trainable parameters as exported: a deep prompt's reparameterization collapsed to its table."""
  trained = dict(trained)
  if isinstance(model.prompt, DeepPrompt) and model.prompt.reparam_hidden is not None and "prompt" in trained:
    c = model.config
    trained["prompt"] = {"prefix": collapse_reparameterization(
        model.prompt, trained["prompt"], c.num_encoder_layers + c.num_decoder_layers, c.num_heads, c.d_kv)}
  return {k: np.asarray(v) for k, v in trainable.flatten(trained).items()}


def model_metadata(model: PromptedT5, checkpoint_path) -> dict:
  """What a reader of an exported prompt needs to know about the T5 it fits."""
  c = model.config
  return {"backbone": str(checkpoint_path), "model": "t5_1_1", "hidden_size": c.d_model,
          "num_hidden_layers": c.num_encoder_layers, "num_decoder_layers": c.num_decoder_layers,
          "num_attention_heads": c.num_heads, "vocab_size": c.vocab_size,
          "prompt_kind": type(model.prompt).__name__ if model.prompt is not None else "none",
          "prompt_length": model.prompt.length if model.prompt is not None else 0,
          "position_policy": "relative", "pooling": "none",
          "sentencepiece_model": tasks.settings.sentencepiece_model()[0]}


class Evaluator:
  """Decodes (and, given target strings, rank-classifies) every example of a split with jitted steps.

  `__call__(trained, frozen)` -> (metrics, predictions): the task's metric functions on the
  decoded strings ('accuracy'), the same on the rank-classification choices ('rank_accuracy'),
  and 'loss' (mean summed token loss per example); predictions are one dict per example in
  split order. Without targets (inference) only predictions are made.
  """

  def __init__(self, model: PromptedT5, task_name: Optional[str], examples: seq2seq_data.TextExamples,
               feature_lengths: Mapping[str, int], batch_size: int, target_strings: Optional[Sequence[str]],
               beam_size: int = 1, with_targets: bool = True):
    self.task = tasks.get_task(task_name) if task_name else None
    self.examples, self.feature_lengths, self.batch_size = examples, feature_lengths, batch_size
    self.target_strings, self.with_targets = target_strings, with_targets
    self._predict = jax.jit(seq2seq.make_predict_fn(model, int(feature_lengths["targets"]), beam_size))
    self._score = jax.jit(seq2seq.make_score_fn(model))
    self._rank = jax.jit(seq2seq.make_rank_fn(model))
    self._candidates = (seq2seq_data.candidate_arrays(T5_VOCABULARY, target_strings, int(feature_lengths["targets"]))
                        if target_strings else None)

  def __call__(self, trained, frozen) -> Tuple[Dict[str, float], list]:
    n = len(self.examples)
    decoded, losses, ranked = [None] * n, np.zeros(n), [None] * n
    rank_scores = np.zeros((n, len(self.target_strings or ())), np.float32)
    for index, batch in seq2seq_data.eval_batches(self.examples, self.batch_size, self.feature_lengths):
      rows = len(index)
      ids = np.asarray(self._predict(trained, frozen, batch["encoder_input_tokens"]))[:rows]
      for i, row in zip(index, ids):
        decoded[i] = T5_VOCABULARY.decode(row.tolist())
      if self.with_targets:
        losses[index] = np.asarray(self._score(trained, frozen, batch)[0])[:rows]
      if self._candidates is not None:
        rank_scores[index] = np.asarray(self._rank(trained, frozen, batch["encoder_input_tokens"],
                                                   self._candidates["candidate_inputs"],
                                                   self._candidates["candidate_targets"]))[:rows]
    if self._candidates is not None:
      ranked = [self.target_strings[j] for j in rank_scores.argmax(-1)]
    e = self.examples
    predictions = [{"idx": int(e.idx[i]), "inputs": e.inputs_text[i], "prediction": decoded[i],
                    **({"target": e.targets_text[i]} if self.with_targets else {}),
                    **({"rank_prediction": ranked[i], "rank_scores": [round(float(x), 4) for x in rank_scores[i]]}
                       if self._candidates is not None else {})} for i in range(n)]
    if not self.with_targets:
      return {}, predictions
    scores = {"loss": float(losses.mean())}
    for fn in self.task.metric_fns:
      scores |= fn(e.targets_text, decoded)
      if self._candidates is not None:
        scores |= {f"rank_{k}": v for k, v in fn(e.targets_text, ranked).items()}
    return scores, predictions


@gin.configurable
def train_seq2seq(model_dir: str = gin.REQUIRED,
                  task_name: str = gin.REQUIRED,
                  feature_lengths: Dict[str, int] = gin.REQUIRED,
                  train_steps: int = gin.REQUIRED,
                  batch_size: int = gin.REQUIRED,
                  initial_checkpoint_path: str = gin.REQUIRED,
                  model: PromptedT5 = gin.REQUIRED,
                  sentencepiece_model: Optional[str] = None,
                  extra_ids: int = 100,
                  eval_batch_size: Optional[int] = None,
                  data_dir: Optional[str] = None,
                  trainable_patterns: Sequence[str] = PROMPT_PATTERNS,
                  optimizer: Optional[optax.GradientTransformation] = None,
                  z_loss: float = 1e-4,
                  loss_normalizing_factor: Union[None, float, str] = None,
                  assignment_map: t5x_checkpoint.AssignmentMap = (),
                  fallback_to_scratch: bool = False,
                  eval_period: int = 100,
                  log_period: int = 10,
                  keep_checkpoints: int = 3,
                  seed: int = 0,
                  train_split: str = "train",
                  eval_split: str = "validation",
                  beam_size: int = 1,
                  init_trainable_from: Optional[str] = None,
                  skip_nonfinite_updates: bool = False,
                  max_consecutive_nonfinite: int = 5,
                  use_hardware_rng: bool = False) -> dict:
  """Trains the prompt of `model` on the text-to-text task `task_name`; returns results.json's dict.

  Args:
    model_dir: MODEL_DIR, all outputs; rerunning with the same MODEL_DIR resumes.
    task_name: MIXTURE_OR_TASK_NAME, a text-to-text task (tasks/text_to_text.py).
    feature_lengths: TASK_FEATURE_LENGTHS, {'inputs': tokens, 'targets': tokens} (EOS included).
    train_steps: TRAIN_STEPS, absolute (includes steps of a restored checkpoint).
    batch_size: BATCH_SIZE.
    initial_checkpoint_path: INITIAL_CHECKPOINT_PATH, the frozen T5 (Hugging Face or T5X).
    model: the PromptedT5 (architecture from the gin model file, prompt from the method).
    sentencepiece_model: SENTENCEPIECE_MODEL, the vocabulary file; None = t5's default.
    extra_ids: the vocabulary's extra ids (T5: 100).
    trainable_patterns: regexes over parameter paths; the rest stays frozen.
    optimizer: default Adafactor as in the prompt-tuning paper (train_step.adafactor).
    z_loss, loss_normalizing_factor: t5x's loss settings (seq2seq.make_train_step).
    assignment_map, fallback_to_scratch: t5x's partial restore of the frozen T5.
    eval_period: evaluate, checkpoint and maybe export every this many steps (and at the end).
    beam_size: 1 = greedy decoding at evaluation, > 1 = beam search.
    init_trainable_from: an export whose prompt replaces the fresh one (prompt transfer).
    skip_nonfinite_updates: skip updates whose gradients are NaN or infinite (optax.apply_if_finite: prompt,
      optimizer state and schedule unchanged; counted in metrics.jsonl's skipped_updates) instead of stopping.
    max_consecutive_nonfinite: with skip_nonfinite_updates, more than this many in a row stop training (the last
      good checkpoint stays).
    use_hardware_rng: USE_HARDWARE_RNG, draw initialisation and dropout from 'unsafe_rbg' (loop.use_hardware_rng).

  The mesh comes from the gin-configured `Partitioner` (NUM_PARTITIONS or MESH_SHAPE).
  """
  started = time.perf_counter()
  loop.use_hardware_rng(use_hardware_rng)
  partitioner = partitioning.Partitioner()  # First: multi-host initialisation precedes any computation.
  partitioner.batch_sharding(batch_size)  # A batch the mesh cannot split fails before any work.
  model_dir = prepare_model_dir(model_dir)
  configure(data_dir, sentencepiece_model, extra_ids)
  target_strings = check_task(task_name)
  check_vocabulary(model)
  tx = skip_nonfinite(optimizer or adafactor(), max_consecutive_nonfinite if skip_nonfinite_updates else None)

  train_examples = seq2seq_data.load_text_examples(task_name, train_split, feature_lengths)
  eval_examples = seq2seq_data.load_text_examples(task_name, eval_split, feature_lengths)
  batches = seq2seq_data.TrainBatches(train_examples, batch_size, feature_lengths, seed)
  params = load_params(model, initial_checkpoint_path, seed, assignment_map, fallback_to_scratch)
  if init_trainable_from:
    params = export.restore_matching(params, init_trainable_from, PROMPT_PATTERNS)
    print(f"Initialised the prompt from {init_trainable_from}.")
  trained, frozen = trainable.split_params(params, trainable_patterns)
  report = trainable.parameter_report(params, trained, exportable(model, jax.device_get(trained)))
  print(f"Task {task_name}: {len(train_examples):,} train / {len(eval_examples):,} {eval_split} examples"
        f"{f'; targets {list(target_strings)}' if target_strings else ''}")
  print(f"Trainable parameters: {report['trainable']:,} = {report['share_of_backbone_percent']:.3f}% of the "
        f"backbone's {report['backbone']:,} ({len(trainable.flatten(trained))} tensors)", flush=True)
  # Written once the data and prompt file have loaded: a run that fails on them leaves an earlier
  # run's config.gin as it was.
  (model_dir / "config.gin").write_text(gin.operative_config_str())
  (model_dir / "parameters.json").write_text(json.dumps(report, indent=1))

  state, frozen, state_sh, frozen_sh = place_state(partitioner, model, (1, 8), trained, frozen, tx, T5_CALL)
  checkpoints = Checkpoints(model_dir, keep=keep_checkpoints)
  extra = {"best_accuracy": None, "best_step": None}
  state, extra = loop.resume(checkpoints, state, extra, batches.state_dict)

  state, train_step = compile_train_step(partitioner, seq2seq.make_train_step(model, tx, z_loss,
                                                                              loss_normalizing_factor),
                                         state, frozen, state_sh, frozen_sh, batches, seed, model_dir)
  evaluator = Evaluator(model, task_name, eval_examples, feature_lengths, eval_batch_size or batch_size,
                        target_strings, beam_size)
  run_eval = lambda trained: evaluator(trained, frozen)[0]
  writer = MetricWriter(model_dir)
  export_path = model_dir / "export" / "best.safetensors"
  export_metadata = {"task": task_name, "tasks": [task_name], "label_names": list(target_strings or ()),
                     **model_metadata(model, initial_checkpoint_path)}
  save_best = lambda step, trained, scores: export.save_export(
      export_path, exportable(model, trained), {**export_metadata, "step": step, "metric": scores})
  state, last_eval, extra = loop.run(
      state, train_step=train_step, frozen=frozen, rng=jax.random.key(seed),
      batch_at=lambda step: partitioner.global_batch(batches.batch(step)),
      train_steps=train_steps, eval_period=eval_period, log_period=log_period, evaluate=run_eval, export=save_best,
      checkpoints=checkpoints, writer=writer, extra=extra, eval_split=eval_split, data_state=batches.state_dict,
      max_consecutive_skips=max_consecutive_nonfinite if skip_nonfinite_updates else None)
  checkpoints.close()
  writer.close()

  if last_eval is None:  # Resumed at the end: evaluate the final state once.
    last_eval = run_eval(state.trainable)
  _, target_ids = np.unique(eval_examples.targets_text, return_inverse=True)
  results = {
      "task": task_name, "tasks": [task_name], "step": int(state.step),
      f"{eval_split}_accuracy": last_eval["accuracy"], f"{eval_split}_metrics": last_eval,
      "best_accuracy": extra["best_accuracy"], "best_step": extra["best_step"],
      "majority_class_accuracy": metrics.majority_class_accuracy(target_ids),
      **report, "export_path": str(export_path),
      "export_bytes": export_path.stat().st_size if export_path.exists() else None,
      "wall_seconds": time.perf_counter() - started,
  }
  (model_dir / "results.json").write_text(json.dumps(results, indent=1))
  print_summary(results, eval_split)
  return results


def print_summary(results: dict, eval_split: str) -> None:
  print("=" * 72)
  print(f"{results['task']} {eval_split} accuracy (greedy decoding): {results[f'{eval_split}_accuracy']:.2f}% at step "
        f"{results['step']} (best {results['best_accuracy']:.2f}% at step {results['best_step']})")
  print(f"  {loop.format_metrics(results[f'{eval_split}_metrics'])}")
  print(f"most frequent target:        {results['majority_class_accuracy']:.2f}%")
  print(f"trainable parameters:        {results['trainable']:,} "
        f"({results['share_of_backbone_percent']:.3f}% of the {results['backbone']:,}-parameter T5)")
  if results["export_bytes"] is not None:
    print(f"exported prompt:             {results['export_path']} ({results['export_bytes']:,} bytes)")
  print(f"wall time:                   {format_duration(results['wall_seconds'])}")
  print("=" * 72, flush=True)
