r"""Trains with t5x flag semantics (cli.py has the flags, gin parsing and error handling).

  python -m prompt_tuning_jax.train --gin_file=gin/rte_deep_prompt.gin --gin.MODEL_DIR="'runs/rte'"
"""

import sys

from prompt_tuning_jax.cli import main

if __name__ == "__main__":
  sys.exit(main())
