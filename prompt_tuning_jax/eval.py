r"""Evaluates a trained prompt, with t5x flag semantics (see cli.py): on a frozen T5,

  python -m prompt_tuning_jax.eval --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_eval.gin --gin.CHECKPOINT_PATH="'/path/to/t5'" \
      --gin.PROMPT_FILE="'runs/rte/export/best.safetensors'" --gin.EVAL_OUTPUT_DIR="'runs/rte_eval'" \
      --gin.MIXTURE_OR_TASK_NAME="'super_glue_rte_v102'"

or an encoder export (prompt and head) on its backbone:

  python -m prompt_tuning_jax.eval --gin_file=runs/export_eval.gin \
      --gin.PROMPT_FILE="'runs/sst2/export/best.safetensors'" --gin.EVAL_OUTPUT_DIR="'runs/sst2_eval'"

Writes EVAL_OUTPUT_DIR/{config.gin, predictions.jsonl, metrics.json} (t5_eval.evaluate_prompt,
export_eval.evaluate_export).
"""

import sys
from typing import Sequence

from prompt_tuning_jax import cli


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(cli.evaluate, argv)


if __name__ == "__main__":
  sys.exit(main())
