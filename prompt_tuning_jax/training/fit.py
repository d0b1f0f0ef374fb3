"""One `fit` that trains any model of the contract (models/base.py) on a mesh.

The phases, in order: `start` (hardware rng, the partitioner, MODEL_DIR: before any other
computation, so multi-host initialisation comes first), the caller's data and backbone, then
`fit`: parameters (fresh prompt and head beside the loaded backbone, an optional export to
start from, the trainable / frozen split and its report), placement on the mesh, resume,
ahead-of-time compile, the loop (train, log, evaluate through the partitioner, export the
best, checkpoint) and results.json. MODEL_DIR gets config.gin, parameters.json, memory.json,
metrics.jsonl, tensorboard/, checkpoints/<step>/, export/best.safetensors, predictions/ (the best export's
predictions on the eval split, written with it: `predictions_path`) and results.json, and holds run.lock while
the run lives (training/safety.py: one run per MODEL_DIR, a clean stop on SIGTERM / SIGINT, full disks).
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import gin
import jax
import jax.numpy as jnp
import optax

from prompt_tuning_jax import errors, export, predictions, trainable
from prompt_tuning_jax.training import fingerprint, loop, partitioning, safety
from prompt_tuning_jax.training.checkpoints import Checkpoints
from prompt_tuning_jax.training.metric_writer import MetricWriter, drop_records_after, format_duration
from prompt_tuning_jax.models.base import BaseModel
from prompt_tuning_jax.training.steps import TrainState, description, make_train_step, skip_nonfinite
from prompt_tuning_jax.training.evaluator import Evaluator


def prepare_model_dir(model_dir, setting: str = "MODEL_DIR") -> Path:
  """`model_dir` created and probed for writing; `setting` (MODEL_DIR, EVAL_OUTPUT_DIR, ...) names it in errors."""
  path = Path(model_dir).expanduser()
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write_test"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise errors.NotWritableError(f"{setting} {path} is not writable ({e.strerror}). Choose another "
                                  f"--gin.{setting}.") from e
  return path


@dataclasses.dataclass
class Run:
  """A started run: its mesh, its MODEL_DIR and when it started."""
  partitioner: partitioning.Partitioner
  model_dir: Path
  started: float


def start(model_dir, batch_size: int, use_hardware_rng: bool = False, setting: str = "MODEL_DIR") -> Run:
  """The first phase of every run (train, eval, infer), before any computation.

  Takes MODEL_DIR's lock (safety.lock_dir; on the first host only: every host of a multi-host run shares
  the directory): a second run on it is refused here, before anything in it is written. The command line
  releases the lock on exit.
  """
  started = time.perf_counter()
  loop.use_hardware_rng(use_hardware_rng)
  partitioner = partitioning.Partitioner()  # First: multi-host initialisation precedes any computation.
  partitioner.batch_sharding(batch_size)  # A batch the mesh cannot split fails before any work.
  model_dir = prepare_model_dir(model_dir, setting)
  if jax.process_index() == 0:
    safety.lock_dir(model_dir, setting)
  return Run(partitioner, model_dir, started)


@dataclasses.dataclass
class TrainData:
  """What a run trains and evaluates on (from the model's batcher).

  Attributes:
    train: the training examples; batches: their batch order (data.BatchOrder).
    eval_sets: task name -> examples, evaluated at every eval period.
    selection_metric: the metric that picks the best checkpoint; task_metric: each task's own (mixtures).
  """
  train: Any
  batches: Any
  eval_sets: Dict[str, Any]
  selection_metric: str
  task_metric: Optional[Dict[str, str]] = None


@dataclasses.dataclass(frozen=True)
class FitOptions:
  """The loop settings every trainer passes through from its gin parameters of the same names.

  Attributes:
    model_dir: MODEL_DIR, all outputs; rerunning with the same MODEL_DIR resumes.
    train_steps: TRAIN_STEPS, absolute (includes steps of a restored checkpoint).
    batch_size: BATCH_SIZE; eval_batch_size: the evaluation's (default batch_size).
    eval_period: evaluate, checkpoint and maybe export every this many steps (and at the end).
    log_period: log training metrics every this many steps.
    keep_checkpoints: keep the last this many checkpoints (and the best).
    seed: RANDOM_SEED, of the initialisation, dropout and batch order.
    eval_split: the split evaluated (and named in metrics).
    trainable_patterns: regexes over parameter paths; the rest stays frozen.
    init_trainable_from: an export (.safetensors) whose tensors matching init_trainable_patterns replace the
      fresh initialisation (MPT-2: a task's prompt starts from a multi-task run's shared prompt).
    skip_nonfinite_updates: skip updates whose gradients are NaN or infinite (optax.apply_if_finite: parameters,
      optimizer state and schedule unchanged; counted in metrics.jsonl's skipped_updates) instead of stopping.
    max_consecutive_nonfinite: with skip_nonfinite_updates, more than this many in a row stop training (the last
      good checkpoint stays).
  """
  model_dir: str
  train_steps: int
  batch_size: int
  eval_batch_size: Optional[int] = None
  eval_period: int = 100
  log_period: int = 10
  keep_checkpoints: int = 3
  seed: int = 0
  eval_split: str = "validation"
  trainable_patterns: Sequence[str] = (r"prompt/.*",)
  init_trainable_from: Optional[str] = None
  init_trainable_patterns: Sequence[str] = (r"prompt/.*",)
  skip_nonfinite_updates: bool = False
  max_consecutive_nonfinite: int = 5

  @classmethod
  def pick(cls, arguments: Mapping[str, Any]) -> "FitOptions":
    """The options among a trainer's arguments (its locals()), by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in arguments.items() if k in names})

  @property
  def max_consecutive_skips(self) -> Optional[int]:
    return self.max_consecutive_nonfinite if self.skip_nonfinite_updates else None


def initial_parameters(run: Run, model: BaseModel, backbone, data: TrainData, options: FitOptions):
  """(trained, frozen, parameter report): the backbone plus a fresh prompt and head (or an export's
  tensors), split by the trainable patterns."""
  params = model.init_params(jax.random.key(options.seed), backbone, model.batcher.input_shapes(data.train))
  if options.init_trainable_from:
    params = export.restore_matching(params, options.init_trainable_from, options.init_trainable_patterns)
    print(f"Initialised {list(options.init_trainable_patterns)} from {options.init_trainable_from}.")
  trained, frozen = trainable.split_params(params, options.trainable_patterns)
  report = trainable.parameter_report(params, trained, model.exportable(jax.device_get(trained)))
  print(f"Trainable parameters: {report['trainable']:,} = {report['share_of_backbone_percent']:.3f}% of the "
        f"backbone's {report['backbone']:,} ({len(trainable.flatten(trained))} tensors); exported artifact "
        f"{report['export_tensor_bytes']:,} bytes of tensors", flush=True)
  return trained, frozen, report


def write_run_config(run: Run, report: dict) -> None:
  """config.gin and parameters.json, written once the run is accepted (data and prompt file loaded, resume
  checked): a run refused on them leaves an earlier run's files as they were."""
  (run.model_dir / "config.gin").write_text(gin.operative_config_str())
  (run.model_dir / "parameters.json").write_text(json.dumps(report, indent=1))


def place_state(partitioner: partitioning.Partitioner, axes: Dict[str, Any], trained, frozen,
                tx: optax.GradientTransformation):
  """A fresh TrainState and the frozen parameters placed on the partitioner's mesh by the parameters' logical
  axes (BaseModel.param_axes) -> (state, frozen, state shardings, frozen shardings)."""
  trained, opt_state, frozen, (trained_sh, opt_sh, frozen_sh) = partitioner.place(trained, frozen, axes, tx.init)
  state = TrainState(jax.device_put(jnp.zeros((), jnp.int32), partitioner.replicated), trained, opt_state)
  return state, frozen, TrainState(partitioner.replicated, trained_sh, opt_sh), frozen_sh


def compile_train_step(partitioner: partitioning.Partitioner, step_fn, state: TrainState, frozen, state_sh,
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


def fit(run: Run, model: BaseModel, backbone, data: TrainData, tx: optax.GradientTransformation,
        options: FitOptions, export_metadata: Mapping[str, Any]) -> dict:
  """Trains `model`'s trainable parameters; returns results.json's dict (see `results`).

  export_metadata: what every export records beside the model's own (task, tasks, label names, backbone).
  """
  partitioner, key, eval_size = run.partitioner, data.selection_metric, options.eval_batch_size or options.batch_size
  described = description(tx)  # Before the skip wrapper: the settings of the optimizer the user chose.
  tx = skip_nonfinite(tx, options.max_consecutive_skips)
  trained, frozen, report = initial_parameters(run, model, backbone, data, options)
  run_fingerprint = fingerprint.of_run(data.train, trained, options.trainable_patterns, described)
  axes = model.param_axes(model.batcher.input_shapes(data.train))
  state, frozen, state_sh, frozen_sh = place_state(partitioner, axes, trained, frozen, tx)
  checkpoints = Checkpoints(run.model_dir, keep=options.keep_checkpoints)
  state, extra = loop.resume(checkpoints, state, {f"best_{key}": None, "best_step": None},
                             data.batches.state_dict, run_fingerprint)
  write_run_config(run, report)  # The run is accepted.
  drop_records_after(run.model_dir / "metrics.jsonl", int(state.step))  # Those steps are trained again.
  state, train_step = compile_train_step(partitioner, make_train_step(model, tx), state, frozen, state_sh,
                                         frozen_sh, data.batches, options.seed, run.model_dir)
  evaluator = Evaluator(model, partitioner, state_sh.trainable, frozen_sh, data.eval_sets, eval_size, key,
                        data.task_metric)
  writer = MetricWriter(run.model_dir)
  export_path = run.model_dir / "export" / "best.safetensors"
  metadata = {**export_metadata, **model.export_metadata()}

  def save_best(step, trained, scores):
    export.save_export(export_path, model.exportable(trained), {**metadata, "step": step, "metric": scores})
    for name, tensors in model.member_exports(trained).items():  # A bank's prompts, each loadable alone.
      own = {"task": name, "tasks": [name]} if name in export_metadata["tasks"] else {}  # A mixture's task's prompt.
      export.save_export(export_path.parent / f"{name}.safetensors", tensors,
                         {**metadata, **own, "step": step, "metric": scores, "bank_member": name})
    write_predictions(run.model_dir, model, data.eval_sets, evaluator.last_outputs, options.eval_split)
  try:
    with safety.stop_on_signals() as stop_requested:  # Only around the loop: a signal stops after a step.
      state, last_eval, extra = loop.run(
          state, train_step=train_step, frozen=frozen, rng=jax.random.key(options.seed),
          batch_at=lambda step: partitioner.global_batch(data.batches.batch(step)),
          train_steps=options.train_steps, eval_period=options.eval_period, log_period=options.log_period,
          evaluate=lambda trained: evaluator(trained, frozen), export=save_best, checkpoints=checkpoints,
          writer=writer, extra=extra, eval_split=options.eval_split, best_metric=key,
          data_state=data.batches.state_dict, max_consecutive_skips=options.max_consecutive_skips,
          stop_requested=stop_requested)
  finally:
    checkpoints.close()
    writer.close()
  if last_eval is None:  # Resumed at the end: evaluate the final state once.
    last_eval = evaluator(state.trainable, frozen)
  summary = {"step": int(state.step), "last_eval": last_eval, "extra": extra, "report": report,
             "majority": model.majority_class_accuracy(data.eval_sets)}
  out = results(run, export_metadata, data, options, export_path, **summary)
  safety.release_locks(run.model_dir)  # Done with MODEL_DIR (a caller in Python may go on to other work).
  return out


def predictions_path(model_dir: Path, task_name: str, split: str, several: bool) -> Path:
  """Where a run writes a task's predictions: MODEL_DIR/predictions/<split>.jsonl, or for a mixture (`several`
  evaluated tasks) MODEL_DIR/predictions/<task>/<split>.jsonl."""
  root = Path(model_dir) / "predictions"
  return (root / task_name if several else root) / f"{split}.jsonl"


def write_predictions(model_dir: Path, model: BaseModel, eval_sets: Mapping[str, Any],
                      outputs: Mapping[str, Dict[str, Any]], split: str) -> None:
  """Each eval set's predictions.jsonl lines (model.prediction_lines) from the evaluation's `outputs`, written
  with the best export: the predictions of what export/best.safetensors holds, as `eval` of it writes them."""
  for name, examples in eval_sets.items():
    lines = model.prediction_lines(name, examples, outputs[name])
    if lines is not None:
      predictions.write_jsonl(predictions_path(model_dir, name, split, len(eval_sets) > 1), lines)


def results(run: Run, export_metadata: Mapping[str, Any], data: TrainData, options: FitOptions, export_path: Path,
            *, step: int, last_eval: dict, extra: dict, report: dict, majority: Optional[float]) -> dict:
  """results.json's dict, written and printed: the selection metric at the end and at its best, every metric,
  the majority-class baseline, the parameter report, the export and the wall time."""
  key, split = data.selection_metric, options.eval_split
  out = {
      "task": export_metadata["task"], "tasks": list(export_metadata["tasks"]), "step": step,
      "selection_metric": key, f"{split}_{key}": last_eval[key], f"{split}_metrics": last_eval,
      f"best_{key}": extra[f"best_{key}"], "best_step": extra["best_step"], "majority_class_accuracy": majority,
      **report, "export_path": str(export_path),
      "export_bytes": export_path.stat().st_size if export_path.exists() else None,
      "wall_seconds": time.perf_counter() - run.started,
  }
  (run.model_dir / "results.json").write_text(json.dumps(out, indent=1))
  print_summary(out, split)
  return out


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
  best = results[f"best_{key}"]  # None when nothing trained (TRAIN_STEPS=0: an imported prompt evaluated once)
  print(f"{results['task']} {eval_split} {key}: {results[f'{eval_split}_{key}']:.2f}{unit} at step "
        f"{results['step']} " + (f"(best {best:.2f}{unit} at step {results['best_step']})" if best is not None else
                                 "(no training steps)"))
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
