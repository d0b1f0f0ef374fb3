r"""Predicts with a trained prompt, with t5x flag semantics (see cli.py): on a frozen T5,

  python -m prompt_tuning_jax.infer --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_infer.gin --gin.CHECKPOINT_PATH="'/path/to/t5'" \
      --gin.PROMPT_FILE="'runs/rte/export/best.safetensors'" --gin.INFER_OUTPUT_DIR="'runs/rte_infer'" \
      --gin.MIXTURE_OR_TASK_NAME="'super_glue_rte_v102'"   # or --gin.INFER_INPUT_FILE="'inputs.txt'"

or an encoder export (prompt and head) on its backbone, on a split (e.g. SuperGLUE's unlabeled test set) or
on a jsonl file of inputs as the server takes them:

  python -m prompt_tuning_jax.infer --gin_file=runs/export_infer.gin \
      --gin.PROMPT_FILE="'runs/cb/export/best.safetensors'" --gin.INFER_OUTPUT_DIR="'runs/cb_test'" \
      --gin.INFER_SPLIT="'test'"                           # or --gin.INFER_INPUT_FILE="'inputs.jsonl'"

Writes INFER_OUTPUT_DIR/{config.gin, predictions.jsonl} (t5_eval.infer_prompt, export_eval.infer_export).
"""

import sys
from typing import Sequence

from prompt_tuning_jax import cli


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(cli.infer, argv)


if __name__ == "__main__":
  sys.exit(main())
