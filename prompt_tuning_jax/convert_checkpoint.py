r"""Converts a Hugging Face T5 1.1 or BERT-family directory into a T5X checkpoint that t5x restores.

  python -m prompt_tuning_jax.convert_checkpoint --source /path/to/hf_model --output /path/to/t5x_model_dir \
      [--step 0]

The source holds config.json and model.safetensors: model_type t5 or mt5 is read as T5 1.1
(`models.t5_checkpoint.load_t5`, t5x's names: `token_embedder/embedding`,
`encoder/layers_0/attention/query/kernel`, ...), anything else as a BERT-family encoder
(`models.bert_checkpoint.load_backbone`, our BERT module's names). The weights are written in float32 as t5x's
legacy checkpoint OUTPUT/checkpoint_<step> (`t5x_checkpoint.write_checkpoint`; no t5x needed), which t5x takes
as `INITIAL_CHECKPOINT_PATH` (restore with `assignment_map` `(r'state/.*', None)` and `fallback_to_scratch`,
as for any pretrained checkpoint) and so does this package. An existing checkpoint_<step> is never overwritten.
Bad input (a missing directory, no config.json, weights that do not fit the config, an existing step) is one
`error:` line and exit status 2.
"""

import argparse
import sys
from pathlib import Path
from typing import Sequence

from prompt_tuning_jax import cli


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m prompt_tuning_jax.convert_checkpoint", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--source", required=True, help="Hugging Face directory (config.json + model.safetensors)")
  parser.add_argument("--output", required=True, help="T5X model directory; checkpoint_<step>/ is written in it")
  parser.add_argument("--step", type=int, default=0, help="the checkpoint's step (default 0)")
  return parser.parse_args(argv)


def convert(args: argparse.Namespace) -> str:
  """Writes the checkpoint and prints (and returns) one line saying what was converted, and where."""
  # JAX and the loaders load here, not at import: `--help` and flag errors stay instant.
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models import t5x_checkpoint  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models.t5 import T5Config  # pylint: disable=g-import-not-at-top
  source = Path(args.source).expanduser()
  config, params = t5x_checkpoint.load_hf(source)
  if isinstance(config, T5Config):
    what = (f"T5 1.1 ({config.num_encoder_layers}+{config.num_decoder_layers} layers, d_model {config.d_model}, "
            f"vocabulary {config.vocab_size})")
  else:
    what = (f"BERT-family encoder ({config.num_hidden_layers} layers, hidden size {config.hidden_size}, "
            f"vocabulary {config.vocab_size})")
  step_dir = t5x_checkpoint.write_checkpoint(params, args.output, args.step)
  flat = traverse_util.flatten_dict(params)
  line = (f"converted {what} from {source}: {len(flat)} tensors, {sum(v.size for v in flat.values()):,} float32 "
          f"parameters -> T5X checkpoint {step_dir}")
  print(line)
  return line


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(convert, argv, parse_flags=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
