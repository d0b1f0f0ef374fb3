"""Regenerates docs/RESULTS.md and docs/plots/*.png from whatever results/bench_*.json exist.

  python scripts/make_results_md.py [--results_dir=results] [--out=docs/RESULTS.md]

Every number in the file comes from a record of results/bench_<part>.json (or results/bench_speed*.json),
and every table is followed by the commands behind its numbers. Sections whose results file is missing
say which make target produces it. Plots use matplotlib's Agg backend (no display needed).
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench  # pylint: disable=g-import-not-at-top,wrong-import-position
import speed_report  # pylint: disable=g-import-not-at-top,wrong-import-position

PLOTS = "plots"  # under the output's directory


# ---------------------------------------------------------------------------------------------------------------
# Reading and formatting.


def load_part(results_dir: Path, name: str) -> List[dict]:
  path = results_dir / f"bench_{name}.json"
  return json.loads(path.read_text())["runs"] if path.exists() else []


def load_json(path: Path) -> Optional[dict]:
  return json.loads(path.read_text()) if path.exists() else None


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_ms(values: Sequence[float], digits: int = 1) -> str:
  """'83.5 ± 0.4' (sample std over seeds), or '83.5 (1 seed)'."""
  if not values:
    return "–"
  m, s = mean_std(values)
  return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f} (1 seed)"


def fmt_bytes(n: Optional[float]) -> str:
  if n is None:
    return "–"
  for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= size:
      return f"{n / size:.1f} {unit}"
  return f"{int(n)} B"


def fmt_seconds(s: Optional[float]) -> str:
  if s is None:
    return "–"
  s = int(round(s))
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def fmt_share(p: float) -> str:
  return f"{p:.1f}%" if p >= 10 else f"{p:.3f}%" if p >= 0.01 else f"{p:.4f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def commands_block(title: str, records: Sequence[dict], results_file: str) -> str:
  """A collapsible list: record id -> its exact command (and what an evaluation-only run resumed)."""
  if not records:
    return ""
  lines = [f"<details><summary>{title}: the command behind each number ({len(records)} runs, records in "
           f"<code>{results_file}</code>)</summary>", ""]
  for r in records:
    value = f"{r['eval_split']} {r['metric']} {r['value']:.2f}"
    lines.append(f"- `{r['id']}` ({value}, {fmt_seconds(r['wall_seconds'])}):")
    lines.append(f"  `{r['command']}`")
    if r.get("evaluated_from"):
      lines.append(f"  (evaluation only: restores the final checkpoint of `{r['evaluated_from']['id']}`, listed here "
                   "too, in its MODEL_DIR; in an empty MODEL_DIR the same command trains that model first)")
  lines += ["", "</details>"]
  return "\n".join(lines)


def by(records: Sequence[dict], *keys: str) -> Dict[tuple, List[dict]]:
  out: Dict[tuple, List[dict]] = {}
  for r in records:
    out.setdefault(tuple(r[k] for k in keys), []).append(r)
  return out


def runs_along(records: Sequence[dict], name: str) -> Dict[object, List[dict]]:
  """An ablation axis: each value of meta[name], in order, with the runs that set it."""
  return {value: [r for r in records if r["meta"].get(name) == value]
          for value in sorted({r["meta"][name] for r in records if name in r["meta"]})}


def along(records: Sequence[dict], name: str) -> Dict[object, List[float]]:
  """runs_along with each run's metric value."""
  return {value: [r["value"] for r in rs] for value, rs in runs_along(records, name).items()}


def at_majority_class(record: dict) -> bool:
  """A classification run that did not learn: its accuracy is the majority class's (within half a point)."""
  majority = record.get("majority_class_accuracy")
  return majority is not None and record["value"] <= majority + 0.5


def not_run(target: str) -> str:
  return f"_Not run yet: `make {target}`._\n"


def partial_note(results_dir: Path, part: str) -> str:
  """A line saying how many of the part's planned commands its results file holds, when not all of them (each
  command records once; which final commands run depends on the selection, so records are counted, not ids)."""
  planned = len(bench.run_part(part, results_dir, plan_only=True, ignore_recorded=True).planned)
  have = min(len(bench.load_records(results_dir / f"bench_{part}.json")), planned)
  if have == planned:
    return ""
  return (f"**Partial: {have} of the {planned} planned commands have run so far**; the tables show those "
          f"and mark the rest \"–\". `make bench-{part}` continues the part in the checkout that ran these.\n")


# ---------------------------------------------------------------------------------------------------------------
# Plots.


class Plots:
  """Writes PNGs into <out dir>/plots and returns their Markdown image links."""

  def __init__(self, out_dir: Path):
    self.dir = out_dir / PLOTS
    self.dir.mkdir(parents=True, exist_ok=True)
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    self.plt = plt

  def save(self, fig, name: str, alt: str) -> str:
    fig.tight_layout()
    fig.savefig(self.dir / name)
    self.plt.close(fig)
    return f"![{alt}]({PLOTS}/{name})\n"

  def accuracy_vs_share(self, panels: Dict[str, List[Tuple[str, float, List[float]]]], baselines: Dict[str, float],
                        name: str, title: str) -> str:
    """panels: task -> [(label, share %, accuracies)]."""
    fig, axes = self.plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (task, points) in zip(axes[0], panels.items()):
      for i, (label, share, values) in enumerate(points):  # Each point is labelled in place: no legend to look up.
        m, s = mean_std(values)
        ax.errorbar([share], [m], yerr=[s], fmt="o", capsize=3, color=f"C{i}")
        ax.annotate(label.split(" = ")[0], (share, m), textcoords="offset points", xytext=(5, 4), fontsize=7)
      if task in baselines:
        ax.axhline(baselines[task], color="gray", ls="--", lw=1, label="majority class")
        ax.legend(fontsize=7, loc="best")
      ax.set_xscale("log")
      ax.set_xlim(right=ax.get_xlim()[1] * 3)  # room for the labels of the right-most points
      ax.set_xlabel("trainable parameters, % of the backbone (log)")
      ax.set_ylabel("validation accuracy, %")
      ax.set_title(f"{task.upper()}: {title}")
    return self.save(fig, name, f"accuracy vs trainable share ({title})")

  def lines(self, series: Dict[str, List[Tuple[float, List[float]]]], xlabel: str, ylabel: str, title: str,
            name: str, logx: bool = False, baseline: Optional[float] = None) -> str:
    fig, ax = self.plt.subplots(figsize=(5.2, 3.6))
    for i, (label, points) in enumerate(series.items()):
      points = sorted(points)
      xs = [x for x, _ in points]
      ms = [mean_std(v)[0] for _, v in points]
      ss = [mean_std(v)[1] for _, v in points]
      ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, color=f"C{i}", label=label)
    if baseline is not None:
      ax.axhline(baseline, color="gray", ls="--", lw=1, label="majority class")
    if logx:
      ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return self.save(fig, name, title)

  def curves(self, runs: Dict[str, dict], name: str, title: str, eval_label: str) -> str:
    """Per run: the logged training loss (mean of each 10 steps, smoothed over 5 logs) and, when runs were
    evaluated more than once, the evaluations."""
    with_evals = any(len(r["curve"]["eval"]) > 1 for r in runs.values())
    fig, axes = self.plt.subplots(1, 2 if with_evals else 1, figsize=(10 if with_evals else 6, 3.6), squeeze=False)
    left, right = axes[0][0], axes[0][-1]
    for i, (label, record) in enumerate(runs.items()):
      loss = record["curve"]["train_loss"]
      if loss:
        steps, values = zip(*loss)
        smooth = [statistics.mean(values[max(0, j - 4):j + 1]) for j in range(len(values))]
        left.plot(steps, smooth, color=f"C{i}", label=label, lw=1.2)
      evals = record["curve"]["eval"]
      if evals and with_evals:
        steps, values = zip(*evals)
        right.plot(steps, values, marker="o", color=f"C{i}", label=label)
    left.set_xlabel("step")
    left.set_ylabel("training loss (smoothed)")
    left.set_title(f"{title}: training loss")
    if with_evals:
      right.set_xlabel("step")
      right.set_ylabel(eval_label)
      right.set_title(f"{title}: {eval_label}")
    right.legend(fontsize=7)
    return self.save(fig, name, f"training curves: {title}")

  def stacked(self, labels: Sequence[str], parts: Sequence[str], values: Sequence[Sequence[float]], xlabel: str,
              title: str, name: str) -> str:
    """One horizontal bar per label, split into `parts` (values[label][part])."""
    fig, ax = self.plt.subplots(figsize=(7.4, 0.45 * len(labels) + 1.8))
    left = [0.0] * len(labels)
    for j, part in enumerate(parts):
      widths = [row[j] for row in values]
      ax.barh(range(len(labels)), widths, left=left, color=f"C{j % 10}", label=part,
              hatch="//" if j >= 10 else None)
      left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return self.save(fig, name, title)

  def bars(self, labels: Sequence[str], values: Sequence[float], xlabel: str, title: str, name: str) -> str:
    fig, ax = self.plt.subplots(figsize=(6.4, 0.35 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color=[f"C{i}" for i in range(len(labels))])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return self.save(fig, name, title)


# ---------------------------------------------------------------------------------------------------------------
# Sections.


def label(method: str) -> str:
  return bench.METHODS[method].label if method in bench.METHODS else method


def finals(records: Sequence[dict], task: str) -> Dict[str, List[dict]]:
  """method -> its final records on `task` (one per seed)."""
  out: Dict[str, List[dict]] = {}
  for r in records:
    if r["task"] == task and r["stage"] == "final":
      out.setdefault(r["method"], []).append(r)
  return out


def method_rows(records: Sequence[dict], tasks: Sequence[str], order: Sequence[str]) -> List[list]:
  rows = []
  for method in order:
    per_task = [finals(records, t).get(method, []) for t in tasks]
    any_record = next((rs[0] for rs in per_task if rs), None)
    if any_record is None:
      continue
    row = [label(method), f"{any_record['trainable']:,}", fmt_share(any_record["share_of_backbone_percent"]),
           fmt_bytes(any_record["export_bytes"])]
    for rs in per_task:
      lr = rs[0]["hyperparameters"].get("LEARNING_RATE") if rs else None
      row += [fmt_ms([r["value"] for r in rs]), f"{lr:g}" if lr else "–",
              fmt_seconds(statistics.mean(r["wall_seconds"] for r in rs)) if rs else "–"]
    rows.append(row)
  return rows


def selection_table(records: Sequence[dict]) -> str:
  selects = [r for r in records if r["stage"] == "select"]
  if not selects:
    return ""
  rows = []
  for (task, method), rs in by(selects, "task", "method").items():
    chosen = max(rs, key=lambda r: r["value"])
    cells = ", ".join(f"{r['hyperparameters']['LEARNING_RATE']:g}: {r['value']:.1f}" +
                      (" ←" if r is chosen else "") for r in rs)
    rows.append([task, label(method), rs[0]["eval_split"], cells])
  return ("<details><summary>Learning-rate selection (seed 0, held-out metric at the last step; ← chosen)"
          "</summary>\n\n" + table(["task", "method", "selected on", "learning rate: metric"], rows) +
          "\n\n</details>\n")


def section_quick(results_dir: Path, plots: Plots) -> str:
  out = ["## Quick benchmark (`make bench-quick`)\n"]
  records = load_part(results_dir, "quick_methods")
  speed = load_json(results_dir / "bench_quick_speed.json")
  if not records and not speed:
    return "\n".join(out + [not_run("bench-quick")])
  out.append(
      f"A smoke-sized version of parts 1 and 4: SST-2, one seed, {records[0]['steps'] if records else '–'} steps per "
      "method at each method file's own learning rate (no selection), trained on `train[:-1000]` of the shipped "
      "10,000-phrase subsample and evaluated once on the 872 validation sentences; then the speed table for a "
      "subset of methods with few timed steps. It shows that everything runs; the full parts below are the "
      "results.\n")
  if records:
    majority = records[0].get("majority_class_accuracy")
    stuck = lambda r: " (majority class: did not learn at this lr)" if at_majority_class(r) else ""
    rows = [[label(r["method"]), f"{r['value']:.2f}{stuck(r)}",
             f"{r['learning_rate']:g}" if r.get("learning_rate") else "–",
             f"{r['trainable']:,}", fmt_share(r["share_of_backbone_percent"]),
             fmt_bytes(r["export_bytes"]), f"{r['steps_per_second']:.2f}" if r["steps_per_second"] else "–",
             fmt_seconds(r["wall_seconds"])] for r in records]
    out.append(table(["method", "SST-2 validation accuracy %", "lr", "trainable", "share of backbone", "export",
                      "train steps/s", "wall time"], rows))
    out.append(f"\nMajority class: {majority:.2f}%.\n" if majority else "")
    out.append(plots.accuracy_vs_share({"sst2": [(label(r["method"]), r["share_of_backbone_percent"], [r["value"]])
                                                 for r in records]},
                                       {"sst2": majority} if majority else {}, "quick_accuracy_vs_share.png",
                                       f"{records[0]['steps']} steps, 1 seed"))
    out.append(plots.curves({label(r["method"]): r for r in records}, "quick_training_curves.png",
                            "SST-2 quick", "validation accuracy %"))
    out.append(commands_block("Quick methods", records, "results/bench_quick_methods.json"))
  if speed:
    out.append("\n" + speed_tables(speed, "results/bench_quick_speed.json"))
  return "\n".join(out)


def section_methods(results_dir: Path, plots: Plots) -> str:
  out = ["## 1. Methods on SST-2 and RTE\n"]
  records = load_part(results_dir, "methods")
  if not records:
    return "\n".join(out + [not_run("bench-methods")])
  out.append(partial_note(results_dir, "methods"))
  steps = {t: rs[0]["steps"] for (t,), rs in by(records, "task").items()}
  out.append(
      "Packaged all-MiniLM-L6-v2, batch 32, AdamW with linear decay to 0, no warmup. **Data**: "
      + "; ".join(f"{bench.TASKS[t].data_note} ({steps[t]} steps)" for t in steps) + ". "
      "**Protocol**: the learning rate is chosen from a two-value grid per method by a seed-0 run trained on "
      "`train[:-H]` and scored on the held-out `train[-H:]` at its last step; that run is then evaluated once on "
      "the validation split, and seeds 1 and 2 train the chosen configuration and evaluate the validation split "
      "once, at the end. The validation split picks nothing. A two-value grid only says which of two rates is "
      "better, so a method may be under-tuned by a margin this run cannot see. Mean ± sample standard deviation "
      "over the seeds. "
      "Prefix Tuning (Li & Liang) and P-Tuning v2 with the MLP reparameterization are the same model in this "
      "code base (THUDM's prefix MLP, `gin/methods/prefix_tuning.gin`), so one set of runs gives both rows. "
      "Export = bytes of `export/best.safetensors` (the MLP collapsed into the prefix table); wall time = mean "
      "per run, training and evaluation, on 2 shared CPU cores.\n")
  tasks = [t for t in ("sst2", "rte") if any(r["task"] == t for r in records)]
  headers = ["method", "trainable", "share of backbone", "export"]
  for t in tasks:
    headers += [f"{t.upper()} accuracy %", "lr", "wall/run"]
  out.append(table(headers, method_rows(records, tasks, bench.CLASSIFICATION_METHODS)))
  majorities = {t: next(r["majority_class_accuracy"] for r in records if r["task"] == t and r["stage"] == "final")
                for t in tasks if any(r["task"] == t and r["stage"] == "final" for r in records)}
  out.append("\nMajority class (validation): " + ", ".join(f"{t.upper()} {v:.2f}%" for t, v in majorities.items())
             + ".\n")
  out.append(selection_table(records))
  panels = {}
  for t in tasks:
    points = [(label(m), rs[0]["share_of_backbone_percent"], [r["value"] for r in rs])
              for m, rs in finals(records, t).items()]
    if points:
      panels[t] = points
  if panels:
    out.append(plots.accuracy_vs_share(panels, majorities, "methods_accuracy_vs_share.png", "mean ± std over seeds"))
  for t in tasks:
    chosen = {label(m): next((r for r in rs if r["seed"] == 0), rs[0]) for m, rs in finals(records, t).items()}
    if chosen:
      out.append(plots.curves(chosen, f"methods_training_curves_{t}.png", f"{t.upper()} (chosen LR, seed 0)",
                              "held-out accuracy %"))
  out.append(commands_block("Methods", [r for r in records if r["stage"] == "final"] +
                            [r for r in records if r["stage"] == "select"], "results/bench_methods.json"))
  return "\n".join(out)


def section_sequence(results_dir: Path, plots: Plots) -> str:
  out = ["## 2. Sequence labelling and extractive QA\n"]
  records = load_part(results_dir, "sequence")
  if not records:
    return "\n".join(out + [not_run("bench-sequence")])
  out.append(partial_note(results_dir, "sequence"))
  ner = [r for r in records if r["task"] in ("conll2003", "wnut17")]
  if ner:
    out.append("NER: entity-level micro F1 (seqeval). The learning rate is chosen on dev (one seed, the dev F1 "
               "at the last step); the chosen run's final checkpoint is then evaluated once on test. Data: "
               + "; ".join(f"{bench.TASKS[t].data_note}, {rs[0]['steps']} steps"
                           for (t,), rs in by(ner, "task").items()) + ".\n")
    tasks = [t for t in ("conll2003", "wnut17") if any(r["task"] == t for r in ner)]
    headers = ["method", "trainable", "share of backbone"]
    for t in tasks:
      headers += [f"{t} dev F1 (chosen lr)", f"{t} test F1"]
    rows = []
    for method in bench.SEQUENCE_METHODS:
      first = next((r for r in ner if r["method"] == method), None)
      if first is None:
        continue
      row = [label(method), f"{first['trainable']:,}", fmt_share(first["share_of_backbone_percent"])]
      for t in tasks:
        selects = [r for r in ner if r["task"] == t and r["method"] == method and r["stage"] == "select"]
        test = [r for r in ner if r["task"] == t and r["method"] == method and r["stage"] == "final"]
        best = max(selects, key=lambda r: r["value"]) if selects else None
        row += [f"{best['value']:.2f} ({best['hyperparameters']['LEARNING_RATE']:g})" if best else "–",
                fmt_ms([r["value"] for r in test], 2) if test else "–"]
      rows.append(row)
    out.append(table(headers, rows))
    out.append("\nA two-value learning-rate grid only says which of two rates is better, as in part 1.\n")
    out.append(selection_table(ner))
    tests = [(f"{t} / {label(r['method'])}", r["value"]) for t in tasks for m in bench.SEQUENCE_METHODS
             for r in ner if r["task"] == t and r["method"] == m and r["stage"] == "final"]
    if tests:
      out.append(plots.bars([name for name, _ in tests], [v for _, v in tests], "test entity F1 (seqeval, micro)",
                            "NER: test F1 at the chosen learning rate", "sequence_ner_test_f1.png"))
    for t in tasks:
      chosen = {label(r["method"]): r for r in ner if r["task"] == t and r["stage"] == "final"}
      if chosen:
        out.append(plots.curves(chosen, f"sequence_training_curves_{t}.png", f"{t} (chosen LR, seed 0)",
                                "dev F1"))
  qa = [r for r in records if r["task"] == "squad_v1_dev_split"]
  if qa:
    out.append(f"\nExtractive QA: **{bench.TASKS['squad_v1_dev_split'].data_note}**. 384-token windows, stride 128; "
               f"batch {bench.QA_BATCH_SIZE}, {qa[0]['steps']} steps, one seed, a fixed learning rate per method (no "
               "dev set apart from the evaluation half to select on), evaluated once at the end. EM and F1 are the "
               "official SQuAD metrics on the evaluation half. Prompt Tuning is left out here: at P=100 every "
               "window becomes 484 tokens, which would add about 50 minutes to the part.\n")
    metric = lambda r, k: f"{r['eval_metrics'][k]:.2f}" if k in r["eval_metrics"] else "–"
    rows = [[label(r["method"]), f"{r['hyperparameters']['LEARNING_RATE']:g}", metric(r, "em"), metric(r, "f1"),
             fmt_share(r["share_of_backbone_percent"]),
             fmt_seconds(r["wall_seconds"])] for r in qa]
    out.append(table(["method", "lr", "EM", "F1", "share of backbone", "wall time"], rows))
  out.append("\n" + commands_block("Sequence labelling and QA", records, "results/bench_sequence.json"))
  return "\n".join(out)


def section_ablations(results_dir: Path, plots: Plots) -> str:
  out = ["## 3. Ablations on SST-2 (P-Tuning v2)\n"]
  records = load_part(results_dir, "ablations")
  if not records:
    return "\n".join(out + [not_run("bench-ablations")])
  out.append(partial_note(results_dir, "ablations"))
  r0 = records[0]
  seeds = sorted({r["seed"] for r in records})
  out.append(f"Deep prompts on SST-2 (shipped subsample, trained on `train[:-1000]`), {r0['steps']} steps, learning "
             f"rate {bench.ABLATION_LR['deep_p20']:g} (deep_prompt.gin's default) for every point but the MLP "
             f"({bench.ABLATION_LR['prefix_mlp']:g}: it does not train at 1e-2), seeds {seeds}, validation accuracy "
             "once at the end; mean ± std over seeds. Each axis changes one thing from P=20 on all 6 layers without "
             "reparameterization; that point is one set of runs shared by the three tables.\n")
  majority = r0.get("majority_class_accuracy")
  lengths = along(records, "prompt_length")
  if lengths:
    share = {r["meta"]["prompt_length"]: r["share_of_backbone_percent"]
             for r in records if "prompt_length" in r["meta"]}
    out.append("**Prompt length**\n")
    out.append(table(["P", "accuracy %", "share of backbone"],
                     [[p, fmt_ms(v), fmt_share(share[p])] for p, v in lengths.items()]))
    out.append("\n" + plots.lines({"P-Tuning v2 (all layers)": list(lengths.items())}, "prompt length P (log)",
                                  "validation accuracy %", "SST-2: accuracy vs prompt length",
                                  "ablation_prompt_length.png", logx=True, baseline=majority))
  top, bottom = along(records, "depth_top"), along(records, "depth_bottom")
  if top or bottom:
    out.append("**Prompt depth**: prompts on k layers, the top k (closest to the output) vs the bottom k "
               "(closest to the embeddings); k = 6 is every layer.\n")
    ks = sorted(set(top) | set(bottom))
    out.append(table(["k", "top k accuracy %", "bottom k accuracy %"],
                     [[k, fmt_ms(top.get(k, [])), fmt_ms(bottom.get(k, []))] for k in ks]))
    out.append("\n" + plots.lines({"top k layers": list(top.items()), "bottom k layers": list(bottom.items())},
                                  "layers with prompts, k", "validation accuracy %",
                                  "SST-2: accuracy vs prompt depth", "ablation_depth.png", baseline=majority))
  reparam = runs_along(records, "reparameterization")
  if reparam:
    out.append("**Reparameterization** (P=20, all layers): the prefix table trained directly vs produced by "
               "the MLP (Embedding(P, 384) → 512 → tanh → 2·6·384, collapsed for export).\n")
    per_seed = lambda rs: ", ".join(f"{r['value']:.2f}" + (" (majority class)" if at_majority_class(r) else "")
                                    for r in rs)
    out.append(table(["MLP reparameterization", "accuracy %", "per seed"],
                     [["on" if flag else "off", fmt_ms([r["value"] for r in rs]), per_seed(rs)]
                      for flag, rs in reparam.items()]))
    for r in filter(at_majority_class, reparam.get(True, [])):
      losses = [loss for step, loss in r["curve"]["train_loss"] if step > r["steps"] - 100]
      out.append(f"\n`{r['id']}` ended at the majority class: it predicts one label, and its training loss over "
                 f"the last 100 steps averaged {statistics.mean(losses):.3f} (chance: ln 2 = 0.693; the curve is "
                 "in its record). The other seeds trained, so the MLP's start is seed-sensitive at this learning "
                 "rate; the mean ± std above includes that run.\n")
  out.append("\n" + commands_block("Ablations", records, "results/bench_ablations.json"))
  return "\n".join(out)


def speed_tables(speed: dict, results_file: str) -> str:
  env, peak = speed["environment"], speed["matmul_peak"]
  rows_in = speed["methods"]
  samples = peak["square"].get("samples", [peak["square"]["gflops"]])
  out = [f"Device: {', '.join(env['devices'])} ({env['device_kind']}; {env.get('cpu', '')}, {env['host_cpus']} "
         f"CPUs; load average {env['loadavg_1min_start']} at the start, {env.get('loadavg_1min_end', '–')} at the "
         f"end: other jobs shared the CPU). Matrix-multiply peak, measured in the same process: "
         f"**{peak['square']['gflops']:.1f} GFLOP/s**, the best of {len(samples)} samples of a float32 "
         f"{peak['square']['shape'][0]}³ `jnp.dot` taken at the start, before each method and at the end "
         f"(they range {min(samples):.0f}–{max(samples):.0f}: the share of the CPU this process got; the column "
         f"\"matmul before\" is the sample just before that method's timing). The model's largest matmul shape "
         f"[4096×384]·[384×1536] reached {peak['mlp_shape']['gflops']:.1f} GFLOP/s. Batch "
         f"{rows_in[0]['batch'] if rows_in else '–'} × {rows_in[0]['length'] if rows_in else '–'} real tokens; "
         "step "
         f"time = median (and min) of {speed['steps']} timed steps after {speed['warmup']} warm-up step(s); "
         "tokens/s counts text tokens at the median.\n"]
  rows = []
  for r in rows_in:
    f = r["flops"]
    mem = r["memory"] or {}
    rows.append([r["label"], fmt_share(r["share_of_backbone_percent"]), r["sequence_length"],
                 f"{r['step_seconds_median'] * 1000:,.0f} ({r['step_seconds_min'] * 1000:,.0f})",
                 f"{r['tokens_per_second']:,.0f}",
                 " / ".join(f"{f[k] / 1e9:.0f}" for k in ("forward", "activation_gradients", "weight_gradients")),
                 f"{f['total'] / 1e9:.0f}", f"{r['gflops_per_second']:.1f}", f"{r['percent_of_matmul_peak']:.0f}%",
                 f"{r.get('matmul_gflops_just_before', float('nan')):.0f}",
                 fmt_bytes(mem.get("temp_size_in_bytes")), fmt_bytes(mem.get("peak_estimate_bytes")),
                 fmt_bytes(r.get("device_peak_bytes")) if r.get("device_peak_bytes") else "–",
                 f"{r['compile_seconds']:.0f}"])
  out.append(table(["method", "trainable share", "layer seq. length", "step ms (min)", "tokens/s",
                    "GFLOP fwd / act-grad / weight-grad", "GFLOP/step", "achieved GFLOP/s", "% of matmul peak",
                    "matmul before (GFLOP/s)", "XLA temp memory", "XLA peak estimate", "device peak",
                    "compile s"], rows))
  ft = next((r for r in rows_in if r["method"] == "finetune"), None)
  pt2 = next((r for r in rows_in if r["method"] == "deep_p20"), None)
  if ft and pt2:
    ratio = ft["step_seconds_median"] / pt2["step_seconds_median"]
    out.append(f"\nFine-tuning vs P-Tuning v2 (P=20): a step takes {ratio:.2f}× "
               f"as long for {ft['flops']['total'] / pt2['flops']['total']:.2f}× the FLOPs (fine-tuning adds the "
               "weight gradients and AdamW over all 22.7M parameters, including the 11.7M-entry word-embedding "
               f"table); XLA's memory estimate is {fmt_bytes((ft['memory'] or {}).get('peak_estimate_bytes'))} vs "
               f"{fmt_bytes((pt2['memory'] or {}).get('peak_estimate_bytes'))}.\n")
  mixed = speed.get("mixed_task_inference")
  if mixed:
    base = mixed["single_prompt"]["examples_per_second"]
    rows = [[name.replace("_", " "), f"{mixed[name]['examples_per_second']:.1f}",
             f"{mixed[name]['tokens_per_second']:,.0f}", f"{mixed[name]['examples_per_second'] / base:.2f}"]
            for name in ("single_prompt", "bank_one_task", "bank_mixed_tasks")]
    mem = mixed["serving_memory_bytes"]
    out.append(f"Mixed-task inference ({mixed['prompt']}, batch {mixed['batch']} × {mixed['length']}): a prompt bank "
               f"of {mixed['tasks']} tasks in one jit-compiled forward pass, each example choosing its prompt and "
               "head by task id.\n")
    out.append(table(["batch", "examples/s", "tokens/s", "relative to one prompt"], rows))
    out.append(f"\nServing 8 tasks: one frozen backbone plus 8 prompts and heads = "
               f"{fmt_bytes(mem['one_backbone_plus_8_prompts'])} of parameters, vs 8 fine-tuned copies = "
               f"{fmt_bytes(mem['8_fine_tuned_models'])}, which also cannot share a batch.\n")
  if speed.get("t5_decoding"):
    out.append(decoding_table(speed["t5_decoding"]))
  out.append(f"Command: `{speed['command']}` ({fmt_seconds(speed['wall_seconds'])}; record `{results_file}`).\n")
  return "\n".join(out)


def decoding_table(d: dict) -> str:
  """T5 greedy decoding with and without the key/value cache (bench_speed.py's t5_decoding record)."""
  rows = [[label, f"{d[key]['run_seconds_median']:.2f} ({d[key]['run_seconds_min']:.2f})",
           f"{d[key]['tokens_per_second']:,.1f}", f"{d[key]['compile_seconds']:.0f}"]
          for key, label in (("cached", "cached (key/value cache)"),
                             ("uncached", "uncached (decoder re-run on the whole buffer)"))]
  return "\n".join([
      f"T5 greedy decoding on a {d['model']}, batch {d['batch']}, inputs of {d['input_length']} tokens, "
      f"{d['new_tokens']} new tokens per example; run time = median (and min) of {d['repeats']} runs after "
      "a warm-up; tokens/s = batch × new tokens / median.\n",
      table(["decoding", "run s (min)", "tokens/s", "compile s"], rows),
      f"\nThe cache makes greedy decoding {d['speedup']:.1f}× as fast; both give the same ids for "
      f"{100 * d['same_ids_fraction']:.1f}% of the decoded positions.\n"])


def section_speed(results_dir: Path, plots: Plots) -> str:
  out = ["## 4. Speed\n",
         "FLOPs are counted analytically (matrix multiplies only; `scripts/bench_speed.py` explains the count): "
         "forward, plus the backward pass split into activation gradients (dX, needed by every method through "
         "every layer at and above the lowest trainable parameter, even with a frozen backbone, because the "
         "prompt's gradient flows through the frozen layers) and weight gradients (dW, only for trained "
         "matrices: fine-tuning). Prompt methods therefore cost about 2× the forward pass and fine-tuning about "
         "3×, plus the optimizer over all parameters. Prompt Tuning and P-Tuning lengthen the sequence every "
         "layer processes; deep prompts only add keys and values.\n"]
  speed = load_json(results_dir / "bench_speed.json")
  if speed is None:
    out.append(not_run("bench-speed"))
  else:
    out.append(speed_tables(speed, "results/bench_speed.json"))
    out.append(plots.bars([r["label"] for r in speed["methods"]], [r["tokens_per_second"] for r in speed["methods"]],
                          "training tokens/s (batch 32 × 128)", "Training throughput per method (CPU)",
                          "speed_tokens_per_second.png"))
  peers = load_json(results_dir / "bench_peers.json")
  check = load_json(results_dir / "bench_speed_check.json")  # a subset run of bench_speed.py, when newer
  out.append(speed_report.targets_section(speed_report.newer(speed, check), peers))
  out.append(speed_report.profile_section(load_json(results_dir / "profile_step.json"), plots.stacked))
  out.append(speed_report.peers_section(peers))
  out.append(speed_report.bf16_section(load_json(results_dir / "bench_bf16.json"), speed_report.newer(speed, check)))
  gpus = sorted(results_dir.glob("bench_speed_*.json"))
  gpus = [p for p in gpus if (load_json(p) or {}).get("environment", {}).get("platform", "cpu") != "cpu"]
  if gpus:
    for p in gpus:
      out.append(f"\n### On {p.stem.split('_')[-1].upper()}\n")
      out.append(speed_tables(load_json(p), f"results/{p.name}"))
  else:
    out.append("\nNo GPU was available to these benchmarks; on a machine with one, `make bench-speed` writes "
               "`results/bench_speed_gpu.json` (the same script; JAX picks the GPU) and this section shows it.\n")
  return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------------
# Paper trends.


def verdict(diff: float, noise: float, expected_sign: Optional[int]) -> str:
  """expected_sign +1/-1 (a is better/worse than b): 'holds' beyond the noise that way, 'does not hold' beyond
  it the other way, else 'within noise'. 0 (a matches b): 'holds' within the noise or when a is higher (it
  matches or beats b), else 'does not hold'.
  None (no direction claimed): what happened."""
  within = abs(diff) <= noise
  if expected_sign is None:
    return "no difference beyond noise" if within else ("higher" if diff > 0 else "lower")
  if expected_sign == 0:
    if within:
      return "holds (within noise)"
    return f"holds (higher by {diff:.1f})" if diff > 0 else f"does not hold (lower by {-diff:.1f})"
  if within:
    return "within noise"
  return "holds" if diff * expected_sign > 0 else "does not hold"


def compare(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float]:
  """(mean(a) - mean(b), noise): noise = the larger of 1 point and 2 standard errors of the difference."""
  ma, sa = mean_std(a)
  mb, sb = mean_std(b)
  se = math.sqrt(sa ** 2 / max(len(a), 1) + sb ** 2 / max(len(b), 1))
  return ma - mb, max(1.0, 2 * se)


def section_trends(results_dir: Path) -> str:
  out = ["## Paper trends at this scale\n",
         "P-Tuning v2 (Liu et al. 2022) reports its claims for 330M-10B backbones; this is a 22.7M MiniLM on 2 CPU "
         "cores with short training. Each verdict is computed from the tables above: a difference counts when it "
         "exceeds max(1 point, 2 standard errors); otherwise it is \"within noise\".\n"]
  methods = load_part(results_dir, "methods")
  ablations = load_part(results_dir, "ablations")
  sequence = load_part(results_dir, "sequence")
  speed = load_json(results_dir / "bench_speed.json")
  rows = []

  def values(records, task, method, stage="final"):
    return [r["value"] for r in records if r["task"] == task and r["method"] == method and r["stage"] == stage]

  def claim(text, a, b, sign, what):
    if a and b:
      diff, noise = compare(a, b)
      # One run a side measures no spread: the 1-point floor is then a guess, and the row says so.
      single = " (one run each: spread not measured)" if min(len(a), len(b)) == 1 else ""
      rows.append([text, f"{what}: {diff:+.1f} points{single}", verdict(diff, noise, sign)])

  for t in ("sst2", "rte"):
    claim(f"P-Tuning v2 matches fine-tuning ({t.upper()})", values(methods, t, "deep_p20"),
          values(methods, t, "finetune"), 0, "PT-2 P=20 − fine-tuning")
    claim(f"Prompt Tuning lags fine-tuning at small scale ({t.upper()})", values(methods, t, "finetune"),
          values(methods, t, "lester_p20"), +1, "fine-tuning − Prompt Tuning P=20")
    lester = max((values(methods, t, m) for m in ("lester_p20", "lester_p100") if values(methods, t, m)),
                 key=statistics.mean, default=[])
    claim(f"P-Tuning v2 beats Prompt Tuning ({t.upper()})", values(methods, t, "deep_p20"), lester, +1,
          "PT-2 P=20 − the better Prompt Tuning")
    claim(f"P-Tuning v2 beats P-Tuning v1 ({t.upper()})", values(methods, t, "deep_p20"),
          values(methods, t, "ptuning_lstm"), +1, "PT-2 − P-Tuning (LSTM)")
    claim(f"MLP reparameterization: no consistent effect, it depends on the task ({t.upper()})",
          values(methods, t, "prefix_mlp"), values(methods, t, "deep_p20"), None, "with MLP − without")
  rte = [r for r in methods if r["task"] == "rte" and r["stage"] == "final"]
  if rte:
    best = max(statistics.mean(rs_v) for rs_v in [[r["value"] for r in rs] for rs in by(rte, "method").values()])
    majority = rte[0]["majority_class_accuracy"]
    rows.append(["(this scale) RTE is near chance for every method", f"best method mean {best:.1f}% vs majority "
                 f"{majority:.1f}%", "holds" if best - majority < 5 else "does not hold"])
  # Ablations.
  lengths = along(ablations, "prompt_length")
  # The paper's claim is about the best length: a prompt of at most 20 does as well as any longer one.
  best = lambda keep: max((p for p in lengths if keep(p)), key=lambda p: statistics.mean(lengths[p]), default=None)
  short, long = best(lambda p: p <= 20), best(lambda p: p > 20)
  if short is not None and long is not None:
    claim("Simple classification needs only a short prompt: the best P ≤ 20 matches the best P > 20",
          lengths[short], lengths[long], 0, f"P={short} − P={long}")
  fewer = lambda side: [v for k, vs in along(ablations, f"depth_{side}").items() if k < bench.NUM_LAYERS for v in vs]
  top, bottom = fewer("top"), fewer("bottom")
  claim("Prompts on the top layers beat the same number on the bottom layers", top, bottom, +1,
        "mean over k < 6 of top k − bottom k")
  deep_all = along(ablations, "depth_top").get(bench.NUM_LAYERS, [])
  claim("Prompts on every layer beat prompts on fewer layers", deep_all, top + bottom, +1,
        "all 6 layers − mean over k < 6")
  reparam = runs_along(ablations, "reparameterization")
  with_mlp, without = reparam.get(True, []), reparam.get(False, [])
  stuck = sum(map(at_majority_class, with_mlp))
  note = f" ({stuck} of {len(with_mlp)} MLP runs stayed at the majority class)" if stuck else ""
  claim("MLP reparameterization: no consistent effect (SST-2 ablation)", [r["value"] for r in with_mlp],
        [r["value"] for r in without], None, "with MLP − without" + note)
  # Sequence tasks.
  for t in ("conll2003", "wnut17"):
    claim(f"P-Tuning v2 matches fine-tuning on NER ({t})", values(sequence, t, "deep_p100"),
          values(sequence, t, "finetune"), 0, "test F1, PT-2 P=100 − fine-tuning")
    claim(f"P-Tuning v2 beats Prompt Tuning on NER ({t})", values(sequence, t, "deep_p100"),
          values(sequence, t, "lester_p100"), +1, "test F1, PT-2 − Prompt Tuning")
  qa_f1 = lambda method: [r["eval_metrics"]["f1"] for r in sequence
                          if r["task"] == "squad_v1_dev_split" and r["method"] == method]
  claim("P-Tuning v2 matches fine-tuning on extractive QA", qa_f1("deep_p100"), qa_f1("finetune"), 0,
        "F1, PT-2 P=100 − fine-tuning")
  if speed:
    mixed = speed["mixed_task_inference"]
    ratio = mixed["bank_mixed_tasks"]["examples_per_second"] / mixed["bank_one_task"]["examples_per_second"]
    rows.append(["(Lester) one batch can serve many tasks at about the cost of one", f"8 tasks mixed / one task "
                 f"throughput: {ratio:.2f}", "holds" if ratio > 0.85 else "does not hold"])
  if not rows:
    return "\n".join(out + ["_No results yet._\n"])
  out.append(table(["claim", "measured here", "verdict"], rows))
  out.append("\nA \"within noise\" or \"does not hold\" at this scale is a statement about a 22.7M-parameter "
             "backbone trained for a few hundred steps, not about the paper's settings.\n")
  return "\n".join(out)


# Reported in issue 17 (peft 0.21.2, transformers 5.24, PyTorch), not measured by this benchmark.
PEFT_REFERENCE = {"epoch 1": 82.2, "epoch 2": 83.1}


def gin_default(name: str, gin_file: Path = REPO / "gin" / "methods" / "deep_prompt.gin") -> str:
  """The value a gin file binds to macro `name`, as written there."""
  for line in gin_file.read_text().splitlines():
    if line.startswith(f"{name} = "):
      return line.split(" = ", 1)[1].split("#")[0].strip().strip("'")
  return "?"


def section_recipe(results_dir: Path) -> str:
  """5. The P-Tuning v2 recipe: our settings vs peft's, held-out accuracy per epoch, validation once."""
  out = ["## 5. P-Tuning v2 recipe on SST-2: our settings vs peft's (issue 17)\n"]
  records = load_part(results_dir, "recipe")
  if not records:
    return "\n".join(out + [not_run("bench-recipe")])
  out.append(partial_note(results_dir, "recipe"))
  trained = [r for r in records if r["stage"] == "recipe"]
  final = {(r["meta"]["arm"], r["seed"]): r for r in records if r["stage"] == "final"}
  arms = [a for a in bench.RECIPE_ARMS if any(r["meta"]["arm"] == a.key for r in trained)]
  r0 = trained[0]
  out.append(f"P=20 deep prompts on all 6 layers, batch 32, max length 64, {r0['steps']} steps, AdamW lr "
             f"{bench.RECIPE_LR:g}, trained on `train[:-1000]` of the shipped 10k subsample. Each run is scored on "
             f"the held-out `train[-1000:]` half-way (step {r0['steps'] // 2}: one epoch of the 10k subsample, 1.1 of "
             "`train[:-1000]`) and at the end (the evidence "
             "the default is chosen on); its final checkpoint is then evaluated once on the 872 validation "
             "sentences. Mean ± std over seeds. Arms vary the settings where ours and peft's PrefixTuning "
             "(THUDM's code) differ: real tokens' position ids from 0 or from P, [CLS] state or the tanh pooler, "
             "prefix dropout 0.1 or none, linear decay to 0 or a constant learning rate.\n")
  rows, held, valid_means = [], {}, []
  for arm in arms:
    runs = [r for r in trained if r["meta"]["arm"] == arm.key]
    epoch1 = [dict(r["curve"]["eval"]).get(r["steps"] // 2) for r in runs]
    held[arm.key] = [r["value"] for r in runs]
    valid = [final[(arm.key, r["seed"])]["value"] for r in runs if (arm.key, r["seed"]) in final]
    valid_means += [statistics.mean(valid)] if valid else []
    rows.append([f"`{arm.key}`", arm.position_policy, arm.pooling, f"{arm.prefix_dropout:g}",
                 "constant" if arm.constant_lr else "linear decay", fmt_ms([v for v in epoch1 if v is not None]),
                 fmt_ms(held[arm.key]), fmt_ms(valid), ", ".join(f"{v:.2f}" for v in valid) or "–"])
  reference = load_json(results_dir / "peft_recipe_reference.json")
  if reference and reference["runs"]:
    runs = sorted(reference["runs"], key=lambda r: r["seed"])
    setting = reference["setting"]
    rows.append([f"peft PrefixTuning (PyTorch, {reference['versions']['peft']})", "after_prompt", "pooler", "0",
                 f"constant (wd {setting['weight_decay']:g}, clip {setting['max_grad_norm']:g})",
                 fmt_ms([r["held_out_curve"][0][1] for r in runs]), fmt_ms([r["held_out"] for r in runs]),
                 fmt_ms([r["validation"] for r in runs]), ", ".join(f"{r['validation']:.2f}" for r in runs)])
  out.append(table(["arm", "positions", "pooling", "prefix dropout", "schedule",
                    f"held-out, step {r0['steps'] // 2} %",
                    f"held-out, step {r0['steps']} %", "validation %", "validation per seed"], rows))
  if reference and reference["runs"]:
    out.append(f"\nThe peft row is `scripts/peft_recipe_reference.py` (torch {reference['versions']['torch']}, "
               f"transformers {reference['versions']['transformers']}; records in "
               f"`results/peft_recipe_reference.json`): `{reference['command']}`, the same splits, steps, batch and "
               "length, seeds " + ", ".join(str(r["seed"]) for r in runs) + f" (its half-way score is at step "
               f"{runs[0]['held_out_curve'][0][0]}, the end of its first pass over `train[:-1000]`). Under this "
               f"protocol it reaches {statistics.mean(r['validation'] for r in runs):.1f}% on validation, where our "
               f"arms' means span {min(valid_means):.1f}-{max(valid_means):.1f}%.\n")
  out.append(f"\nIssue 17 reported peft's PrefixTuning in this setting, trained on all 10k sentences, at "
             f"{PEFT_REFERENCE['epoch 1']}% after epoch 1 and {PEFT_REFERENCE['epoch 2']}% after epoch 2 on validation "
             "(its numbers, not a record of this benchmark).\n")
  main_arms = [a.key for a in bench.RECIPE_ARMS[:2] if held.get(a.key)]
  if len(main_arms) == 2:
    better = max(main_arms, key=lambda k: statistics.mean(held[k]))
    out.append(f"Of the two candidate defaults, `{better}` scores higher on the held-out slice at step "
               f"{r0['steps']} (`{main_arms[0]}` {statistics.mean(held[main_arms[0]]):.2f}, `{main_arms[1]}` "
               f"{statistics.mean(held[main_arms[1]]):.2f}). "
               f"`gin/methods/deep_prompt.gin` defaults to PROMPT_POSITION_POLICY = "
               f"'{gin_default('PROMPT_POSITION_POLICY')}', POOLING = '{gin_default('POOLING')}'.\n")
  out.append("\n" + commands_block("Recipe", records, "results/bench_recipe.json"))
  return "\n".join(out)


def section_estimates(results_dir: Path) -> str:
  """How long each part takes: the plan's estimate from trial-run rates, and what recorded runs took."""
  estimates = bench.estimates(results_dir)
  measured = {}
  for part, name in (("methods", "methods"), ("sequence", "sequence"), ("ablations", "ablations"),
                     ("recipe", "recipe"), ("quick", "quick_methods")):
    rs = load_part(results_dir, name)
    if rs:
      measured[part] = (len(rs), sum(r["wall_seconds"] if not r.get("evaluated_from") else
                                     r.get("evaluation_wall_seconds", 0) for r in rs))
  for part, name in (("speed", "bench_speed.json"), ("quick", "bench_quick_speed.json")):
    speed = load_json(results_dir / name)
    if speed:
      runs, seconds = measured.get(part, (0, 0.0))
      measured[part] = (runs + 1, seconds + speed["wall_seconds"])
  done = lambda runs, seconds: f"{runs} command{'s' * (runs != 1)}, {fmt_seconds(seconds)}"
  rows = [[f"`make bench-{part}`", n, fmt_seconds(s) + (" + the venv install (2-3 min)" if part == "quick" else ""),
           done(*measured[part]) if part in measured else "–"]
          for part, (n, s) in estimates.items()]
  rate_rows = [[t, label(m) if m in bench.METHODS else m.replace("deep_p", "P-Tuning v2 P="), f"{r:.2f}"]
               for (t, m), r in bench.STEPS_PER_SECOND.items()]
  return "\n".join([
      "## Wall time per part\n",
      "Estimated by `python scripts/bench.py plan` for an idle 2-core CPU: each command's steps ÷ its training "
      "steps/s, plus start-up (process, tokenization, first compiles; the driver shares a persistent XLA "
      "compilation cache between commands, so repeats start faster) and evaluation time. The steps/s come from "
      "in-process step times of `scripts/bench_speed.py` at each task's mean padded length (SST-2 20 tokens, "
      "RTE 77, CoNLL-2003 28 and WNUT-17 39 interpolated from 20 and 40, QA 16 × 384), measured while other "
      "jobs held about half of the CPU (matmul samples ~135 of ~300 GFLOP/s idle), scaled by "
      f"{bench.CALIBRATION_SCALE}: the factor that maps P-Tuning v2 P=20's SST-2 step to its known idle "
      "command-line rate, 3.8 steps/s. The measurements and their commands are in `results/calibration/`. "
      "Measured = the sum of the recorded runs' wall times (evaluation-only commands counted by their own time), "
      "on a CPU that other jobs shared.\n",
      table(["part", "commands", "estimated (idle 2-core CPU)", "measured"], rows),
      "\n<details><summary>Training steps/s behind the estimates (idle 2-core CPU, batch 32; QA 16)</summary>\n",
      table(["task", "method", "steps/s"], rate_rows), "\n</details>\n"])


def section_serve(results_dir: Path) -> str:
  out = ["## 6. Serving many tasks from one backbone (`make bench-serve`)\n"]
  serve = load_json(results_dir / "bench_serve.json")
  if serve is None:
    return "\n".join(out + [not_run("bench-serve")])
  base = serve["baseline_one_at_a_time"]
  out.append(f"`python -m prompt_tuning_jax.serve` with {len(serve['tasks'])} exports ({', '.join(serve['tasks'])}; "
             f"{serve['prompt']} each, so all share one prompt bank) on the packaged MiniLM, max_batch "
             f"{serve['max_batch']}, max_wait_ms {serve['max_wait_ms']:g}, padded lengths {serve['lengths']}. Each "
             "request carries one input; the tasks are interleaved, so a batch mixes them. Clients send requests "
             "back to back over HTTP. The baseline answers the same requests one at a time, each by its task's own "
             "single-task model, in process (no HTTP, so it pays no network cost). "
             f"Machine: {serve['machine']}. `scripts/bench_serve.py` has the protocol; results/bench_serve.json the "
             "numbers.\n")
  rows = [[f"server, {c} concurrent client{'s' if c != '1' else ''}", s["requests"], f"{s['requests_per_second']:.1f}",
           f"{s['p50_ms']:.0f}", f"{s['p99_ms']:.0f}", f"{serve['throughput_ratio'][c]:.2f}x"]
          for c, s in serve["server"].items()]
  rows.append(["single-task models, one request at a time", base["requests"], f"{base['requests_per_second']:.1f}",
               f"{base['p50_ms']:.0f}", f"{base['p99_ms']:.0f}", "1.00x"])
  out.append(table(["traffic", "requests", "requests/s", "p50 latency ms", "p99 latency ms", "throughput vs baseline"],
                   rows))
  return "\n".join(out)


def section_sweep(results_dir: Path) -> str:
  """bench_sweep.py: a 9-member sweep as one job vs the same runs one after another."""
  out = ["## 7. Sweeps: 9 configurations as one job (`make bench-sweep`)\n"]
  sweep = load_json(results_dir / "bench_sweep.json")
  if sweep is None or "wall_time_ratio" not in sweep:
    return "\n".join(out + [not_run("bench-sweep")])
  runs = sweep["runs"]
  loads = [r["load_average"][0] for r in runs.values() if r.get("load_average")]
  out.append(f"P-Tuning v2 (P={sweep['prompt_length']}) on SST-2's shipped 10k subsample, learning rates "
             f"{sweep['learning_rates']} x seeds {sweep['seeds']}, {sweep['steps']} steps of batch "
             f"{sweep['batch_size']} and one evaluation of the 872 validation sentences, as one "
             "`--gin.SWEEP` command (every member in one vmapped step over one frozen backbone) and as 9 commands "
             "one after another. Wall time is everything a user waits for (imports, data, compiles, training, "
             "evaluation, exports); memory is each process's peak resident set. "
             f"Machine: {sweep['machine']}, shared with other jobs (1-minute load average "
             f"{min(loads):.1f}-{max(loads):.1f} while these ran; both halves ran back to back under it). "
             "`scripts/bench_sweep.py` has the protocol.\n")
  alone = [r for k, r in runs.items() if k != "sweep"]
  rows = [["one sweep of 9 members", fmt_seconds(sweep["sweep_wall_seconds"]), f"{sweep['sweep_peak_rss_mib']:,.0f}"],
          ["9 runs one after another", fmt_seconds(sweep["sequential_wall_seconds"]),
           f"{min(r['peak_rss_mib'] for r in alone):,.0f}-{max(r['peak_rss_mib'] for r in alone):,.0f} each"]]
  out.append(table(["how", "wall time", "peak RSS MiB"], rows))
  if sweep.get("note"):
    out.append(f"\n{sweep['note']}\n")
  for earlier in sweep.get("earlier_sweep_measurements", []):
    out.append(f"An earlier measurement of the same sweep command, while the machine was busier (1-minute load "
               f"average about {earlier['load_average'][0]:.1f} at its end, 9-11 during it): "
               f"{fmt_seconds(earlier['wall_seconds'])}, peak RSS {earlier['peak_rss_mib']:,.0f} MiB, ratio "
               f"{earlier['wall_seconds'] / sweep['sequential_wall_seconds']:.2f} against the runs above.\n")
  ratios = [sweep["wall_time_ratio"]] + [e["wall_seconds"] / sweep["sequential_wall_seconds"]
                                         for e in sweep.get("earlier_sweep_measurements", [])]
  shown = " and ".join(f"**{r:.2f}**" for r in ratios)
  out.append(f"\nRatio sweep / sequential: {shown} (goal <= {sweep['goal_ratio']}"
             + ("; the two sweep measurements ran under different loads, so the ratio at one load lies between "
                "them" if len(ratios) > 1 else "") + ").\n")
  rates = [r.get("steps_per_second") for r in alone]
  if runs["sweep"].get("steps_per_second") and all(rates):
    member_rate = len(alone) * runs["sweep"]["steps_per_second"]
    out.append(f"Training rates: the sweep {member_rate:.2f} member-steps/s ({len(alone)} x "
               f"{runs['sweep']['steps_per_second']:.3f} sweep steps/s), the runs alone "
               f"{statistics.median(rates):.2f} steps/s each (median). On this CPU every member's forward and backward "
               "pass costs about what it costs alone (each member's prompt enters every layer, so none of the "
               "backbone's computation is shared); the sweep saves each run's fixed costs: process start and "
               "imports, tokenizing the data, loading the backbone, tracing and compiling, and the host loop. The "
               "ratio therefore rises toward the ratio of those rates as TRAIN_STEPS grows.\n")
  members = [[f"{m['learning_rate']:g}", m["seed"], f"{m['sweep_accuracy']:.2f}",
              "–" if m["alone_accuracy"] is None else f"{m['alone_accuracy']:.2f}"] for m in sweep["members"]]
  if members:
    gaps = [abs(m["sweep_accuracy"] - m["alone_accuracy"]) for m in sweep["members"] if m["alone_accuracy"] is not None]
    out.append("Each member beside its run alone (a member's batches are padded to the step's longest member batch; "
               "the encoder's dropout masks do not depend on that padding, and float rounding differs, which Adam "
               f"can grow): |difference| {statistics.mean(gaps):.2f} points on average, {max(gaps):.2f} at most, "
               f"after {sweep['steps']} steps. The tiny-model tests (`tests/test_sweep.py`) agree to 1e-6, in one "
               "length bucket or across buckets.\n")
    out.append(table(["learning rate", "seed", "validation accuracy in the sweep", "alone"], members))
  commands = "\n".join(r["command"] for r in runs.values())
  out.append(f"\n<details><summary>Commands (results/bench_sweep.json)</summary>\n\n```\n{commands}\n```\n</details>\n")
  return "\n".join(out)


def sweep_means(record: dict, split: str) -> Dict[float, List[float]]:
  """learning rate -> the members' `split` metric (one per seed) of a sweep record's member table."""
  out: Dict[float, List[float]] = {}
  for row in record.get("sweep", []):
    out.setdefault(float(row["settings"]["LEARNING_RATE"]), []).append(row[f"{split}_{record['metric']}"])
  return out


def section_compare(results_dir: Path) -> str:
  """bench.py compare: per task and method, the learning rate chosen on the held-out split (mean over seeds)
  and the report split's mean ± std over the seeds at it; a choice at the grid's edge is flagged."""
  out = ["## 8. Full-budget comparison (`make bench-compare`)\n"]
  records = load_part(results_dir, "compare")
  if not records:
    return "\n".join(out + [not_run("bench-compare") + "\n`python scripts/bench.py plan compare` lists its "
                             "sweeps (5 learning rates x 3 seeds per method and task) and their estimated time: "
                             "on this 2-core CPU far beyond a working session (the wall-time table below), so it "
                             "waits for a machine with an accelerator, where the same command runs unchanged."])
  finals = {r["id"][:-len(".final")]: r for r in records if r["id"].endswith(".final")}
  rows = []
  for r in (r for r in records if r["stage"] == "sweep"):
    selection = {lr: statistics.mean(v) for lr, v in sweep_means(r, r["eval_split"]).items()}
    grid = sorted(selection)
    chosen = max(grid, key=lambda lr: selection[lr])
    final = finals.get(r["id"])
    reported = sweep_means(final, final["eval_split"]).get(chosen, []) if final else []
    mean, std = mean_std(reported) if reported else (None, None)
    rows.append([r["task"], label(r["method"]), r["steps"], f"{chosen:g}" + (" (grid edge: widen)" if chosen in
                                                                             (grid[0], grid[-1]) else ""),
                 "–" if mean is None else f"{mean:.2f} ± {std:.2f}"])
  out.append(table(["task", "method", "steps", "chosen learning rate", "report split, mean ± std over 3 seeds"],
                   rows))
  return "\n".join(out)


def render(results_dir: Path, out: Path) -> str:
  plots = Plots(out.parent)
  parts = [
      "# Benchmark results\n",
      "Generated by `scripts/make_results_md.py` from `results/bench_*.json` (written by `scripts/bench.py`; "
      "`make bench-quick`, `make bench` or one part: `make bench-methods`, `bench-sequence`, `bench-ablations`, "
      "`bench-speed`, `bench-recipe`; `make bench-sweep` writes its own). Every number below is a record of one of "
      "those files, and the command that produced it "
      "is listed under its table (`python` is the project's virtualenv interpreter, run from the repository "
      "root). Backbone: the packaged all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7M parameters), frozen except "
      "where a method trains it. Hardware: 2 CPU cores, shared with other jobs while these ran, so wall times "
      "are upper bounds.\n",
      section_quick(results_dir, plots), section_methods(results_dir, plots), section_sequence(results_dir, plots),
      section_ablations(results_dir, plots), section_speed(results_dir, plots), section_recipe(results_dir),
      section_serve(results_dir), section_sweep(results_dir), section_compare(results_dir),
      section_trends(results_dir),
      section_estimates(results_dir)]
  return "\n".join(p.rstrip() + "\n" for p in parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--results_dir", default="results")
  parser.add_argument("--out", default="docs/RESULTS.md")
  args = parser.parse_args(argv)
  out = (REPO / args.out).resolve()
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(render((REPO / args.results_dir).resolve(), out))
  print(f"wrote {out} and {out.parent / PLOTS}/", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
