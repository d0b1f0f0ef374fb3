"""The training loop every trainer shares: step, log, evaluate, export the best, checkpoint.

A trainer supplies a jitted `train_step(state, frozen, batch, rng) -> (state, metrics)`
whose metrics hold sums-able scalars "loss", "correct", "count", "tokens" and
"grad_norm", a batch source that is a pure function of the batch position, `evaluate(trainable)
-> metrics` (with the selection metric under `best_metric`) and `export(step, trainable,
metrics)`. Metrics stay on device between log periods: one host transfer per log.

Exact resume: each checkpoint's `extra` records the data iterator's state under "data"
(`data_state(position)`: seed, batch size, number of examples and the position of the next
batch). `resume` restores the latest checkpoint, refuses one written over a different batch
order, and `run` continues from the recorded position; the dropout rng is folded with the
restored step. A run killed after a checkpoint and resumed therefore replays exactly the
steps an uninterrupted run takes. The checkpoint's fingerprint (fingerprint.py: data content
hash, method, parameter shapes, optimizer schedule) must match the run's too. A stop signal
(safety.stop_on_signals, passed as `stop_requested`) ends training after the current step with
a checkpoint of it, so the rerun continues from that very step.

Numerical faults: by default a non-finite loss stops training (NonFiniteLossError) before
anything after it is evaluated, exported or checkpointed. With an optimizer wrapped by
`train_step.skip_nonfinite(tx, N)` and `max_consecutive_skips=N`, updates whose gradients are
not finite are skipped and reported instead; more than N in a row stop training the same way.
"""

import math
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax

from prompt_tuning_jax import errors
from prompt_tuning_jax.training import fingerprint as fingerprints
from prompt_tuning_jax.training import safety
from prompt_tuning_jax.training.checkpoints import Checkpoints, ResumeMismatchError
from prompt_tuning_jax.training.metric_writer import MetricWriter, Progress
from prompt_tuning_jax.training.steps import nonfinite_counts

# What a user changes to get each recorded data setting back.
_DATA_SETTINGS = {"seed": "RANDOM_SEED", "batch_size": "BATCH_SIZE", "examples": "the training data"}


def use_hardware_rng(enabled: bool) -> None:
  """USE_HARDWARE_RNG (t5x's switch): True draws parameter initialisation and dropout from 'unsafe_rbg'
  (XLA's RngBitGenerator), much cheaper than the default threefry for dropout masks on long sequences,
  but reproducible only on the same mesh; False restores threefry. Set before any key is made."""
  jax.config.update("jax_default_prng_impl", "unsafe_rbg" if enabled else "threefry2x32")


class NonFiniteLossError(errors.TrainingError):
  """Training produced a NaN or infinite loss; nothing after the last good step was saved."""


class DataPositionMismatchError(ResumeMismatchError):
  """The checkpoint to resume was written over a different batch order (seed, batch size or examples)."""


def _kept(checkpoints: Checkpoints) -> str:
  last = checkpoints.latest_step()
  return f"the last good checkpoint (step {last}) is kept" if last is not None else "no checkpoint was written"


def check_finite(losses, first_step: int, checkpoints: Checkpoints) -> None:
  """Raises NonFiniteLossError naming the first step (first_step + i) whose host loss is not finite."""
  for i, loss in enumerate(losses):
    if not math.isfinite(float(loss)):
      raise NonFiniteLossError(
          f"the training loss is {float(loss)} at step {first_step + i}; training stopped and {_kept(checkpoints)}. "
          "Lower LEARNING_RATE, or skip such updates with --gin.train.skip_nonfinite_updates=True "
          "(train_seq2seq.skip_nonfinite_updates for T5).")


def check_skips(counts: Sequence[Dict[str, int]], first_step: int, max_consecutive: int,
                checkpoints: Checkpoints) -> List[int]:
  """The steps (first_step + i) whose non-finite update the optimizer skipped; raises NonFiniteLossError
  at the first step past `max_consecutive` in a row, where optax.apply_if_finite gives up and applies it."""
  for i, count in enumerate(counts):
    consecutive, step = int(count["consecutive"]), first_step + i
    if consecutive > max_consecutive:
      raise NonFiniteLossError(
          f"the gradients were not finite for {consecutive} steps in a row (steps {step - consecutive + 1} to "
          f"{step}), more than max_consecutive_nonfinite={max_consecutive}; training stopped and "
          f"{_kept(checkpoints)}. Lower LEARNING_RATE or check the batches of those steps.")
  return [first_step + i for i, count in enumerate(counts) if int(count["consecutive"]) > 0]


def resume(checkpoints: Checkpoints, state, extra: dict, data_state: Callable[[int], dict],
           fingerprint: Optional[dict] = None) -> Tuple[object, dict]:
  """(state, extra) from the latest checkpoint, or as given when there is none.

  Before any array is read, the checkpoint's recorded data state must match `data_state` (the run's seed,
  batch size and examples) or DataPositionMismatchError names both values and the fix, and its recorded
  `fingerprint` (fingerprint.of_run: the training data's content hash, the method, parameter shapes and
  optimizer schedule) must match the run's or ResumeMismatchError names both. Its position is where `run`
  resumes the batches. Checkpoints that predate the data record resume at their step; those that predate
  the fingerprint resume unchecked, with a printed note. The returned extra carries the run's fingerprint,
  so later checkpoints record it.
  """
  if checkpoints.latest_step() is None:
    return state, {**extra, "fingerprint": fingerprint} if fingerprint is not None else extra

  def check(step: int, restored: dict) -> None:
    path = checkpoints.directory / str(step)
    saved = restored.get("data") or data_state(step)
    current = data_state(int(saved["position"]))
    changed = [k for k in current if k != "position" and k in saved and saved[k] != current[k]]
    if changed:
      differences = "; ".join(f"{k} {saved[k]} there, {current[k]} here ({_DATA_SETTINGS.get(k, k)})"
                              for k in changed)
      raise DataPositionMismatchError(
          f"checkpoint {path} was written over a different batch order: {differences}. Resuming would not train "
          "on the batches the run would have seen. Start the new run in another MODEL_DIR, or set these back to "
          "the checkpoint's values.")
    recorded = restored.get("fingerprint")
    if fingerprint is None:
      return
    if recorded is None:
      print(f"Checkpoint {path} records no fingerprint of its data and settings (written by an earlier version): "
            "resuming without checking that they match.", flush=True)
      return
    if recorded.get("data") != fingerprint["data"]:
      raise ResumeMismatchError(
          f"checkpoint {path} was trained on other data: the training examples' content hash is "
          f"{recorded.get('data')} there, {fingerprint['data']} here (the same number of examples, so rows were "
          "changed or reordered). Resuming would continue on data the run did not start with; restore the "
          "original training data, or start the new run in another MODEL_DIR.")
    differences = fingerprints.setting_differences(recorded.get("settings") or {}, fingerprint["settings"])
    if differences:
      raise ResumeMismatchError(
          f"checkpoint {path} was written with other settings: {'; '.join(differences)}. Resuming would continue "
          "a different training; set them back, or start the new run in another MODEL_DIR.")

  state, restored = checkpoints.restore(state, check=check)
  step = int(state.step)
  saved = restored.get("data") or data_state(step)
  print(f"Restored checkpoint {checkpoints.directory / str(step)} (step {step}); batches resume at position "
        f"{saved['position']}.", flush=True)
  out = {**extra, **restored, "data": saved}
  if fingerprint is not None:
    out["fingerprint"] = fingerprint
  return state, out


def format_metrics(scalars: Dict[str, float]) -> str:
  """'accuracy 83.37% loss 0.4012 ...': losses, norms and rates with 4 decimals; every other metric is
  a percentage (accuracy, EM, F1, precision, recall, score)."""
  return " ".join(f"{k} {v:.4f}" if k.endswith(("loss", "_norm", "per_second")) else f"{k} {v:.2f}%"
                  for k, v in scalars.items())


class Hooks(NamedTuple):
  """What differs between one run (`run`) and a sweep of members (training/sweep.py) in the loop `drive` runs.

  keep(step_metrics, state) -> what of a step stays on device until the next fetch
  check(fetched, first_step, extra) -> extra: the fetched steps' numerical checks (raises to stop training)
  log(fetched, step, extra, progress): the train metrics of the fetched steps
  evaluate(step, state, extra) -> (extra, metrics, score): evaluates, exports what improved; `score` ranks the
    checkpoint
  """
  keep: Callable
  check: Callable
  log: Callable
  evaluate: Callable


def drive(state, *, train_step: Callable, frozen, batch_at: Callable[[int], dict], rng, train_steps: int,
          eval_period: int, log_period: int, checkpoints: Checkpoints, extra: dict, hooks: Hooks,
          data_state: Callable[[int], dict], stop_requested: Callable[[], Optional[int]]):
  """Trains from state.step to train_steps: step, fetch (one host transfer per log, evaluation or stop), check,
  log, evaluate and checkpoint, stop on a signal. Returns (state, last evaluation or None, extra)."""
  step = int(state.step)
  position = int((extra.get("data") or {}).get("position", step))
  progress = Progress(step, train_steps)
  pending, last_eval = [], None
  while step < train_steps:
    state, step_metrics = train_step(state, frozen, batch_at(position), rng)
    step, position = step + 1, position + 1
    pending.append(hooks.keep(step_metrics, state))
    at_eval = step % eval_period == 0 or step == train_steps
    at_log = step % log_period == 0 or step == train_steps
    stop = stop_requested() if step < train_steps else None
    if at_eval or at_log or stop is not None:
      fetched = jax.device_get(pending)
      extra = hooks.check(fetched, step - len(pending) + 1, extra)
    if at_log:
      hooks.log(fetched, step, extra, progress)
      pending = []
    if at_eval:
      extra, last_eval, score = hooks.evaluate(step, state, extra)
      extra = {**extra, "data": data_state(position)}
      checkpoints.save(state, extra, score=score)
      progress.restart_clock(step)
    if stop is not None:
      stop_after_step(stop, state, extra, train_steps, position, checkpoints, None if at_eval else data_state)
  return state, last_eval, extra


def run(state, *, train_step: Callable, frozen, batch_at: Callable[[int], dict], rng: jax.Array,
        train_steps: int, eval_period: int, log_period: int, evaluate: Callable[[object], Dict[str, float]],
        export: Callable[[int, object, Dict[str, float]], None], checkpoints: Checkpoints, writer: MetricWriter,
        extra: dict, eval_split: str = "validation", best_metric: str = "accuracy",
        data_state: Callable[[int], dict] = lambda position: {"position": position},
        max_consecutive_skips: Optional[int] = None,
        stop_requested: Callable[[], Optional[int]] = lambda: None) -> Tuple[object, Optional[Dict[str, float]], dict]:
  """Trains from state.step to train_steps. Returns (state, last eval metrics or None, extra),
  extra = {"best_<metric>", "best_step", "data"} as restored from (`resume`) and saved into checkpoints.

  Batches come from batch_at(position), position starting at extra["data"]["position"] (else the
  step); each checkpoint records data_state(next position). A non-finite loss raises
  NonFiniteLossError before anything after it is evaluated, exported or checkpointed (losses
  are checked at each log and before each save), unless `max_consecutive_skips` is set: the
  optimizer is then train_step.skip_nonfinite(tx, max_consecutive_skips), skipped updates are
  printed and counted in the train metrics ("skipped_updates", in all) and left out of the
  period's averages, and only more than that many in a row stop training.

  stop_requested() -> a signal number (safety.stop_on_signals) ends training after the current step: its
  losses are checked, it is checkpointed with its data position (unless that step's checkpoint was just
  written) and safety.Stopped is raised naming it.
  """
  best_key = f"best_{best_metric}"
  skipping = max_consecutive_skips is not None
  if skipping and nonfinite_counts(state.opt_state) is None:
    raise ValueError("max_consecutive_skips needs an optimizer wrapped by train_step.skip_nonfinite.")
  skipped = []  # the steps of the last fetch whose updates were skipped

  def keep(step_metrics, state):
    # Copies of the optimizer's counters: the state's own buffers are donated to the next step.
    return step_metrics, nonfinite_counts(state.opt_state) if skipping else None

  def check(fetched, first, extra):
    metrics, counts = zip(*fetched)
    if skipping:
      skipped[:] = check_skips(counts, first, max_consecutive_skips, checkpoints)
    else:
      check_finite([m["loss"] for m in metrics], first, checkpoints)
    return extra

  def log(fetched, step, extra, progress):
    del extra
    metrics, counts = zip(*fetched)
    first = step - len(metrics) + 1
    applied = [m for s, m in enumerate(metrics, first) if s not in skipped] or metrics
    if skipped:
      print(f"  non-finite gradients: skipped the updates of steps {skipped} ({int(counts[-1]['total'])} "
            "skipped in all)", flush=True)
    sums = jax.tree.map(lambda *xs: sum(xs), *applied)
    loss = float(sums["loss"]) / len(applied)
    accuracy = 100.0 * float(sums["correct"]) / max(float(sums["count"]), 1.0)
    rates = progress.report(step, loss, accuracy, float(sums["tokens"]))
    writer.write("train", step, {"loss": loss, "accuracy": accuracy,
                                 "grad_norm": float(sums["grad_norm"]) / len(applied), **rates,
                                 **({"skipped_updates": int(counts[-1]["total"])} if skipping else {})})

  def evaluate_and_export(step, state, extra):
    metrics = evaluate(state.trainable)
    writer.write(eval_split, step, metrics)
    improved = extra.get(best_key) is None or metrics[best_metric] > extra[best_key]
    if improved:
      extra = {**extra, best_key: metrics[best_metric], "best_step": step}
      export(step, jax.device_get(state.trainable), metrics)
    print(f"  {eval_split} at step {step}: {format_metrics(metrics)}{' (best, exported)' if improved else ''}",
          flush=True)
    return extra, metrics, metrics[best_metric]

  return drive(state, train_step=train_step, frozen=frozen, batch_at=batch_at, rng=rng, train_steps=train_steps,
               eval_period=eval_period, log_period=log_period, checkpoints=checkpoints, extra=extra,
               hooks=Hooks(keep, check, log, evaluate_and_export), data_state=data_state,
               stop_requested=stop_requested)


def stop_after_step(signum: int, state, extra: dict, train_steps: int, position: int, checkpoints: Checkpoints,
                    data_state: Optional[Callable[[int], dict]]) -> None:
  """Checkpoints `state` with its data position (data_state None: the step's checkpoint was just written) and
  raises safety.Stopped naming it."""
  step = int(state.step)
  if data_state is not None:
    checkpoints.save(state, {**extra, "data": data_state(position)})
  raise safety.Stopped(
      f"stopped by {safety.signal_name(signum)} after step {step} of {train_steps}: saved checkpoint "
      f"{checkpoints.directory / str(step)} (batches resume at position {position}); rerun the same command to "
      "resume.", signum)
