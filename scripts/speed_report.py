"""docs/RESULTS.md's speed sub-sections of issue 21: the step profile, the peers, bfloat16 (make_results_md.py).

Each reads one record (results/profile_step.json, bench_peers.json, bench_bf16.json) and returns Markdown; a
missing record yields a line naming the make target that writes it.
"""

from typing import Callable, Dict, List, Optional, Sequence

GPU_NOTE = ("No GPU was lent to the task that built this (its device status said not drawn): the fused-attention "
            "and bfloat16 timings on a GPU (`results/bench_speed_gpu.json`) are still to be made; the code has no "
            "GPU-only path beyond what JAX picks by itself.\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def _load_line(env: dict) -> str:
  start = env.get("loadavg_1min_start", "–")
  end = env.get("loadavg_1min_end", env.get("loadavg_1min_now", "–"))
  return (f"load average {start} at the start, {end} at the end on {env.get('host_cpus', '?')} CPUs"
          + (" (**a loaded machine**: other jobs shared the CPU; absolute times are inflated, shares and ratios "
             "taken in the same run less so)" if max(float(start or 0), float(end or 0) if end != "–" else 0)
             > 2.5 else ""))


def profile_section(profile: Optional[dict], bars: Callable[..., str]) -> str:
  """The step's time by kind of work per method, and a stacked bar plot (bars(labels, kinds, values, ...))."""
  if profile is None:
    return "\n### Where a step's time goes\n\nNot run yet: `make bench-profile` writes results/profile_step.json.\n"
  kinds = profile["kinds"]
  out = ["\n### Where a step's time goes\n",
         "`scripts/profile_step.py` traces the compiled train step with `jax.profiler`, maps every executed XLA "
         "operation to its instruction in the compiled module and the instruction (a fusion: what it fuses) to a "
         "kind of work; at each instant the wall time is shared by the operations running then, and time with none "
         "running is host and idle (the script's docstring defines the kinds). Batch 32 × 128, packaged MiniLM, "
         f"{_load_line(profile['environment'])}; matmul peak in the same process "
         f"{profile['matmul_peak_gflops']:.0f} GFLOP/s.\n"]
  rows = []
  for r in profile["methods"]:
    shares = r["shares_percent"]
    rows.append([r["label"], f"{r['step_seconds_min'] * 1000:,.0f}", f"{r['traced_step_seconds'] * 1000:,.0f}",
                 f"{100 * r['sum_of_kinds_seconds'] / r['step_seconds_min']:.0f}%",
                 *[f"{shares.get(k, 0):.1f}%" for k in kinds],
                 *[f"{m['percent_of_matmul_peak']:.0f}%" if m.get("percent_of_matmul_peak") else "–"
                   for m in (r["matmuls"]["dense matmuls"], r["matmuls"]["attention matmuls"])]])
  out.append(_table(["method", "step ms (untraced)", "traced ms", "sum of kinds / untraced", *kinds,
                     "dense dots: % of peak", "attention dots: % of peak"], rows))
  out.append("\nThe kinds add up to the traced step exactly; the column \"sum of kinds / untraced\" compares them "
             "with the untraced step (the profiler's own overhead and the machine's load between the two). The "
             "last two columns are the dots' own rate (their FLOPs over their time) against the matmul peak.\n")
  out.append(whats_left(profile))
  out.append(bars([r["label"] for r in profile["methods"]], kinds,
                  [[r["shares_percent"].get(k, 0) for k in kinds] for r in profile["methods"]],
                  "share of the step, %", "Train step by kind of work (CPU)", "profile_step.png"))
  out.append(f"Command: `{profile['command']}` (record `results/profile_step.json`).\n")
  return "\n".join(out)


ELEMENTWISE = ("softmax and mask", "dropout randomness", "dropout apply", "LayerNorm", "GELU", "other elementwise",
               "layout copies")


def whats_left(profile: dict) -> str:
  """What keeps P-Tuning v2 P=20's float32 step from the matmul peak, from its row of the profile."""
  row = next((r for r in profile["methods"] if r["method"] == "deep_p20"), None)
  if row is None:
    return ""
  shares, dots = row["shares_percent"], row["matmuls"]
  dense, attention = dots["dense matmuls"], dots["attention matmuls"]
  if not dense.get("percent_of_matmul_peak") or not attention.get("percent_of_matmul_peak"):
    return ""
  elementwise = sum(shares.get(k, 0) for k in ELEMENTWISE)
  return (f"\n**What is left** (P-Tuning v2 P=20, float32): the dense dots already run at "
          f"{dense['percent_of_matmul_peak']:.0f}% of the peak and take {shares['dense matmuls']:.0f}% of the step. "
          f"The attention's score and context products take {shares['attention matmuls']:.0f}% at "
          f"{attention['percent_of_matmul_peak']:.0f}% of the peak: they are [B x heads] = 384 batches of "
          "[128 x 32] x [32 x 148] matrices, too small for XLA CPU's batched dot to reach speed (laid out as "
          "[B*heads, M, K] x [B*heads, K, N] first, they ran twice as fast alone, but the whole step was no faster, "
          "measured, so that layout was not kept). The elementwise work (softmax and mask, dropout randomness, "
          f"LayerNorm, exact-erf GELU, copies) takes {elementwise:.0f}%: passes over memory with few multiply-adds, far from matmul "
          "speed. Neither part can reach the peak, which is why the float32 targets are missed; bfloat16 activations "
          "halve the dense dots' time (AMX) and are where the targets are met.\n")


def peers_section(peers: Optional[dict]) -> str:
  if peers is None or "ratios" not in peers:
    return "\n### Against peft and transformers\n\nNot run yet: `make bench-peers` writes results/bench_peers.json.\n"
    # (the record is written phase by phase; ratios come with the last phase)
  v = peers["peers"]["versions"]
  out = ["\n### Against peft and transformers\n",
         f"The same MiniLM, batch {peers['batch']} × {peers['length']} real tokens, dropout on, AdamW, one process "
         f"per side; ours timed before and after the peers (torch {v['torch']} with {v['torch_threads']} threads, "
         f"transformers {v['transformers']}, peft {v['peft']}); best step of each; "
         f"{_load_line(peers['environment'])}.\n"]
  rows = [[r["label"], f"{r['ours_step_seconds'] * 1000:,.0f}",
           " / ".join(f"{s * 1000:,.0f}" for s in r["ours_rounds_seconds"]), f"{r['peer_step_seconds'] * 1000:,.0f}",
           f"**{r['peer_over_ours']:.2f}×**"] for r in peers["ratios"]]
  out.append(_table(["comparison", "ours ms", "ours before / after", "peer ms", "peer time / ours"], rows))
  adapted = [r["peer"] for r in peers["ratios"] if r["adapted_signature"]]
  prefix = next((m for m in peers["peers"]["methods"] if m["method"] == "peft_prefix_p20"), {})
  out.append("\n" + (f"The harness adapted the BERT forward's signature for {', '.join(adapted)} (its cache argument "
                     "is not named `past_key_values`; scripts/peers_torch.py). " if adapted else
                     "peft's prefix reached this transformers' BERT as `past_key_values` without adapting its "
                     "signature (the harness would rename a `cache` argument and say so here). ")
             + (f"The prefix got a gradient (|grad| sum {prefix['prefix_gradient_abs_sum']:.3g}): it did reach "
                "attention.\n" if prefix.get("prefix_gradient_abs_sum") else "\n"))
  out.append(f"Command: `{peers['command']}` (record `results/bench_peers.json`).\n")
  return "\n".join(out)


def bf16_section(bf16: Optional[dict], speed: Optional[dict]) -> str:
  out = ["\n### bfloat16 activations\n",
         "`--gin.ACTIVATION_DTYPE=\"'bfloat16'\"` (both backbones): activations and matmul operands in bfloat16, "
         "float32 accumulation; parameters, softmax, LayerNorm / RMSNorm statistics, the returned states and the "
         "loss in float32 (tests/test_precision.py checks it against float32).\n"]
  rows = _speed_pairs(speed) if speed else []
  if rows:
    out.append(_table(["method", "float32 step ms", "bfloat16 step ms", "speed-up"], rows))
  if bf16 is None or "accuracy_points" not in bf16:
    out.append("\nAccuracy: not run yet (`make bench-bf16` trains the demo configuration in both dtypes and writes "
               "results/bench_bf16.json).\n")
  else:
    acc = bf16["accuracy_points"]
    out.append(f"\nThe demo configuration (gin/sst2_deep_prompt.gin): SST-2 validation accuracy float32 "
               f"{acc['float32']:.2f}%, bfloat16 {acc['bfloat16']:.2f}% "
               f"({bf16['bfloat16_minus_float32_points']:+.2f} points); wall "
               + ", ".join(f"{d} {r['wall_seconds'] / 60:.0f} min" for d, r in bf16["runs"].items())
               + " (record `results/bench_bf16.json`; wall times as they fell on a shared machine: the step "
               "times above are the speed comparison).\n")
  out.append(GPU_NOTE)
  return "\n".join(out)


def _speed_pairs(speed: dict) -> List[list]:
  by_key: Dict[str, dict] = {r["method"]: r for r in speed["methods"]}
  rows = []
  for key, r in by_key.items():
    if key.endswith("_bf16") and key[:-len("_bf16")] in by_key:
      base = by_key[key[:-len("_bf16")]]
      rows.append([base["label"], f"{base['step_seconds_median'] * 1000:,.0f}",
                   f"{r['step_seconds_median'] * 1000:,.0f}",
                   f"{base['step_seconds_median'] / r['step_seconds_median']:.2f}×"])
  return rows


def newer(full: Optional[dict], subset: Optional[dict]) -> Optional[dict]:
  """The later-finished of bench_speed.py's full record and a subset run of it (results/bench_speed_check.json)."""
  if full is None or subset is None:
    return full or subset
  return subset if subset.get("finished", "") > full.get("finished", "") else full


def targets_section(speed: Optional[dict], peers: Optional[dict]) -> str:
  """Issue 21's acceptance figures, each with its target, from the records at hand."""
  rows = []
  by_key = {r["method"]: r for r in (speed or {}).get("methods", [])}
  for key, target in (("deep_p20", 45.0), ("lester_p100", 30.0), ("deep_p20_bf16", 45.0), ("lester_p100_bf16", 30.0)):
    if key in by_key and "percent_of_matmul_peak" in by_key[key]:
      r = by_key[key]
      got = r["percent_of_matmul_peak"]
      before = 100.0 * r["gflops_per_second"] / r["matmul_gflops_just_before"]
      rows.append([f"{r['label']}: % of the matmul peak (bench-speed)", f"≥ {target:.0f}%", f"{got:.1f}%",
                   f"{before:.1f}%", "met" if got >= target else "missed"])
  for ratio in (r for r in (peers or {}).get("ratios", []) if r["ours"].startswith("deep_p20")):
    rows.append([f"{ratio['label']}: peer time / ours (bench-peers)", "≥ 1.5×",
                 f"{ratio['peer_over_ours']:.2f}×", "–", "met" if ratio["peer_over_ours"] >= 1.5 else "missed"])
  if not rows:
    return ""
  source = (f"\nFrom `{speed['command']}` ({_load_line(speed['environment'])}; matmul peak in that process "
            f"{speed['matmul_peak']['square']['gflops']:.0f} GFLOP/s)" if speed else "\n")
  if peers:
    source += f" and `{peers['command']}`"
  note = ("\nThe fourth column divides by the matmul sample taken just before that method's timing instead of the "
          "best sample of the run: on a machine whose load drifts, it is the fairer of the two. bfloat16 rows "
          "(ACTIVATION_DTYPE='bfloat16') are measured against the float32 peak, like the rest.\n")
  return ("\n### Speed targets\n\n" + _table(["figure", "target", "measured", "vs the matmul sample just before",
                                                 ""], rows) + source + ".\n" + note)
