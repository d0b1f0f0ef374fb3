"""Prompt tuning a frozen T5 1.1 on a text-to-text task: the gin entry point `train_seq2seq`.

`python -m prompt_tuning_jax.train` reaches it when the run file binds
`launch.trainer = @train_seq2seq` (gin/runs/prompt_finetune.gin). It builds the
EncoderDecoderModel (models/encoder_decoder_model.py) and trains it with the one `fit` the
encoder trainer uses, so MODEL_DIR gets the same outputs and results.json schema. The frozen T5 comes from INITIAL_CHECKPOINT_PATH (t5x_checkpoint.py);
the prompt is new (t5x's fallback-to-scratch) and is all that trains, is checkpointed and
is exported. Evaluation decodes greedily (or with beam search) and, when the task lists its
possible targets, also ranks them (rank classification).

MIXTURE_OR_TASK_NAME may be a seqio mixture: its tasks' training examples are pooled in
proportion to their sizes (as the encoder trainer mixes them), every row tagged with its task
id, and each task is evaluated with its own metrics ('task/<metric>'; the unprefixed metric
is their mean). MULTITASK_PROMPT='shared' trains one prompt for all tasks (tasks without a
training split, e.g. MRQA's out-of-domain sets, are evaluated with it); 'per_task' trains a
PromptBank of one prompt per task in mixed-task batches (each row picks its own), and writes
each task's prompt alone to export/<task>.safetensors. ENSEMBLE_SIZE K > 1 trains K prompts
(each its own initialisation) over the one frozen T5 on one task, every member on every
example; evaluation reports member_{k}_<metric>, the majority vote over decoded strings and
the mean-probability vote of rank classification (encoder_decoder_model.py); each member is
also exported alone to export/member_{k}.safetensors.
"""

import dataclasses
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import gin
import optax
import seqio
from google.protobuf import message as protobuf_message

from prompt_tuning_jax import errors, tasks
from prompt_tuning_jax.data import vocabularies
from prompt_tuning_jax.models import t5x_checkpoint
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel, TextBatcher
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.bank import PromptBank
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.recipes.encoder import check_mixture_settings, split_tasks
from prompt_tuning_jax.tasks import text_to_text
from prompt_tuning_jax.training.steps import adafactor
from prompt_tuning_jax.training import fit, validation

PROMPT_PATTERNS = (r"prompt/.*",)


def configure(sentencepiece_model: Optional[str], extra_ids: int) -> seqio.Vocabulary:
  """The run's T5 vocabulary: SentencePiece model SENTENCEPIECE_MODEL (None = t5's default) with extra ids."""
  if sentencepiece_model and "://" not in str(sentencepiece_model) and not Path(sentencepiece_model).exists():
    raise errors.MissingFileError(f"SentencePiece model {sentencepiece_model} does not exist (SENTENCEPIECE_MODEL).")
  return vocabularies.sentencepiece_vocabulary(sentencepiece_model, extra_ids)


def _vocab_size(vocabulary: seqio.Vocabulary) -> int:
  """The vocabulary's ids; loading a file that is not a SentencePiece model is the user's error."""
  try:
    return vocabulary.vocab_size
  except protobuf_message.DecodeError as e:  # What sentencepiece raises for a file that is not a model.
    raise errors.ConfigError(f"SentencePiece model {vocabulary.sentencepiece_model_file} cannot be read ({e}); "
                             "point SENTENCEPIECE_MODEL at a .model file.") from e


def check_task(task_name: str, train_split: Optional[str] = None,
               eval_split: Optional[str] = None) -> Optional[Tuple[str, ...]]:
  """The task's possible targets (None when open-ended); errors for unknown and non-text-to-text tasks, and for a
  training run's splits without labels (a test split's targets are all '<unk>')."""
  if task_name not in seqio.TaskRegistry.names():
    raise tasks.UnknownTaskError(f"unknown task {task_name!r}. Text-to-text tasks: "
                                 f"{', '.join(sorted(text_to_text.SCORING))}. Set MIXTURE_OR_TASK_NAME to one.")
  task = tasks.get_task(task_name)
  if not {"inputs", "targets"} <= set(task.output_features):
    raise tasks.UnknownTaskError(f"task {task_name!r} is not text-to-text (it has features "
                                 f"{sorted(task.output_features)}); T5 tasks: "
                                 f"{', '.join(sorted(text_to_text.SCORING))}.")
  for split, setting in ((train_split, "train_seq2seq.train_split"), (eval_split, "train_seq2seq.eval_split")):
    if split is not None:
      text_to_text.check_labeled(task_name, split, setting)
  return text_to_text.TARGET_STRINGS.get(task_name)


def check_vocabulary(model: PromptedT5, vocabulary: seqio.Vocabulary) -> None:
  """The run's SentencePiece ids (extra ids included) must fit the model's embedding; T5 pads
  its vocabulary to a multiple of 128, so fewer ids than rows is normal."""
  if _vocab_size(vocabulary) > model.config.vocab_size:
    raise errors.ConfigError(f"the SentencePiece vocabulary {vocabulary.sentencepiece_model_file} has "
                             f"{vocabulary.vocab_size} ids (with extra ids) but the model's embedding has "
                             f"{model.config.vocab_size} rows.")


def load_backbone(model: PromptedT5, checkpoint_path, seed: int, assignment_map: t5x_checkpoint.AssignmentMap = (),
                  fallback_to_scratch: bool = False) -> dict:
  """The frozen T5's parameters from `checkpoint_path` (Hugging Face or T5X; t5x's partial restore)."""
  backbone, description = t5x_checkpoint.restore_backbone(checkpoint_path, model.config, assignment_map,
                                                          fallback_to_scratch, seed)
  print(f"Frozen T5 from {description}.", flush=True)
  return backbone


def contract_model(model: PromptedT5, vocabulary: seqio.Vocabulary, feature_lengths, data_dir=None,
                   beam_size: int = 1, target_strings: Optional[Sequence[str]] = None,
                   **settings) -> EncoderDecoderModel:
  """The configured PromptedT5 under the model contract: its tasks read DATA_DIR and tokenize with the
  run's vocabulary, and it decodes to the vocabulary's strings. `settings`: EncoderDecoderModel's loss,
  ensemble and mixture arguments."""
  validation.check_feature_lengths(feature_lengths, ("inputs", "targets"), "feature_lengths")  # Serving's, too.
  return EncoderDecoderModel(model, vocabulary, int(feature_lengths["targets"]), beam_size,
                             target_strings=target_strings, batcher=TextBatcher(feature_lengths, data_dir, vocabulary),
                             metadata={"sentencepiece_model": vocabulary.sentencepiece_model_file}, **settings)


def bank_model(model: PromptedT5, names: Sequence[str], multitask_prompt: str,
               ensemble_size: int) -> Tuple[PromptedT5, Tuple[str, ...]]:
  """(the PromptedT5 the run trains, the names of its bank's members): `model` itself for one prompt, else its
  prompt widened to a PromptBank, one member per task ('per_task') or per ensemble member."""
  check_mixture_settings(multitask_prompt, ensemble_size)
  if len(names) > 1 and ensemble_size > 1:
    raise errors.ConfigError(f"an ensemble trains on one task, but MIXTURE_OR_TASK_NAME is a mixture of {len(names)} "
                             "tasks; set --gin.ENSEMBLE_SIZE=1 or name one task.")
  if ensemble_size > 1:
    members = tuple(f"member_{k}" for k in range(ensemble_size))
  elif len(names) > 1 and multitask_prompt == "per_task":
    members = tuple(names)
  else:
    return model, ()
  if not isinstance(model.prompt, (InputPrompt, DeepPrompt)):
    what = "an ensemble" if ensemble_size > 1 else "MULTITASK_PROMPT='per_task'"
    raise errors.ConfigError(f"{what} needs a bank of input or deep prompts, but the model's prompt is "
                             f"{type(model.prompt).__name__ if model.prompt is not None else 'None'}; use a "
                             "gin/models/t5_1_1_*_prompt.gin file (Lester's input prompt) or a deep prompt.")
  return model.clone(prompt=PromptBank(model.prompt, len(members))), members


def load_data(batcher: TextBatcher, names: Sequence[str], train_names: Sequence[str], eval_names: Sequence[str],
              per_task: bool, train_split: str, eval_split: str, batch_size: int, seed: int,
              targets: Dict[str, Optional[Tuple[str, ...]]]) -> fit.TrainData:
  """The tasks' training examples pooled (each row's prompt id its task's index with `per_task`, else 0) in
  their batch order, and each evaluated task's eval split; one line per task says how many."""
  task_id = lambda name: names.index(name) if per_task else 0
  parts = {name: batcher.load(name, train_split, task_id(name)) for name in train_names}
  train = batcher.concatenate(list(parts.values()))
  eval_sets = {name: batcher.load(name, eval_split, task_id(name)) for name in eval_names}
  for name in dict.fromkeys([*train_names, *eval_names]):
    print(f"Task {name}: {len(parts.get(name, ())):,} {train_split} / {len(eval_sets.get(name, ())):,} {eval_split} "
          f"examples{f'; targets {list(targets[name])}' if targets[name] else ''}")
  metric = {name: text_to_text.selection_metric(name) for name in eval_names}
  return fit.TrainData(train, batcher.train_batches(train, batch_size, seed), eval_sets,
                       next(iter(metric.values())) if len(set(metric.values())) == 1 else "score", metric)


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
                  multitask_prompt: str = "shared",
                  ensemble_size: int = 1,
                  skip_nonfinite_updates: bool = False,
                  max_consecutive_nonfinite: int = 5,
                  use_hardware_rng: bool = False) -> dict:
  """Trains the prompt of `model` on the text-to-text task `task_name`; returns results.json's dict.

  The loop's arguments (model_dir, train_steps, batch_size, eval_*, log_period, keep_checkpoints, seed,
  trainable_patterns, init_trainable_from, *_nonfinite*) are fit.FitOptions'; the others:
    task_name: MIXTURE_OR_TASK_NAME, a text-to-text task (tasks/text_to_text.py) or a mixture of them (its tasks
      without `train_split` are evaluated only).
    feature_lengths: TASK_FEATURE_LENGTHS, {'inputs': tokens, 'targets': tokens} (EOS included).
    initial_checkpoint_path: INITIAL_CHECKPOINT_PATH, the frozen T5 (Hugging Face or T5X).
    model: the PromptedT5 (architecture from the gin model file, prompt from the method).
    sentencepiece_model: SENTENCEPIECE_MODEL, the vocabulary file; None = t5's default.
    extra_ids: the vocabulary's extra ids (T5: 100).
    optimizer: default Adafactor as in the prompt-tuning paper (train_step.adafactor).
    z_loss, loss_normalizing_factor: t5x's loss settings (EncoderDecoderModel).
    assignment_map, fallback_to_scratch: t5x's partial restore of the frozen T5.
    beam_size: 1 = greedy decoding at evaluation, > 1 = beam search.
    multitask_prompt: MULTITASK_PROMPT, for a mixture: 'shared' (one prompt) or 'per_task' (one per task).
    ensemble_size: ENSEMBLE_SIZE, K prompts trained together on one task (1: no ensemble).
    use_hardware_rng: USE_HARDWARE_RNG, draw initialisation and dropout from 'unsafe_rbg' (loop.use_hardware_rng).
  The mesh comes from the gin-configured `Partitioner` (NUM_PARTITIONS or MESH_SHAPE).
  """
  options = fit.FitOptions.pick(locals())
  # Every setting is checked before the mesh, MODEL_DIR, vocabulary, data or T5 (validation.py).
  validation.check_run_settings("train_seq2seq", feature_lengths=feature_lengths, feature_keys=("inputs", "targets"),
                                **dataclasses.asdict(options))
  validation.check_int(beam_size, "BEAM_SIZE", "train_seq2seq.beam_size", 1,
                       "set --gin.BEAM_SIZE to 1 (greedy decoding) or more (beam search)")
  validation.check_prompt(model.prompt, model.config.num_encoder_layers + model.config.num_decoder_layers, hint="")
  names = tasks.task_names(task_name) if task_name in seqio.MixtureRegistry.names() else (task_name,)
  model, members = bank_model(model, names, multitask_prompt, ensemble_size)
  run = fit.start(model_dir, batch_size, use_hardware_rng)
  validation.check_t5_step(model, feature_lengths, batch_size * ensemble_size,
                           devices=len(run.partitioner.mesh.devices.flat),
                           model_parallel=run.partitioner.mesh.shape["model"])
  vocabulary = configure(sentencepiece_model, extra_ids)
  targets = {name: check_task(name, train_split, eval_split) for name in names}
  per_task = multitask_prompt == "per_task" and len(names) > 1
  train_names, eval_names = split_tasks(names, train_split, eval_split, shared=not per_task)
  check_vocabulary(model, vocabulary)
  t5 = contract_model(model, vocabulary, feature_lengths, data_dir, beam_size, targets[names[0]], z_loss=z_loss,
                      loss_normalizing_factor=loss_normalizing_factor, ensemble_size=ensemble_size,
                      task_targets=targets if len(names) > 1 else None, member_names=members)
  train_data = load_data(t5.batcher, names, train_names, eval_names, per_task, train_split, eval_split, batch_size,
                         seed, targets)
  backbone = load_backbone(model, initial_checkpoint_path, seed, assignment_map, fallback_to_scratch)
  export_metadata = {"task": task_name, "tasks": list(names), "ensemble_size": ensemble_size,
                     "multitask_prompt": multitask_prompt if len(names) > 1 else "none",
                     "label_names": list(targets[names[0]] or ()) if len(names) == 1 else
                     {name: list(t or ()) for name, t in targets.items()},
                     "backbone": str(initial_checkpoint_path), "feature_lengths": dict(feature_lengths)}
  return fit.fit(run, t5, backbone, train_data, optimizer or adafactor(), options, export_metadata)
