r"""Extracts the trained prompt (and head) of a t5x run into our export format.

  python -m prompt_tuning_jax.extract_prompt --checkpoint MODEL_DIR_or_checkpoint_<step> --output prompt.safetensors \
      [--patterns 'prompt/.*' 'head/.*']

The checkpoint is what `python -m t5x.train` wrote with gin/t5x/ files (Orbax or legacy layout; a model
directory means its latest step). Only the parameters matching `--patterns` are read (default prompt/* and
head/*, what gin/t5x/ files train), and written as `export.save_export` writes a training run's export, so
`python -m prompt_tuning_jax.eval` / `infer` take it as PROMPT_FILE and gin/t5x/prompts/from_file.gin starts
a t5x run from it. A prompt with an MLP reparameterization is refused: exports store the collapsed table, which
needs the model's configuration (train with PROMPT_REPARAM_HIDDEN = None, or export with our trainer).
Needs no t5x. Bad input is one `error:` line and exit status 2.
"""

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, Sequence

from prompt_tuning_jax import cli

DEFAULT_PATTERNS = (r"prompt/.*", r"head/.*")
# The prompt kinds an export names, by the tensor that holds the prompt (prompts/input.py, prompts/deep.py).
_KINDS = {"prompt/prompt": "InputPrompt", "prompt/prefix": "DeepPrompt"}


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m prompt_tuning_jax.extract_prompt", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="t5x MODEL_DIR or one of its checkpoint_<step> directories")
  parser.add_argument("--output", required=True, help="the export to write (.safetensors)")
  parser.add_argument("--patterns", nargs="+", default=list(DEFAULT_PATTERNS),
                      help="regexes (full match) of the parameters to export (default: prompt/.* head/.*)")
  return parser.parse_args(argv)


def prompt_metadata(tensors: Dict[str, "np.ndarray"], step: int, source: Path) -> Dict[str, object]:
  """What the export says about the prompt, from the tensors themselves."""
  kind = next((k for name, k in _KINDS.items() if name in tensors), "none")
  metadata = {"step": step, "source": str(source), "prompt_kind": kind, "exported_from": "t5x"}
  if kind == "InputPrompt":
    metadata |= {"prompt_length": int(tensors["prompt/prompt"].shape[0]),
                 "hidden_size": int(tensors["prompt/prompt"].shape[1])}
  elif kind == "DeepPrompt":  # [L, 2, P, N, D]
    _, _, p, n, d = tensors["prompt/prefix"].shape
    metadata |= {"prompt_length": int(p), "num_attention_heads": int(n), "prompt_width": int(n * d)}
  return metadata


def extract(args: argparse.Namespace) -> str:
  """Writes the export and prints (and returns) one line saying what was extracted, and where."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax import errors, export, trainable
  from prompt_tuning_jax.models import t5x_checkpoint
  # pylint: enable=g-import-not-at-top
  given = Path(args.checkpoint).expanduser()
  if not given.exists():
    raise errors.MissingFileError(f"--checkpoint {given} does not exist: give a t5x MODEL_DIR or one of its "
                                  "checkpoint_<step> directories.")
  source = t5x_checkpoint.find_t5x_step_dir(given)
  # Only the trained parameters are read: the frozen backbone beside them may be gigabytes.
  tensors, layout = t5x_checkpoint.read_matching(source, lambda name: trainable.is_trainable(name, args.patterns))
  if not tensors:
    raise errors.CheckpointError(f"{source} has no parameter matching {args.patterns}. Was it written by a "
                                 "gin/t5x/ run? (Its trained parameters are prompt/... and head/....)")
  if any(k.startswith("prompt/") and k not in _KINDS for k in tensors):
    raise errors.ConfigError(f"{source} holds a reparameterized prompt ({sorted(tensors)}); exports store the "
                             "collapsed table, which needs the model: train with PROMPT_REPARAM_HIDDEN = None.")
  step = int(re.fullmatch(r"checkpoint_(\d+)", source.name).group(1)) if source.name.startswith("checkpoint_") else 0
  size = export.save_export(args.output, tensors, prompt_metadata(tensors, step, source))
  shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(tensors.items()))
  line = f"extracted {shapes} from {layout} checkpoint {source} -> {args.output} ({size:,} bytes)"
  print(line)
  return line


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(extract, argv, parse_flags=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
