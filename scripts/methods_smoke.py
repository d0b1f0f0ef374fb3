"""Trains every gin method on one task for a few steps from the command line and tabulates
the parameter report and the first vs last logged training loss.

  python scripts/methods_smoke.py --task_gin=gin/rte.gin --steps=100 --out=results/rte_methods_100.json

Each method runs as `python -m prompt_tuning_jax.train --gin_file=<task_gin>
--gin_file=gin/methods/<method>.gin --gin.MODEL_DIR=<runs>/<method> --gin.TRAIN_STEPS=<steps>`.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("deep_prompt", "prefix_tuning", "lester", "ptuning", "bitfit", "finetune")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task_gin", default="gin/rte.gin")
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--runs_dir", default="runs/methods_smoke")
  parser.add_argument("--out", default="results/rte_methods_100.json")
  parser.add_argument("--methods", default=",".join(METHODS))
  args = parser.parse_args()
  rows = []
  for method in args.methods.split(","):
    model_dir = Path(args.runs_dir) / method
    command = [sys.executable, "-m", "prompt_tuning_jax.train", f"--gin_file={args.task_gin}",
               f"--gin_file=gin/methods/{method}.gin", f"--gin.MODEL_DIR='{model_dir}'",
               f"--gin.TRAIN_STEPS={args.steps}", f"--gin.EVAL_PERIOD={args.steps}"]
    subprocess.run(["rm", "-rf", str(model_dir)], check=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    train_logs = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in train_logs if r["split"] == "train"]
    report = json.loads((model_dir / "parameters.json").read_text())
    results = json.loads((model_dir / "results.json").read_text())
    rows.append({"method": method, "command": " ".join(command), "trainable": report["trainable"],
                 "share_of_backbone_percent": report["share_of_backbone_percent"],
                 "export_bytes": results["export_bytes"], "first_logged_loss": losses[0],
                 "last_logged_loss": losses[-1], "loss_decreased": losses[-1] < losses[0],
                 "validation_accuracy": results["validation_accuracy"], "wall_seconds": time.perf_counter() - started})
    print(json.dumps(rows[-1]), flush=True)
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(rows, indent=1))
  print(f"{'method':<14} {'trainable':>10} {'share %':>8} {'export B':>10} {'loss 1-10':>9} {'loss last':>9} "
        f"{'val acc':>7}")
  for r in rows:
    print(f"{r['method']:<14} {r['trainable']:>10,} {r['share_of_backbone_percent']:>8.3f} {r['export_bytes']:>10,} "
          f"{r['first_logged_loss']:>9.4f} {r['last_logged_loss']:>9.4f} {r['validation_accuracy']:>7.2f}")


if __name__ == "__main__":
  main()
