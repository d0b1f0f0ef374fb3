"""scripts/lester_experiments.py: every row of Lester et al.'s experiments is a command the CLI parses, at the
paper's scale and at this machine's, with the row's own setting in force (no run)."""

import ast
import shlex
import sys

import gin
import pytest

from conftest import REPO
from prompt_tuning_jax import cli

sys.path.insert(0, str(REPO / "scripts"))
import lester_experiments  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.parametrize("scale", sorted(lester_experiments.SCALES))
def test_every_row_parses_as_the_cli_would(scale, clean_gin):
  del clean_gin
  cli.register_configurables()
  for row in lester_experiments.ROWS:
    argv = lester_experiments.command(row, scale)
    assert shlex.split(shlex.join(argv)) == argv
    args = cli.parse_args(argv[2:])
    gin.clear_config()
    cli.parse_gin(args.gin_file, args.gin_bindings)
    bindings = dict(b.split(" = ", 1) for b in args.gin_bindings)
    for key, value in bindings.items():
      assert gin.query_parameter(f"%{key}") == ast.literal_eval(value), (row, key)
    task = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
    expected = {"multitask_per_task": "super_glue_v102_proportional",
                "domain_transfer": "squad_to_mrqa"}.get(row, "super_glue_rte_v102")
    assert task == expected, (row, task)
    if row == "ensemble":
      assert gin.query_parameter("%ENSEMBLE_SIZE") == 5
    if row.startswith("prompt_length_"):
      assert gin.query_parameter("%PROMPT_LENGTH") == int(row.rsplit("_", 1)[1])
    if row == "init_random_uniform":
      assert gin.query_parameter("uniform.scale") == 0.5
