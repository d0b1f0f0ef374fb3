"""The server (python -m prompt_tuning_jax.serve) started for real and driven over HTTP: 8 tasks of 4 families
over one MiniLM, many concurrent clients, every answer checked against the offline evaluation of the same
export (export_eval.evaluate_export, what `python -m prompt_tuning_jax.eval` runs); bad requests; SIGTERM."""

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from serving_fixtures import request_rows, same_answer, write_random_export
from task_fixtures import write_task_data

# task -> prompt kind: wic's input prompt makes its own group; rte, cb, boolq and wsc share one bank.
TASKS = {"rte": "DeepPrompt", "cb": "DeepPrompt", "boolq": "DeepPrompt", "wsc": "DeepPrompt", "wic": "InputPrompt",
         "copa": "DeepPrompt", "conll2003": "DeepPrompt", "squad_v1": "DeepPrompt"}
MAX_LENGTH, MAX_QUEUE = 48, 64
# One worker runs every test here, so the exports and offline evaluations (`served`) are made once.
pytestmark = pytest.mark.xdist_group("serve")


def _call(url: str, body=None, raw: bytes = None, timeout: float = 120):
  """(status, JSON body, headers) of a GET (body None) or POST."""
  data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
  request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      payload = response.read()
      status, headers = response.status, dict(response.headers)
  except urllib.error.HTTPError as e:
    payload, status, headers = e.read(), e.code, dict(e.headers)
  try:
    return status, json.loads(payload), headers
  except json.JSONDecodeError:
    return status, payload.decode(), headers


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_healthy(url: str, process, seconds: float = 300) -> None:
  deadline = time.time() + seconds
  while time.time() < deadline:
    assert process.poll() is None, process.stderr.read().decode()[-3000:]
    try:
      if _call(f"{url}/healthz", timeout=2)[0] == 200:
        return
    except OSError:
      pass
    time.sleep(0.5)
  raise AssertionError("the server did not come up")


@pytest.fixture(scope="module")
def served(tmp_path_factory, minilm):
  """(data dir, {task: export path}, {task: offline prediction lines})."""
  from prompt_tuning_jax.recipes import export_eval  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("serve")
  data = write_task_data(root / "data")
  config, _ = minilm
  paths = {task: write_random_export(root / f"{task}.safetensors", task, config, kind, seed=i, max_length=MAX_LENGTH)
           for i, (task, kind) in enumerate(TASKS.items())}
  offline = {}
  for task, path in paths.items():
    export_eval.evaluate_export(str(path), str(root / "eval" / task), data_dir=str(data), batch_size=8)
    offline[task] = [json.loads(line) for line in (root / "eval" / task / "predictions.jsonl").read_text().splitlines()]
  return data, paths, offline


def test_eval_command_line_writes_the_offline_predictions(served, tmp_path):
  data, paths, offline = served
  out = tmp_path / "rte_eval"
  result = subprocess.run([sys.executable, "-m", "prompt_tuning_jax.eval", "--gin_file=runs/export_eval.gin",
                           f"--gin.PROMPT_FILE='{paths['rte']}'", f"--gin.EVAL_OUTPUT_DIR='{out}'",
                           f"--gin.DATA_DIR='{data}'"], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
  assert len(lines) == len(offline["rte"]) > 0
  assert all(same_answer(a, b, 1e-6) for a, b in zip(lines, offline["rte"]))
  assert json.loads((out / "metrics.json").read_text())["examples"] == len(lines)


def test_server_answers_mixed_concurrent_traffic_as_offline_evaluation(served):
  data, paths, offline = served
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  process = subprocess.Popen([sys.executable, "-m", "prompt_tuning_jax.serve", *[f"--export={t}={p}" for t, p in
                              paths.items()], f"--port={port}", "--max_batch=16", f"--max_queue={MAX_QUEUE}",
                              "--max_wait_ms=20", "--allow_task_updates"],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    _wait_healthy(url, process)
    status, listing, _ = _call(f"{url}/v1/tasks")
    assert status == 200 and sorted(t["name"] for t in listing["tasks"]) == sorted(TASKS)
    assert {t["name"]: t["group_size"] for t in listing["tasks"]}["cb"] == 4  # rte, cb, boolq, wsc in one bank.

    # Many concurrent clients, every task, requests of one to three inputs, in shuffled order.
    requests = []
    for task in TASKS:
      rows, start = request_rows(task, "validation", data), 0
      while start < len(rows):
        size = 1 + len(requests) % 3
        requests.append((task, list(range(start, min(len(rows), start + size))), rows))
        start += size
    requests.sort(key=lambda r: hash((r[0], r[1][0])) % 1000)
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
      results = list(pool.map(lambda r: _call(f"{url}/v1/predict", {"task": r[0], "inputs": [r[2][i] for i in r[1]]}),
                              requests))
    checked = 0
    for (task, index, _), (status, body, _) in zip(requests, results):
      assert status == 200, (task, body)
      assert len(body["answers"]) == len(index)
      for i, answer in zip(index, body["answers"]):
        assert same_answer(answer, offline[task][i]), (task, i, answer, offline[task][i])
        checked += 1
    assert checked == sum(len(lines) for lines in offline.values()) > 100
    metrics = _call(f"{url}/metrics")[1]
    batch_counts = [line for line in metrics.splitlines() if line.startswith("serve_batch_inputs_count")]
    rounds = float(batch_counts[0].split()[-1])
    assert rounds < len(requests)  # Requests were answered together.
    assert 'serve_requests_total{status="200",task="cb"}' in metrics

    _check_bad_requests(url, data, paths)
    assert _call(f"{url}/healthz")[0] == 200

    # Graceful shutdown: a request in flight when SIGTERM arrives is still answered.
    rows = request_rows("squad_v1", "validation", data) * 4
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      pending = pool.submit(_call, f"{url}/v1/predict", {"task": "squad_v1", "inputs": rows[:MAX_QUEUE]})
      time.sleep(0.3)
      process.send_signal(signal.SIGTERM)
      status, body, _ = pending.result()
    assert status == 200 and len(body["answers"]) == min(len(rows), MAX_QUEUE)
    assert process.wait(timeout=60) == -signal.SIGTERM  # uvicorn re-raises the signal once it has drained.
    assert "stopped: every request in flight answered" in process.stdout.read().decode()
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()


def _check_bad_requests(url: str, data: Path, paths) -> None:
  predict = f"{url}/v1/predict"
  status, body, _ = _call(predict, {"task": "mnli", "inputs": [{"premise": "a", "hypothesis": "b"}]})
  assert status == 404 and "unknown task 'mnli'" in body["error"] and "'rte'" in body["error"]
  status, body, _ = _call(predict, raw=b'{"task": "rte", "inputs": [')
  assert status == 422 and "not valid JSON" in body["error"]
  status, body, _ = _call(predict, {"task": "rte"})
  assert status == 422 and "missing field 'inputs'" in body["error"]
  status, body, _ = _call(predict, {"inputs": [{}]})
  assert status == 422 and "missing field 'task'" in body["error"]
  status, body, _ = _call(predict, {"task": "rte", "inputs": [{"premise": "A cat sat."}]})
  assert status == 422 and "inputs[0]" in body["error"] and "hypothesis" in body["error"]
  status, body, _ = _call(predict, {"task": "conll2003", "inputs": [{"tokens": "John lives here"}]})
  assert status == 422 and "'tokens'" in body["error"]
  long_row = {"premise": "the cat sat on the mat " * 40, "hypothesis": "a cat sat"}
  status, body, _ = _call(predict, {"task": "rte", "inputs": [long_row, {"premise": "A cat.", "hypothesis": "A cat."}]})
  assert status == 200 and body["answers"][0]["truncated"] is True and "truncated" not in body["answers"][1]
  status, body, _ = _call(predict, {"task": "rte", "inputs": [long_row], "strict": True})
  assert status == 413 and "inputs [0]" in body["error"] and f"{MAX_LENGTH} tokens" in body["error"]
  status, body, headers = _call(predict, {"task": "rte", "inputs": [{"premise": "a", "hypothesis": "b"}] * (MAX_QUEUE + 1)})
  assert status == 429 and "overloaded" in body["error"] and headers.get("retry-after", headers.get("Retry-After")) == "1"
  # A task added while serving answers at once, from the same export as an existing one.
  status, body, _ = _call(f"{url}/v1/tasks", {"name": "rte_copy", "export": str(paths["rte"])}, timeout=300)
  assert status == 201 and "rte_copy" in body["tasks"]
  row = request_rows("rte", "validation", data)[0]
  first = _call(predict, {"task": "rte", "inputs": [row]})[1]["answers"][0]
  again = _call(predict, {"task": "rte_copy", "inputs": [row]})[1]["answers"][0]
  assert same_answer(again, first)
  status, body, _ = _call(f"{url}/v1/tasks", {"name": "rte_copy", "export": str(paths["rte"])})
  assert status == 422 and "already served" in body["error"]


def test_a_failing_batch_answers_500_to_its_own_requests_and_serving_goes_on(served):
  """A bank whose rounds fail for one marked input: only the requests of that round get 500."""
  import uvicorn  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.serving.app import create_app  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.serving.bank import ServingBank  # pylint: disable=g-import-not-at-top
  data, paths, offline = served

  class FailingOnMarker(ServingBank):
    def answer(self, items):
      if any("FAIL" in str(item.rows) for item in items):
        raise RuntimeError("injected fault")
      return super().answer(items)

  bank = FailingOnMarker({"rte": paths["rte"]}, max_batch=8, lengths=(MAX_LENGTH,))
  port = _free_port()
  server = uvicorn.Server(uvicorn.Config(create_app(bank, max_batch=8, max_wait_ms=0), host="127.0.0.1", port=port,
                                         log_level="warning"))
  thread = threading.Thread(target=server.run, daemon=True)
  thread.start()
  url = f"http://127.0.0.1:{port}"
  try:
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
      time.sleep(0.1)
    row = request_rows("rte", "validation", data)[0]
    status, body, _ = _call(f"{url}/v1/predict", {"task": "rte", "inputs": [{"premise": "FAIL", "hypothesis": "x"}]})
    assert status == 500 and "injected fault" in body["error"]
    status, body, _ = _call(f"{url}/v1/predict", {"task": "rte", "inputs": [row]})
    assert status == 200 and same_answer(body["answers"][0], offline["rte"][0])
    assert 'serve_requests_total{status="500",task="rte"} 1.0' in _call(f"{url}/metrics")[1]
  finally:
    server.should_exit = True
    thread.join(timeout=30)


def test_bad_serve_flags_and_exports_are_one_line_errors(served, tmp_path, minilm):
  data, paths, _ = served
  config, _ = minilm
  wrong = write_random_export(tmp_path / "wrong.safetensors", "rte", config)
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  with safe_open(str(wrong), "np") as f:
    metadata = f.metadata()
  tensors = load_file(str(wrong))
  save_file(tensors, str(wrong), metadata={**metadata, "hidden_size": "128", "num_hidden_layers": "2"})
  bitfit = tmp_path / "bitfit.safetensors"
  save_file({**tensors, "backbone/encoder/layer_0/attention/self/query/bias": tensors["head/bias"]}, str(bitfit),
            metadata=metadata)
  cases = [([f"--export=rte={tmp_path / 'missing.safetensors'}"], "does not exist"),
           ([f"--export={paths['rte']}"], "use --export NAME=PATH"),
           ([], "no export to serve"),
           ([f"--export=rte={wrong}"], "exported for a different backbone"),
           ([f"--export=rte={bitfit}"], "changes backbone parameters"),
           ([f"--export=rte={paths['rte']}", "--max_batch=0"], "--max_batch=0: must be at least 1")]
  for flags, message in cases:
    result = subprocess.run([sys.executable, "-m", "prompt_tuning_jax.serve", *flags], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 2, (flags, result.stderr[-2000:])
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, (flags, last)
    assert "Traceback" not in result.stderr


def test_t5_server_decodes_as_infer_does(tmp_path):
  """A T5 prompt served on the tiny T5: every decoded answer equals `python -m prompt_tuning_jax.infer`'s."""
  import gin  # pylint: disable=g-import-not-at-top
  from conftest import GOLDENS, write_tiny_data  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax import infer as infer_cli  # pylint: disable=g-import-not-at-top
  from serving_fixtures import write_random_t5_export  # pylint: disable=g-import-not-at-top
  data = write_tiny_data(tmp_path / "data")
  path = write_random_t5_export(tmp_path / "t5_rte.safetensors", "super_glue_rte_v102", d_model=64)
  model = ["--gin_file=models/t5_1_1_tiny_prompt.gin", "--gin.PROMPT_LENGTH=4"]
  gin.clear_config()
  try:
    code = infer_cli.main([*model, "--gin_file=runs/prompt_infer.gin", f"--gin.CHECKPOINT_PATH='{GOLDENS / 't5_tiny'}'",
                           f"--gin.PROMPT_FILE='{path}'", f"--gin.INFER_OUTPUT_DIR='{tmp_path / 'infer'}'",
                           "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'", f"--gin.DATA_DIR='{data}'",
                           "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}"])
  finally:
    gin.clear_config()
  assert code == 0
  offline = [json.loads(line) for line in (tmp_path / "infer" / "predictions.jsonl").read_text().splitlines()]
  assert len({line["prediction"] for line in offline}) > 1  # Answers that differ: a check that can fail.
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  process = subprocess.Popen([sys.executable, "-m", "prompt_tuning_jax.serve", "--t5_gin_file=models/t5_1_1_tiny_prompt.gin",
                              f"--t5_checkpoint={GOLDENS / 't5_tiny'}", f"--export=rte={path}", f"--port={port}",
                              "--max_batch=4"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    _wait_healthy(url, process)
    rows = request_rows("rte", "validation", data)  # super_glue_rte_v102 reads rte's files.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      results = list(pool.map(lambda row: _call(f"{url}/v1/predict", {"task": "rte", "inputs": [row]}), rows))
    assert len(results) == len(offline) == 10
    for (status, body, _), reference in zip(results, offline):
      assert status == 200, body
      assert body["answers"][0]["text"] == reference["prediction"]
    status, body, _ = _call(f"{url}/v1/predict", {"task": "rte", "inputs": [{"premise": "word " * 60, "hypothesis": "x"}]})
    assert status == 200 and body["answers"][0]["truncated"] is True
  finally:
    process.kill()
    process.wait()
