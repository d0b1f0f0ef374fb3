"""Lester et al. (2021)'s experiments on T5 as commands: one per row of their figures and tables.

  python scripts/lester_experiments.py list [--scale=tiny|full]      # print every row's command
  python scripts/lester_experiments.py run ROW [--scale=tiny] [--steps=N] [--data_dir=D]

`--scale=full` is the paper's setting (T5 1.1 LM-adapted XXL from $T5_CHECKPOINT, 30,000 steps, batch 32,
Adafactor lr 0.3, inputs 512 tokens) for a TPU pod; `--scale=tiny` is the same command on the test-sized T5
(tests/goldens/t5_tiny) that this 2-core machine runs in minutes. Every row trains on the task of `--task`
(default RTE, the SuperGLUE task whose train split ../shared/data holds); the domain-transfer row trains on
SQuAD and evaluates on MRQA's out-of-domain sets, which need MRQA's dev files under DATA_DIR (at tiny scale,
`fixture_data DIR` writes the test fixtures' layout there).
"""

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]

# row -> (what the paper varies, extra gin files, extra bindings)
ROWS: Dict[str, Tuple[str, Tuple[str, ...], Tuple[str, ...]]] = {
    **{f"prompt_length_{p}": (f"Figure 3(a): prompt length {p}", ("prompts/from_class_labels.gin",),
                              (f"PROMPT_LENGTH={p}",)) for p in (1, 5, 20, 100, 150)},
    "init_random_uniform": ("Figure 3(b): random uniform initialisation", ("prompts/from_random_uniform.gin",), ()),
    "init_sampled_vocab": ("Figure 3(b): sampled vocabulary (5,000 most common)", ("prompts/from_sampled_vocab.gin",),
                           ()),
    "init_class_labels": ("Figure 3(b): class labels", ("prompts/from_class_labels.gin",), ()),
    "ensemble": ("Table 3: 5 prompts over one frozen T5, majority vote", ("prompts/from_class_labels.gin",
                                                                           "runs/t5_ensemble.gin"), ()),
    "multitask_per_task": ("Section 7 (serving): one prompt per SuperGLUE task in mixed-task batches",
                           ("runs/t5_multitask.gin",), ()),
    "domain_transfer": ("Table 2: SQuAD -> MRQA out-of-domain, zero-shot", ("runs/t5_domain_transfer.gin",), ()),
}
TASK_ROWS_WITHOUT_TASK_FILE = ("multitask_per_task", "domain_transfer")  # Their run file names the mixture.

SCALES = {
    "full": {"model": "models/t5_1_1_xxl_prompt.gin", "checkpoint": "${T5_CHECKPOINT}", "steps": 30000,
             "bindings": ("BATCH_SIZE=32", "TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 16}")},
    "tiny": {"model": "models/t5_1_1_tiny_prompt.gin", "checkpoint": "tests/goldens/t5_tiny", "steps": 50,
             "bindings": ("BATCH_SIZE=8", "TASK_FEATURE_LENGTHS={'inputs': 256, 'targets': 16}", "EVAL_PERIOD=50")},
}


def command(row: str, scale: str = "tiny", task: str = "rte", steps: int = 0, data_dir: str = "../shared/data",
            runs_dir: str = "runs/lester") -> List[str]:
  """The argv (after the interpreter) of `row` at `scale`: model, run and task files, then the row's own."""
  _, files, bindings = ROWS[row]
  s = SCALES[scale]
  task_files = () if row in TASK_ROWS_WITHOUT_TASK_FILE else (f"t5/{task}.gin",)
  # The ensemble and mixture run files set macros the task file sets too: they come after it.
  prompt_files = tuple(f for f in files if f.startswith("prompts/"))
  run_files = tuple(f for f in files if f.startswith("runs/"))
  gin_files = (s["model"], *prompt_files, "runs/prompt_finetune.gin", *task_files, *run_files)
  return (["-m", "prompt_tuning_jax.train"] + [f"--gin_file={f}" for f in gin_files]
          + [f"--gin.{b}" for b in (f"MODEL_DIR='{runs_dir}/{scale}/{row}'", f"INITIAL_CHECKPOINT_PATH='{s['checkpoint']}'",
                                    f"TRAIN_STEPS={steps or s['steps']}", f"DATA_DIR='{data_dir}'", *s["bindings"],
                                    *bindings)])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("action", choices=("list", "run", "fixture_data"))
  parser.add_argument("row", nargs="?", help="a row name (run) or a directory (fixture_data)")
  parser.add_argument("--scale", choices=tuple(SCALES), default="tiny")
  parser.add_argument("--task", default="rte", help="gin/t5/<task>.gin")
  parser.add_argument("--steps", type=int, default=0, help="0: the scale's own")
  parser.add_argument("--data_dir", default="../shared/data")
  args = parser.parse_args()
  if args.action == "fixture_data":
    sys.path.insert(0, str(REPO / "tests"))
    from task_fixtures import write_task_data  # pylint: disable=g-import-not-at-top
    print(write_task_data(Path(args.row)))
    return
  if args.action == "list":
    for row, (what, _, _) in ROWS.items():
      print(f"# {row}: {what}\npython {shlex.join(command(row, args.scale, args.task, args.steps, args.data_dir))}")
    return
  if args.row not in ROWS:
    parser.error(f"unknown row {args.row!r}; rows: {', '.join(ROWS)}")
  argv = [sys.executable] + [os.path.expandvars(a) for a in command(args.row, args.scale, args.task, args.steps,
                                                                     args.data_dir)]
  print(shlex.join(argv), flush=True)
  sys.exit(subprocess.call(argv, cwd=REPO))


if __name__ == "__main__":
  main()
