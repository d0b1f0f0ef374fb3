r"""Command line trainer with t5x flag semantics.

  python -m prompt_tuning_jax.train --gin_file=gin/rte_deep_prompt.gin \
      --gin.MODEL_DIR="'runs/rte'" [--gin_file=more.gin] [--gin.KEY=VALUE] \
      [--gin_bindings='KEY = VALUE'] [--gin_search_paths=dir1,dir2]

`--gin_file` repeats and applies in order (later files win); `--gin.KEY=VALUE` is the
binding `KEY = VALUE` (Python literals: strings keep their inner quotes). Relative
gin files and `include`s resolve against the search paths, then the package's gin/.
Known bad input (bad gin syntax or binding, unset REQUIRED macro, unknown task, missing or
malformed data, a prompt file or backbone that does not fit, an unwritable MODEL_DIR; the
README's table) raises an `errors.UserError` and exits with status 2 and one `error:` line, never
a traceback. Any other exception is a bug and keeps its traceback. SIGTERM or SIGINT during training
checkpoints the step and exits with 128 + the signal number after one line (training/safety.py); a
second run on a MODEL_DIR in use is refused (status 2).

The encoder trainer runs by default; a run file picks another with `launch.trainer`
(gin/runs/prompt_finetune.gin binds the T5 trainer `@train_seq2seq`).
"""

import argparse
import contextlib
import difflib
import inspect
import io
import os
import re
import signal
import sys
import tempfile
import tokenize
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import gin
from gin import config_parser

from prompt_tuning_jax import errors
from prompt_tuning_jax.training import safety, sweep_settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow only feeds data: keep its logs quiet.

GIN_DIR = Path(__file__).resolve().parents[1] / "gin"
_REQUIRED_MACRO = re.compile(r"(\w+)/(?:gin\.)?macro\.value set to `%gin\.REQUIRED`")
# What gin appends to an error's message: where a binding was parsed, and each configurable call it went through.
_GIN_LOCATION = re.compile(r'\n  In (?:file "(?P<file>[^"]*)",|bindings string) line (?P<line>\d+)\n    (?P<text>.*)')
_GIN_CALL_NOTE = re.compile(r"\n  In call to configurable .*")
_UNKNOWN_CONFIGURABLE = re.compile(r"No configurable matching '([^']+)'")
_UNKNOWN_PARAMETER = re.compile(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'")


def register_configurables() -> None:
  """Makes the model classes bindable from gin (they are flax dataclasses); idempotent."""
  if "prompt_tuning_jax.EncoderClassifier" in gin.config._REGISTRY:  # pylint: disable=protected-access
    return
  # pylint: disable=g-import-not-at-top,unused-import
  from prompt_tuning_jax.recipes import encoder  # registers train
  from prompt_tuning_jax.recipes import t5_eval, t5_train  # register train_seq2seq, evaluate_prompt, infer_prompt
  from prompt_tuning_jax.recipes import export_eval  # registers evaluate_export, infer_export
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
    from prompt_tuning_jax.recipes import encoder as encoder_trainer  # pylint: disable=g-import-not-at-top
    trainer = encoder_trainer.train
  return trainer()


@gin.configurable
def evaluate(evaluator: Optional[Callable[[], object]] = None):
  """Runs the configured evaluator: `evaluate.evaluator` (@evaluate_export in gin/runs/export_eval.gin for
  encoder exports), by default the T5 prompt evaluation (gin/runs/prompt_eval.gin)."""
  if evaluator is None:
    from prompt_tuning_jax.recipes import t5_eval  # pylint: disable=g-import-not-at-top
    evaluator = t5_eval.evaluate_prompt
  return evaluator()


@gin.configurable
def infer(inferrer: Optional[Callable[[], object]] = None):
  """Runs the configured inference: `infer.inferrer` (@infer_export in gin/runs/export_infer.gin for encoder
  exports), by default the T5 prompt inference (gin/runs/prompt_infer.gin)."""
  if inferrer is None:
    from prompt_tuning_jax.recipes import t5_eval  # pylint: disable=g-import-not-at-top
    inferrer = t5_eval.infer_prompt
  return inferrer()


def rewrite_gin_args(argv: Sequence[str]) -> List[str]:
  """`--gin.KEY=VALUE` -> `--gin_bindings=KEY = VALUE` (t5x's rewrite)."""
  out = []
  for arg in argv:
    if arg.startswith("--gin."):
      key, sep, value = arg[len("--gin."):].partition("=")
      if not sep:
        raise errors.ConfigError(f"{arg} needs a value: --gin.{key}=VALUE")
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
  raise errors.MissingFileError(f"gin file {name!r} not found in {[str(p) for p in [Path.cwd(), *search_paths]]}.")


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
  """Parses and finalizes the config. Bad syntax, an unknown binding or an unset REQUIRED macro raises a
  one-line errors.ConfigError naming the file and line (or the --gin binding) and the fix; an include that
  is not found, an errors.MissingFileError. So do a macro in `bindings` that the config never reads
  (check_macros_are_read), two method files, and a method file before runs/train.gin (check_method_files)."""
  paths = [Path(p) for p in search_paths if p] + [GIN_DIR]
  # Our directories go before gin's default '' prefix: for an include like
  # 'tasks/rte.gin', gin's package-resource reader would otherwise try to import the
  # repository's top-level tasks/ folder as a package and fail. gin has no public
  # way to prepend (gin-config is pinned at 0.5.0).
  for p in reversed(paths):
    if str(p) not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
      gin.config._LOCATION_PREFIXES.insert(0, str(p))  # pylint: disable=protected-access
  files = [resolve_gin_file(f, paths) for f in gin_files]
  source = "--gin bindings"  # What is being parsed, for errors that carry no file name (tokenize's).
  parsed = []  # Each file's include tree (gin's ParsedConfigFileIncludesAndImports).
  try:
    # parse_config_files_and_bindings, one step at a time to know the source.
    for source in files:
      parsed.append(gin.parse_config_file(source))
    source = "--gin bindings"
    gin.parse_config(list(bindings))
    gin.finalize()
  except SyntaxError as e:  # gin's parse errors are SyntaxErrors with the file (None: bindings) and line.
    detail = str(e.args[0] if e.args else e).strip().splitlines()[-1].strip()
    raise errors.ConfigError(f"{_where(e.filename, e.lineno, e.text, bindings)}: gin syntax error: {detail}"
                             f"{_syntax_hint(detail)}") from None
  except tokenize.TokenError as e:  # An unclosed bracket or string: tokenize names no file and the line of EOF.
    raise errors.ConfigError(f"{_unclosed_statement(source, bindings)}: gin syntax error: {e.args[0]} (an "
                             "unclosed bracket or quote).") from None
  except ValueError as e:
    m = _REQUIRED_MACRO.search(str(e))
    if m:
      raise errors.ConfigError(f"gin macro {m.group(1)} is REQUIRED but was not set: pass "
                               f"--gin.{m.group(1)}=... or bind it in a gin file.") from None
    located = _GIN_LOCATION.search(str(e))
    if located:
      problem = str(e)[:located.start()].strip()
      where = _where(located["file"], int(located["line"]), located["text"], bindings)
      raise errors.ConfigError(f"{where}: unknown gin binding: {problem}{_binding_hint(problem)}" if
                               _UNKNOWN_CONFIGURABLE.search(problem) or _UNKNOWN_PARAMETER.search(problem) else
                               f"{where}: {problem}") from None
    raise errors.ConfigError(one_line(e)) from None  # Parsing reads only the user's config: its fault.
  except OSError as e:  # gin's IOError for an include found on no search path.
    raise errors.MissingFileError(one_line(e)) from None
  check_method_files(parsed)
  check_macros_are_read(bindings)


def _included_files(tree, via: Optional[str] = None):
  """(file name as gin read it, the file that included it or None) of an include tree, in parse order."""
  yield tree.filename, via
  for nested in tree.includes:
    yield from _included_files(nested, tree.filename)


def _gin_path(name: str) -> Path:
  """The file gin opened for `name` (relative names resolve against its search prefixes, in order)."""
  for prefix in ([""] if os.path.isabs(name) else gin.config._LOCATION_PREFIXES):  # pylint: disable=protected-access
    if os.path.exists(os.path.join(prefix, name)):
      return Path(prefix, name).resolve()
  return Path(name)


def is_method_file(path: Path) -> bool:
  """A method file (gin/methods/*.gin, or a copy in a methods/ directory): it sets what trains."""
  return path.parent.name == "methods"


def check_method_files(parsed: Sequence) -> None:
  """Refuses two method files in one command (the later would silently replace the earlier's prompt, trained
  parameters and learning rate), and a method file before gin/runs/train.gin, whose defaults (LEARNING_RATE,
  WARMUP_STEPS) would silently replace the method's: a method file must follow its run file."""
  methods, runs_train = {}, []  # path -> how it was named; [(position, how)] of runs/train.gin.
  inside = None  # The method file being read: the files it includes belong to it (prefix_tuning.gin).
  order = [(name, via, _gin_path(name)) for tree in parsed for name, via in _included_files(tree)]
  for position, (name, via, path) in enumerate(order):
    named = name if via is None else f"{name} (included by {via})"
    if inside is not None and via is not None and _gin_path(via) in inside:
      inside.add(path)
      continue
    inside = None
    if is_method_file(path):
      methods.setdefault(path, (position, named))
      inside = {path}
    elif path.name == "train.gin" and path.parent.name == "runs":
      runs_train.append((position, named))
  if len(methods) > 1:
    first, second = [named for _, named in sorted(methods.values())][:2]
    raise errors.ConfigError(f"two method files in one command: {first} and {second}; each sets what trains (the "
                             "prompt, the trained parameters, LEARNING_RATE) and the later would silently replace "
                             "the earlier. Keep one method file.")
  for position, named in methods.values():
    later = [run for run in runs_train if run[0] > position]
    if later:
      raise errors.ConfigError(f"the method file {named} comes before {later[0][1]}, whose defaults "
                               "(LEARNING_RATE, WARMUP_STEPS) would silently replace the method's; give the method "
                               "file after the task or run file, e.g. --gin_file=gin/sst2.gin "
                               "--gin_file=gin/methods/lester.gin.")


class _NamesOnly(config_parser.ParserDelegate):
  """Parses bindings for their names only: references are not resolved (gin.parse_config already did)."""

  def configurable_reference(self, scoped_selector, evaluate):
    return None

  def macro(self, macro_name):
    return None


def referenced_macros() -> List[str]:
  """The macros the parsed config reads: every `%NAME` in a binding (a macro's value included)."""
  return sweep_settings.referenced_macros()


def check_macros_are_read(bindings: Sequence[str]) -> None:
  """A macro bound by a --gin binding must be read by the config (a `%NAME` somewhere); else it is most likely a
  misspelling and the run would silently use the default: an error with the closest macros that are read."""
  given = [s.selector if not s.scope else f"{s.scope}/{s.selector}"
           for s in config_parser.ConfigParser("\n".join(bindings), _NamesOnly())
           if isinstance(s, config_parser.BindingStatement) and not s.arg_name]
  read = referenced_macros()
  for name in dict.fromkeys(given):
    if name not in read:
      close = difflib.get_close_matches(name, read, n=3)
      hint = f" Did you mean {' or '.join(close)}?" if close else f" Macros it reads: {', '.join(read)}."
      raise errors.ConfigError(f"--gin.{name} is bound on the command line but nothing in this configuration reads "
                               f"it (no %{name} in the gin files given).{hint}")


def _where(filename: Optional[str], line: Optional[int], text: Optional[str], bindings: Sequence[str]) -> str:
  """'file:line (`text`)' for a gin file, or the --gin binding at `line` of the joined bindings."""
  if filename:
    return f"{filename}:{line}" + (f" (`{text.strip()}`)" if text and text.strip() else "")
  if line is not None:  # gin joins the bindings with newlines; a binding may span several lines.
    first = 1
    for binding in bindings:
      last = first + binding.count("\n")
      if first <= line <= last:
        return f"--gin binding `{binding.strip()}`"
      first = last + 1
  return f"--gin binding `{text.strip()}`" if text else "--gin bindings"


def _unclosed_statement(source: str, bindings: Sequence[str]) -> str:
  """Where the statement that tokenize could not finish starts: the --gin binding, or file:line."""
  if source == "--gin bindings":
    texts = {f"--gin binding `{b.strip()}`": b for b in bindings}
  else:
    texts = {source: Path(source).read_text()}
  for where, text in texts.items():
    start = 1  # The first line of the statement being read.
    try:
      for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.NEWLINE:
          start = token.end[0] + 1
    except tokenize.TokenError:
      lines = text.splitlines()
      return where if where != source else f"{source}:{start} (`{lines[start - 1].strip()}`)"
  return f"{source} (or a file it includes)"


def _syntax_hint(detail: str) -> str:
  if "Failed to parse token" in detail:  # The usual cause: a string without its inner quotes.
    return ". A string value needs quotes inside the flag, e.g. --gin.MODEL_DIR=\"'runs/x'\"."
  return "" if detail.endswith(".") else "."


def _binding_hint(problem: str) -> str:
  """' Did you mean ...?' from the registered configurables, or their parameters."""
  registry = gin.config._REGISTRY  # pylint: disable=protected-access
  m = _UNKNOWN_PARAMETER.search(problem)
  if m:
    try:
      parameters = [p for p in inspect.signature(registry.get_match(m[1]).wrapped).parameters
                    if p not in ("self", "parent", "name")]
    except (TypeError, ValueError, AttributeError):
      return ""
    close = difflib.get_close_matches(m[2], parameters, n=1)
    return f" Did you mean {m[1]}.{close[0]}?" if close else f" Its parameters: {', '.join(parameters)}."
  m = _UNKNOWN_CONFIGURABLE.search(problem)
  names = sorted({k.rpartition(".")[2] for k, _ in registry.items() if not k.startswith("gin.")})
  close = difflib.get_close_matches(m[1].rpartition(".")[2], names, n=3) if m else []
  hint = f" Did you mean {' or '.join(close)}?" if close else ""
  return hint + " Bind a configurable's parameter (train.batch_size = 8) or a macro (TRAIN_STEPS = 100)."


def one_line(error: BaseException) -> str:
  """The error's message on one line, without the configurable calls gin notes below it."""
  message = _GIN_CALL_NOTE.sub("", str(error)).strip().strip('"')
  return " ".join(line.strip() for line in message.splitlines() if line.strip())


@contextlib.contextmanager
def native_logs_held_back():
  """TensorFlow's native libraries write start-up lines (oneDNN, CUDA probing) straight to file descriptor 2
  before any log level applies; hold them back so an error is the only line, and show them if loading fails."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      held.seek(0)
      sys.stderr.write(held.read().decode(errors="replace"))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def run_cli(entry: Callable[..., object], argv: Sequence[str] = None,
            parse_flags: Optional[Callable[[Sequence[str]], object]] = None) -> int:
  """Parses t5x-style flags and gin, then calls `entry()`. A UserError (bad input) -> status 2 and one line;
  anything else is a bug and propagates with its traceback. A command without gin (convert_checkpoint) passes
  `parse_flags`: it parses argv instead, `entry` gets its result, and neither TensorFlow nor gin is loaded."""
  argv = sys.argv[1:] if argv is None else argv
  try:
    if parse_flags is not None:
      entry(parse_flags(argv))
      return 0
    args = parse_args(argv)
    with native_logs_held_back():
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.set_visible_devices([], "GPU")  # Accelerators belong to JAX; tf.data runs on the CPU.
      register_configurables()
    parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths.split(","))
    entry()
  except errors.UserError as e:
    print(f"error: {one_line(e)}", file=sys.stderr)
    return 2
  except safety.Stopped as e:  # SIGTERM / SIGINT in the training loop: checkpointed, resumable.
    print(one_line(e), file=sys.stderr)
    return e.exit_status
  except KeyboardInterrupt:  # Ctrl-C outside the training loop (loading, compiling), or a second one inside it.
    print("interrupted (SIGINT) before the next checkpoint: nothing more was saved; rerun the same command to "
          "resume from the last checkpoint.", file=sys.stderr)
    return 128 + signal.SIGINT
  except OSError as e:
    if not safety.is_disk_full(e):
      raise
    print(f"error: no space left on the device for {e.filename or 'an output file'}; free some space (or choose "
          "another MODEL_DIR) and rerun: training resumes from the last checkpoint.", file=sys.stderr)
    return 2
  finally:
    safety.release_locks()  # MODEL_DIR's run.lock (fit.start), whatever the outcome.
  return 0


def main(argv: Sequence[str] = None) -> int:
  return run_cli(launch, argv)


if __name__ == "__main__":
  sys.exit(main())
