"""The benchmark driver's plan: every configuration's command parses as the command line would parse it (no run)."""

import ast
import shlex
import sys

import gin
import pytest

from conftest import REPO
from prompt_tuning_jax import cli

sys.path.insert(0, str(REPO / "scripts"))
import bench  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
  """{part: [bench.Planned]} of every part, planned against an empty results directory."""
  results = tmp_path_factory.mktemp("results")
  return {part: bench.run_part(part, results, plan_only=True).planned
          for part in ("methods", "sequence", "ablations", "quick", "recipe", "compare")}


def test_plan_sizes_and_ids(planned):
  for part, commands in planned.items():
    ids = [p.id for p in commands]
    assert len(ids) == len(set(ids)), part
  methods = planned["methods"]
  # Two learning rates per method and task, seed 0 of the chosen one evaluated on validation, seeds 1 and 2.
  assert len(methods) == 2 * len(bench.CLASSIFICATION_METHODS) * (2 + 1 + 2)
  splits = lambda p: {a.split("=", 1)[0]: a.split("=", 1)[1] for a in p.argv if a.startswith("--gin.train.")}
  assert {splits(p)["--gin.train.train_split"] for p in methods} == {"'train[:-1000]'", "'train[:-250]'"}
  assert {splits(p).get("--gin.train.eval_split") for p in methods} == {"'train[-1000:]'", "'train[-250:]'", None}
  ablations = planned["ablations"]
  # 6 lengths + 5 depths x top/bottom + reparameterization on, the P=20 all-layers point shared.
  assert len(ablations) == (6 + 10 + 1) * len(bench.ABLATION_SEEDS)
  recipe = planned["recipe"]
  # The two candidate defaults on every seed, the single-factor arms on theirs; each run trained, then validated.
  assert len(recipe) == 2 * (2 * len(bench.RECIPE_SEEDS) + (len(bench.RECIPE_ARMS) - 2) * len(bench.RECIPE_FACTOR_SEEDS))
  assert all("--gin.PROMPT_POSITION_POLICY=" in " ".join(p.argv) for p in recipe)
  compare = planned["compare"]
  # One sweep (5 learning rates x 3 seeds) per task and method, then its members evaluated on the report split.
  assert len(compare) == 2 * sum(len(m) for m in bench.COMPARE_METHODS.values())
  sweeps = [a for p in compare for a in p.argv if a.startswith("--gin.SWEEP=")]
  assert len(sweeps) == len(compare) and all(len(ast.literal_eval(a.split("=", 1)[1])["LEARNING_RATE"]) == 5
                                             for a in sweeps)


def test_every_command_parses_as_the_cli_would(planned, clean_gin):
  del clean_gin
  cli.register_configurables()
  # The compare part: one task's sweeps (its 5 methods x sweep / final); the others differ only in task files.
  checked = {**planned, "compare": [p for p in planned["compare"] if p.id.startswith("sst2.")]}
  for commands in checked.values():
    for planned_command in commands:
      if planned_command.argv[:2] != ["-m", "prompt_tuning_jax.train"]:
        continue  # scripts/bench_speed.py
      argv = shlex.split(bench.shell_command(planned_command.argv))  # the recorded string, as a shell splits it
      assert argv[1:] == planned_command.argv
      args = cli.parse_args(argv[3:])
      gin.clear_config()
      cli.parse_gin(args.gin_file, args.gin_bindings)
      bindings = dict(b.split(" = ", 1) for b in args.gin_bindings)
      for key, value in bindings.items():  # every --gin.KEY=VALUE arrived as that Python value
        query = key if "." in key else f"%{key}"
        assert gin.query_parameter(query) == ast.literal_eval(value), (planned_command.id, key)


def test_speed_part_plans_next_to_its_own_results_file(tmp_path):
  # bench_speed.json is bench_speed.py's output, not a list of runs: planning beside one must not read it as one.
  (tmp_path / "bench_speed.json").write_text('{"command": "an older command", "methods": []}')
  (planned,) = bench.run_part("speed", tmp_path, plan_only=True).planned
  assert planned.id == "speed" and not planned.recorded


def test_paper_trend_verdicts_on_hand_computed_differences():
  import make_results_md as report  # pylint: disable=g-import-not-at-top
  # a = 80, 82, 84 (mean 82, std 2), b = 78 (one run): difference 4; 2 standard errors = 2 * 2 / sqrt(3) = 2.31.
  diff, noise = report.compare([80.0, 82.0, 84.0], [78.0])
  assert diff == pytest.approx(4.0) and noise == pytest.approx(4 / 3 ** 0.5)
  assert report.compare([70.0], [70.5]) == (pytest.approx(-0.5), 1.0)  # the 1-point floor
  assert report.verdict(4.4, 1.0, 0) == "holds (higher by 4.4)"  # "matches" includes "beats"
  assert report.verdict(-11.6, 1.0, 0) == "does not hold (lower by 11.6)"
  assert report.verdict(0.8, 1.0, 0) == "holds (within noise)"
  assert report.verdict(0.8, 1.0, +1) == "within noise"
  assert report.verdict(-2.0, 1.0, +1) == "does not hold"
  assert report.verdict(3.0, 1.0, None) == "higher"


def test_ablation_trends_on_hand_made_records(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  import make_results_md as report  # pylint: disable=g-import-not-at-top
  run = lambda value, **meta: {"value": value, "meta": meta, "majority_class_accuracy": 50.0}
  runs = ([run(v, prompt_length=1) for v in (70.0, 71.0, 72.0)] +
          [run(v, prompt_length=20, reparameterization=False) for v in (79.0, 80.0, 81.0)] +
          [run(v, prompt_length=100) for v in (80.0, 80.5, 81.0)] +
          [run(v, reparameterization=True) for v in (50.0, 82.0, 83.0)])
  (tmp_path / "bench_ablations.json").write_text(json.dumps({"runs": runs}))
  assert report.along(runs, "prompt_length") == {1: [70.0, 71.0, 72.0], 20: [79.0, 80.0, 81.0],
                                                 100: [80.0, 80.5, 81.0]}
  rows = {line.split(" | ")[0].lstrip("| "): line for line in report.section_trends(tmp_path).splitlines()}
  # The best short prompt (P=20, mean 80) against the best long one (P=100, mean 80.5): -0.5 is within 1 point.
  short = rows["Simple classification needs only a short prompt: the best P ≤ 20 matches the best P > 20"]
  assert "P=20 − P=100: -0.5 points" in short and "holds (within noise)" in short
  # With the MLP 71.67, without 80: -8.3, but the std of (50, 82, 83) is 18.8, so 2 standard errors exceed it.
  reparam = rows["MLP reparameterization: no consistent effect (SST-2 ablation)"]
  assert "(1 of 3 MLP runs stayed at the majority class): -8.3 points" in reparam
  assert "no difference beyond noise" in reparam
