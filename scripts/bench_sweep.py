r"""A 9-member sweep in one job vs the same 9 runs one after another (issue 20): wall time and peak memory.

  python scripts/bench_sweep.py            # ~10 minutes on an idle 2-core machine; results/bench_sweep.json
  python scripts/bench_sweep.py --steps 50   # longer training: the ratio rises toward the step-rate ratio

Both halves run the real command line in subprocesses: P-Tuning v2 deep prompts (P=20) on SST-2's shipped 10k
subsample with the packaged MiniLM, LEARNING_RATE x RANDOM_SEED = {3e-3, 1e-2, 3e-2} x {0, 1, 2}, TRAIN_STEPS
steps of batch 32 and one evaluation of the 872 validation sentences at the end. The sweep is one process
(`--gin.SWEEP=...`); the baseline runs each member's configuration alone, one process after another. Wall time
includes everything a user waits for (imports, data, compiles, training, evaluation, exports); peak memory is
each process's maximum resident set size (os.wait4). Both halves run back to back on the same machine, so a
shared machine's load weighs on both; the record says what the load was.

Resumable: a half whose MODEL_DIR under runs/bench/sweep/ holds results.json from the same command is not run
again (its recorded wall time and memory are kept).
"""

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
LEARNING_RATES = (3e-3, 1e-2, 3e-2)
SEEDS = (0, 1, 2)
STEPS = 20
GIN = "gin/sst2_deep_prompt.gin"


def base_argv(model_dir: Path, steps: int) -> List[str]:
  return [sys.executable, "-m", "prompt_tuning_jax.train", f"--gin_file={GIN}", f"--gin.MODEL_DIR='{model_dir}'",
          f"--gin.TRAIN_STEPS={steps}", f"--gin.EVAL_PERIOD={steps}", "--gin.PROMPT_LENGTH=20"]


def configurations(out: Path, steps: int) -> Dict[str, List[str]]:
  """id -> argv: the sweep, then each member alone."""
  sweep = "{'LEARNING_RATE': %s, 'RANDOM_SEED': %s}" % (list(LEARNING_RATES), list(SEEDS))
  configs = {"sweep": base_argv(out / "sweep", steps) + [f"--gin.SWEEP={sweep}"]}
  for lr in LEARNING_RATES:
    for seed in SEEDS:
      name = f"alone_lr{lr:g}_seed{seed}"
      configs[name] = base_argv(out / name, steps) + [f"--gin.LEARNING_RATE={lr}", f"--gin.RANDOM_SEED={seed}"]
  return configs


def run_measured(argv: Sequence[str], log: Path) -> dict:
  """Runs argv; returns wall seconds, peak RSS (MiB, of the process itself) and the exit status."""
  started = time.perf_counter()
  with open(log, "w") as out:
    process = subprocess.Popen(list(argv), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    _, status, usage = os.wait4(process.pid, 0)
  process.returncode = os.waitstatus_to_exitcode(status)
  return {"wall_seconds": time.perf_counter() - started, "peak_rss_mib": usage.ru_maxrss / 1024,
          "returncode": process.returncode}


def load(path: Path) -> dict:
  return json.loads(path.read_text()) if path.exists() else {}


def summarise(records: Dict[str, dict]) -> dict:
  alone = [r for k, r in records.items() if k != "sweep"]
  sequential = sum(r["wall_seconds"] for r in alone)
  sweep = records["sweep"]
  return {"sweep_wall_seconds": sweep["wall_seconds"], "sequential_wall_seconds": sequential,
          "wall_time_ratio": sweep["wall_seconds"] / sequential, "goal_ratio": 0.6,
          "sweep_peak_rss_mib": sweep["peak_rss_mib"],
          "alone_peak_rss_mib_max": max(r["peak_rss_mib"] for r in alone)}


def accuracies(out: Path) -> List[dict]:
  """Each member's best validation accuracy in the sweep beside its run alone (they should agree)."""
  sweep = load(out / "sweep" / "results.json")
  rows = []
  for row in sweep.get("sweep", []):
    lr, seed = float(row["settings"]["LEARNING_RATE"]), int(row["settings"]["RANDOM_SEED"])
    alone = load(out / f"alone_lr{lr:g}_seed{seed}" / "results.json")
    rows.append({"learning_rate": lr, "seed": seed, "sweep_accuracy": row["best_accuracy"],
                 "alone_accuracy": alone.get("best_accuracy")})
  return rows


def steps_per_second(model_dir: Path) -> Optional[float]:
  """The median training steps/s a run logged (its console rate lines; a sweep's step trains every member)."""
  path = model_dir / "metrics.jsonl"
  rates = [r["steps_per_second"] for r in map(json.loads, path.read_text().splitlines()) if "steps_per_second" in r
           ] if path.exists() else []
  rates = rates[1:] or rates  # The first period includes the first step's wait for its compile.
  return sorted(rates)[len(rates) // 2] if rates else None


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=STEPS)
  parser.add_argument("--results", default="results/bench_sweep.json")
  args = parser.parse_args(argv)
  out, results_path = Path("runs") / "bench" / "sweep", REPO / args.results  # MODEL_DIRs relative to REPO
  (REPO / out).mkdir(parents=True, exist_ok=True)
  previous = load(results_path).get("runs", {})
  records = {}
  for name, config_argv in configurations(out, args.steps).items():
    command = shlex.join(["python", *config_argv[1:]])
    model_dir = REPO / out / name
    if name in previous and previous[name]["command"] == command and (model_dir / "results.json").exists():
      records[name] = {**previous[name],
                       "steps_per_second": previous[name].get("steps_per_second") or steps_per_second(model_dir)}
      continue
    print(f"[{datetime.datetime.now():%H:%M:%S}] {name}: {command}", flush=True)
    record = run_measured(config_argv, REPO / out / f"{name}.log")
    if record["returncode"] != 0:
      print(f"{name} failed (exit {record['returncode']}); see {REPO / out / f'{name}.log'}", file=sys.stderr)
      return 1
    records[name] = {"command": command, **record, "load_average": os.getloadavg(),
                     "steps_per_second": steps_per_second(model_dir)}
    print(f"  {record['wall_seconds']:.1f} s, peak RSS {record['peak_rss_mib']:.0f} MiB", flush=True)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps({"runs": {**previous, **records}}, indent=1))
  summary = summarise(records)
  result = {"steps": args.steps, "batch_size": 32, "prompt_length": 20, "learning_rates": list(LEARNING_RATES),
            "seeds": list(SEEDS), "machine": f"{os.cpu_count()} CPU cores", "date": f"{datetime.date.today()}",
            **summary, "members": accuracies(REPO / out), "runs": records}
  results_path.write_text(json.dumps(result, indent=1))
  print(f"sweep {summary['sweep_wall_seconds']:.0f} s vs 9 runs {summary['sequential_wall_seconds']:.0f} s: ratio "
        f"{summary['wall_time_ratio']:.2f} (goal <= 0.6); peak RSS sweep {summary['sweep_peak_rss_mib']:.0f} MiB, "
        f"largest run alone {summary['alone_peak_rss_mib_max']:.0f} MiB", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
