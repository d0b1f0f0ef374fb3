r"""Evaluates a trained prompt on a frozen T5, with t5x flag semantics (see train.py).

  python -m prompt_tuning_jax.eval --gin_file=models/t5_1_1_base_prompt.gin \
      --gin_file=runs/prompt_eval.gin --gin.CHECKPOINT_PATH="'/path/to/t5'" \
      --gin.PROMPT_FILE="'runs/rte/export/best.safetensors'" --gin.EVAL_OUTPUT_DIR="'runs/rte_eval'" \
      --gin.MIXTURE_OR_TASK_NAME="'super_glue_rte_v102'"

Writes EVAL_OUTPUT_DIR/{config.gin, predictions.jsonl, metrics.json} (t5_inference.evaluate_prompt).
"""

import sys
from typing import Sequence

from prompt_tuning_jax import train


def main(argv: Sequence[str] = None) -> int:
  from prompt_tuning_jax import t5_inference  # pylint: disable=g-import-not-at-top
  return train.run_cli(t5_inference.evaluate_prompt, argv)


if __name__ == "__main__":
  sys.exit(main())
