r"""Serves many tasks' exports over one frozen backbone, over HTTP, batching requests across tasks.

  python -m prompt_tuning_jax.serve --export sst2=runs/sst2/export/best.safetensors \
      --export rte=runs/rte/export/best.safetensors [--backbone DIR] [--host 127.0.0.1] [--port 8000] \
      [--max_batch 32] [--max_wait_ms 5] [--max_queue 1024] [--strict] [--allow_task_updates]

Loads the backbone once (--backbone: INITIAL_CHECKPOINT_PATH, default the packaged MiniLM), checks every
export against it, compiles each group's forward for its (batch, length) buckets, then serves the API in
serving/app.py. SIGTERM or Ctrl-C stops accepting connections, answers what is in flight, prints one line,
and ends by the signal (uvicorn re-raises it, so a process manager sees why the server stopped).
Bad flags or exports: one `error:` line, status 2.
"""

import argparse
import sys
from typing import Sequence

from prompt_tuning_jax import cli, errors


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--export", action="append", default=[], metavar="NAME=PATH",
                      help="a task to serve: its request name and export file (repeatable)")
  parser.add_argument("--backbone", default=None, help="the backbone directory the exports were trained on")
  parser.add_argument("--host", default="127.0.0.1")
  parser.add_argument("--port", type=int, default=8000)
  parser.add_argument("--max_batch", type=int, default=32, help="most inputs answered in one round")
  parser.add_argument("--max_wait_ms", type=float, default=5.0, help="longest a request waits for others")
  parser.add_argument("--max_queue", type=int, default=1024, help="waiting inputs beyond which requests get 429")
  parser.add_argument("--max_length", type=int, default=None,
                      help="input tokens served per task (default: each export's training length)")
  parser.add_argument("--lengths", default="", help="comma-separated padded lengths to compile (default 32, 64, ...)")
  parser.add_argument("--strict", action="store_true", help="refuse inputs longer than the task's length (413)")
  parser.add_argument("--allow_task_updates", action="store_true", help="enable POST /v1/tasks")
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:
    if e.code:
      raise errors.ConfigError(f"bad flags {list(argv)}; see --help.") from None
    raise
  exports = {}
  for spec in args.export:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
      raise errors.ConfigError(f"--export {spec!r}: use --export NAME=PATH.")
    exports[name] = path
  args.exports = exports
  for flag in ("max_batch", "max_queue", "port"):
    if getattr(args, flag) < 1:
      raise errors.ConfigError(f"--{flag}={getattr(args, flag)}: must be at least 1.")
  if args.max_wait_ms < 0:
    raise errors.ConfigError(f"--max_wait_ms={args.max_wait_ms}: must be >= 0.")
  try:
    args.lengths = tuple(int(x) for x in args.lengths.split(",") if x.strip())
  except ValueError:
    raise errors.ConfigError(f"--lengths={args.lengths!r}: comma-separated integers, e.g. 32,64,128.") from None
  return args


def serve(args: argparse.Namespace) -> None:
  import uvicorn  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.serving.app import create_app  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.serving.bank import ServingBank  # pylint: disable=g-import-not-at-top
  bank = ServingBank(args.exports, args.backbone, args.max_batch, args.lengths, args.max_length)
  groups = ", ".join(f"{[m.name for m in g.members]} ({len(g.batch_sizes) * len(g.lengths)} shapes)"
                     for g in bank.groups.values())
  print(f"Serving {len(bank.tasks)} tasks on {bank.backbone_path} in {len(bank.groups)} groups: {groups}; "
        f"compiled in {bank.compile_seconds:.1f} s", flush=True)
  app = create_app(bank, args.max_batch, args.max_wait_ms, args.max_queue, args.strict, args.allow_task_updates)
  print(f"Listening on http://{args.host}:{args.port} (POST /v1/predict, GET /v1/tasks, /healthz, /metrics)",
        flush=True)
  uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30)


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(serve, argv, parse_flags=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
