"""The encoder trainer: frozen backbone, trained prompt and head, for every task family
(classification, multiple choice, token classification, span extraction; families.py).

`train` is the gin-configured entry point behind `python -m prompt_tuning_jax.train`.
It writes under MODEL_DIR: config.gin, parameters.json, metrics.jsonl, tensorboard/,
checkpoints/<step>/, export/best.safetensors and results.json; with SWEEP also members/<k>/ (training/sweep.py).
"""

import copy
import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import gin
import optax

from prompt_tuning_jax import errors, tasks, trainable
from prompt_tuning_jax.tasks import families
from prompt_tuning_jax.data import vocabularies
from prompt_tuning_jax.models.bert import check_activation_dtype, check_position_table
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.models.encoder_model import EncoderBatcher, EncoderModel
from prompt_tuning_jax.prompts.bank import PromptBank
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.training.steps import adamw
from prompt_tuning_jax.training import fit, steps, sweep_settings, validation
from prompt_tuning_jax.training import sweep as sweeps

MULTITASK_PROMPTS = ("shared", "per_task")


def head_kind(infos: Dict[str, tasks.TaskInfo]) -> str:
  """The head kind every task of a mixture shares, or an error naming the tasks' families."""
  kinds = {families.HEAD_KIND[info.family] for info in infos.values()}
  if len(kinds) > 1:
    families_of = sorted({name: info.family for name, info in infos.items()}.items())
    raise errors.ConfigError("a mixture's tasks must share a head kind (classification and multiple choice can "
                             f"mix), but these are {families_of}.")
  return kinds.pop()


def build_model(model_cls: Callable[..., EncoderClassifier], config, infos: Dict[str, tasks.TaskInfo],
                multitask_prompt: str, ensemble_size: int, max_length: int) -> EncoderClassifier:
  """The configured model with the tasks' head kind, widened for a mixture or an ensemble; its dropout masks
  are slices of those of the longest sequence a text of `max_length` tokens makes (BertConfig.dropout_length).

  A mixture trains one shared prompt ('shared', P-Tuning v2's multi-task setting) or one
  prompt per task in mixed-task batches ('per_task', a PromptBank indexed by task id), and
  one head per task where label sets differ (families.PER_TASK_HEADS; QA tasks share one).
  An ensemble of K is a bank of K prompts and K heads; every member sees every example.
  """
  kind, num_tasks = head_kind(infos), len(infos)
  num_labels = max(families.head_outputs(info.family, info.label_names) for info in infos.values())
  model = model_cls(config=config, num_labels=num_labels).clone(head_kind=kind)
  model = model.clone(config=dataclasses.replace(config, dropout_length=model.sequence_length(max_length)))
  check_mixture_settings(multitask_prompt, ensemble_size)
  if num_tasks > 1 and ensemble_size > 1:
    raise errors.ConfigError(f"an ensemble trains on one task, but MIXTURE_OR_TASK_NAME is a mixture of {num_tasks} "
                             "tasks.")
  if ensemble_size > 1 and kind != "sequence":
    raise errors.ConfigError(f"ensembles combine class probabilities: they need a classification or multiple-choice "
                             f"task, not {next(iter(infos.values())).family}.")
  members = max(num_tasks, ensemble_size)
  if members == 1:
    return model
  prompt = model.prompt
  if ensemble_size > 1 or multitask_prompt == "per_task":
    if not isinstance(prompt, (DeepPrompt, InputPrompt)):
      what = "an ensemble" if ensemble_size > 1 else "multitask_prompt='per_task'"
      raise errors.ConfigError(f"{what} needs a bank of deep or input prompts, but the method's prompt is "
                               f"{type(prompt).__name__ if prompt is not None else 'None'}; use "
                               "gin/methods/deep_prompt.gin, prefix_tuning.gin or lester.gin.")
    prompt = PromptBank(prompt, members)
  per_task_heads = ensemble_size > 1 or families.PER_TASK_HEADS[next(iter(infos.values())).family]
  return model.clone(prompt=prompt, num_heads=members if per_task_heads else 1)


def check_mixture_settings(multitask_prompt: str, ensemble_size: int) -> None:
  if multitask_prompt not in MULTITASK_PROMPTS:
    raise errors.ConfigError(f"unknown multitask_prompt {multitask_prompt!r}; use one of {MULTITASK_PROMPTS}.")
  validation.check_int(ensemble_size, "ENSEMBLE_SIZE", "train.ensemble_size", 1,
                       "set --gin.ENSEMBLE_SIZE to the number of prompts trained together (1: no ensemble)")


def selection_metric(names: Sequence[str]) -> str:
  """The metric that picks the best checkpoint: the tasks' own when they share it, else 'score', the mean of
  each task's own (e.g. SuperGLUE: accuracy, MultiRC F1a, ReCoRD F1)."""
  own = {tasks.info(name).metric for name in names}
  return own.pop() if len(own) == 1 else "score"


def split_tasks(names: Sequence[str], train_split: str, eval_split: str, shared: bool,
                eval_task_name: Optional[str] = None) -> Tuple[List[str], List[str]]:
  """(tasks to train on, tasks to evaluate): those with the split. Evaluation-only tasks (MRQA's out-of-domain
  sets; `eval_task_name`'s, e.g. AX-b after RTE) need what the trained tasks use: one prompt and head (`shared`)."""
  splits = {name: tasks.registry.SPECS[name].source.splits for name in names}  # Encoder and text-to-text tasks.
  trained = [name for name in names if train_split in splits[name]]
  if not trained:
    raise errors.ConfigError(f"no task of {list(names)} has a {train_split!r} split ({splits}); evaluation-only "
                             "tasks (e.g. axb, axg) are evaluated with train.eval_task_name after training on another "
                             "task.")
  evaluated = [name for name in names if eval_split in splits[name]]
  if eval_task_name is not None:
    evaluated = list(tasks.task_names(eval_task_name))
    missing = [name for name in evaluated if eval_split not in tasks.registry.SPECS[name].source.splits]
    if missing:
      raise errors.ConfigError(f"{missing} have no {eval_split!r} split; set train.eval_split.")
  if not evaluated:
    raise errors.ConfigError(f"no task of {list(names)} has a {eval_split!r} split ({splits}).")
  unlabeled = [name for name in evaluated if not tasks.has_labels(name, eval_split)]
  if unlabeled:
    raise errors.ConfigError(f"train.eval_split={eval_split!r} of {unlabeled} has no labels (a benchmark's test "
                             "set), so training cannot score or select on it. Evaluate on 'validation' and predict "
                             "the test set from the export: python -m prompt_tuning_jax.eval "
                             "--gin_file=runs/export_eval.gin --gin.EVAL_SPLIT=\"'test'\" ...")
  untrained = [name for name in evaluated if name not in trained]
  if untrained and not shared:
    raise errors.ConfigError(f"{untrained} would be evaluated with a prompt or head no training example reaches; "
                             "evaluation-only tasks need one shared prompt and head (a single training task, or QA "
                             "tasks).")
  return trained, evaluated


@gin.configurable
def train(model_dir: str = gin.REQUIRED,
          task_name: str = gin.REQUIRED,
          feature_lengths: Dict[str, int] = gin.REQUIRED,
          train_steps: int = gin.REQUIRED,
          batch_size: int = gin.REQUIRED,
          eval_batch_size: Optional[int] = None,
          backbone_dir: Optional[str] = None,
          data_dir: Optional[str] = None,
          model_cls: Callable[..., EncoderClassifier] = EncoderClassifier,
          trainable_patterns: Sequence[str] = trainable.DEEP_PROMPT_PATTERNS,
          optimizer: Optional[optax.GradientTransformation] = None,
          eval_period: int = 100,
          log_period: int = 10,
          keep_checkpoints: int = 3,
          seed: int = 0,
          train_split: str = "train",
          eval_split: str = "validation",
          multitask_prompt: str = "shared",
          ensemble_size: int = 1,
          init_trainable_from: Optional[str] = None,
          init_trainable_patterns: Sequence[str] = (r"prompt/.*",),
          skip_nonfinite_updates: bool = False,
          max_consecutive_nonfinite: int = 5,
          eval_task_name: Optional[str] = None,
          remat: bool = False,
          use_hardware_rng: bool = False,
          sweep: Optional[Dict[str, Sequence]] = None,
          sweep_mode: str = "grid",
          activation_dtype: str = "float32") -> dict:
  """Trains the trainable parameters of `model_cls` on `task_name`; returns results.json's dict.

  The loop's arguments (model_dir, train_steps, batch_size, eval_*, log_period, keep_checkpoints, seed,
  trainable_patterns, init_trainable_*, *_nonfinite*) are fit.FitOptions'; the others:
    task_name: MIXTURE_OR_TASK_NAME, a registered encoder task or mixture (python -m prompt_tuning_jax.tasks
      --list); its tasks without `train_split` are evaluated only.
    feature_lengths: TASK_FEATURE_LENGTHS, {'inputs': max tokens}.
    backbone_dir: INITIAL_CHECKPOINT_PATH, a Hugging Face directory; None = packaged MiniLM.
    data_dir: DATA_DIR; None = the data shipped in tasks/data.
    model_cls: called with (config=, num_labels=) to build the module; its head_kind comes from the family.
    optimizer: an optax transformation; default AdamW with linear decay.
    multitask_prompt: for a mixture, 'shared' (one prompt, one head per task) or 'per_task'
      (one prompt and head per task, mixed-task batches).
    ensemble_size: ENSEMBLE_SIZE, K prompts and heads trained together on one task.
    eval_task_name: evaluate on this task or mixture instead (same family and labels; e.g. 'axb' with
      eval_split='test' after training on 'rte').
    remat: REMAT, recompute each backbone layer's activations in the backward pass (less memory).
    use_hardware_rng: USE_HARDWARE_RNG, draw initialisation and dropout from 'unsafe_rbg' (loop.use_hardware_rng).
    sweep, sweep_mode: SWEEP and SWEEP_MODE, members trained together (train_sweep).
    activation_dtype: ACTIVATION_DTYPE, the backbone's activation dtype (BertConfig.dtype).
  The mesh comes from the gin-configured `Partitioner` (NUM_PARTITIONS or MESH_SHAPE).
  """
  options = fit.FitOptions.pick(locals())
  # Every setting is checked before the mesh, MODEL_DIR, backbone or data (validation.py).
  validation.check_run_settings("train", feature_lengths=feature_lengths, feature_keys=("inputs",),
                                **dataclasses.asdict(options))
  check_mixture_settings(multitask_prompt, ensemble_size)
  check_activation_dtype(activation_dtype)
  if sweep is not None:
    return train_sweep(locals())
  run = fit.start(model_dir, batch_size, use_hardware_rng)
  max_length = int(feature_lengths["inputs"])
  names = tasks.task_names(task_name)
  infos = {name: tasks.info(name) for name in names}
  family = next(iter(infos.values())).family
  shared = len(names) == 1 or (multitask_prompt == "shared" and not families.PER_TASK_HEADS[family])
  train_names, eval_names = split_tasks(names, train_split, eval_split, shared, eval_task_name)
  if eval_task_name is not None:
    head_kind({**infos, **{name: tasks.info(name) for name in eval_names}})
  backbone_path = resolve_backbone_dir(backbone_dir)
  vocabulary = vocabularies.wordpiece_vocabulary(backbone_path / "vocab.txt")  # The tasks tokenize with it.
  config, backbone_params = load_backbone(backbone_path)
  config = dataclasses.replace(config, remat=remat, dtype=activation_dtype)
  module = checked_model(build_model(model_cls, config, infos, multitask_prompt, ensemble_size, max_length), config,
                         run, batch_size, max_length, trainable_patterns)
  model = EncoderModel(module, ensemble_size, EncoderBatcher(max_length, data_dir, vocabulary))
  train_data = load_data(model.batcher, names, train_names, eval_names, train_split, eval_split, batch_size, seed)
  describe_data(train_data, names, train_split, eval_split)
  export_metadata = run_metadata(task_name, infos, ensemble_size, multitask_prompt, backbone_path, max_length)
  tx = optimizer or adamw(train_steps=train_steps)
  return fit.fit(run, model, backbone_params, train_data, tx, options, export_metadata)


def run_metadata(task_name: str, infos: Dict[str, tasks.TaskInfo], ensemble_size: int, multitask_prompt: str,
                 backbone_path, max_length: int) -> dict:
  """What every export of the run records beside the model's own: task, tasks, family, labels, backbone."""
  names = list(infos)
  label_names = {name: list(info.label_names) for name, info in infos.items()}
  return {"task": task_name, "tasks": names, "task_family": next(iter(infos.values())).family,
          "ensemble_size": ensemble_size, "multitask_prompt": multitask_prompt if len(names) > 1 else "none",
          "label_names": label_names[names[0]] if len(names) == 1 else label_names,
          "backbone": str(backbone_path), "feature_lengths": {"inputs": max_length}}


def checked_model(module: EncoderClassifier, config, run: fit.Run, batch_size: int, max_length: int,
                  trainable_patterns: Sequence[str]) -> EncoderClassifier:
  """`module` once its prompt fits the backbone's layers and position table and a train step fits the machine's
  memory (validation.py), before any data is loaded or anything compiled."""
  validation.check_prompt(module.prompt, config.num_hidden_layers)
  check_position_table(config, module.max_position(max_length),
                       what=f"TASK_FEATURE_LENGTHS['inputs']={max_length} with a {module.prompt_length()}-token "
                            "prompt")
  validation.check_encoder_step(module, config, batch_size, max_length, trainable_patterns,
                                devices=len(run.partitioner.mesh.devices.flat),
                                model_parallel=run.partitioner.mesh.shape["model"])
  return module


def load_data(batcher: EncoderBatcher, names: Sequence[str], train_names: Sequence[str], eval_names: Sequence[str],
              train_split: str, eval_split: str, batch_size: int, seed: int) -> fit.TrainData:
  """The tasks' training examples (one set, each task's examples keeping its task id) in their batch order,
  and each evaluated task's eval split."""
  task_id = lambda name: names.index(name) if name in names else 0
  train_examples = batcher.concatenate([batcher.load(name, train_split, task_id(name)) for name in train_names])
  eval_sets = {name: batcher.load(name, eval_split, task_id(name)) for name in eval_names}
  return fit.TrainData(train_examples, batcher.train_batches(train_examples, batch_size, seed), eval_sets,
                       selection_metric(eval_names), {name: tasks.info(name).metric for name in eval_names})


def describe_data(train_data: fit.TrainData, names: Sequence[str], train_split: str, eval_split: str) -> None:
  """One line per task: its family, training and evaluation examples and labels."""
  task_ids = train_data.train.task_ids
  for name in dict.fromkeys([*names, *train_data.eval_sets]):
    info, task_id = tasks.info(name), names.index(name) if name in names else 0
    labels = f"; labels {list(info.label_names)}" if info.label_names else ""
    evaluated = len(train_data.eval_sets[name]) if name in train_data.eval_sets else 0
    print(f"Task {name} ({info.family}): {sum(task_ids == task_id):,} {train_split} / {evaluated:,} "
          f"{eval_split} examples{labels}")

# ---------------------------------------------------------------------------------------------------------------
# Sweeps: `train` with SWEEP set (gin/runs/train.gin; training/sweep_settings.py). Every member is built as the
# same command with its swept macros bound would build it alone (its optimizer, its module, its seed's batch
# order), then training/sweep.py trains them together over one frozen backbone. A sweep trains one task without
# an ensemble (ENSEMBLE_SIZE=1); its optimizer must be adamw or adafactor (their learning rate is what varies
# inside one compiled step).


def member_optimizer(a: Mapping[str, Any]):
  """The optimizer `train` would get with the bound macros: gin's train.optimizer evaluated anew (else the
  default AdamW); it must be described (adamw, adafactor) so its learning rate can vary per member."""
  try:
    bound = gin.query_parameter("train.optimizer")
  except ValueError:
    bound = None
  tx = copy.deepcopy(bound) if bound is not None else a["optimizer"] or steps.adamw(train_steps=a["train_steps"])
  described = steps.description(tx)
  if described is None or described.get("optimizer") not in ("adamw", "adafactor"):
    raise errors.ConfigError("SWEEP needs train.optimizer = @adamw() or @adafactor() (its learning rate varies "
                             "per member inside one compiled step); this configuration's optimizer is another.")
  return described


def check_sweep_run(a: Mapping[str, Any]) -> List[Dict[str, Any]]:
  """The members' settings once SWEEP and the run fit a sweep (before anything is built)."""
  sweep_settings.check_sweep(a["sweep"], a["sweep_mode"], sweep_settings.referenced_macros())
  if a["ensemble_size"] != 1:
    raise errors.ConfigError(f"SWEEP trains single members, but ENSEMBLE_SIZE={a['ensemble_size']}; set "
                             "--gin.ENSEMBLE_SIZE=1 (or drop SWEEP).")
  names = tasks.task_names(a["task_name"])
  if len(names) > 1 or a["eval_task_name"] is not None:
    raise errors.ConfigError(f"SWEEP trains and selects on one task, but MIXTURE_OR_TASK_NAME={a['task_name']!r} "
                             f"has {len(names)} (or train.eval_task_name is set); sweep one task at a time.")
  settings = sweep_settings.members(a["sweep"], a["sweep_mode"])
  print(f"SWEEP ({a['sweep_mode']}): {len(settings)} members", flush=True)
  return settings


def build_members(a: Mapping[str, Any], settings, run: fit.Run, config, batcher: EncoderBatcher,
                  infos, train_data: fit.TrainData) -> List[sweeps.Member]:
  """Each member's module (checked against the backbone), optimizer, seed and batch order."""
  out = []
  for index, member_settings in enumerate(settings):
    with sweep_settings.bound_macros(member_settings):
      described = member_optimizer(a)
      module = checked_model(build_model(a["model_cls"], config, infos, a["multitask_prompt"], 1, batcher.max_length),
                                     config, run, a["batch_size"], batcher.max_length, a["trainable_patterns"])
    seed = int(member_settings.get("RANDOM_SEED", a["seed"]))
    out.append(sweeps.Member(index, dict(member_settings), seed, EncoderModel(module, 1, batcher), described,
                            batcher.train_batches(train_data.train, a["batch_size"], seed)))
  return out


def train_sweep(a: Dict[str, Any]) -> dict:
  """`train` with SWEEP: its arguments (locals()) -> results.json's dict (training/sweep.results)."""
  settings = check_sweep_run(a)
  for member_settings in settings:  # Each member's optimizer settings are checked before the run starts.
    with sweep_settings.bound_macros(member_settings):
      member_optimizer(a)
  options = a["options"]
  run = fit.start(a["model_dir"], a["batch_size"], a["use_hardware_rng"])
  max_length = int(a["feature_lengths"]["inputs"])
  names = tasks.task_names(a["task_name"])
  infos = {name: tasks.info(name) for name in names}
  train_names, eval_names = split_tasks(names, a["train_split"], a["eval_split"], True)
  backbone_path = resolve_backbone_dir(a["backbone_dir"])
  vocabulary = vocabularies.wordpiece_vocabulary(backbone_path / "vocab.txt")
  config, backbone_params = load_backbone(backbone_path)
  config = dataclasses.replace(config, remat=a["remat"], dtype=a["activation_dtype"])
  batcher = EncoderBatcher(max_length, a["data_dir"], vocabulary)
  data = load_data(batcher, names, train_names, eval_names, a["train_split"], a["eval_split"],
                           a["batch_size"], a["seed"])
  describe_data(data, names, a["train_split"], a["eval_split"])
  members = build_members(a, settings, run, config, batcher, infos, data)
  metadata = run_metadata(a["task_name"], infos, 1, a["multitask_prompt"], backbone_path, max_length)
  return sweeps.fit_sweep(run, members, backbone_params, data, options, metadata)
