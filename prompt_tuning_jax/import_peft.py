r"""Reads a peft prefix-tuning or prompt-tuning adapter (task SEQ_CLS) into our export format.

  python -m prompt_tuning_jax.import_peft ADAPTER_DIR OUT.safetensors [--task sst2]

ADAPTER_DIR is what `PeftModel.save_pretrained` wrote (`adapter_config.json`, `adapter_model.safetensors`)
for a BERT-family `AutoModelForSequenceClassification`. The export holds `prompt/prefix` [L, 2, P, N, D]
(PREFIX_TUNING) or `prompt/prompt` [P, H] (PROMPT_TUNING) and `head/{kernel, bias}`, and records the
settings that reproduce peft's logits: position_policy 'after_prompt', pooling 'pooler' (deep) or
'first_token_pooler' (input prompts). Evaluate it, or train on from it, with the same settings and
`train.init_trainable_from` (README, "PyTorch interop"). Bad input is one `error:` line and exit status 2.
"""

import argparse
import sys
from typing import Sequence

from prompt_tuning_jax import cli


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m prompt_tuning_jax.import_peft", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("adapter_dir", help="a peft adapter directory")
  parser.add_argument("output", help="the export to write (.safetensors)")
  parser.add_argument("--task", default="unknown", help="the task name the export records")
  return parser.parse_args(argv)


def import_adapter(args: argparse.Namespace) -> str:
  """Writes the export and prints (and returns) one line saying what was imported."""
  from prompt_tuning_jax import export, peft_format  # pylint: disable=g-import-not-at-top
  config, adapter = peft_format.read_adapter(args.adapter_dir)
  tensors, metadata = peft_format.from_peft(config, adapter, where=str(args.adapter_dir))
  size = export.save_export(args.output, tensors, {"task": args.task, "step": 0, **metadata})
  shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(tensors.items()))
  line = (f"imported {metadata['imported_from']} ({shapes}; position_policy {metadata['position_policy']}, pooling "
          f"{metadata['pooling']}) -> {args.output} ({size:,} bytes)")
  print(line)
  return line


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(import_adapter, argv, parse_flags=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
