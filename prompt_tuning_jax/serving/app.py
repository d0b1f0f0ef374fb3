"""The HTTP API (Starlette, an ASGI app) over a ServingBank and its Batcher.

  POST /v1/predict  {"task": NAME, "inputs": [row, ...], "strict": false}
                    -> 200 {"task", "answers": [answer, ...]} (serving/answers.py; "truncated": true on an
                    input the task's length cut; with "strict", 413 instead)
  GET  /v1/tasks    -> {"tasks": [{"name", "task", "family", "labels", "max_length", ...}]}
  POST /v1/tasks    {"name": NAME, "export": PATH} -> 201 (only with allow_task_updates)
  GET  /healthz     -> {"status": "ok", "tasks": N}
  GET  /metrics     -> Prometheus text: requests by task and status, latency, batch sizes, queue depth

Errors answer {"error": one line naming the problem and the fix}: 404 unknown task (naming the known
ones), 422 malformed JSON or a missing / wrong field, 413 a truncated input in strict mode, 429 a full
queue (with Retry-After), 500 a failing batch (its own requests only; the server keeps serving).
"""

import asyncio
import contextlib
import json
import time
import prometheus_client as prom
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from prompt_tuning_jax import errors
from prompt_tuning_jax.serving import inputs
from prompt_tuning_jax.serving.bank import Item, ServingBank
from prompt_tuning_jax.serving.batcher import Batcher, QueueFull


class _Metrics:
  def __init__(self):
    self.registry = prom.CollectorRegistry()
    self.requests = prom.Counter("serve_requests", "Requests answered, by task and HTTP status.",
                                 ["task", "status"], registry=self.registry)
    self.latency = prom.Histogram("serve_request_seconds", "Time from a request's arrival to its answer.",
                                  ["task"], registry=self.registry,
                                  buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
    self.batch_inputs = prom.Histogram("serve_batch_inputs", "Inputs answered together in one round.",
                                       registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
    self.batch_seconds = prom.Histogram("serve_batch_seconds", "Time one round took (preprocess, forward, decode).",
                                        registry=self.registry)
    self.queue = prom.Gauge("serve_queue_inputs", "Inputs waiting for a round.", registry=self.registry)


def _error(status: int, message: str, metrics: _Metrics, task: str = "", headers=None) -> JSONResponse:
  metrics.requests.labels(task=task, status=str(status)).inc()
  return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_json(request: Request) -> dict:
  try:
    body = json.loads(await request.body())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.UserError(f"the request body is not valid JSON ({e}).") from None
  if not isinstance(body, dict):
    raise errors.UserError(f"the request body must be a JSON object, got {type(body).__name__}.")
  return body


class _Api:
  """The routes' handlers over one bank and batcher."""

  def __init__(self, bank: ServingBank, batcher: Batcher, metrics: _Metrics, strict: bool, allow_task_updates: bool):
    self.bank, self.batcher, self.metrics = bank, batcher, metrics
    self.strict, self.allow_task_updates = strict, allow_task_updates

  def _features(self, name: str, rows) -> list:
    task = self.bank.tasks[name]
    return [inputs.feature_rows(task.task, task.family, task.label_names, row, f"inputs[{i}]")
            for i, row in enumerate(rows)]

  async def predict(self, request: Request) -> Response:
    arrived, metrics = time.perf_counter(), self.metrics
    try:
      body = await _read_json(request)
    except errors.UserError as e:
      return _error(422, str(e), metrics)
    name, rows = body.get("task"), body.get("inputs")
    if not isinstance(name, str):
      return _error(422, "missing field 'task': the name of a served task (GET /v1/tasks lists them).", metrics)
    if name not in self.bank.tasks:
      return _error(404, f"unknown task {name!r}; this server serves {sorted(self.bank.tasks)}.", metrics)
    if not isinstance(rows, list) or not rows:
      return _error(422, "missing field 'inputs': a non-empty list of the task's rows.", metrics, name)
    try:
      answers = await self.batcher.submit(Item(name, self._features(name, rows)))
    except inputs.InputError as e:
      return _error(422, str(e), metrics, name)
    except QueueFull as e:
      return _error(429, str(e), metrics, name, headers={"Retry-After": str(e.retry_after)})
    except Exception as e:  # pylint: disable=broad-except  (its batch failed; the server keeps serving)
      return _error(500, f"the batch holding this request failed: {type(e).__name__}: {e}", metrics, name)
    cut = [i for i, a in enumerate(answers) if a.get("truncated")]
    if cut and body.get("strict", self.strict):
      return _error(413, f"inputs {cut} are longer than task {name!r}'s {self.bank.tasks[name].max_length} tokens; "
                    "shorten them or send \"strict\": false to have them truncated.", metrics, name)
    metrics.requests.labels(task=name, status="200").inc()
    metrics.latency.labels(task=name).observe(time.perf_counter() - arrived)
    return JSONResponse({"task": name, "answers": answers})

  async def list_tasks(self, request: Request) -> Response:
    del request
    return JSONResponse({"tasks": self.bank.describe()})

  async def add_task(self, request: Request) -> Response:
    if not self.allow_task_updates:
      return _error(403, "adding tasks is off; start the server with --allow_task_updates.", self.metrics)
    try:
      body = await _read_json(request)
      name, path = body.get("name"), body.get("export")
      if not isinstance(name, str) or not isinstance(path, str):
        raise errors.UserError("POST /v1/tasks needs fields 'name' and 'export' (an export's path).")
      added = await asyncio.get_running_loop().run_in_executor(None, self.bank.add, name, path)
    except errors.UserError as e:
      return _error(422, str(e), self.metrics)
    return JSONResponse({"added": added.name, "tasks": sorted(self.bank.tasks)}, status_code=201)

  async def healthz(self, request: Request) -> Response:
    del request
    return JSONResponse({"status": "ok", "tasks": len(self.bank.tasks)})

  async def metrics_text(self, request: Request) -> Response:
    del request
    return Response(prom.generate_latest(self.metrics.registry), media_type=prom.CONTENT_TYPE_LATEST)

  @contextlib.asynccontextmanager
  async def lifespan(self, app):
    del app
    self.batcher.start()
    yield
    await self.batcher.stop()
    print("stopped: every request in flight answered.", flush=True)


def create_app(bank: ServingBank, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 1024,
               strict: bool = False, allow_task_updates: bool = False) -> Starlette:
  """The app. strict: refuse truncated inputs (413) unless a request says "strict": false."""
  metrics = _Metrics()
  batcher = Batcher(bank, max_batch, max_wait_ms, max_queue,
                    on_batch=lambda size, seconds: (metrics.batch_inputs.observe(size),
                                                    metrics.batch_seconds.observe(seconds)))
  metrics.queue.set_function(lambda: batcher.waiting)
  api = _Api(bank, batcher, metrics, strict, allow_task_updates)
  return Starlette(routes=[Route("/v1/predict", api.predict, methods=["POST"]),
                           Route("/v1/tasks", api.list_tasks, methods=["GET"]),
                           Route("/v1/tasks", api.add_task, methods=["POST"]),
                           Route("/healthz", api.healthz, methods=["GET"]),
                           Route("/metrics", api.metrics_text, methods=["GET"])],
                   lifespan=api.lifespan)
