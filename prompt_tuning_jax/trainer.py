"""The encoder trainer: frozen backbone, trained prompt and head, for every task family
(classification, multiple choice, token classification, span extraction; families.py).

`train` is the gin-configured entry point behind `python -m prompt_tuning_jax.train`.
It writes under MODEL_DIR: config.gin, parameters.json, metrics.jsonl, tensorboard/,
checkpoints/<step>/, export/best.safetensors and results.json.
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_tuning_jax import data, evaluation, export, families, loop, metrics, partitioning, tasks, trainable
from prompt_tuning_jax.checkpoints import Checkpoints
from prompt_tuning_jax.metric_writer import MetricWriter, format_duration
from prompt_tuning_jax.models.bert import check_position_table
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.bank import PromptBank, prompt_template
from prompt_tuning_jax.prompts.deep import DeepPrompt, collapse_reparameterization
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.train_step import TrainState, adamw, make_eval_step, make_train_step, skip_nonfinite

MULTITASK_PROMPTS = ("shared", "per_task")


def prepare_model_dir(model_dir) -> Path:
  path = Path(model_dir).expanduser()
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write_test"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise OSError(f"MODEL_DIR {path} is not writable ({e.strerror}). Choose another --gin.MODEL_DIR.") from e
  return path


def init_params(model: nn.Module, backbone_params, seed: int, input_shape=(1, 8), model_kwargs=None):
  """The loaded backbone plus freshly initialised prompt and head.

  Runs the model with the backbone given and the 'params' collection mutable, so only
  what is missing is initialised (t5x's fallback-to-scratch) and vocabulary-based
  prompt initializers see the loaded embeddings. input_shape: of the dummy ids ([1, K, T] for choices);
  model_kwargs: keyword arguments of that call (T5: enable_dropout=False).
  """
  dummy = jnp.zeros(input_shape, jnp.int32)

  def init(rng, backbone):
    variables = model.apply({"params": {"backbone": backbone}}, dummy, dummy, dummy, rngs={"params": rng},
                            mutable=["params"], **(model_kwargs or {}))[1]
    return nn.meta.unbox(variables["params"])

  rng = jax.random.key(seed)
  made = set(trainable.flatten(jax.eval_shape(init, rng, backbone_params)["backbone"]))
  if made != set(trainable.flatten(backbone_params)):
    raise ValueError("loaded backbone parameters do not match the model's backbone: "
                     f"{sorted(made ^ set(trainable.flatten(backbone_params)))[:10]}")
  fresh = jax.jit(lambda r, b: {k: v for k, v in init(r, b).items() if k != "backbone"})(rng, backbone_params)
  return {**fresh, "backbone": jax.tree.map(jnp.asarray, backbone_params)}


def exportable(model: EncoderClassifier, trained) -> Dict[str, np.ndarray]:
  """Trainable parameters with deep prompts' reparameterization collapsed (per bank member)."""
  trained = dict(trained)
  bank, template = isinstance(model.prompt, PromptBank), prompt_template(model.prompt)
  if isinstance(template, DeepPrompt) and template.reparam_hidden is not None and "prompt" in trained:
    c = model.config
    collapse = lambda p: {"prefix": collapse_reparameterization(template, p, c.num_hidden_layers,
                                                                c.num_attention_heads, c.head_dim)}
    trained["prompt"] = ({name: collapse(p) for name, p in trained["prompt"].items()} if bank else
                         collapse(trained["prompt"]))
  return {k: np.asarray(v) for k, v in trainable.flatten(trained).items()}


def model_metadata(model: EncoderClassifier, backbone_path: Path) -> dict:
  """What a reader of an exported prompt needs to know about the model it fits."""
  c, template = model.config, prompt_template(model.prompt)
  return {"backbone": str(backbone_path), "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
          "num_attention_heads": c.num_attention_heads, "prompt_kind": type(template).__name__ if template else "none",
          "prompt_length": model.prompt_length(),
          "position_policy": getattr(template, "position_policy", "none"), "pooling": model.pooling}


def head_kind(infos: Dict[str, tasks.TaskInfo]) -> str:
  """The head kind every task of a mixture shares, or an error naming the tasks' families."""
  kinds = {families.HEAD_KIND[info.family] for info in infos.values()}
  if len(kinds) > 1:
    raise ValueError("a mixture's tasks must share a head kind (classification and multiple choice can mix), but "
                     f"these are {sorted({name: info.family for name, info in infos.items()}.items())}.")
  return kinds.pop()


def build_model(model_cls: Callable[..., EncoderClassifier], config, infos: Dict[str, tasks.TaskInfo],
                multitask_prompt: str, ensemble_size: int) -> EncoderClassifier:
  """The configured model with the tasks' head kind, widened for a mixture or an ensemble.

  A mixture trains one shared prompt ('shared', P-Tuning v2's multi-task setting) or one
  prompt per task in mixed-task batches ('per_task', a PromptBank indexed by task id), and
  one head per task where label sets differ (families.PER_TASK_HEADS; QA tasks share one).
  An ensemble of K is a bank of K prompts and K heads; every member sees every example.
  """
  kind, num_tasks = head_kind(infos), len(infos)
  num_labels = max(families.head_outputs(info.family, info.label_names) for info in infos.values())
  model = model_cls(config=config, num_labels=num_labels).clone(head_kind=kind)
  if multitask_prompt not in MULTITASK_PROMPTS:
    raise ValueError(f"unknown multitask_prompt {multitask_prompt!r}; use one of {MULTITASK_PROMPTS}.")
  if ensemble_size < 1:
    raise ValueError(f"ENSEMBLE_SIZE must be >= 1, got {ensemble_size}.")
  if num_tasks > 1 and ensemble_size > 1:
    raise ValueError(f"an ensemble trains on one task, but MIXTURE_OR_TASK_NAME is a mixture of {num_tasks} tasks.")
  if ensemble_size > 1 and kind != "sequence":
    raise ValueError(f"ensembles combine class probabilities: they need a classification or multiple-choice task, "
                     f"not {next(iter(infos.values())).family}.")
  members = max(num_tasks, ensemble_size)
  if members == 1:
    return model
  prompt = model.prompt
  if ensemble_size > 1 or multitask_prompt == "per_task":
    if not isinstance(prompt, (DeepPrompt, InputPrompt)):
      what = "an ensemble" if ensemble_size > 1 else "multitask_prompt='per_task'"
      raise ValueError(f"{what} needs a bank of deep or input prompts, but the method's prompt is "
                       f"{type(prompt).__name__ if prompt is not None else 'None'}; use gin/methods/deep_prompt.gin, "
                       "prefix_tuning.gin or lester.gin.")
    prompt = PromptBank(prompt, members)
  per_task_heads = ensemble_size > 1 or families.PER_TASK_HEADS[next(iter(infos.values())).family]
  return model.clone(prompt=prompt, num_heads=members if per_task_heads else 1)


def selection_metric(names: Sequence[str]) -> str:
  """The metric that picks the best checkpoint: the tasks' own when they share it, else 'score', the mean of
  each task's own (e.g. SuperGLUE: accuracy, MultiRC F1a, ReCoRD F1)."""
  own = {tasks.info(name).metric for name in names}
  return own.pop() if len(own) == 1 else "score"


def evaluate_tasks(eval_step, trained, frozen, eval_sets: Dict[str, data.Examples], batch_size: int,
                   max_length: int) -> dict:
  """Metrics of every task (evaluation.score); with several tasks, each prefixed 'task/', and the selection
  metric and 'loss' are the means over tasks."""
  scores = {name: evaluation.score(name, examples, evaluation.predict(eval_step, trained, frozen, examples,
                                                                      batch_size, max_length))
            for name, examples in eval_sets.items()}
  if len(scores) == 1:
    return next(iter(scores.values()))
  out = {f"{name}/{k}": v for name, task_scores in scores.items() for k, v in task_scores.items()}
  out[selection_metric(list(scores))] = float(np.mean([s[tasks.info(n).metric] for n, s in scores.items()]))
  out["loss"] = float(np.mean([s["loss"] for s in scores.values()]))
  return out


def split_tasks(names: Sequence[str], train_split: str, eval_split: str, shared: bool,
                eval_task_name: Optional[str] = None) -> Tuple[List[str], List[str]]:
  """(tasks to train on, tasks to evaluate): those with the split. Evaluation-only tasks (MRQA's out-of-domain
  sets; `eval_task_name`'s, e.g. AX-b after RTE) need what the trained tasks use: one prompt and head (`shared`)."""
  splits = {name: tasks.info(name).source.splits for name in names}
  trained = [name for name in names if train_split in splits[name]]
  if not trained:
    raise ValueError(f"no task of {list(names)} has a {train_split!r} split ({splits}); evaluation-only tasks "
                     "(e.g. axb, axg) are evaluated with train.eval_task_name after training on another task.")
  evaluated = [name for name in names if eval_split in splits[name]]
  if eval_task_name is not None:
    evaluated = list(tasks.task_names(eval_task_name))
    missing = [name for name in evaluated if eval_split not in tasks.info(name).source.splits]
    if missing:
      raise ValueError(f"{missing} have no {eval_split!r} split; set train.eval_split.")
  if not evaluated:
    raise ValueError(f"no task of {list(names)} has a {eval_split!r} split ({splits}).")
  untrained = [name for name in evaluated if name not in trained]
  if untrained and not shared:
    raise ValueError(f"{untrained} would be evaluated with a prompt or head no training example reaches; "
                     "evaluation-only tasks need one shared prompt and head (a single training task, or QA tasks).")
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
          use_hardware_rng: bool = False) -> dict:
  """Trains the trainable parameters of `model_cls` on `task_name`; returns results.json's dict.

  Args:
    model_dir: MODEL_DIR, all outputs; rerunning with the same MODEL_DIR resumes.
    task_name: MIXTURE_OR_TASK_NAME, a registered encoder task or mixture (python -m prompt_tuning_jax.tasks
      --list); its tasks without `train_split` are evaluated only.
    feature_lengths: TASK_FEATURE_LENGTHS, {'inputs': max tokens}.
    train_steps: TRAIN_STEPS, absolute (includes steps of a restored checkpoint).
    batch_size: BATCH_SIZE.
    backbone_dir: INITIAL_CHECKPOINT_PATH, a Hugging Face directory; None = packaged MiniLM.
    data_dir: DATA_DIR; None = the data shipped in tasks/data.
    model_cls: called with (config=, num_labels=) to build the model; its head_kind is set from the tasks'
      family.
    trainable_patterns: regexes over parameter paths; the rest stays frozen.
    optimizer: an optax transformation; default AdamW with linear decay.
    eval_period: evaluate, checkpoint and maybe export every this many steps (and at the end).
    multitask_prompt: for a mixture, 'shared' (one prompt, one head per task) or 'per_task'
      (one prompt and head per task, mixed-task batches).
    ensemble_size: ENSEMBLE_SIZE, K prompts and heads trained together on one task.
    init_trainable_from: an export (.safetensors) whose tensors matching
      init_trainable_patterns replace the fresh initialisation (MPT-2: a task's prompt
      starts from a multi-task run's shared prompt).
    skip_nonfinite_updates: skip updates whose gradients are NaN or infinite (optax.apply_if_finite: parameters,
      optimizer state and schedule unchanged; counted in metrics.jsonl's skipped_updates) instead of stopping.
    max_consecutive_nonfinite: with skip_nonfinite_updates, more than this many in a row stop training (the last
      good checkpoint stays).
    eval_task_name: evaluate on this task or mixture instead (same family and labels; e.g. 'axb' with
      eval_split='test' after training on 'rte').
    remat: REMAT, recompute each backbone layer's activations in the backward pass (less memory, ~1/3 more
      compute).
    use_hardware_rng: USE_HARDWARE_RNG, draw initialisation and dropout from 'unsafe_rbg' (loop.use_hardware_rng).

  The mesh comes from the gin-configured `Partitioner` (NUM_PARTITIONS or MESH_SHAPE).
  """
  started = time.perf_counter()
  loop.use_hardware_rng(use_hardware_rng)
  partitioner = partitioning.Partitioner()  # First: multi-host initialisation precedes any computation.
  partitioner.batch_sharding(batch_size)  # A batch the mesh cannot split fails before any work.
  model_dir = prepare_model_dir(model_dir)
  max_length = int(feature_lengths["inputs"])
  names = tasks.task_names(task_name)
  infos = {name: tasks.info(name) for name in names}
  family = next(iter(infos.values())).family
  shared = len(names) == 1 or (multitask_prompt == "shared" and not families.PER_TASK_HEADS[family])
  train_names, eval_names = split_tasks(names, train_split, eval_split, shared, eval_task_name)
  if eval_task_name is not None:
    head_kind({**infos, **{name: tasks.info(name) for name in eval_names}})
  key = selection_metric(eval_names)

  backbone_path = resolve_backbone_dir(backbone_dir)
  tasks.settings.set_data_dir(data_dir)
  tasks.settings.set_vocab_file(backbone_path / "vocab.txt")
  config, backbone_params = load_backbone(backbone_path)
  config = dataclasses.replace(config, remat=remat)
  model = build_model(model_cls, config, infos, multitask_prompt, ensemble_size)
  check_position_table(config, model.max_position(max_length),
                       what=f"TASK_FEATURE_LENGTHS['inputs']={max_length} with a {model.prompt_length()}-token "
                            "prompt")
  tx = skip_nonfinite(optimizer or adamw(train_steps=train_steps),
                      max_consecutive_nonfinite if skip_nonfinite_updates else None)

  task_id = lambda name: names.index(name) if name in names else 0
  train_examples = data.concatenate([data.load_examples(name, train_split, max_length, task_id=task_id(name))
                                     for name in train_names])
  eval_sets = {name: data.load_examples(name, eval_split, max_length, task_id=task_id(name)) for name in eval_names}
  batches = data.TrainBatches(train_examples, batch_size, max_length, seed)

  input_shape = train_examples.input_ids[0][None].shape
  params = init_params(model, backbone_params, seed, input_shape=input_shape)
  if init_trainable_from:
    params = export.restore_matching(params, init_trainable_from, init_trainable_patterns)
    print(f"Initialised {list(init_trainable_patterns)} from {init_trainable_from}.")
  trained, frozen = trainable.split_params(params, trainable_patterns)
  report = trainable.parameter_report(params, trained, exportable(model, jax.device_get(trained)))
  for name in dict.fromkeys([*names, *eval_names]):
    labels = f"; labels {list(tasks.info(name).label_names)}" if tasks.info(name).label_names else ""
    print(f"Task {name} ({tasks.info(name).family}): {sum(train_examples.task_ids == task_id(name)):,} "
          f"{train_split} / {len(eval_sets[name]) if name in eval_sets else 0:,} {eval_split} examples{labels}")
  print(f"Trainable parameters: {report['trainable']:,} = {report['share_of_backbone_percent']:.3f}% of the "
        f"backbone's {report['backbone']:,} ({len(trainable.flatten(trained))} tensors); exported artifact "
        f"{report['export_tensor_bytes']:,} bytes of tensors", flush=True)
  # Written once the data and prompt file have loaded: a run that fails on them leaves an earlier
  # run's config.gin as it was.
  (model_dir / "config.gin").write_text(gin.operative_config_str())
  (model_dir / "parameters.json").write_text(json.dumps(report, indent=1))

  state, frozen, state_sh, frozen_sh = place_state(partitioner, model, input_shape, trained, frozen, tx)
  checkpoints = Checkpoints(model_dir, keep=keep_checkpoints)
  extra = {f"best_{key}": None, "best_step": None}
  state, extra = loop.resume(checkpoints, state, extra, batches.state_dict)

  state, train_step = compile_train_step(partitioner, make_train_step(model.apply, tx, ensemble_size,
                                                                      model.head_kind),
                                         state, frozen, state_sh, frozen_sh, batches, seed, model_dir)
  eval_step = partitioner.jit_eval_step(make_eval_step(model.apply, ensemble_size), state_sh.trainable, frozen_sh,
                                        eval_batch_size or batch_size)
  run_eval = lambda trained: evaluate_tasks(eval_step, trained, frozen, eval_sets, eval_batch_size or batch_size,
                                            max_length)
  writer = MetricWriter(model_dir)
  export_path = model_dir / "export" / "best.safetensors"
  label_names = {name: list(info.label_names) for name, info in infos.items()}
  export_metadata = {"task": task_name, "tasks": list(names), "task_family": family, "ensemble_size": ensemble_size,
                     "multitask_prompt": multitask_prompt if len(names) > 1 else "none",
                     "label_names": label_names[names[0]] if len(names) == 1 else label_names,
                     **model_metadata(model, backbone_path)}
  save_best = lambda step, trained, scores: export.save_export(
      export_path, exportable(model, trained), {**export_metadata, "step": step, "metric": scores})
  state, last_eval, extra = loop.run(
      state, train_step=train_step, frozen=frozen, rng=jax.random.key(seed),
      batch_at=lambda step: partitioner.global_batch(batches.batch(step)),
      train_steps=train_steps, eval_period=eval_period, log_period=log_period, evaluate=run_eval, export=save_best,
      checkpoints=checkpoints, writer=writer, extra=extra, eval_split=eval_split, best_metric=key,
      data_state=batches.state_dict,
      max_consecutive_skips=max_consecutive_nonfinite if skip_nonfinite_updates else None)
  step = int(state.step)
  checkpoints.close()
  writer.close()

  if last_eval is None:  # Resumed at the end: evaluate the final state once.
    last_eval = run_eval(state.trainable)
  classes = all(families.HEAD_KIND[tasks.info(name).family] == "sequence" for name in eval_names)
  results = {
      "task": task_name, "tasks": list(names), "step": step, "selection_metric": key,
      f"{eval_split}_{key}": last_eval[key], f"{eval_split}_metrics": last_eval,
      f"best_{key}": extra[f"best_{key}"], "best_step": extra["best_step"],
      "majority_class_accuracy": float(np.mean([metrics.majority_class_accuracy(e.labels)
                                                for e in eval_sets.values()])) if classes else None,
      **report, "export_path": str(export_path),
      "export_bytes": export_path.stat().st_size if export_path.exists() else None,
      "wall_seconds": time.perf_counter() - started,
  }
  (model_dir / "results.json").write_text(json.dumps(results, indent=1))
  print_summary(results, eval_split)
  return results


def place_state(partitioner: partitioning.Partitioner, model: nn.Module, input_shape, trained, frozen,
                tx: optax.GradientTransformation, model_kwargs=None):
  """A fresh TrainState and the frozen parameters placed on the partitioner's mesh by the parameters' logical
  axes -> (state, frozen, state shardings, frozen shardings). input_shape: of the model's dummy ids;
  model_kwargs: keyword arguments of the model's call (T5: enable_dropout=False)."""
  dummy = jnp.zeros(input_shape, jnp.int32)
  trained, opt_state, frozen, (trained_sh, opt_sh, frozen_sh) = partitioner.place(
      trained, frozen, partitioning.param_axes(model, dummy, dummy, dummy, **(model_kwargs or {})), tx.init)
  state = TrainState(jax.device_put(jnp.zeros((), jnp.int32), partitioner.replicated), trained, opt_state)
  return state, frozen, TrainState(partitioner.replicated, trained_sh, opt_sh), frozen_sh


def compile_train_step(partitioner: partitioning.Partitioner, step_fn: Callable, state: TrainState, frozen, state_sh,
                       frozen_sh, batches, seed: int, model_dir: Path):
  """step_fn jitted on the mesh (state donated) and compiled for the batch at state.step, whose XLA memory
  analysis goes into the printed memory report and MODEL_DIR/memory.json -> (state on its shardings, step)."""
  state = jax.device_put(state, state_sh)  # A restored state, too, must have exactly the compiled shardings.
  train_step = partitioner.jit_train_step(step_fn, state_sh, frozen_sh, batches.batch_size)
  first_batch = partitioner.global_batch(batches.batch(int(state.step)))
  memory = partitioner.memory_report(state, frozen, train_step.compiled(state, frozen, first_batch,
                                                                          jax.random.key(seed)))
  print_memory(memory)
  (model_dir / "memory.json").write_text(json.dumps(memory, indent=1))
  return state, train_step


def print_memory(report: dict) -> None:
  """One line: where the memory goes (totals; per device when the mesh splits them)."""
  per_device = report["devices"] > 1
  part = lambda name: (f"{report[f'{name}_mib']:,.1f} MiB" +
                       (f" ({report[f'{name}_per_device_mib']:,.1f} per device)" if per_device else ""))
  temporaries = report["step_temporaries_per_device_mib"]
  print(f"Memory: frozen parameters {part('frozen_parameters')}, trainable {part('trainable_parameters')}, "
        f"optimizer state {part('optimizer_state')}, train-step activations and gradients (XLA estimate) "
        f"{'unknown' if temporaries is None else f'{temporaries:,.1f} MiB'}"
        f"{' per device' if per_device else ''}; mesh {report['mesh']}", flush=True)


def print_summary(results: dict, eval_split: str) -> None:
  """Prints results.json's headline: the selection metric (accuracy unless results name another) and the rest."""
  key = results.get("selection_metric", "accuracy")
  unit = "" if key == "loss" else "%"
  print("=" * 72)
  print(f"{results['task']} {eval_split} {key}: {results[f'{eval_split}_{key}']:.2f}{unit} at step "
        f"{results['step']} (best {results[f'best_{key}']:.2f}{unit} at step {results['best_step']})")
  details = {k: v for k, v in results[f"{eval_split}_metrics"].items() if k not in (key, "loss")}
  if details:
    print(f"  {loop.format_metrics(details)}")
  if results.get("majority_class_accuracy") is not None:
    print(f"majority-class baseline:     {results['majority_class_accuracy']:.2f}%"
          f"{' (mean over tasks)' if len(results['tasks']) > 1 else ''}")
  print(f"trainable parameters:        {results['trainable']:,} "
        f"({results['share_of_backbone_percent']:.3f}% of the {results['backbone']:,}-parameter backbone)")
  if results["export_bytes"] is not None:
    print(f"exported prompt + head:      {results['export_path']} ({results['export_bytes']:,} bytes)")
  print(f"wall time:                   {format_duration(results['wall_seconds'])}")
  print("=" * 72, flush=True)
