r"""Decodes inputs with a trained prompt on a frozen T5, with t5x flag semantics (see cli.py).

  python -m prompt_tuning_jax.infer --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_infer.gin --gin.CHECKPOINT_PATH="'/path/to/t5'" \
      --gin.PROMPT_FILE="'runs/rte/export/best.safetensors'" --gin.INFER_OUTPUT_DIR="'runs/rte_infer'" \
      --gin.MIXTURE_OR_TASK_NAME="'super_glue_rte_v102'"   # or --gin.INFER_INPUT_FILE="'inputs.txt'"

Writes INFER_OUTPUT_DIR/{config.gin, predictions.jsonl} (t5_eval.infer_prompt).
"""

import sys
from typing import Sequence

from prompt_tuning_jax import cli


def main(argv: Sequence[str] = None) -> int:
  from prompt_tuning_jax.recipes import t5_eval  # pylint: disable=g-import-not-at-top
  return cli.run_cli(t5_eval.infer_prompt, argv)


if __name__ == "__main__":
  sys.exit(main())
