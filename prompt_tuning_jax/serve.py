r"""Serves many tasks' exports over one frozen backbone, over HTTP, batching requests across tasks.

  python -m prompt_tuning_jax.serve --export sst2=runs/sst2/export/best.safetensors \
      --export rte=runs/rte/export/best.safetensors [--backbone DIR] [--host 127.0.0.1] [--port 8000] \
      [--max_batch 32] [--max_wait_ms 5] [--max_queue 1024] [--strict] [--allow_task_updates]

  python -m prompt_tuning_jax.serve --t5_gin_file=models/t5_1_1_base_prompt.gin --t5_checkpoint=/path/to/t5 \
      --export rte=runs/t5_rte/export/best.safetensors     # T5 prompts: answers are decoded text

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
  parser.add_argument("--t5_gin_file", action="append", default=[],
                      help="T5 exports: the gin model file they were trained with (models/t5_1_1_<size>_prompt.gin)")
  parser.add_argument("--t5_gin", action="append", default=[], metavar="KEY=VALUE",
                      help="a gin binding for the T5 model file, e.g. PROMPT_LENGTH=20 (repeatable)")
  parser.add_argument("--t5_checkpoint", default=None, help="T5 exports: the frozen T5 (Hugging Face or T5X)")
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
  if not exports:
    raise errors.ConfigError("no export to serve: pass --export NAME=PATH (repeatable).")
  if bool(args.t5_gin_file) != bool(args.t5_checkpoint):
    raise errors.ConfigError("T5 exports need both --t5_gin_file (the model's gin file) and --t5_checkpoint.")
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
  if args.t5_gin_file:
    from prompt_tuning_jax.serving.t5_bank import T5Bank  # pylint: disable=g-import-not-at-top
    bindings = [" = ".join(b.partition("=")[::2]) for b in args.t5_gin]
    bank = T5Bank(args.exports, args.t5_checkpoint, args.t5_gin_file, bindings, args.max_batch, args.lengths,
                  args.max_length)
  else:
    bank = ServingBank(args.exports, args.backbone, args.max_batch, args.lengths, args.max_length)
  groups = ", ".join(str(sorted(group)) for group in bank.group_names())
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
