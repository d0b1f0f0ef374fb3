"""A sweep: K members (settings from SWEEP, training/sweep_settings.py) trained by one jit-compiled step over
one frozen backbone, each exactly as the same configuration trained alone.

Members that share a compiled module and optimizer structure form a group: their prompts, heads and
optimizer states are stacked on a leading member axis and one `jax.vmap`ped step trains them, with each
member's own learning rate (a traced scalar: steps.with_learning_rate), initialisation, dropout key and
batch order (seed); the batch carries one slice per member ([K, B, T], each member's batch padded to the
longest of the step). Padded positions are masked, and the encoder's dropout masks do not depend on padding
(dropout.py: a row's mask is a slice of its full-length mask), so a member equals its run alone to float rounding
(~1e-6: the padded matmuls sum in another order, batched matmuls and a traced learning rate round differently,
and Adam's normalised updates can grow such differences over many steps). Sequence-labelling heads' own dropout
(HEAD_DROPOUT on per-token states) still follows the padded shape. Members that differ in module or
schedule (PROMPT_LENGTH, PROMPT_REPARAM_HIDDEN, HEAD_DROPOUT, WARMUP_STEPS) are separate groups of the same
step. The frozen backbone is one argument shared by every group. On a mesh each member's batch rows are split
over the 'data' axis as in a run alone; the members' (small) trained parameters are replicated.

Divergence: a member whose loss or gradients are not finite (with skip_nonfinite_updates: more than
max_consecutive_nonfinite skipped updates in a row) is marked diverged and its parameters and optimizer state
stay as they were before that step; the others go on. Only when every member has diverged does training stop.

MODEL_DIR layout (fit.py's, plus members/): metrics.jsonl (records carry "member"), tensorboard/member_<k>/,
checkpoints/<step>/ (every member's state and best), members/<k>/export/best.safetensors (member k's best
export, loadable by `python -m prompt_tuning_jax.eval` alone) and members/<k>/predictions/, and the winner's
(best held-out selection metric) copied to export/best.safetensors and predictions/; results.json holds the
table of members, their settings, best metric and step, and which diverged.
"""

import dataclasses
import functools
import json
import shutil
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from prompt_tuning_jax import export
from prompt_tuning_jax.data.batching import IGNORE_LABEL
from prompt_tuning_jax.models.base import BaseModel
from prompt_tuning_jax.trainable import merge_params
from prompt_tuning_jax.trainable import split_params as trainable_split
from prompt_tuning_jax.training import fingerprint, fit, loop, partitioning, safety, steps, sweep_settings
from prompt_tuning_jax.training.checkpoints import Checkpoints
from prompt_tuning_jax.training.metric_writer import MetricWriter, Progress, drop_records_after
from prompt_tuning_jax.training.steps import TrainState

# Batch entries with a text axis last, padded to the step's longest member batch (labels: token tasks only).
TEXT_KEYS = ("input_ids", "token_type_ids", "attention_mask", "token_fields", "context_mask")


@dataclasses.dataclass
class Member:
  """One configuration of the sweep. optimizer: its steps.description; batches: its own batch order."""
  index: int
  settings: Dict[str, Any]
  seed: int
  model: BaseModel
  optimizer: Dict[str, Any]
  batches: Any

  @property
  def label(self) -> Dict[str, str]:
    return sweep_settings.label(self.settings)

  @property
  def directory(self) -> str:
    return f"members/{self.index}"


@dataclasses.dataclass
class Group:
  """Members trained by one vmapped step: one module and optimizer structure, their own learning rates."""
  name: str
  members: List[Member]

  @property
  def model(self) -> BaseModel:
    return self.members[0].model

  @property
  def learning_rates(self) -> np.ndarray:
    return np.asarray([m.optimizer["learning_rate"] for m in self.members], np.float32)


def groups_of(members: Sequence[Member]) -> Dict[str, Group]:
  by_key: Dict[tuple, List[Member]] = {}
  for member in members:
    by_key.setdefault(sweep_settings.group_key(member.settings), []).append(member)
  return {f"group_{i}": Group(f"group_{i}", ms) for i, ms in enumerate(by_key.values())}


def _padded(key: str, value: np.ndarray, text_length: int, length: int) -> np.ndarray:
  if value.ndim < 2 or value.shape[-1] != text_length or (key not in TEXT_KEYS and key != "labels"):
    return value
  widths = [(0, 0)] * (value.ndim - 1) + [(0, length - text_length)]
  return np.pad(value, widths, constant_values=IGNORE_LABEL if key == "labels" else 0)


def sweep_batch(groups: Mapping[str, Group], position: int) -> Dict[str, np.ndarray]:
  """{'<group>/<key>': [K_g, B, ...]}: each member's batch at `position` of its own order, padded to the
  longest member batch of its group."""
  out = {}
  for name, group in groups.items():
    parts = [m.batches.batch(position) for m in group.members]
    length = max(p["input_ids"].shape[-1] for p in parts)
    for key in parts[0]:
      out[f"{name}/{key}"] = np.stack([_padded(key, p[key], p["input_ids"].shape[-1], length) for p in parts])
  return out


def _member_step(model: BaseModel, optimizer: Dict[str, Any], max_skips: Optional[int], frozen, step,
                 trainable, opt_state, learning_rate, batch, rng):
  """One member's train step (steps.make_train_step's), its update dropped once the member has diverged."""
  rng = jax.random.fold_in(rng, step)
  loss_fn = lambda t: model.loss_fn(merge_params(t, frozen), batch, rng)
  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
  tx = steps.skip_nonfinite(steps.with_learning_rate(optimizer, learning_rate), max_skips)
  updates, new_opt = tx.update(grads, opt_state["optimizer"], trainable)
  new = optax.apply_updates(trainable, updates)
  if max_skips is None:
    finite = jnp.isfinite(loss) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    bad = ~finite
  else:
    bad = steps.nonfinite_counts(new_opt)["consecutive"] > max_skips
  diverged = opt_state["diverged"] | bad
  keep = lambda fresh, old: jnp.where(diverged, old, fresh)
  new, new_opt = jax.tree.map(keep, new, trainable), jax.tree.map(keep, new_opt, opt_state["optimizer"])
  metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), **stats, "diverged": diverged}
  return new, {"optimizer": new_opt, "diverged": diverged}, metrics


def make_sweep_step(groups: Mapping[str, Group], max_skips: Optional[int]) -> Callable:
  """sweep_step(state, frozen, batch, rngs) -> (state, {group: metrics [K_g]}); every group in one program."""

  def sweep_step(state: TrainState, frozen, batch, rngs):
    trainable, opt_state, metrics = {}, {}, {}
    for name, group in groups.items():
      one = functools.partial(_member_step, group.model, group.members[0].optimizer, max_skips, frozen, state.step)
      group_batch = {k.split("/", 1)[1]: v for k, v in batch.items() if k.startswith(name + "/")}
      trainable[name], opt_state[name], metrics[name] = jax.vmap(one)(
          state.trainable[name], state.opt_state[name], jnp.asarray(group.learning_rates), group_batch, rngs[name])
    return TrainState(state.step + 1, trainable, opt_state), metrics

  return sweep_step


def _stack(trees: Sequence[Any]):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member_trainable(trainable: Mapping[str, Any], groups: Mapping[str, Group], member: Member):
  """Member `member`'s own trained parameters (host arrays) out of the stacked state."""
  for name, group in groups.items():
    if member in group.members:
      i = group.members.index(member)
      return jax.tree.map(lambda x: np.asarray(x[i]), trainable[name])
  raise KeyError(member.index)


def initial_state(run: fit.Run, groups: Mapping[str, Group], backbone, data: fit.TrainData,
                  options: fit.FitOptions):
  """(state, frozen, member 0's parameter report, rngs): every member's fresh prompt and head from its own seed,
  stacked per group, with its optimizer state and a diverged flag; the frozen backbone once."""
  trainable, opt_state, rngs, frozen, report = {}, {}, {}, None, None
  for name, group in groups.items():
    trained, frozen_params, member_report = fit.initial_parameters(
        run, group.model, backbone, data, dataclasses.replace(options, seed=group.members[0].seed))
    trained = [trained] + _other_members(run, group, backbone, data, options)
    frozen, report = frozen if frozen is not None else frozen_params, report or member_report
    optimizers = [steps.skip_nonfinite(steps.with_learning_rate(m.optimizer, m.optimizer["learning_rate"]),
                                       options.max_consecutive_skips) for m in group.members]
    trainable[name] = _stack(trained)
    opt_state[name] = {"optimizer": _stack([tx.init(t) for tx, t in zip(optimizers, trained)]),
                       "diverged": jnp.zeros((len(group.members),), bool)}
    rngs[name] = jnp.stack([jax.random.key(m.seed) for m in group.members])
  state = TrainState(jnp.zeros((), jnp.int32), trainable, opt_state)
  return state, frozen, report, rngs


def _other_members(run: fit.Run, group: Group, backbone, data: fit.TrainData, options: fit.FitOptions) -> List[Any]:
  """The trained parameters of the group's members after the first, each from its own seed: one vmapped
  initialisation when they share the first's module (one trace instead of one per member; jax.random gives each
  key the values it gives alone), else each member's own (e.g. another PROMPT_INIT, or train.init_trainable_from)."""
  rest = group.members[1:]
  if not rest:
    return []
  if options.init_trainable_from or any(m.model.module != group.model.module for m in rest):
    return [fit.initial_parameters(run, m.model, backbone, data, dataclasses.replace(options, seed=m.seed))[0]
            for m in rest]
  shapes = group.model.batcher.input_shapes(data.train)
  fresh = lambda key: {k: v for k, v in group.model.init_params(key, backbone, shapes).items() if k != "backbone"}
  stacked = jax.vmap(fresh)(jnp.stack([jax.random.key(m.seed) for m in rest]))
  out = []
  for i in range(len(rest)):
    params = {**jax.tree.map(lambda x, i=i: x[i], stacked), "backbone": backbone}
    out.append(trainable_split(params, options.trainable_patterns)[0])
  return out


class SweepEvaluator:
  """`__call__(trainable, frozen)` -> [metrics of member k]; `last_outputs[k]`: member k's outputs per eval set."""

  def __init__(self, groups: Mapping[str, Group], partitioner: partitioning.Partitioner,
               eval_sets: Mapping[str, Any], batch_size: int):
    self.groups, self.eval_sets, self.batch_size, self.partitioner = groups, dict(eval_sets), batch_size, partitioner
    self.last_outputs: Dict[int, Dict[str, Dict[str, List[np.ndarray]]]] = {}
    self._steps = {name: jax.jit(functools.partial(self._eval, group.model)) for name, group in groups.items()}

  @staticmethod
  def _eval(model, trainable, frozen, batch):
    return jax.vmap(lambda t: model.eval_batch(merge_params(t, frozen), batch))(trainable)

  def __call__(self, trainable, frozen) -> Dict[int, Dict[str, float]]:
    out = {}
    for task, examples in self.eval_sets.items():
      collected: Dict[int, Dict[str, List]] = {}
      for index, batch in self.groups[next(iter(self.groups))].model.batcher.eval_batches(examples, self.batch_size):
        batch = self.partitioner.global_batch(batch)
        for name, group in self.groups.items():
          for key, value in self._steps[name](trainable[name], frozen, batch).items():
            value = np.asarray(value)
            for i, member in enumerate(group.members):
              rows = collected.setdefault(member.index, {}).setdefault(key, [None] * len(examples))
              for row, example in enumerate(index):
                rows[example] = value[i, row]
      for group in self.groups.values():
        for member in group.members:
          self.last_outputs.setdefault(member.index, {})[task] = collected[member.index]
          out[member.index] = member.model.score_examples(task, examples, collected[member.index])
    return out


def _fresh_extra(members: Sequence[Member]) -> dict:
  return {"members": [{"best": None, "best_step": None, "diverged_at": None} for _ in members]}


def note_divergence(fetched: Sequence[dict], first_step: int, groups: Mapping[str, Group], extra: dict) -> dict:
  """extra with each newly diverged member's first diverged step, printed once."""
  records = [dict(r) for r in extra["members"]]
  for offset, metrics in enumerate(fetched):
    for name, group in groups.items():
      for i, member in enumerate(group.members):
        if bool(metrics[name]["diverged"][i]) and records[member.index]["diverged_at"] is None:
          records[member.index]["diverged_at"] = first_step + offset
          print(f"  member {member.index} ({_settings_text(member)}) diverged at step {first_step + offset} (loss "
                f"{float(metrics[name]['loss'][i])}): its updates stop there, the other members go on.", flush=True)
  return {**extra, "members": records}


def _settings_text(member: Member) -> str:
  return " ".join(f"{k}={v}" for k, v in member.label.items())


def log_members(fetched: Sequence[dict], step: int, groups: Mapping[str, Group], extra: dict,
                writer: MetricWriter, progress: Progress) -> None:
  """Each member's train metrics over the period (its steps before divergence) to metrics.jsonl and
  TensorBoard; the console line shows the live members' mean."""
  first, losses, rows = step - len(fetched) + 1, [], {}
  for name, group in groups.items():
    for i, member in enumerate(group.members):
      diverged_at = extra["members"][member.index]["diverged_at"]
      applied = [m[name] for s, m in enumerate(fetched, first) if diverged_at is None or s < diverged_at]
      if not applied:
        continue
      total = lambda key: sum(float(m[key][i]) for m in applied)
      rows[member.index] = {"loss": total("loss") / len(applied),
                            "accuracy": 100.0 * total("correct") / max(total("count"), 1.0),
                            "grad_norm": total("grad_norm") / len(applied), "tokens": total("tokens")}
      losses.append(rows[member.index]["loss"])
  if not rows:
    return
  mean = lambda key: float(np.mean([r[key] for r in rows.values()]))
  rates = progress.report(step, mean("loss"), mean("accuracy"), sum(r["tokens"] for r in rows.values()))
  for index, row in sorted(rows.items()):
    writer.write("train", step, {k: v for k, v in row.items() if k != "tokens"}, member=index)
  writer.write("train", step, rates)


def evaluate_members(step: int, state: TrainState, evaluate: Callable, groups: Mapping[str, Group], extra: dict,
                     key: str, writer: MetricWriter, split: str, save_best: Callable) -> tuple:
  """Evaluates every member, exports those that improved on their best -> (extra, {member: metrics})."""
  scores, records = evaluate(state.trainable), [dict(r) for r in extra["members"]]
  host = None
  for group in groups.values():
    for member in group.members:
      record, metrics = records[member.index], scores[member.index]
      writer.write(split, step, metrics, member=member.index)
      if record["diverged_at"] is not None and record["diverged_at"] <= step and record["best"] is not None:
        continue  # Its parameters stopped before: nothing new to select.
      if record["best"] is None or metrics[key] > record["best"]:
        record.update(best=metrics[key], best_step=step)
        host = host if host is not None else jax.device_get(state.trainable)
        save_best(member, step, member_trainable(host, groups, member), metrics)
  shown = " ".join(f"{k}:{scores[k][key]:.2f}" for k in sorted(scores))
  print(f"  {split} {key} at step {step} by member: {shown}", flush=True)
  return {**extra, "members": records}, scores


def run_loop(state: TrainState, *, step_fn: Callable, frozen, rngs, groups: Mapping[str, Group],
             batch_at: Callable[[int], dict], options: fit.FitOptions, evaluate: Callable, save_best: Callable,
             checkpoints: Checkpoints, writer: MetricWriter, extra: dict, key: str,
             data_state: Callable[[int], dict], stop_requested: Callable[[], Optional[int]]):
  """loop.drive for a sweep: train, log and evaluate every member, checkpoint all of them together.
  Returns (state, {member: last metrics} or None, extra)."""
  total = sum(len(g.members) for g in groups.values())

  def check(fetched, first, extra):
    extra = note_divergence(fetched, first, groups, extra)
    if all(r["diverged_at"] is not None for r in extra["members"]):
      raise loop.NonFiniteLossError(f"every one of the {total} sweep members diverged (non-finite loss or "
                                    f"gradients) by step {first + len(fetched) - 1}; {loop._kept(checkpoints)}. "
                                    "Lower the learning rates in SWEEP.")  # pylint: disable=protected-access
    return extra

  def log(fetched, step, extra, progress):
    log_members(fetched, step, groups, extra, writer, progress)

  def evaluate_all(step, state, extra):
    extra, scores = evaluate_members(step, state, evaluate, groups, extra, key, writer, options.eval_split,
                                     save_best)
    best = [r["best"] for r in extra["members"] if r["best"] is not None]
    return extra, scores, max(best) if best else None

  hooks = loop.Hooks(keep=lambda step_metrics, state: step_metrics, check=check, log=log, evaluate=evaluate_all)
  return loop.drive(state, train_step=step_fn, frozen=frozen, batch_at=batch_at, rng=rngs,
                    train_steps=options.train_steps, eval_period=options.eval_period,
                    log_period=options.log_period, checkpoints=checkpoints, extra=extra, hooks=hooks,
                    data_state=data_state, stop_requested=stop_requested)


def _data_state(groups: Mapping[str, Group], data: fit.TrainData) -> Callable[[int], dict]:
  """The batch orders' record in checkpoints (loop.resume compares it): every member's seed, in member order."""
  members = sorted((m for g in groups.values() for m in g.members), key=lambda m: m.index)
  batch_size = members[0].batches.batch_size
  return lambda position: {"seed": [m.seed for m in members], "batch_size": batch_size,
                           "examples": len(data.train), "position": position}


def _compile(run: fit.Run, groups, options: fit.FitOptions, state, frozen, frozen_sh, rngs, first_batch):
  """The sweep step jitted (state donated) and compiled for the first batch, with its memory report."""
  partitioner = run.partitioner
  replicated = partitioner.replicated
  batch_sh = NamedSharding(partitioner.mesh, PartitionSpec(None, "data"))  # Each member's rows over 'data'.
  jitted = jax.jit(make_sweep_step(groups, options.max_consecutive_skips),
                   in_shardings=(replicated, frozen_sh, batch_sh, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=0)
  train_step = partitioning.CompiledByInputShape(jitted, key_arg=2)
  state = jax.device_put(state, replicated)
  memory = partitioner.memory_report(state, frozen, train_step.compiled(state, frozen, first_batch, rngs))
  fit.print_memory(memory)
  (run.model_dir / "memory.json").write_text(json.dumps(memory, indent=1))
  return state, train_step


def fit_sweep(run: fit.Run, members: Sequence[Member], backbone, data: fit.TrainData, options: fit.FitOptions,
              export_metadata: Mapping[str, Any]) -> dict:
  """Trains every member together; returns results.json's dict (see `results`)."""
  groups, key, split = groups_of(members), data.selection_metric, options.eval_split
  print(f"Sweep of {len(members)} members in {len(groups)} compiled group(s) over one frozen backbone.", flush=True)
  state, frozen, report, rngs = initial_state(run, groups, backbone, data, options)
  described = {"sweep": [{"member": m.index, **m.label, **m.optimizer} for m in members]}
  run_fingerprint = fingerprint.of_run(data.train, state.trainable, options.trainable_patterns, described)
  model0 = members[0].model
  frozen_sh = run.partitioner.shardings(frozen, model0.param_axes(model0.batcher.input_shapes(data.train)))
  frozen = jax.device_put(frozen, frozen_sh)
  checkpoints = Checkpoints(run.model_dir, keep=options.keep_checkpoints)
  data_state = _data_state(groups, data)
  state, extra = loop.resume(checkpoints, state, _fresh_extra(members), data_state, run_fingerprint)
  fit.write_run_config(run, {**report, "sweep_members": len(members)})
  drop_records_after(run.model_dir / "metrics.jsonl", int(state.step))
  batch_at = lambda position: sweep_batch(groups, position)
  start = int((extra.get("data") or {}).get("position", int(state.step)))
  state, train_step = _compile(run, groups, options, state, frozen, frozen_sh, rngs, batch_at(start))
  evaluator = SweepEvaluator(groups, run.partitioner, data.eval_sets, options.eval_batch_size or options.batch_size)
  writer = MetricWriter(run.model_dir)

  def save_best(member: Member, step: int, trained, scores):
    directory = run.model_dir / member.directory
    export.save_export(directory / "export" / "best.safetensors", member.model.exportable(trained),
                       {**export_metadata, **member.model.export_metadata(), "step": step, "metric": scores,
                        "sweep_member": member.index, "sweep_settings": member.label})
    fit.write_predictions(directory, member.model, data.eval_sets, evaluator.last_outputs[member.index], split)
  try:
    with safety.stop_on_signals() as stop_requested:
      state, last_eval, extra = run_loop(
          state, step_fn=train_step, frozen=frozen, rngs=rngs, groups=groups, batch_at=batch_at, options=options,
          evaluate=lambda trained: evaluator(trained, frozen), save_best=save_best, checkpoints=checkpoints,
          writer=writer, extra=extra, key=key, data_state=data_state, stop_requested=stop_requested)
  finally:
    checkpoints.close()
    writer.close()
  if last_eval is None:  # Resumed at the end: evaluate the final state once.
    last_eval = evaluator(state.trainable, frozen)
  out = results(run, members, export_metadata, data, options, step=int(state.step), last_eval=last_eval,
                extra=extra, report=report, majority=model0.majority_class_accuracy(data.eval_sets))
  safety.release_locks(run.model_dir)
  return out


def winner(members: Sequence[Member], extra: dict) -> Optional[Member]:
  """The member with the best held-out selection metric (a member that diverged only if every one did)."""
  records = extra["members"]
  ranked = [m for m in members if records[m.index]["best"] is not None]
  alive = [m for m in ranked if records[m.index]["diverged_at"] is None] or ranked
  return max(alive, key=lambda m: records[m.index]["best"]) if alive else None


def results(run: fit.Run, members: Sequence[Member], export_metadata: Mapping[str, Any], data: fit.TrainData,
            options: fit.FitOptions, *, step: int, last_eval: Dict[int, dict], extra: dict, report: dict,
            majority: Optional[float]) -> dict:
  """results.json's dict, written and printed: fit.results' fields for the winner (copied to export/ and
  predictions/), and `sweep`, one row per member: settings, best metric and step, last metrics, divergence."""
  key, split, records = data.selection_metric, options.eval_split, extra["members"]
  rows = [{"member": m.index, "settings": m.label, f"best_{key}": records[m.index]["best"],
           "best_step": records[m.index]["best_step"], "diverged_at_step": records[m.index]["diverged_at"],
           f"{split}_{key}": last_eval[m.index][key], f"{split}_metrics": last_eval[m.index],
           "export_path": str(run.model_dir / m.directory / "export" / "best.safetensors")} for m in members]
  best = winner(members, extra)
  export_path = run.model_dir / "export" / "best.safetensors"
  if best is not None:
    source = run.model_dir / best.directory
    export_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "export" / "best.safetensors", export_path)
    if (source / "predictions").exists():
      shutil.copytree(source / "predictions", run.model_dir / "predictions", dirs_exist_ok=True)
  top = rows[best.index] if best is not None else rows[0]
  out = {"task": export_metadata["task"], "tasks": list(export_metadata["tasks"]), "step": step,
         "selection_metric": key, f"{split}_{key}": top[f"{split}_{key}"], f"{split}_metrics": top[f"{split}_metrics"],
         f"best_{key}": top[f"best_{key}"], "best_step": top["best_step"], "majority_class_accuracy": majority,
         **report, "export_path": str(export_path),
         "export_bytes": export_path.stat().st_size if export_path.exists() else None,
         "winner": None if best is None else best.index, "sweep": rows,
         "wall_seconds": time.perf_counter() - run.started}
  (run.model_dir / "results.json").write_text(json.dumps(out, indent=1))
  print_table(out, split)
  return out


def print_table(results: dict, split: str) -> None:
  """The members' settings, best held-out metric and step, and status; then the winner."""
  key, rows = results["selection_metric"], results["sweep"]
  names = list(rows[0]["settings"])
  widths = [max(len(n), *(len(r["settings"][n]) for r in rows)) for n in names]
  print("=" * 72)
  print("member  " + "  ".join(n.ljust(w) for n, w in zip(names, widths)) + f"  best {split} {key}  step  status")
  for r in rows:
    best = "-" if r[f"best_{key}"] is None else f"{r[f'best_{key}']:.2f}"
    status = "diverged at step %d" % r["diverged_at_step"] if r["diverged_at_step"] is not None else ""
    print(f"{r['member']:<6}  " + "  ".join(r["settings"][n].ljust(w) for n, w in zip(names, widths)) +
          f"  {best:>{len(f'best {split} {key}')}}  {str(r['best_step']):>4}  {status}")
  if results["winner"] is not None:
    print(f"winner: member {results['winner']}, best {key} {results[f'best_{key}']:.2f} at step "
          f"{results['best_step']}; exported to {results['export_path']}")
  print(f"wall time: {fit.format_duration(results['wall_seconds'])}")
  print("=" * 72, flush=True)
