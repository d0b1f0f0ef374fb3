r"""Speed of every method (issue 7, part 4), in one process on whatever JAX device is there.

  python scripts/bench_speed.py --out=results/bench_speed.json [--quick] [--batch=32 --length=128]

For each method the model is built from the same gin files the command line uses (gin/sst2.gin plus
gin/methods/<method>.gin, via cli.parse_gin), with the trainer's own build_model, the model contract's init_params,
trainable.split_params and train_step.make_train_step, and the compiled train step is timed on full
batches of `batch` x `length` real tokens after warm-up. Recorded per method: step time (median and min),
text tokens/s, an analytic FLOP count of the step, the achieved GFLOP/s against a matrix-multiply peak
measured in the same process, XLA's memory analysis of the compiled step and the process' peak RSS.

FLOP count (matrix multiplies only, 2 per multiply-add; softmax, LayerNorm, GELU and the optimizer are
left out and are a few % at these sizes). Per layer, with S query positions and K keys (S + P where a deep
prompt enters), forward = 2*B*S*(4*H^2 + 2*H*I) for the projections and the MLP plus 2 * 2*B*S*K*H for
scores and context. The backward pass of Y = X W costs the same again for dX (the activation gradient)
and again for dW (the weight gradient). Fine-tuning needs both everywhere: about 3x forward. A frozen
backbone needs no weight gradients, but every prompt method still needs the activation gradients through
every layer at and above the lowest place a trainable parameter enters (the word embeddings for input
prompts, P-Tuning and BitFit's embedding LayerNorm bias; the lowest prompted layer for deep prompts, where
only what reaches the prefix keys and values is needed). Scores and context multiply two activations, so
both of their operands get a gradient whenever anything below trains: about 2x forward in all. Prompts
with `top k` layers skip the backward pass below them, which is why they train faster.

bfloat16 rows (`*_bf16`, ACTIVATION_DTYPE='bfloat16') run the same FLOPs in bfloat16 matmuls with float32
accumulation; their "% of matmul peak" is still against the float32 peak. Where the time of a step goes by kind
of work: scripts/profile_step.py (`make bench-profile`), built by this script's `build_step`.

Mixed-task inference: a PromptBank of 8 deep prompts (P=20) with 8 heads, as `MULTITASK_PROMPT='per_task'`
builds it, serves batches whose examples pick their own prompt by task id; it is timed on batches from 8
tasks, from one task, and against the plain single-prompt model.

T5 decoding: greedy decoding of 64 new tokens at batch 8 (inputs of 64 random ids) on a randomly
initialised T5 1.1 small (T5Config's defaults), with the key/value cache and without it (each step
re-runs the decoder on the 64-position buffer), in tokens/s (batch x 64 steps per run: the loop runs
every step, also after EOS). Full runs only; `--decoding_only --out=FILE` runs just this part.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import gin  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=g-import-not-at-top,wrong-import-position
from prompt_tuning_jax import cli, tasks, trainable
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.models.decoding import greedy_decode
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.models.t5 import T5Config
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.deep import DeepPrompt, resolve_layers
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder
from prompt_tuning_jax.recipes import encoder
from prompt_tuning_jax.training import loop
from prompt_tuning_jax.training.steps import TrainState, make_eval_step, make_train_step
# pylint: enable=g-import-not-at-top,wrong-import-position

# (key, label, gin method file, bindings): the methods of the methods part, plus P-Tuning v2 at P=100 and with
# prompts on the top/bottom 3 layers only (the depth ablation's cost side), and two with USE_HARDWARE_RNG (dropout
# masks from 'unsafe_rbg' instead of threefry, whose cost grows with the attention's [T, P + T] masks).
METHODS = (
    ("finetune", "Fine-tuning", "finetune", {}),
    ("bitfit", "BitFit", "bitfit", {}),
    ("lester_p20", "Prompt Tuning P=20", "lester", {"PROMPT_LENGTH": 20}),
    ("lester_p100", "Prompt Tuning P=100", "lester", {"PROMPT_LENGTH": 100}),
    ("ptuning_lstm", "P-Tuning (LSTM)", "ptuning", {}),
    ("prefix_mlp", "Prefix Tuning (MLP) = P-Tuning v2 P=20 + reparam.", "prefix_tuning", {"PROMPT_LENGTH": 20}),
    ("deep_p20", "P-Tuning v2 P=20", "deep_prompt", {"PROMPT_LENGTH": 20}),
    ("deep_p100", "P-Tuning v2 P=100", "deep_prompt", {"PROMPT_LENGTH": 100}),
    ("deep_p20_top3", "P-Tuning v2 P=20, top 3 layers", "deep_prompt", {"PROMPT_LENGTH": 20, "PROMPT_LAYERS": "top 3"}),
    ("deep_p20_bottom3", "P-Tuning v2 P=20, bottom 3 layers", "deep_prompt",
     {"PROMPT_LENGTH": 20, "PROMPT_LAYERS": "bottom 3"}),
    ("deep_p20_hwrng", "P-Tuning v2 P=20, USE_HARDWARE_RNG", "deep_prompt",
     {"PROMPT_LENGTH": 20, "USE_HARDWARE_RNG": True}),
    ("lester_p100_hwrng", "Prompt Tuning P=100, USE_HARDWARE_RNG", "lester",
     {"PROMPT_LENGTH": 100, "USE_HARDWARE_RNG": True}),
    # ACTIVATION_DTYPE='bfloat16' (issue 21): bfloat16 activations and matmul inputs, float32 accumulation. Their
    # GFLOP/s are still compared with the float32 matmul peak.
    ("deep_p20_bf16", "P-Tuning v2 P=20, bfloat16", "deep_prompt",
     {"PROMPT_LENGTH": 20, "ACTIVATION_DTYPE": "bfloat16"}),
    ("lester_p100_bf16", "Prompt Tuning P=100, bfloat16", "lester",
     {"PROMPT_LENGTH": 100, "ACTIVATION_DTYPE": "bfloat16"}),
    ("finetune_bf16", "Fine-tuning, bfloat16", "finetune", {"ACTIVATION_DTYPE": "bfloat16"}),
)

def method_spec(key: str):
  """(key, label, gin method file, bindings) of METHODS, or of any 'deep_p<P>' (P-Tuning v2 with P=<P>)."""
  for spec in METHODS:
    if spec[0] == key:
      return spec
  if key.startswith("deep_p") and key[len("deep_p"):].isdigit():
    p = int(key[len("deep_p"):])
    return key, f"P-Tuning v2 P={p}", "deep_prompt", {"PROMPT_LENGTH": p}
  raise ValueError(f"unknown method {key!r}; use one of {[m[0] for m in METHODS]} or deep_p<P>.")


QUICK_METHODS = ("finetune", "bitfit", "lester_p20", "prefix_mlp", "deep_p20")  # those bench-quick trains
MIXED_TASKS = 8
DECODING = {"batch": 8, "input_length": 64, "new_tokens": 64}  # the T5 decoding part


def configure(method_gin: str, bindings: Dict[str, object]) -> dict:
  """Parses the command line's gin files for `method_gin` and returns train's bindings (model_cls,
  trainable_patterns, optimizer, ...), exactly what `python -m prompt_tuning_jax.train` would get."""
  gin.clear_config()
  cli.register_configurables()
  flags = {"MODEL_DIR": "unused", "TRAIN_STEPS": 1000, **bindings}
  cli.parse_gin(["gin/sst2.gin", f"gin/methods/{method_gin}.gin"], [f"{k} = {v!r}" for k, v in flags.items()])
  return gin.get_bindings("train")


def batch_of(batch: int, length: int, vocab: int, seed: int = 0, task_ids=None) -> dict:
  """A full batch: random word-piece ids (no padding), [CLS] first and [SEP] last."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1000, vocab, (batch, length), dtype=np.int32)
  ids[:, 0], ids[:, -1] = 101, 102
  return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids),
          "labels": rng.integers(0, 2, (batch,), dtype=np.int32),
          "task_ids": np.zeros((batch,), np.int32) if task_ids is None else np.asarray(task_ids, np.int32),
          "weights": np.ones((batch,), np.float32)}


# ---------------------------------------------------------------------------------------------------------------
# FLOPs.


def train_step_flops(model, config, trained_paths: Sequence[str], batch: int, length: int) -> Dict[str, float]:
  """Matrix-multiply FLOPs of one train step (module docstring): forward, activation-gradient and
  weight-gradient parts."""
  h, inter, num_layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
  prompt, p = model.prompt, model.prompt_length()
  seq = length + p if isinstance(prompt, (InputPrompt, PTuningEncoder)) else length
  prompted = set(resolve_layers(prompt.layers, num_layers)) if isinstance(prompt, DeepPrompt) else set()
  keys = [seq + (p if layer in prompted else 0) for layer in range(num_layers)]
  dense = lambda rows: 2.0 * rows * (4 * h * h + 2 * h * inter)  # q, k, v, out; wi, wo
  attention = lambda layer: 2 * 2.0 * batch * seq * keys[layer] * h  # scores and context
  trained = set(trained_paths)
  # The lowest place a trainable parameter enters: -1 = the embeddings (input prompts, word embeddings,
  # embedding LayerNorm), a layer index (deep prompts, a layer's own weights), num_layers = only the head.
  lowest = num_layers
  for path in trained:
    if path.startswith("backbone/embeddings/") or (path.startswith("prompt/") and not prompted):
      lowest = -1
    elif path.startswith("backbone/layers_"):
      lowest = min(lowest, int(path.split("/")[1].split("_")[1]))
  if prompted:
    lowest = min(lowest, min(prompted))
  forward = sum(dense(batch * seq) + attention(layer) for layer in range(num_layers))
  activation_grads = 0.0
  for layer in range(num_layers):
    if layer > lowest:  # every input gradient: dX of each projection, both operands of scores and context
      activation_grads += dense(batch * seq) + 2 * attention(layer)
    elif layer == lowest and layer in prompted:
      # Down to the prefix only: dX of out, wi, wo; dProbs and dV of context; dK of scores (no dQ, nor the
      # q/k/v projections' dX, which would feed only the frozen layers below).
      activation_grads += 2.0 * batch * seq * (h * h + 2 * h * inter) + 1.5 * attention(layer)
    elif layer == lowest:  # a layer's own weights train but nothing below: its dX except the q, k, v inputs
      activation_grads += 2.0 * batch * seq * (h * h + 2 * h * inter) + 2 * attention(layer)
  weight_grads = 0.0
  for layer in range(num_layers):
    for name, size in (("attention/query", h * h), ("attention/key", h * h), ("attention/value", h * h),
                       ("attention/out", h * h), ("mlp/wi", h * inter), ("mlp/wo", h * inter)):
      if f"backbone/layers_{layer}/{name}/kernel" in trained:
        weight_grads += 2.0 * batch * seq * size
  head = 2.0 * batch * h * model.num_labels * 3
  reparam = 0.0
  if isinstance(prompt, DeepPrompt) and prompt.reparam_hidden:  # once per step, not per example; trains
    reparam = 3 * 2.0 * p * (h * prompt.reparam_hidden + prompt.reparam_hidden * 2 * len(prompted) * h)
  total = forward + activation_grads + weight_grads + head + reparam
  return {"forward": forward, "activation_gradients": activation_grads, "weight_gradients": weight_grads,
          "head_and_reparameterization": head + reparam, "total": total, "sequence_length": seq,
          "lowest_trained_layer": lowest}


# ---------------------------------------------------------------------------------------------------------------
# Timing.


def timed(fn, repeats: int) -> List[float]:
  out = []
  for _ in range(repeats):
    started = time.perf_counter()
    jax.block_until_ready(fn())
    out.append(time.perf_counter() - started)
  return out


class MatmulPeak:
  """float32 GFLOP/s of jnp.dot on [size, size] matrices, sampled at the start, before every method and at the
  end: on a shared machine each sample shows how much of the CPU the process got, and the best sample is the
  peak the achieved rates are compared with. Also the model's largest matmul shape ([4096, 384] x [384, 1536],
  the MLP input projection of a 32 x 128 batch), once."""

  def __init__(self, size: int):
    self.size = size
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, b))
    self._run = lambda: dot(a, b)
    self.samples: List[float] = []
    m, k, n = 4096, 384, 1536
    x = jax.random.normal(jax.random.key(2), (m, k), jnp.float32)
    w = jax.random.normal(jax.random.key(3), (k, n), jnp.float32)
    jax.block_until_ready(dot(x, w))
    self.mlp_shape = {"shape": [m, k, n], "gflops": 2.0 * m * k * n / min(timed(lambda: dot(x, w), 5)) / 1e9}

  def sample(self, repeats: int = 3) -> float:
    gflops = 2.0 * self.size ** 3 / min(timed(self._run, repeats)) / 1e9
    self.samples.append(gflops)
    return gflops

  @property
  def peak(self) -> float:
    return max(self.samples)

  def record(self) -> dict:
    return {"square": {"shape": [self.size] * 3, "gflops": self.peak, "samples": self.samples},
            "mlp_shape": self.mlp_shape}


def memory_analysis(compiled) -> Optional[dict]:
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  (not every backend implements it)
    return None
  if m is None:
    return None
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
            "generated_code_size_in_bytes")
  out = {f: int(getattr(m, f)) for f in fields if hasattr(m, f)}
  out["peak_estimate_bytes"] = (out.get("argument_size_in_bytes", 0) + out.get("output_size_in_bytes", 0)
                                + out.get("temp_size_in_bytes", 0) - out.get("alias_size_in_bytes", 0))
  return out


def device_peak_bytes() -> Optional[int]:
  stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def max_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class BuiltStep(NamedTuple):
  """A method's train step as the trainer builds it, compiled for one full batch, with its arguments."""
  model: nn.Module
  params: dict
  trained: dict
  compiled: object
  state: TrainState
  frozen: dict
  data: dict
  rng: jax.Array
  compile_seconds: float

  def run(self, state: TrainState):
    """One step from `state` (donated): the new state and the step's metrics."""
    return self.compiled(state, self.frozen, self.data, self.rng)

  def timed_steps(self, state: TrainState, steps: int):
    """(seconds of each of `steps` steps from `state`, each waited for; the state after them)."""
    times = []
    for _ in range(steps):
      started = time.perf_counter()
      state, metrics = self.run(state)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - started)
    return times, state


def build_step(method_gin: str, bindings: dict, backbone, batch: int, length: int) -> BuiltStep:
  """Builds the method from its gin files as train() does and compiles its train step for a full batch."""
  config, backbone_params = backbone
  train_bindings = configure(method_gin, bindings)
  loop.use_hardware_rng(train_bindings["use_hardware_rng"])  # Before any key is made, as train() does.
  infos = {"sst2": tasks.info("sst2")}
  config = config.replace(dtype=train_bindings.get("activation_dtype", "float32"))  # as train() does
  model = encoder.build_model(train_bindings["model_cls"], config, infos, "shared", 1, length)
  contract = EncoderModel(model)
  params = contract.init_params(jax.random.key(0), backbone_params, {"input_ids": (1, length)})
  trained, frozen = trainable.split_params(params, train_bindings["trainable_patterns"])
  tx = train_bindings["optimizer"]
  step_fn = jax.jit(make_train_step(contract, tx), donate_argnums=0)
  data = jax.device_put(batch_of(batch, length, config.vocab_size))
  state = TrainState(jnp.zeros((), jnp.int32), trained, tx.init(trained))
  rng = jax.random.key(0)
  started = time.perf_counter()
  compiled = step_fn.lower(state, frozen, data, rng).compile()
  return BuiltStep(model, params, trained, compiled, state, frozen, data, rng, time.perf_counter() - started)


def bench_method(key: str, label: str, method_gin: str, bindings: dict, backbone, batch: int, length: int,
                 warmup: int, steps: int, peak: MatmulPeak) -> dict:
  """Builds the method as the trainer does and times its compiled train step."""
  config = backbone[0]
  built = build_step(method_gin, bindings, backbone, batch, length)
  model, params, trained, compiled, state = built.model, built.params, built.trained, built.compiled, built.state
  compile_seconds = built.compile_seconds
  for _ in range(warmup):
    state, metrics = built.run(state)
  jax.block_until_ready(metrics)
  local_peak = peak.sample()
  times, state = built.timed_steps(state, steps)
  flops = train_step_flops(model, config, list(trainable.flatten(trained)), batch, length)
  median = statistics.median(times)
  return {
      "method": key, "label": label, "gin": f"gin/methods/{method_gin}.gin", "bindings": bindings,
      "trainable": trainable.count(trained), "share_of_backbone_percent":
          100.0 * trainable.count(trained) / trainable.count(params["backbone"]),
      "batch": batch, "length": length, "sequence_length": flops["sequence_length"],
      "compile_seconds": compile_seconds, "step_seconds_median": median, "step_seconds_min": min(times),
      "step_seconds": times, "tokens_per_second": batch * length / median,
      "flops": flops, "gflops_per_second": flops["total"] / median / 1e9,
      "gflops_per_second_best": flops["total"] / min(times) / 1e9,
      "matmul_gflops_just_before": local_peak,
      "memory": memory_analysis(compiled), "device_peak_bytes": device_peak_bytes(),
      "process_max_rss_bytes": max_rss_bytes(), "loss": float(metrics["loss"]),
  }


def bench_mixed_tasks(backbone, batch: int, length: int, warmup: int, steps: int) -> dict:
  """Inference throughput: one prompt, a bank of 8 with one task per batch, a bank of 8 with 8 tasks mixed."""
  config, backbone_params = backbone
  out = {"tasks": MIXED_TASKS, "batch": batch, "length": length, "prompt": "P-Tuning v2 deep prompt, P=20"}
  info = tasks.info("sst2")
  for name, infos, multitask, task_ids in (
      ("single_prompt", {"sst2": info}, "shared", np.zeros(batch)),
      ("bank_one_task", {f"task{i}": info for i in range(MIXED_TASKS)}, "per_task", np.zeros(batch)),
      ("bank_mixed_tasks", {f"task{i}": info for i in range(MIXED_TASKS)}, "per_task",
       np.arange(batch) % MIXED_TASKS)):
    train_bindings = configure("deep_prompt", {"PROMPT_LENGTH": 20})
    loop.use_hardware_rng(train_bindings["use_hardware_rng"])
    contract = EncoderModel(encoder.build_model(train_bindings["model_cls"], config, infos, multitask, 1, length))
    params = contract.init_params(jax.random.key(0), backbone_params, {"input_ids": (1, length)})
    trained, frozen = trainable.split_params(params, train_bindings["trainable_patterns"])
    eval_fn = jax.jit(make_eval_step(contract))
    data = jax.device_put(batch_of(batch, length, config.vocab_size, task_ids=task_ids))
    compiled = eval_fn.lower(trained, frozen, data).compile()
    for _ in range(warmup):
      jax.block_until_ready(compiled(trained, frozen, data))
    times = timed(lambda: compiled(trained, frozen, data), steps)
    median = statistics.median(times)
    out[name] = {"batch_seconds_median": median, "examples_per_second": batch / median,
                 "tokens_per_second": batch * length / median, "trainable": trainable.count(trained),
                 "memory": memory_analysis(compiled)}
  backbone_bytes = int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(backbone_params)))
  out["serving_memory_bytes"] = {
      "one_backbone_plus_8_prompts": backbone_bytes + 4 * out["bank_mixed_tasks"]["trainable"],
      "8_fine_tuned_models": MIXED_TASKS * backbone_bytes}
  return out


def bench_t5_decoding(batch: int, input_length: int, new_tokens: int, repeats: int) -> dict:
  """Greedy decoding on a random T5 1.1 small, cached vs uncached: run time (median, min), tokens/s."""
  config = T5Config()
  model = PromptedT5(config)
  ids = jnp.ones((1, 2), jnp.int32)
  params = jax.jit(lambda rng: nn.meta.unbox(model.init(rng, ids, ids, ids, enable_dropout=False)["params"]))(
      jax.random.key(0))
  rng = np.random.default_rng(0)
  inputs = jax.device_put(rng.integers(2, config.vocab_size, (batch, input_length), dtype=np.int32))
  out = {"model": "randomly initialised T5 1.1 small (T5Config defaults)", "batch": batch, "input_length": input_length,
         "new_tokens": new_tokens, "repeats": repeats}
  decoded = {}
  for name, cached in (("cached", True), ("uncached", False)):
    decode = jax.jit(lambda p, x, cached=cached: greedy_decode(model, p, x, new_tokens, cached=cached))
    started = time.perf_counter()
    compiled = decode.lower(params, inputs).compile()
    compile_seconds = time.perf_counter() - started
    decoded[name] = np.asarray(compiled(params, inputs))  # warm-up
    times = timed(lambda: compiled(params, inputs), repeats)
    median = statistics.median(times)
    out[name] = {"run_seconds_median": median, "run_seconds_min": min(times), "run_seconds": times,
                 "tokens_per_second": batch * new_tokens / median, "compile_seconds": compile_seconds,
                 "memory": memory_analysis(compiled)}
  out["speedup"] = out["cached"]["tokens_per_second"] / out["uncached"]["tokens_per_second"]
  out["same_ids_fraction"] = float(np.mean(decoded["cached"] == decoded["uncached"]))
  return out


def environment() -> dict:
  cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
  return {"devices": [str(d) for d in jax.devices()], "platform": jax.devices()[0].platform,
          "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__, "cpu": cpu,
          "host_cpus": os.cpu_count(), "python": platform.python_version(),
          "loadavg_1min_start": round(os.getloadavg()[0], 2)}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=None, help="default results/bench_speed.json (_gpu on a GPU)")
  parser.add_argument("--quick", action="store_true", help="fewer methods and steps (bench-quick)")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--steps", type=int, default=None, help="timed steps per method (default 10, quick 3)")
  parser.add_argument("--methods", default=None, help="comma-separated method keys (default: all)")
  parser.add_argument("--skip_mixed", action="store_true", help="leave out the mixed-task inference timing")
  parser.add_argument("--decoding_only", action="store_true",
                      help="only the T5 decoding part (cached vs uncached); needs --out")
  args = parser.parse_args(argv)
  if args.decoding_only and not args.out:
    parser.error("--decoding_only writes a partial record: give it its own --out file.")
  os.chdir(REPO)
  steps = args.steps or (2 if args.quick else 10)
  warmup = 1 if args.quick else 2
  env = environment()
  out = Path(args.out or f"results/bench_speed{'' if env['platform'] == 'cpu' else '_' + env['platform']}.json")
  wanted = args.methods.split(",") if args.methods else (QUICK_METHODS if args.quick else [m[0] for m in METHODS])
  if args.decoding_only:
    wanted, args.skip_mixed = [], True
  command = " ".join(["python", "scripts/bench_speed.py", *(sys.argv[1:] if argv is None else argv)])
  started = time.perf_counter()
  print(f"[speed] {env['devices']} ({env['device_kind']}; {env['cpu']}, {env['host_cpus']} CPUs)", flush=True)

  peak = MatmulPeak(2048 if env["platform"] == "cpu" else 8192)
  print(f"[speed] matmul {peak.sample(5):.1f} GFLOP/s ({peak.size}^3 float32), model shape "
        f"{peak.mlp_shape['gflops']:.1f} GFLOP/s", flush=True)
  if wanted or not args.skip_mixed:
    backbone = load_backbone(resolve_backbone_dir(None))
  rows = []
  for key, label, method_gin, bindings in map(method_spec, wanted):
    row = bench_method(key, label, method_gin, bindings, backbone, args.batch, args.length, warmup, steps, peak)
    rows.append(row)
    print(f"[speed] {key:<16} step {row['step_seconds_median'] * 1000:8.1f} ms "
          f"(min {row['step_seconds_min'] * 1000:.1f})  {row['tokens_per_second']:8.0f} tok/s  "
          f"{row['gflops_per_second']:6.1f} GFLOP/s  (matmul just before: {row['matmul_gflops_just_before']:.0f})  "
          f"compile {row['compile_seconds']:.1f}s", flush=True)
  mixed = None if args.skip_mixed else bench_mixed_tasks(backbone, args.batch, args.length, warmup, max(steps, 3))
  if mixed:
    print(f"[speed] inference examples/s: single prompt {mixed['single_prompt']['examples_per_second']:.1f}, "
          f"bank one task {mixed['bank_one_task']['examples_per_second']:.1f}, bank 8 tasks mixed "
          f"{mixed['bank_mixed_tasks']['examples_per_second']:.1f}", flush=True)
  decoding = None
  if args.decoding_only or not args.quick:
    decoding = bench_t5_decoding(**DECODING, repeats=3)
    print(f"[speed] T5 small greedy decoding, batch {decoding['batch']} x {decoding['new_tokens']} new tokens: "
          f"cached {decoding['cached']['tokens_per_second']:.1f} tok/s, uncached "
          f"{decoding['uncached']['tokens_per_second']:.1f} tok/s ({decoding['speedup']:.1f}x; same ids: "
          f"{100 * decoding['same_ids_fraction']:.1f}%)", flush=True)
  peak.sample(5)
  env["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
  for row in rows:  # Against the best matmul rate this process saw (module docstring).
    row["percent_of_matmul_peak"] = 100.0 * row["gflops_per_second"] / peak.peak
    row["percent_of_matmul_peak_best"] = 100.0 * row["gflops_per_second_best"] / peak.peak
  print(f"[speed] matmul peak {peak.peak:.1f} GFLOP/s (samples {', '.join(f'{x:.0f}' for x in peak.samples)})",
        flush=True)
  result = {"command": command, "environment": env, "matmul_peak": peak.record(), "methods": rows,
            "mixed_task_inference": mixed, "t5_decoding": decoding,
            "steps": steps, "warmup": warmup, "wall_seconds": time.perf_counter() - started,
            "process_max_rss_bytes": max_rss_bytes(), "finished": datetime.datetime.now().isoformat(timespec="seconds")}
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  print(f"[speed] wrote {out} in {result['wall_seconds']:.0f}s", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
