"""Trains the tiny T5's prompt for a few steps from the command line on each T5 task with data here and
tabulates the logged training loss and the evaluation metric.

  python scripts/t5_tasks_smoke.py --data_dir=/work/shared/data --steps=50 --out=results/t5_tasks_50.md

Each task runs as `python -m prompt_tuning_jax.train --gin_file=gin/models/t5_1_1_tiny_prompt.gin
--gin_file=gin/runs/prompt_finetune.gin --gin_file=gin/t5/<task>.gin --gin.MODEL_DIR=<runs>/<task> ...` with the
task's train and eval splits. BoolQ, WiC and MultiRC have no train copy here: they train on the first 80% of
their validation split and evaluate on the last 20% (MultiRC's slice is by answer option, so one question can
straddle it). SQuAD trains on the first 24 articles of the dev file and evaluates on the first `--squad_eval`
questions of the other 24 (squad_v010_allanswers_dev_split).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# gin file -> (train split, eval split)
TASKS = {
    "boolq": ("validation[:80%]", "validation[80%:]"),
    "wic": ("validation[:80%]", "validation[80%:]"),
    "multirc": ("validation[:80%]", "validation[80%:]"),
    "wsc": ("train", "validation"),
    "rte": ("train", "validation"),
    "squad_dev_split": ("train", "validation[:{squad_eval}]"),
}


def command(task: str, args, model_dir: Path) -> list:
  train_split, eval_split = TASKS[task]
  return [sys.executable, "-m", "prompt_tuning_jax.train", "--gin_file=gin/models/t5_1_1_tiny_prompt.gin",
          "--gin_file=gin/runs/prompt_finetune.gin", f"--gin_file=gin/t5/{task}.gin", f"--gin.MODEL_DIR='{model_dir}'",
          "--gin.INITIAL_CHECKPOINT_PATH='tests/goldens/t5_tiny'", f"--gin.DATA_DIR='{args.data_dir}'",
          f"--gin.TRAIN_STEPS={args.steps}", f"--gin.EVAL_PERIOD={args.steps}", f"--gin.BATCH_SIZE={args.batch_size}",
          f"--gin.LEARNING_RATE={args.learning_rate}", f"--gin.train_seq2seq.train_split='{train_split}'",
          f"--gin.train_seq2seq.eval_split='{eval_split.format(squad_eval=args.squad_eval)}'",
          f"--gin.TASK_FEATURE_LENGTHS={{'inputs': {args.inputs_length}, "
          f"'targets': {32 if task.startswith('squad') else 16 if task == 'wsc' else 8}}}", *args.bindings]


def run(task: str, args) -> dict:
  model_dir = Path(args.runs_dir) / task
  subprocess.run(["rm", "-rf", str(model_dir)], check=True)
  cmd = command(task, args, model_dir)
  started = time.perf_counter()
  subprocess.run(cmd, check=True)
  logs = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  losses = {r["step"]: r["loss"] for r in logs if r["split"] == "train"}
  results = json.loads((model_dir / "results.json").read_text())
  metric, eval_split = results["selection_metric"], TASKS[task][1].format(squad_eval=args.squad_eval)
  return {"task": task, "command": " ".join(cmd), "train_split": TASKS[task][0], "eval_split": eval_split,
          "losses": losses, "metric": metric, "value": results[f"{eval_split}_{metric}"],
          "metrics": results[f"{eval_split}_metrics"],
          "decreased": losses[max(losses)] < losses[min(losses)], "wall_seconds": time.perf_counter() - started}


def table(rows, steps, lr) -> str:
  logged = sorted({s for r in rows for s in r["losses"]})
  head = "| task | train split | eval split | " + " | ".join(f"loss@{s}" for s in logged) + \
         " | decreased | eval metric (decoded) | rank classification | wall s |"
  lines = [head, "|" + "---|" * (len(logged) + 7)]
  for r in rows:
    number = lambda v: f"{v:.1f}" if v >= 100 else f"{v:.3f}"
    losses = " | ".join(number(r["losses"][s]) if s in r["losses"] else "" for s in logged)
    rank_key = f"rank_{r['metric']}"
    rank = f"{rank_key} {r['metrics'][rank_key]:.2f}" if rank_key in r["metrics"] else "(open task)"
    lines.append(f"| {r['task']} | {r['train_split']} | {r['eval_split']} | {losses} | {r['decreased']} | "
                 f"{r['metric']} {r['value']:.2f} | {rank} | {r['wall_seconds']:.0f} |")
  return (f"Tiny T5 (tests/goldens/t5_tiny, random weights), prompt tuning (Adafactor lr {lr}), {steps} steps from the "
          "command line (scripts/t5_tasks_smoke.py). Loss: t5x's training loss, summed over the batch's target "
          "tokens, logged every 10 steps. BoolQ, WiC and MultiRC have no train copy here: they train on the first "
          "80% of validation and are scored on the last 20%; SQuAD trains on dev articles 0-23 and is scored on "
          "the first questions of articles 24-47.\n\n" + "\n".join(lines) + "\n")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default="/work/shared/data")
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--learning_rate", type=float, default=0.3)
  parser.add_argument("--inputs_length", type=int, default=256)
  parser.add_argument("--squad_eval", type=int, default=1000)
  parser.add_argument("--runs_dir", default="runs/t5_tasks_smoke")
  parser.add_argument("--tasks", default=",".join(TASKS))
  parser.add_argument("--out", default="results/t5_tasks_50.md")
  parser.add_argument("--resume", action="store_true", help="keep the tasks already in <out>.json")
  parser.add_argument("--binding", dest="bindings", action="append", default=[],
                      help="another --gin binding for every run, e.g. --binding=--gin.LOSS_NORMALIZING_FACTOR=...")
  args = parser.parse_args()
  done = Path(args.out).with_suffix(".json")
  rows = json.loads(done.read_text()) if args.resume and done.exists() else []
  for r in rows:  # JSON keys are strings.
    r["losses"] = {int(step): loss for step, loss in r["losses"].items()}
  for task in args.tasks.split(","):
    if any(r["task"] == task for r in rows):
      continue
    rows.append(run(task, args))
    print(json.dumps(rows[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
  order = args.tasks.split(",")
  Path(args.out).write_text(table(sorted(rows, key=lambda r: order.index(r["task"])), args.steps, args.learning_rate))
  print(Path(args.out).read_text())


if __name__ == "__main__":
  main()
