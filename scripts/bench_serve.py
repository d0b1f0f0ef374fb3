"""Serving benchmark (`make bench-serve`): mixed 8-task traffic through the real server against the same traffic
answered one request at a time by single-task models. Writes results/bench_serve.json.

Eight classification tasks (SST-2, RTE, CB, BoolQ, WiC, WSC, AX-b, AX-g) over the packaged MiniLM, each an
export of a P=20 deep prompt and its head (the demo's shape; the values are random, which changes nothing
about speed), so all eight share one prompt bank. The inputs are the validation rows of the shipped SST-2 and
of the test fixtures' SuperGLUE files, one input per request, the tasks interleaved.

  server:   python -m prompt_tuning_jax.serve with the 8 exports (max_batch 32, max_wait_ms 5); C clients
            (C = 1, 8, 64) each send requests back to back over HTTP until N are answered.
  baseline: per task its own single-task model (one compiled forward per length, batch 1), the same
            requests answered one after another in process (no HTTP: the baseline pays no network cost).
"""

import argparse
import concurrent.futures
import json
import platform
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
TASKS = ("sst2", "rte", "cb", "boolq", "wic", "wsc", "axb", "axg")
SPLITS = {"axb": "test", "axg": "test"}
REQUESTS = {1: 80, 8: 320, 64: 960}


def _post(url: str, body: dict) -> float:
  import urllib.request  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
  with urllib.request.urlopen(request, timeout=300) as response:
    assert response.status == 200, response.status
    response.read()
  return time.perf_counter() - start


def _summary(latencies: Sequence[float], wall: float) -> dict:
  ms = np.asarray(latencies) * 1000
  return {"requests": len(ms), "wall_seconds": wall, "requests_per_second": len(ms) / wall,
          "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def traffic(data: Path) -> List[tuple]:
  """(task, row) per request, tasks interleaved in a fixed shuffled order."""
  from serving_fixtures import request_rows  # pylint: disable=g-import-not-at-top
  rows = {t: request_rows(t, SPLITS.get(t, "validation"), None if t == "sst2" else data) for t in TASKS}
  out = [(t, rows[t][i % len(rows[t])]) for i in range(max(REQUESTS.values())) for t in [TASKS[i % len(TASKS)]]]
  random.Random(0).shuffle(out)
  return out


def run_server(paths: Dict[str, Path], requests: List[tuple], max_batch: int, max_wait_ms: float) -> Dict[str, dict]:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  process = subprocess.Popen([sys.executable, "-m", "prompt_tuning_jax.serve", *[f"--export={t}={p}" for t, p in
                              paths.items()], f"--port={port}", f"--max_batch={max_batch}",
                              f"--max_wait_ms={max_wait_ms}", "--lengths=32,64"], cwd=REPO)
  try:
    deadline = time.time() + 600
    while True:
      try:
        import urllib.request  # pylint: disable=g-import-not-at-top
        urllib.request.urlopen(f"{url}/healthz", timeout=2).read()
        break
      except OSError:
        if process.poll() is not None or time.time() > deadline:
          raise RuntimeError("the server did not start")
        time.sleep(1)
    out = {}
    for clients, n in REQUESTS.items():
      _post(f"{url}/v1/predict", {"task": requests[0][0], "inputs": [requests[0][1]]})
      start = time.perf_counter()
      with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda r: _post(f"{url}/v1/predict", {"task": r[0], "inputs": [r[1]]}),
                                  requests[:n]))
      out[str(clients)] = _summary(latencies, time.perf_counter() - start)
      print(f"server, {clients} clients: {out[str(clients)]}", flush=True)
    return out
  finally:
    process.terminate()
    process.wait()


def run_baseline(paths: Dict[str, Path], requests: List[tuple], n: int) -> dict:
  from prompt_tuning_jax.serving import inputs  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.serving.bank import Item, ServingBank  # pylint: disable=g-import-not-at-top
  banks = {t: ServingBank({t: p}, max_batch=1, lengths=(32, 64)) for t, p in paths.items()}
  features = []
  for task, row in requests[:n]:
    served = banks[task].tasks[task]
    features.append((task, inputs.feature_rows(served.task, served.family, served.label_names, row)))
  banks[features[0][0]].answer([Item(features[0][0], [features[0][1]])])
  latencies, start = [], time.perf_counter()
  for task, rows in features:
    t0 = time.perf_counter()
    banks[task].answer([Item(task, [rows])])
    latencies.append(time.perf_counter() - t0)
  out = _summary(latencies, time.perf_counter() - start)
  print(f"baseline, one request at a time: {out}", flush=True)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=str(REPO / "results" / "bench_serve.json"))
  parser.add_argument("--work_dir", default=str(REPO / "runs" / "bench" / "serve"))
  parser.add_argument("--max_batch", type=int, default=32)
  parser.add_argument("--max_wait_ms", type=float, default=5.0)
  args = parser.parse_args(argv)
  from prompt_tuning_jax.models.bert_checkpoint import load_backbone  # pylint: disable=g-import-not-at-top
  from serving_fixtures import write_random_export  # pylint: disable=g-import-not-at-top
  from task_fixtures import write_task_data  # pylint: disable=g-import-not-at-top
  work = Path(args.work_dir)
  if work.exists():
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(work)
  data = write_task_data(work / "data")
  config, _ = load_backbone()
  paths = {t: write_random_export(work / f"{t}.safetensors", t, config, "DeepPrompt", length=20, seed=i,
                                  max_length=64) for i, t in enumerate(TASKS)}
  requests = traffic(data)
  server = run_server(paths, requests, args.max_batch, args.max_wait_ms)
  baseline = run_baseline(paths, requests, REQUESTS[1] * 2)
  result = {"tasks": list(TASKS), "prompt": "deep prompt P=20", "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms, "lengths": [32, 64], "server": server, "baseline_one_at_a_time": baseline,
            "throughput_ratio": {c: s["requests_per_second"] / baseline["requests_per_second"] for c, s in server.items()},
            "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores (shared)"}
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(result, indent=1))
  print(f"wrote {args.out}: throughput ratios {result['throughput_ratio']}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
