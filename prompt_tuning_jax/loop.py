"""The training loop every trainer shares: step, log, evaluate, export the best, checkpoint.

A trainer supplies a jitted `train_step(state, frozen, batch, rng) -> (state, metrics)`
whose metrics hold sums-able scalars "loss", "correct", "count", "tokens" and
"grad_norm", a batch source that is a pure function of the step, `evaluate(trainable)
-> metrics` (with the selection metric under `best_metric`) and `export(step, trainable,
metrics)`. Metrics stay on device between log periods: one host transfer per log.
"""

import math
from typing import Callable, Dict, Optional, Tuple

import jax

from prompt_tuning_jax.checkpoints import Checkpoints
from prompt_tuning_jax.metric_writer import MetricWriter, Progress


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss; nothing after the last good step was saved."""


def check_finite(losses, first_step: int, checkpoints: Checkpoints) -> None:
  """Raises NonFiniteLossError naming the first step (first_step + i) whose host loss is not finite."""
  for i, loss in enumerate(losses):
    if not math.isfinite(float(loss)):
      last = checkpoints.latest_step()
      kept = f"the last good checkpoint (step {last}) is kept" if last is not None else "no checkpoint was written"
      raise NonFiniteLossError(
          f"the training loss is {float(loss)} at step {first_step + i}; training stopped and {kept}. Lower "
          "LEARNING_RATE.")


def format_metrics(scalars: Dict[str, float]) -> str:
  """'accuracy 83.37% loss 0.4012 ...': losses, norms and rates with 4 decimals; every other metric is
  a percentage (accuracy, EM, F1, precision, recall, score)."""
  return " ".join(f"{k} {v:.4f}" if k.endswith(("loss", "_norm", "per_second")) else f"{k} {v:.2f}%"
                  for k, v in scalars.items())


def run(state, *, train_step: Callable, frozen, batch_at: Callable[[int], dict], rng: jax.Array,
        train_steps: int, eval_period: int, log_period: int, evaluate: Callable[[object], Dict[str, float]],
        export: Callable[[int, object, Dict[str, float]], None], checkpoints: Checkpoints, writer: MetricWriter,
        extra: dict, eval_split: str = "validation", best_metric: str = "accuracy",
        stop_on_nonfinite: bool = True, skips_nonfinite: bool = False
        ) -> Tuple[object, Optional[Dict[str, float]], dict]:
  """Trains from state.step to train_steps. Returns (state, last eval metrics or None, extra),
  extra = {"best_<metric>", "best_step"} as restored from and saved into checkpoints.

  A non-finite loss raises NonFiniteLossError before anything after it is evaluated,
  exported or checkpointed (losses are checked at each log and before each save),
  unless the optimizer skips such updates (skips_nonfinite, e.g. optax.apply_if_finite).
  """
  best_key = f"best_{best_metric}"
  stop_on_nonfinite = stop_on_nonfinite and not skips_nonfinite
  step = int(state.step)
  progress = Progress(step, train_steps)
  pending, last_eval = [], None
  while step < train_steps:
    state, step_metrics = train_step(state, frozen, batch_at(step), rng)
    step += 1
    pending.append(step_metrics)
    at_eval = step % eval_period == 0 or step == train_steps
    at_log = step % log_period == 0 or step == train_steps
    if at_eval or at_log:
      fetched = jax.device_get(pending)  # One host transfer for the checks and the log.
      if stop_on_nonfinite:
        check_finite([m["loss"] for m in fetched], step - len(pending) + 1, checkpoints)
    if at_log:
      sums = jax.tree.map(lambda *xs: sum(xs), *fetched)
      loss = float(sums["loss"]) / len(pending)
      accuracy = 100.0 * float(sums["correct"]) / max(float(sums["count"]), 1.0)
      rates = progress.report(step, loss, accuracy, float(sums["tokens"]))
      writer.write("train", step, {"loss": loss, "accuracy": accuracy,
                                   "grad_norm": float(sums["grad_norm"]) / len(pending), **rates})
      pending = []
    if at_eval:
      last_eval = evaluate(state.trainable)
      writer.write(eval_split, step, last_eval)
      improved = extra.get(best_key) is None or last_eval[best_metric] > extra[best_key]
      if improved:
        extra = {best_key: last_eval[best_metric], "best_step": step}
        export(step, jax.device_get(state.trainable), last_eval)
      print(f"  {eval_split} at step {step}: {format_metrics(last_eval)}{' (best, exported)' if improved else ''}",
            flush=True)
      checkpoints.save(state, extra, score=last_eval[best_metric])
      progress.restart_clock(step)
  return state, last_eval, extra
