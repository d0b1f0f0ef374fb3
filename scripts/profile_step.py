r"""Where a train step's time goes, by kind of work, from JAX's profiler (issue 21, part 1).

  python scripts/profile_step.py [--out=results/profile_step.json] [--methods=deep_p20,deep_p100,lester_p100,finetune]
                                 [--batch=32 --length=128] [--steps=3] [--gin=NAME=VALUE ...]

Each method is built and compiled exactly as scripts/bench_speed.py builds it (the trainer's own model, contract and
train step), timed untraced (`--steps` steps before and as many after the traced ones), traced with jax.profiler over
`--steps` steps. The trace holds one event per executed XLA operation (thunk) and thread; each is mapped to the compiled
module's instruction of that name, and the instruction (for a fusion: what it fuses) to a kind of work:

  dense matmuls           dots of the projections (query/key/value/out), the MLP, pooler, head, reparameterization
  attention matmuls       dots of the attention scores (QK^T) and context (PV), forward and backward
  softmax and mask        the rest of the attention: scaling, the key mask, softmax and its gradient
  dropout randomness      drawing the random bits (threefry or RngBitGenerator) and turning them into masks
  dropout apply           multiplying by the masks
  LayerNorm               LayerNorm forward and backward
  GELU                    the MLP activation and its gradient
  other elementwise       residual adds, embeddings, the loss, anything else on activations
  layout copies           copies, transposes and broadcasts XLA inserted without a source op
  optimizer               gradient bookkeeping after the backward pass: the update, global norm, step count
  host and idle           the step's wall time during which no operation ran on any thread: dispatch, argument
                          handling, waits between dependent operations

A fusion that contains a dot counts as that dot's matmul kind (XLA CPU fuses the bias add, and sometimes more, into
the dot); its FLOPs are counted from the dot's shapes. At every instant of the traced step, the wall time is split
evenly between the operations running then (on 2 cores, at most 2 at once but one often alone), so the kinds add up
to the traced step's wall time exactly; `traced_vs_untraced` compares it with the untraced step (the profiler's
overhead). Per matmul kind, `gflops_per_second` is its FLOPs over its time: against the matmul peak measured in the
same process it says how far the dots themselves are from the peak, as opposed to the time around them.
"""

import argparse
import collections
import datetime
import glob
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

# pylint: disable=g-import-not-at-top,wrong-import-position
import bench_speed
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
# pylint: enable=g-import-not-at-top,wrong-import-position

METHODS = ("deep_p20", "deep_p100", "lester_p100", "finetune")
KINDS = ("dense matmuls", "attention matmuls", "softmax and mask", "dropout randomness", "dropout apply",
         "LayerNorm", "GELU", "other elementwise", "layout copies", "optimizer", "host and idle")
# A fusion without a dot is the highest of the kinds it fuses, in this order.
_PRIORITY = ("dropout randomness", "softmax and mask", "LayerNorm", "GELU", "dropout apply", "optimizer",
             "other elementwise", "layout copies")
_RANDOM = re.compile(r"threefry|random_bits|_bernoulli|_uniform|rng_bit_generator|random_wrap|random_unwrap|"
                     r"rng-bit-generator|/bits")
_DENSE_PATH = re.compile(r"/(query|key|value|out|wi|wo|wi_0|wi_1|pooler|head|classifier|reparam_in|reparam_out|"
                         r"q|k|v|o|logits_dense)/")
_LAYOUT_OPS = {"copy", "transpose", "bitcast", "broadcast", "reshape", "slice", "concatenate", "pad",
               "dynamic-slice", "dynamic-update-slice", "tuple", "get-tuple-element", "parameter", "constant", "iota"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+?)(?:\{[^}]*\})?\s+([\w\-]+)\((.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")


class Instruction(dict):
  """One HLO instruction: name, shape, opcode, operands, called computations, op_name metadata."""


def parse_hlo(text: str) -> Tuple[Dict[str, Instruction], Dict[str, List[str]]]:
  """The compiled module's instructions by name, and each computation's instruction names."""
  instructions, computations, current = {}, collections.defaultdict(list), None
  for line in text.splitlines():
    m = _COMPUTATION.match(line)
    if m and "=" not in line.split("(")[0]:
      current = m.group(1)
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    name, shape, opcode, rest = m.groups()
    args = rest.split("),", 1)[0] if ")," in rest else rest.rsplit(")", 1)[0]
    op_name = re.search(r'op_name="([^"]*)"', rest)
    instructions[name] = Instruction(
        name=name, shape=shape, opcode=opcode, operands=re.findall(r"%([\w.\-]+)", args),
        calls=re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", rest),
        op_name=op_name.group(1) if op_name else "", attrs=rest)
    if current:
      computations[current].append(name)
  return instructions, computations


def _dims(shape: str) -> List[int]:
  m = re.search(r"\[([\d,]*)\]", shape)
  return [int(x) for x in m.group(1).split(",") if x] if m else []


def dot_flops(instr: Instruction, instructions: Dict[str, Instruction]) -> float:
  """2 * output elements * contracted size of a dot."""
  out = 1
  for d in _dims(instr["shape"]):
    out *= d
  lhs = instructions.get(instr["operands"][0]) if instr["operands"] else None
  contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", instr["attrs"])
  if lhs is None or not contracting:
    return 0.0
  dims = _dims(lhs["shape"])
  k = 1
  for i in contracting.group(1).split(","):
    if i:
      k *= dims[int(i)]
  return 2.0 * out * k


def instruction_kind(instr: Instruction) -> str:
  """The kind of work of one (unfused) instruction, from its opcode and source op's path."""
  path, opcode = instr["op_name"].lower(), instr["opcode"]
  if opcode in ("dot", "convolution"):
    if _DENSE_PATH.search(path + "/") or "attention" not in path:
      return "dense matmuls"
    return "attention matmuls"
  if _RANDOM.search(path) or opcode == "rng-bit-generator":
    return "dropout randomness"
  if not path:
    return "layout copies" if opcode in _LAYOUT_OPS else "other elementwise"
  if "jvp(" not in path:
    return "optimizer"
  if "dropout" in path:
    return "dropout apply"
  if "layer_norm" in path or "layernorm" in path:
    return "LayerNorm"
  if "/mlp/" in path and not _DENSE_PATH.search(path + "/"):
    return "GELU"
  if "softmax" in path or ("attention" in path and not _DENSE_PATH.search(path + "/")):
    return "softmax and mask"
  return "layout copies" if opcode in _LAYOUT_OPS and opcode not in ("concatenate",) else "other elementwise"


class Classifier:
  """Kind and dot FLOPs of every instruction of a compiled module, fusions included."""

  def __init__(self, hlo_text: str):
    self.instructions, self.computations = parse_hlo(hlo_text)
    self._cache: Dict[str, Tuple[str, float]] = {}

  def _members(self, instr: Instruction) -> Iterable[Instruction]:
    for computation in instr["calls"]:
      for name in self.computations.get(computation, ()):
        yield self.instructions[name]

  def classify(self, name: str) -> Tuple[str, float]:
    """(kind, dot FLOPs) of the instruction `name` (a fusion: of what it fuses)."""
    if name in self._cache:
      return self._cache[name]
    instr = self.instructions[name]
    self._cache[name] = (instruction_kind(instr), 0.0)  # guards against cycles
    if instr["opcode"] in ("fusion", "call", "custom-call") and instr["calls"]:
      kinds, flops, dot_kind = [], 0.0, None
      for member in self._members(instr):
        kind, member_flops = self.classify(member["name"])
        kinds.append(kind)
        flops += member_flops
        if kind in ("dense matmuls", "attention matmuls") and dot_kind is None:
          dot_kind = kind
      if dot_kind:
        result = (dot_kind, flops)
      else:
        result = (min(kinds, key=lambda k: _PRIORITY.index(k) if k in _PRIORITY else len(_PRIORITY))
                  if kinds else instruction_kind(instr), 0.0)
    elif instr["opcode"] in ("dot", "convolution"):
      result = (instruction_kind(instr), dot_flops(instr, self.instructions))
    else:
      result = (instruction_kind(instr), 0.0)
    self._cache[name] = result
    return result


def step_windows(planes) -> List[Tuple[float, float]]:
  """[start, end) ns of each 'profiled_step' annotation on the python thread."""
  return sorted((e.start_ns, e.start_ns + e.duration_ns) for plane in planes for line in plane.lines
                for e in line.events if e.name == "profiled_step")


def op_events(planes, known) -> List[Tuple[float, float, str]]:
  """(start, end, name) of the innermost events naming a module instruction, on every XLA thread."""
  out = []
  for plane in planes:
    if plane.name != "/host:CPU" and not plane.name.startswith("/device:"):
      continue
    for line in plane.lines:
      if line.name == "python":
        continue
      events = sorted((e.start_ns, e.start_ns + e.duration_ns, e.name) for e in line.events if e.name in known)
      for i, (start, end, name) in enumerate(events):  # drop an event that encloses the next one (a loop or call)
        if i + 1 < len(events) and events[i + 1][0] < end and events[i + 1][1] <= end:
          continue
        out.append((start, end, name))
  return out


def split_window(window: Tuple[float, float], events, classify) -> Tuple[Dict[str, float], Dict[str, float]]:
  """Seconds of the window by kind (time shared evenly by the operations running at once; none: host and idle),
  and each matmul kind's dot FLOPs."""
  lo, hi = window
  points = []
  flops = collections.Counter()
  for start, end, name in events:
    start, end = max(start, lo), min(end, hi)
    if end <= start:
      continue
    kind, f = classify(name)
    flops[kind] += f
    points += [(start, 1, kind), (end, -1, kind)]
  points.sort(key=lambda p: (p[0], p[1]))
  seconds = collections.Counter()
  active = collections.Counter()
  last = lo
  for t, delta, kind in points:
    running = sum(active.values())
    span = (t - last) / 1e9
    if running:
      for k, n in active.items():
        if n:
          seconds[k] += span * n / running
    else:
      seconds["host and idle"] += span
    active[kind] += delta
    last = t
  seconds["host and idle"] += (hi - last) / 1e9
  return dict(seconds), dict(flops)


def trace_steps(built, steps: int):
  """Traces `steps` steps: per step the seconds by kind, the FLOPs by kind and the traced wall time; and the state
  after them."""
  classifier = Classifier(built.compiled.as_text())
  state = built.state
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(steps):
      with jax.profiler.TraceAnnotation("profiled_step"):
        state, metrics = built.run(state)
        jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    data = jax.profiler.ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[-1])
  planes = list(data.planes)
  events = op_events(planes, classifier.instructions)
  splits = [split_window(w, events, classifier.classify) for w in step_windows(planes)]
  walls = [(hi - lo) / 1e9 for lo, hi in step_windows(planes)]
  return [s for s, _ in splits], [f for _, f in splits], walls, state


def profile_method(key: str, backbone, batch: int, length: int, steps: int, peak: "bench_speed.MatmulPeak",
                   extra: Dict[str, object]) -> dict:
  """Untraced timing, then the traced split of the fastest traced step."""
  _, label, method_gin, bindings = bench_speed.method_spec(key)
  bindings = {**bindings, **extra}
  built = bench_speed.build_step(method_gin, bindings, backbone, batch, length)
  state = built.state
  for _ in range(2):
    state, metrics = built.run(state)
  jax.block_until_ready(metrics)
  built = built._replace(state=state)
  local_peak = peak.sample()

  # Untraced steps before and after the traced ones: on a shared machine the load drifts.
  times, state = built.timed_steps(state, steps)
  seconds, flops, walls, state = trace_steps(built._replace(state=state), steps)
  after, state = built.timed_steps(state, steps)
  times += after
  best = min(range(len(walls)), key=walls.__getitem__)
  wall = walls[best]
  kinds = {k: seconds[best].get(k, 0.0) for k in KINDS}
  matmul = {k: {"gflop": flops[best].get(k, 0.0) / 1e9,
                "gflops_per_second": flops[best].get(k, 0.0) / kinds[k] / 1e9 if kinds[k] else None}
            for k in ("dense matmuls", "attention matmuls")}
  untraced = min(times)
  return {"method": key, "label": label, "bindings": bindings, "batch": batch, "length": length,
          "step_seconds_min": untraced, "step_seconds_median": statistics.median(times), "step_seconds": times,
          "traced_step_seconds": wall, "traced_step_seconds_all": walls, "seconds": kinds,
          "shares_percent": {k: 100.0 * v / wall for k, v in kinds.items()},
          "sum_of_kinds_seconds": sum(kinds.values()),
          "traced_vs_untraced": wall / untraced, "matmuls": matmul, "matmul_gflops_just_before": local_peak,
          "compile_seconds": built.compile_seconds}


def parse_extra(items: Sequence[str]) -> Dict[str, object]:
  out = {}
  for item in items:
    name, value = item.split("=", 1)
    out[name] = json.loads(value) if value[:1] in "0123456789-[{\"tf" and value not in ("tf",) else value
  return out


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="results/profile_step.json")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--gin", action="append", default=[], help="extra binding NAME=VALUE (JSON value) for all")
  args = parser.parse_args(argv)
  os.chdir(REPO)
  out_path = Path(args.out)
  previous = json.loads(out_path.read_text()) if out_path.exists() else {}
  extra = parse_extra(args.gin)
  # Resumable: a method recorded with the same shape and bindings is kept.
  done = {r["method"]: r for r in previous.get("methods", [])
          if r["batch"] == args.batch and r["length"] == args.length
          and all(r["bindings"].get(k) == v for k, v in extra.items())}
  env = bench_speed.environment()
  peak = bench_speed.MatmulPeak(2048 if env["platform"] == "cpu" else 8192)
  peak.sample(5)
  backbone = load_backbone(resolve_backbone_dir(None))
  rows = []
  for key in args.methods.split(","):
    if key in done:
      print(f"[profile] {key}: recorded, kept", flush=True)
      rows.append(done[key])
      continue
    row = profile_method(key, backbone, args.batch, args.length, args.steps, peak, extra)
    rows.append(row)
    print(f"[profile] {key:<12} step {row['step_seconds_min'] * 1000:7.0f} ms (traced "
          f"{row['traced_step_seconds'] * 1000:.0f}): " + ", ".join(
              f"{k} {v:.0f}%" for k, v in row["shares_percent"].items() if v >= 1), flush=True)
    write(out_path, rows, peak, env, args)
  peak.sample(5)
  write(out_path, rows, peak, env, args)
  return 0


def write(out_path: Path, rows: List[dict], peak, env: dict, args) -> None:
  env = {**env, "loadavg_1min_now": round(os.getloadavg()[0], 2)}
  for row in rows:
    for m in row["matmuls"].values():
      m["percent_of_matmul_peak"] = 100.0 * m["gflops_per_second"] / peak.peak if m["gflops_per_second"] else None
  result = {"command": "python scripts/profile_step.py " + " ".join(sys.argv[1:]), "environment": env,
            "kinds": list(KINDS), "matmul_peak_gflops": peak.peak, "matmul_peak": peak.record(), "methods": rows,
            "steps": args.steps, "finished": datetime.datetime.now().isoformat(timespec="seconds")}
  out_path.parent.mkdir(parents=True, exist_ok=True)
  out_path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
  sys.exit(main())
