r"""Our train step against peft's and transformers' on the same batch, on this machine, in one run (issue 21, part 3).

  python scripts/bench_peers.py --peers_python=.venv-peers/bin/python [--out=results/bench_peers.json]
                                [--batch=32 --length=128 --steps=5]

`make bench-peers` creates .venv-peers (torch CPU, transformers and peft at the versions pinned in the Makefile)
and runs this. Order: our P-Tuning v2 P=20, Prompt Tuning P=20 and fine-tuning (scripts/bench_speed.py's build of
the trainer's own step), then the peers in their own process (scripts/peers_torch.py: peft PrefixTuning P=20, peft
PromptTuning P=20, transformers fine-tuning of the same MiniLM), then ours again: a load that comes and goes on a
shared machine shows up as a difference between our two timings. Ratios are peer step time over ours, each side's
best (min) step; ours is the best of both rounds. All on the CPU, dropout on everywhere, AdamW, batch x length real
tokens. Resumable: a phase recorded in --out for the same shape is kept (delete the file to rerun everything).
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

# pylint: disable=g-import-not-at-top,wrong-import-position
import bench_speed
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
# pylint: enable=g-import-not-at-top,wrong-import-position

# (our method key, the peer it is compared with, the row's label). The bfloat16 rows: ours with
# ACTIVATION_DTYPE='bfloat16', the peer under torch.autocast(bfloat16) (both on this CPU's AMX / AVX512-BF16).
PAIRS = (("deep_p20", "peft_prefix_p20", "P-Tuning v2 P=20 vs peft PrefixTuning P=20"),
         ("lester_p20", "peft_prompt_p20", "Prompt Tuning P=20 vs peft PromptTuning P=20"),
         ("finetune", "hf_finetune", "Fine-tuning vs transformers fine-tuning"),
         ("deep_p20_bf16", "peft_prefix_p20_bf16", "P-Tuning v2 P=20 vs peft PrefixTuning P=20, both bfloat16"),
         ("deep_p20_bf16", "peft_prefix_p20", "P-Tuning v2 P=20 in bfloat16 vs peft PrefixTuning P=20 in float32"))
OURS = tuple(dict.fromkeys(ours for ours, _, _ in PAIRS))
PEERS = tuple(dict.fromkeys(peer for _, peer, _ in PAIRS))


def time_ours(backbone, batch: int, length: int, warmup: int, steps: int) -> dict:
  out = {}
  for key in OURS:
    _, _, method_gin, bindings = bench_speed.method_spec(key)
    built = bench_speed.build_step(method_gin, bindings, backbone, batch, length)
    state = built.state
    for _ in range(warmup):
      state, metrics = built.run(state)
    jax.block_until_ready(metrics)
    times, _ = built.timed_steps(state, steps)
    out[key] = {"step_seconds_min": min(times), "step_seconds_median": statistics.median(times),
                "step_seconds": times}
    print(f"[peers] ours {key:<12} step {min(times) * 1000:8.0f} ms", flush=True)
  return out


def ratios(record: dict) -> list:
  rows = []
  peers = {r["method"]: r for r in record["peers"]["methods"]}
  for ours, peer, label in PAIRS:
    rounds = [record[phase][ours]["step_seconds_min"] for phase in ("ours_before", "ours_after")]
    mine, theirs = min(rounds), peers[peer]["step_seconds_min"]
    rows.append({"ours": ours, "peer": peer, "label": label, "ours_step_seconds": mine,
                 "ours_rounds_seconds": rounds, "peer_step_seconds": theirs, "peer_over_ours": theirs / mine,
                 "adapted_signature": peers[peer].get("adapted_signature", False)})
  return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--peers_python", default=str(REPO / ".venv-peers" / "bin" / "python"))
  parser.add_argument("--out", default="results/bench_peers.json")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  args = parser.parse_args(argv)
  os.chdir(REPO)
  out = Path(args.out)
  record = json.loads(out.read_text()) if out.exists() else {}
  if (record.get("batch"), record.get("length")) != (args.batch, args.length) or not all(
      key in record.get(phase, {}) for phase in ("ours_before", "ours_after") for key in OURS):
    record = {"batch": args.batch, "length": args.length}
  record.update(command="python scripts/bench_peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
                environment=bench_speed.environment())
  backbone_dir = resolve_backbone_dir(None)
  backbone = load_backbone(backbone_dir)

  def save():
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")

  if "ours_before" not in record:
    record["ours_before"] = time_ours(backbone, args.batch, args.length, args.warmup, args.steps)
    save()
  if "peers" not in record:
    peers_out = out.with_suffix(".peers.tmp")
    subprocess.run([args.peers_python, str(REPO / "scripts" / "peers_torch.py"), f"--backbone_dir={backbone_dir}",
                    f"--out={peers_out}", f"--batch={args.batch}", f"--length={args.length}",
                    f"--steps={args.steps}", f"--warmup={args.warmup}", f"--methods={','.join(PEERS)}"],
                   check=True)
    record["peers"] = json.loads(peers_out.read_text())
    peers_out.unlink()
    save()
  if "ours_after" not in record:
    record["ours_after"] = time_ours(backbone, args.batch, args.length, args.warmup, args.steps)
  record["ratios"] = ratios(record)
  record["environment"]["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
  record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
  save()
  for row in record["ratios"]:
    print(f"[peers] {row['label']}: ours {row['ours_step_seconds'] * 1000:.0f} ms, peer "
          f"{row['peer_step_seconds'] * 1000:.0f} ms, {row['peer_over_ours']:.2f}x", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
