r"""Command line trainer with t5x flag semantics.

  python -m prompt_tuning_jax.train --gin_file=gin/rte_deep_prompt.gin \
      --gin.MODEL_DIR="'runs/rte'" [--gin_file=more.gin] [--gin.KEY=VALUE] \
      [--gin_bindings='KEY = VALUE'] [--gin_search_paths=dir1,dir2]

`--gin_file` repeats and applies in order (later files win); `--gin.KEY=VALUE` is the
binding `KEY = VALUE` (Python literals: strings keep their inner quotes). Relative
gin files and `include`s resolve against the search paths, then the package's gin/.
Known bad input (missing data, unknown task, unset REQUIRED macro, bad checkpoint)
exits with status 2 and one `error:` line, never a traceback.

The encoder trainer runs by default; a run file picks another with `launch.trainer`
(gin/runs/prompt_finetune.gin binds the T5 trainer `@train_seq2seq`).
"""

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import gin

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow only feeds data: keep its logs quiet.

GIN_DIR = Path(__file__).resolve().parents[1] / "gin"
_REQUIRED_MACRO = re.compile(r"(\w+)/(?:gin\.)?macro\.value set to `%gin\.REQUIRED`")


def register_configurables() -> None:
  """Makes the model classes bindable from gin (they are flax dataclasses); idempotent."""
  if "prompt_tuning_jax.EncoderClassifier" in gin.config._REGISTRY:  # pylint: disable=protected-access
    return
  # pylint: disable=g-import-not-at-top,unused-import
  from prompt_tuning_jax import trainer  # registers train
  from prompt_tuning_jax import t5_inference, t5_trainer  # register train_seq2seq, evaluate_prompt, infer_prompt
  from prompt_tuning_jax.models import t5  # registers T5Config
  from prompt_tuning_jax.models.classifier import EncoderClassifier
  from prompt_tuning_jax.models.t5_prompted import PromptedT5
  from prompt_tuning_jax.prompts import initializers
  from prompt_tuning_jax.prompts.deep import DeepPrompt
  from prompt_tuning_jax.prompts.input import InputPrompt
  from prompt_tuning_jax.prompts.ptuning import PTuningEncoder
  # pylint: enable=g-import-not-at-top,unused-import
  for module_class in (EncoderClassifier, PromptedT5, DeepPrompt, InputPrompt, PTuningEncoder):
    gin.external_configurable(module_class, module="prompt_tuning_jax")


@gin.configurable
def launch(trainer: Optional[Callable[[], object]] = None):
  """Runs the configured trainer: `launch.trainer` (e.g. @train_seq2seq), by default the encoder trainer."""
  if trainer is None:
    from prompt_tuning_jax import trainer as encoder_trainer  # pylint: disable=g-import-not-at-top
    trainer = encoder_trainer.train
  return trainer()


def rewrite_gin_args(argv: Sequence[str]) -> List[str]:
  """`--gin.KEY=VALUE` -> `--gin_bindings=KEY = VALUE` (t5x's rewrite)."""
  out = []
  for arg in argv:
    if arg.startswith("--gin."):
      key, sep, value = arg[len("--gin."):].partition("=")
      if not sep:
        raise SystemExit(f"error: {arg} needs a value: --gin.{key}=VALUE")
      arg = f"--gin_bindings={key} = {value}"
    out.append(arg)
  return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gin_file", action="append", default=[], help="gin file; repeatable, applied in order")
  parser.add_argument("--gin_bindings", action="append", default=[], help="gin binding; repeatable")
  parser.add_argument("--gin_search_paths", default="", help="comma-separated directories for gin files")
  return parser.parse_args(rewrite_gin_args(argv))


def resolve_gin_file(name: str, search_paths: Sequence[Path]) -> str:
  for root in [Path.cwd(), *search_paths]:
    candidate = root / name
    if candidate.exists():
      return str(candidate)
  raise FileNotFoundError(f"gin file {name!r} not found in {[str(p) for p in [Path.cwd(), *search_paths]]}.")


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
  """Parses and finalizes the config; an unset REQUIRED macro raises naming the macro."""
  paths = [Path(p) for p in search_paths if p] + [GIN_DIR]
  # Our directories go before gin's default '' prefix: for an include like
  # 'tasks/rte.gin', gin's package-resource reader would otherwise try to import the
  # repository's top-level tasks/ folder as a package and fail. gin has no public
  # way to prepend (gin-config is pinned at 0.5.0).
  for p in reversed(paths):
    if str(p) not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
      gin.config._LOCATION_PREFIXES.insert(0, str(p))  # pylint: disable=protected-access
  files = [resolve_gin_file(f, paths) for f in gin_files]
  try:
    gin.parse_config_files_and_bindings(files, bindings, finalize_config=True)
  except ValueError as e:
    m = _REQUIRED_MACRO.search(str(e))
    if m:
      raise ValueError(f"gin macro {m.group(1)} is REQUIRED but was not set: pass "
                       f"--gin.{m.group(1)}=... or bind it in a gin file.") from None
    raise


USER_ERRORS: Tuple[type, ...] = (ValueError, FileNotFoundError, OSError, KeyError, FloatingPointError)


def run_cli(entry: Callable[[], object], argv: Sequence[str] = None) -> int:
  """Parses t5x-style flags and gin, then calls `entry()`; known bad input -> status 2 and one line."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")  # Accelerators belong to JAX; tf.data runs on the CPU.
    register_configurables()
    parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths.split(","))
    entry()
  except USER_ERRORS as e:
    message = str(e).strip().strip('"')
    print(f"error: {message}", file=sys.stderr)
    return 2
  return 0


def main(argv: Sequence[str] = None) -> int:
  return run_cli(launch, argv)


if __name__ == "__main__":
  sys.exit(main())
