r"""The demo configuration (gin/sst2_deep_prompt.gin) trained in float32 and in bfloat16 activations (issue 21).

  python scripts/bench_bf16.py [--out=results/bench_bf16.json] [--dtypes=float32,bfloat16]

Each run is the trainer's own command line (`python -m prompt_tuning_jax.train`) in its own process with
--gin.ACTIVATION_DTYPE, MODEL_DIR runs/bench_bf16/<dtype>; its results.json (SST-2 validation accuracy at the end
and at its best) and wall time are recorded. Resumable: a dtype whose run finished (results.json in its
MODEL_DIR and a record in --out) is kept. The acceptance: bfloat16 within 1 point of float32's accuracy.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(dtype: str, model_dir: Path) -> dict:
  argv = [sys.executable, "-m", "prompt_tuning_jax.train", "--gin_file=gin/sst2_deep_prompt.gin",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.ACTIVATION_DTYPE='{dtype}'"]
  started = time.perf_counter()
  subprocess.run(argv, check=True, cwd=REPO)
  return {"dtype": dtype, "command": " ".join(argv[1:]), "wall_seconds": time.perf_counter() - started,
          "results": json.loads((model_dir / "results.json").read_text())}


def accuracy(record: dict) -> float:
  """The final validation value of the run's selection metric (SST-2: accuracy, %) from its results.json."""
  results = record["results"]
  split = next(k[:-len("_metrics")] for k in results if k.endswith("_metrics"))
  return float(results[f"{split}_{results['selection_metric']}"])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="results/bench_bf16.json")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  args = parser.parse_args(argv)
  os.chdir(REPO)
  out = Path(args.out)
  record = json.loads(out.read_text()) if out.exists() else {"runs": {}}
  for dtype in args.dtypes.split(","):
    model_dir = REPO / "runs" / "bench_bf16" / dtype
    if dtype in record["runs"] and (model_dir / "results.json").exists():
      print(f"[bf16] {dtype}: recorded, kept", flush=True)
      continue
    if model_dir.exists():
      subprocess.run(["rm", "-rf", str(model_dir)], check=True)
    record["runs"][dtype] = run(dtype, model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
  if {"float32", "bfloat16"} <= set(record["runs"]):
    record["accuracy_points"] = {d: accuracy(r) for d, r in record["runs"].items()}
    record["bfloat16_minus_float32_points"] = (record["accuracy_points"]["bfloat16"]
                                               - record["accuracy_points"]["float32"])
    print(f"[bf16] accuracy {record['accuracy_points']}; difference "
          f"{record['bfloat16_minus_float32_points']:+.2f} points", flush=True)
  record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
  out.write_text(json.dumps(record, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
