r"""Writes an export as a peft adapter that `PeftModel.from_pretrained` loads with the same logits.

  python -m prompt_tuning_jax.export_peft EXPORT OUT_DIR [--base_model HF_DIR_OR_NAME]

EXPORT is a `prompt_tuning_jax.export/1` file of a deep prompt (P-Tuning v2 -> PREFIX_TUNING) or an input
prompt (Lester -> PROMPT_TUNING) with one classification head; OUT_DIR gets `adapter_config.json` and
`adapter_model.safetensors` (task SEQ_CLS, the head as `classifier`, layout in peft_format.py). Load it onto the
backbone the prompt was trained on, with as many labels as the head has:

  model = AutoModelForSequenceClassification.from_pretrained(BACKBONE, num_labels=C)
  model = PeftModel.from_pretrained(model, OUT_DIR).eval()

peft starts the text's position ids at P and classifies from the pooler over position 0, so only exports
trained with PROMPT_POSITION_POLICY='after_prompt' and POOLING='pooler' (deep prompts) or
'first_token_pooler' (input prompts) match; any other setting is refused with one line naming it.
--base_model (default: the export's backbone) is recorded as the adapter's base_model_name_or_path.
Needs neither peft nor torch. Bad input is one `error:` line and exit status 2.
"""

import argparse
import sys
from typing import Sequence

from prompt_tuning_jax import cli


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m prompt_tuning_jax.export_peft", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("export", help="the export to convert (.safetensors)")
  parser.add_argument("out_dir", help="the peft adapter directory to write")
  parser.add_argument("--base_model", default=None, help="base_model_name_or_path (default: the export's backbone)")
  return parser.parse_args(argv)


def export_adapter(args: argparse.Namespace) -> str:
  """Writes the adapter and prints (and returns) one line saying what was written."""
  from prompt_tuning_jax import export, peft_format  # pylint: disable=g-import-not-at-top
  tensors, metadata = export.load_export(args.export)
  config, adapter = peft_format.to_peft(tensors, metadata, args.base_model)
  out = peft_format.write_adapter(args.out_dir, config, adapter)
  line = (f"wrote {config['peft_type']} adapter (P={config['num_virtual_tokens']}, {adapter[peft_format.HEAD[1]].size}"
          f" labels; position_policy {metadata['position_policy']}, pooling {metadata['pooling']}) -> {out}")
  print(line)
  return line


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(export_adapter, argv, parse_flags=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
