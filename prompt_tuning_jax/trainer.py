"""The training loop for encoder classification: frozen backbone, trained prompt and head.

`train` is the gin-configured entry point behind `python -m prompt_tuning_jax.train`.
It writes under MODEL_DIR: config.gin, parameters.json, metrics.jsonl, tensorboard/,
checkpoints/<step>/, export/best.safetensors and results.json.
"""

import json
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prompt_tuning_jax import data, ensembles, export, loop, metrics, tasks, trainable
from prompt_tuning_jax.checkpoints import Checkpoints
from prompt_tuning_jax.metric_writer import MetricWriter, format_duration
from prompt_tuning_jax.models.bert import check_position_table
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.bank import PromptBank, prompt_template
from prompt_tuning_jax.prompts.deep import DeepPrompt, collapse_reparameterization
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.train_step import TrainState, adamw, make_eval_step, make_train_step

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


def init_params(model: nn.Module, backbone_params, seed: int):
  """The loaded backbone plus freshly initialised prompt and head.

  Runs the model with the backbone given and the 'params' collection mutable, so only
  what is missing is initialised (t5x's fallback-to-scratch) and vocabulary-based
  prompt initializers see the loaded embeddings.
  """
  dummy = jnp.zeros((1, 8), jnp.int32)

  def init(rng, backbone):
    variables = model.apply({"params": {"backbone": backbone}}, dummy, dummy, dummy, rngs={"params": rng},
                            mutable=["params"])[1]
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


def build_model(model_cls: Callable[..., EncoderClassifier], config, num_labels: int, num_tasks: int,
                multitask_prompt: str, ensemble_size: int) -> EncoderClassifier:
  """The configured model, widened for a mixture (one head per task) or an ensemble.

  A mixture trains one shared prompt ('shared', P-Tuning v2's multi-task setting) or one
  prompt per task in mixed-task batches ('per_task', a PromptBank indexed by task id).
  An ensemble of K is a bank of K prompts and K heads; every member sees every example.
  """
  model = model_cls(config=config, num_labels=num_labels)
  if multitask_prompt not in MULTITASK_PROMPTS:
    raise ValueError(f"unknown multitask_prompt {multitask_prompt!r}; use one of {MULTITASK_PROMPTS}.")
  if ensemble_size < 1:
    raise ValueError(f"ENSEMBLE_SIZE must be >= 1, got {ensemble_size}.")
  if num_tasks > 1 and ensemble_size > 1:
    raise ValueError(f"an ensemble trains on one task, but MIXTURE_OR_TASK_NAME is a mixture of {num_tasks} tasks.")
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
  return model.clone(prompt=prompt, num_heads=members)


def evaluate(eval_step, trained, frozen, examples: data.Examples, batch_size: int, max_length: int,
             num_labels: int):
  """Returns (metrics dict, predictions [n]); see ensembles.classification_metrics."""
  chunks = []
  for batch in data.eval_batches(examples, batch_size, max_length):
    n = int(batch["weights"].sum())
    chunks.append(np.asarray(eval_step(trained, frozen, batch))[:, :n])
  logits = np.empty((chunks[0].shape[0], len(examples), chunks[0].shape[-1]), np.float32)
  logits[:, data.eval_order(examples)] = np.concatenate(chunks, axis=1)
  return ensembles.classification_metrics(logits, examples.labels, num_labels)


def evaluate_tasks(eval_step, trained, frozen, eval_sets: Dict[str, data.Examples], label_names, batch_size: int,
                   max_length: int) -> dict:
  """Metrics of every task; with several tasks, each prefixed 'task/' and 'accuracy' and
  'loss' are the means over tasks."""
  if len(eval_sets) == 1:
    (name, examples), = eval_sets.items()
    return evaluate(eval_step, trained, frozen, examples, batch_size, max_length, len(label_names[name]))[0]
  out = {}
  for name, examples in eval_sets.items():
    task_metrics, _ = evaluate(eval_step, trained, frozen, examples, batch_size, max_length, len(label_names[name]))
    out |= {f"{name}/{k}": v for k, v in task_metrics.items()}
  for key in ("accuracy", "loss"):
    out[key] = float(np.mean([out[f"{name}/{key}"] for name in eval_sets]))
  return out


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
          init_trainable_patterns: Sequence[str] = (r"prompt/.*",)) -> dict:
  """Trains the trainable parameters of `model_cls` on `task_name`; returns results.json's dict.

  Args:
    model_dir: MODEL_DIR, all outputs; rerunning with the same MODEL_DIR resumes.
    task_name: MIXTURE_OR_TASK_NAME, a registered encoder-classification task or mixture.
    feature_lengths: TASK_FEATURE_LENGTHS, {'inputs': max tokens}.
    train_steps: TRAIN_STEPS, absolute (includes steps of a restored checkpoint).
    batch_size: BATCH_SIZE.
    backbone_dir: INITIAL_CHECKPOINT_PATH, a Hugging Face directory; None = packaged MiniLM.
    data_dir: DATA_DIR; None = the data shipped in tasks/data.
    model_cls: called with (config=, num_labels=) to build the model.
    trainable_patterns: regexes over parameter paths; the rest stays frozen.
    optimizer: an optax transformation; default AdamW with linear decay.
    eval_period: evaluate, checkpoint and maybe export every this many steps (and at the end).
    multitask_prompt: for a mixture, 'shared' (one prompt, one head per task) or 'per_task'
      (one prompt and head per task, mixed-task batches).
    ensemble_size: ENSEMBLE_SIZE, K prompts and heads trained together on one task.
    init_trainable_from: an export (.safetensors) whose tensors matching
      init_trainable_patterns replace the fresh initialisation (MPT-2: a task's prompt
      starts from a multi-task run's shared prompt).
  """
  started = time.perf_counter()
  model_dir = prepare_model_dir(model_dir)
  max_length = int(feature_lengths["inputs"])
  names = tasks.task_names(task_name)
  label_names = {name: tasks.LABEL_NAMES[name] for name in names}

  backbone_path = resolve_backbone_dir(backbone_dir)
  tasks.settings.set_data_dir(data_dir)
  tasks.settings.set_vocab_file(backbone_path / "vocab.txt")
  config, backbone_params = load_backbone(backbone_path)
  model = build_model(model_cls, config, max(len(v) for v in label_names.values()), len(names), multitask_prompt,
                      ensemble_size)
  check_position_table(config, model.max_position(max_length),
                       what=f"TASK_FEATURE_LENGTHS['inputs']={max_length} with a {model.prompt_length()}-token "
                            "prompt")
  tx = optimizer or adamw(train_steps=train_steps)
  (model_dir / "config.gin").write_text(gin.operative_config_str())

  train_examples = data.concatenate([data.load_examples(name, train_split, max_length, task_id=i)
                                     for i, name in enumerate(names)])
  eval_sets = {name: data.load_examples(name, eval_split, max_length, task_id=i) for i, name in enumerate(names)}
  batches = data.TrainBatches(train_examples, batch_size, max_length, seed)

  params = init_params(model, backbone_params, seed)
  if init_trainable_from:
    params = export.restore_matching(params, init_trainable_from, init_trainable_patterns)
    print(f"Initialised {list(init_trainable_patterns)} from {init_trainable_from}.")
  trained, frozen = trainable.split_params(params, trainable_patterns)
  report = parameter_report(model, params, trained)
  for name in names:
    print(f"Task {name}: {sum(train_examples.task_ids == names.index(name)):,} train / "
          f"{len(eval_sets[name]):,} {eval_split} examples; labels {list(label_names[name])}")
  print(f"Trainable parameters: {report['trainable']:,} = {report['share_of_backbone_percent']:.3f}% of the "
        f"backbone's {report['backbone']:,} ({len(trainable.flatten(trained))} tensors); exported artifact "
        f"{report['export_tensor_bytes']:,} bytes of tensors", flush=True)
  (model_dir / "parameters.json").write_text(json.dumps(report, indent=1))

  state = TrainState(jnp.zeros((), jnp.int32), trained, tx.init(trained))
  checkpoints = Checkpoints(model_dir, keep=keep_checkpoints)
  extra = {"best_accuracy": None, "best_step": None}
  if checkpoints.latest_step() is not None:
    state, extra = checkpoints.restore(state)
    print(f"Restored checkpoint {checkpoints.directory / str(int(state.step))} (step {int(state.step)}).", flush=True)

  train_step = jax.jit(make_train_step(model.apply, tx, ensemble_size), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(model.apply, ensemble_size))
  run_eval = lambda trained: evaluate_tasks(eval_step, trained, frozen, eval_sets, label_names,
                                            eval_batch_size or batch_size, max_length)
  writer = MetricWriter(model_dir)
  export_path = model_dir / "export" / "best.safetensors"
  export_metadata = {"task": task_name, "tasks": list(names), "ensemble_size": ensemble_size,
                     "multitask_prompt": multitask_prompt if len(names) > 1 else "none",
                     "label_names": list(label_names[names[0]]) if len(names) == 1 else
                                    {k: list(v) for k, v in label_names.items()},
                     **model_metadata(model, backbone_path)}
  save_best = lambda step, trained, scores: export.save_export(
      export_path, exportable(model, trained), {**export_metadata, "step": step, "metric": scores})
  state, last_eval, extra = loop.run(
      state, train_step=train_step, frozen=frozen, batch_at=batches.batch, rng=jax.random.key(seed),
      train_steps=train_steps, eval_period=eval_period, log_period=log_period, evaluate=run_eval, export=save_best,
      checkpoints=checkpoints, writer=writer, extra=extra, eval_split=eval_split)
  step = int(state.step)
  checkpoints.close()
  writer.close()

  if last_eval is None:  # Resumed at the end: evaluate the final state once.
    last_eval = run_eval(state.trainable)
  results = {
      "task": task_name, "tasks": list(names), "step": step, f"{eval_split}_accuracy": last_eval["accuracy"],
      f"{eval_split}_metrics": last_eval,
      "best_accuracy": extra["best_accuracy"], "best_step": extra["best_step"],
      "majority_class_accuracy": float(np.mean([metrics.majority_class_accuracy(e.labels)
                                                for e in eval_sets.values()])),
      **report, "export_path": str(export_path),
      "export_bytes": export_path.stat().st_size if export_path.exists() else None,
      "wall_seconds": time.perf_counter() - started,
  }
  (model_dir / "results.json").write_text(json.dumps(results, indent=1))
  print_summary(results, eval_split)
  return results


def parameter_report(model: EncoderClassifier, params, trained) -> dict:
  """Trainable count, its share of the backbone, and the tensor bytes of the export."""
  n_trainable, n_backbone = trainable.count(trained), trainable.count(params["backbone"])
  return {"trainable": n_trainable, "backbone": n_backbone, "total": trainable.count(params),
          "share_of_backbone_percent": 100.0 * n_trainable / n_backbone,
          "trainable_tensors": sorted(trainable.flatten(trained)),
          "export_tensor_bytes": int(sum(v.nbytes for v in exportable(model, jax.device_get(trained)).values()))}


def print_summary(results: dict, eval_split: str) -> None:
  print("=" * 72)
  print(f"{results['task']} {eval_split} accuracy: {results[f'{eval_split}_accuracy']:.2f}% at step "
        f"{results['step']} (best {results['best_accuracy']:.2f}% at step {results['best_step']})")
  details = {k: v for k, v in results[f"{eval_split}_metrics"].items() if k not in ("accuracy", "loss")}
  if details:
    print(f"  {loop.format_metrics(details)}")
  print(f"majority-class baseline:     {results['majority_class_accuracy']:.2f}%"
        f"{' (mean over tasks)' if len(results['tasks']) > 1 else ''}")
  print(f"trainable parameters:        {results['trainable']:,} "
        f"({results['share_of_backbone_percent']:.3f}% of the {results['backbone']:,}-parameter backbone)")
  if results["export_bytes"] is not None:
    print(f"exported prompt + head:      {results['export_path']} ({results['export_bytes']:,} bytes)")
  print(f"wall time:                   {format_duration(results['wall_seconds'])}")
  print("=" * 72, flush=True)
