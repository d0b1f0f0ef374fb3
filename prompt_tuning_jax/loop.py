"""The training loop every trainer shares: step, log, evaluate, export the best, checkpoint.

A trainer supplies a jitted `train_step(state, frozen, batch, rng) -> (state, metrics)`
whose metrics hold sums-able scalars "loss", "correct", "count", "tokens" and
"grad_norm", a batch source that is a pure function of the step, `evaluate(trainable)
-> metrics` (with the selection metric under `best_metric`) and `export(step, trainable,
metrics)`. Metrics stay on device between log periods: one host transfer per log.
"""

from typing import Callable, Dict, Optional, Tuple

import jax

from prompt_tuning_jax.checkpoints import Checkpoints
from prompt_tuning_jax.metric_writer import MetricWriter, Progress


def format_metrics(scalars: Dict[str, float]) -> str:
  """'accuracy 83.37% loss 0.4012 ...': percentages for accuracies, 4 decimals for the rest."""
  return " ".join(f"{k} {v:.2f}%" if k.endswith(("accuracy", "f1", "em")) else f"{k} {v:.4f}"
                  for k, v in scalars.items())


def run(state, *, train_step: Callable, frozen, batch_at: Callable[[int], dict], rng: jax.Array,
        train_steps: int, eval_period: int, log_period: int, evaluate: Callable[[object], Dict[str, float]],
        export: Callable[[int, object, Dict[str, float]], None], checkpoints: Checkpoints, writer: MetricWriter,
        extra: dict, eval_split: str = "validation", best_metric: str = "accuracy"
        ) -> Tuple[object, Optional[Dict[str, float]], dict]:
  """Trains from state.step to train_steps. Returns (state, last eval metrics or None, extra),
  extra = {"best_<metric>", "best_step"} as restored from and saved into checkpoints."""
  best_key = f"best_{best_metric}"
  step = int(state.step)
  progress = Progress(step, train_steps)
  pending, last_eval = [], None
  while step < train_steps:
    state, step_metrics = train_step(state, frozen, batch_at(step), rng)
    step += 1
    pending.append(step_metrics)
    if step % log_period == 0 or step == train_steps:
      sums = jax.device_get(jax.tree.map(lambda *xs: sum(xs), *pending))
      loss = float(sums["loss"]) / len(pending)
      accuracy = 100.0 * float(sums["correct"]) / max(float(sums["count"]), 1.0)
      rates = progress.report(step, loss, accuracy, float(sums["tokens"]))
      writer.write("train", step, {"loss": loss, "accuracy": accuracy,
                                   "grad_norm": float(sums["grad_norm"]) / len(pending), **rates})
      pending = []
    if step % eval_period == 0 or step == train_steps:
      last_eval = evaluate(state.trainable)
      writer.write(eval_split, step, last_eval)
      improved = extra.get(best_key) is None or last_eval[best_metric] > extra[best_key]
      if improved:
        extra = {best_key: last_eval[best_metric], "best_step": step}
        export(step, jax.device_get(state.trainable), last_eval)
      print(f"  {eval_split} at step {step}: {format_metrics(last_eval)}{' (best, exported)' if improved else ''}",
            flush=True)
      checkpoints.save(state, extra)
      progress.restart_clock(step)
  return state, last_eval, extra
