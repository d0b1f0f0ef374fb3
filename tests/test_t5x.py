"""Our models under a real t5x (prompt_tuning_jax.t5x), skipped where t5x is not installed (it is not on PyPI).

- t5x's loss_fn equals our contract's loss on the same batch and parameters, for the T5 and the encoder model;
  t5x's greedy decoding gives our cached greedy decoding's tokens.
- The prompt-only optimizers leave every frozen tensor bit-identical and apply the learning rate t5x passes.
- End to end through the real command lines: a converted checkpoint, `python -m t5x.train` for 20 steps (loss
  falls, only the prompt changes), `t5x.eval` and `t5x.infer` from that run, our extract_prompt, and our eval
  CLI on the extracted prompt giving t5x's predictions.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

t5x = pytest.importorskip("t5x", reason="t5x is not installed (it is not on PyPI; see README, 'Running under t5x')")

# pylint: disable=g-import-not-at-top,wrong-import-position
import optax
from t5x import adafactor, decoding

from conftest import GOLDENS
from prompt_tuning_jax import trainable
from prompt_tuning_jax.data import text_batching, vocabularies
from prompt_tuning_jax.models import decoding as our_decoding
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.models import t5x_checkpoint
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.t5x import features, models, optim
# pylint: enable=g-import-not-at-top,wrong-import-position

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / "tests" / "fixtures" / "t5_tiny_spm.model"
T5_SHAPES = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}


@pytest.fixture(scope="module")
def t5_models():
  """(t5x model, our model, params): the tiny T5 1.1 with a 3-row input prompt."""
  config, backbone = load_t5(GOLDENS / "t5_tiny")
  module = PromptedT5(config, InputPrompt(length=3))
  vocabulary = vocabularies.sentencepiece_vocabulary(str(SPM), 100)
  ours = EncoderDecoderModel(module, vocabulary=vocabulary, max_decode_length=6)
  theirs = models.PromptEncoderDecoderModel(
      module, vocabulary, vocabulary, optim.prompt_only(adafactor.Adafactor(decay_rate=0.8, step_offset=0)),
      decode_fn=decoding.temperature_sample)
  params = ours.init_params(jax.random.key(0), backbone, T5_SHAPES)
  # A prompt far from its sampled-vocabulary start, so the prompt matters to every output below.
  params["prompt"]["prompt"] = jax.random.normal(jax.random.key(1), params["prompt"]["prompt"].shape)
  return theirs, ours, params


def _text_batch():
  targets = np.array([[5, 9, 1, 0, 0, 0], [7, 1, 0, 0, 0, 0], [11, 12, 13, 14, 1, 0]], np.int32)
  return {"encoder_input_tokens": np.array([[4, 8, 15, 1, 0], [16, 23, 42, 9, 1], [3, 1, 0, 0, 0]], np.int32),
          "decoder_target_tokens": targets, "decoder_input_tokens": text_batching.shift_right(targets),
          "decoder_loss_weights": (targets > 0).astype(np.int32)}


def test_t5x_loss_equals_ours(t5_models):
  theirs, ours, params = t5_models
  batch = _text_batch()
  t5x_loss, t5x_metrics = theirs.loss_fn(params, batch, None)
  our_loss, our_metrics = ours.loss_fn(params, batch, None)
  assert float(t5x_loss) == pytest.approx(float(our_loss), rel=1e-6)
  assert float(t5x_metrics["z_loss"].compute()) == pytest.approx(float(our_metrics["z_loss"]), rel=1e-5)
  # With dropout the same rng draws the same masks on both sides.
  rng = jax.random.key(3)
  assert float(theirs.loss_fn(params, batch, rng)[0]) == pytest.approx(float(ours.loss_fn(params, batch, rng)[0]),
                                                                       rel=1e-6)


def test_t5x_gradients_reach_only_the_prompt(t5_models):
  theirs, _, params = t5_models
  grads = jax.grad(lambda p: theirs.loss_fn(p, _text_batch(), None)[0])(params)
  flat = trainable.flatten(grads)
  assert float(jnp.abs(flat["prompt/prompt"]).max()) > 0
  assert all(float(jnp.abs(v).max()) == 0 for k, v in flat.items() if not k.startswith("prompt/"))


def test_t5x_greedy_decoding_equals_ours(t5_models):
  theirs, ours, params = t5_models
  batch = _text_batch()
  batch = {**batch, "decoder_input_tokens": np.zeros((3, 6), np.int32)}
  predicted = np.asarray(theirs.predict_batch_with_aux(params, batch, decoder_params={"temperature": 0.0})[0])
  expected = np.asarray(our_decoding.greedy_decode(ours.module, params, batch["encoder_input_tokens"], 6))
  assert predicted.shape == expected.shape == (3, 6)
  # t5x keeps decoding after EOS; what counts (and what both decode to text) is up to and including it.
  for row_t5x, row_ours in zip(predicted, expected):
    end = int(np.argmax(row_ours == 1)) + 1 if 1 in row_ours else 6
    np.testing.assert_array_equal(row_t5x[:end], row_ours[:end])


@pytest.fixture(scope="module")
def encoder_models():
  config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                      max_position_embeddings=24)
  module = EncoderClassifier(config=config, num_labels=3, prompt=DeepPrompt(length=2))
  theirs = models.PromptEncoderModel(module, optim.TrainableOptax(optim.adamw_direction()))
  ours = EncoderModel(module)
  return theirs, ours, theirs.get_initial_variables(jax.random.key(0), {"input_ids": (1, 6)})["params"]


def _encoder_batch(t5x_layout: bool):
  ids = np.array([[1, 5, 7, 2, 0, 0], [1, 9, 2, 0, 0, 0]], np.int32)
  batch = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": (ids > 0).astype(np.int32),
           "labels": np.array([2, 0], np.int32), "task_ids": np.zeros(2, np.int32), "weights": np.ones(2, np.float32)}
  return {k: v[:, None] if t5x_layout and k in features.PER_EXAMPLE else v for k, v in batch.items()}


def test_t5x_encoder_loss_and_predictions_equal_ours(encoder_models):
  theirs, ours, params = encoder_models
  t5x_loss, t5x_metrics = theirs.loss_fn(params, _encoder_batch(True), None)
  our_loss, our_metrics = ours.loss_fn(params, _encoder_batch(False), None)
  assert float(t5x_loss) == pytest.approx(float(our_loss), rel=1e-6)
  assert float(t5x_metrics["accuracy"].compute()) == pytest.approx(
      float(our_metrics["correct"]) / float(our_metrics["count"]))
  np.testing.assert_array_equal(theirs.predict_batch(params, _encoder_batch(True)),
                                ours.predict_batch_with_aux(params, _encoder_batch(False))[0])


def _apply(optimizer_def, params, grads, learning_rate):
  optimizer = optimizer_def.create(params)
  return optimizer.apply_gradient(grads, learning_rate=learning_rate).target


def test_prompt_only_adafactor_changes_nothing_else(t5_models):
  _, _, params = t5_models
  grads = jax.tree.map(jnp.ones_like, params)  # Non-zero everywhere: only the optimizer can keep tensors as they are.
  opt = optim.prompt_only(adafactor.Adafactor(decay_rate=0.8, step_offset=0, multiply_by_parameter_scale=False,
                                              weight_decay_rate=1e-5, logical_factor_rules=optim.factor_rules()))
  new = trainable.flatten(_apply(opt, params, grads, 0.3))
  old = trainable.flatten(params)
  assert not np.array_equal(new["prompt/prompt"], old["prompt/prompt"])
  assert all(np.asarray(new[k]).tobytes() == np.asarray(v).tobytes() for k, v in old.items() if k != "prompt/prompt")
  # The rate applied is the one passed (t5x's trainer passes the rate it logs): without weight decay, Adafactor's
  # first update is the clipped direction times the rate, so half the rate moves the prompt half as far.
  plain = optim.prompt_only(adafactor.Adafactor(decay_rate=0.8, step_offset=0, multiply_by_parameter_scale=False))
  full = trainable.flatten(_apply(plain, params, grads, 0.3))["prompt/prompt"] - old["prompt/prompt"]
  half = trainable.flatten(_apply(plain, params, grads, 0.15))["prompt/prompt"] - old["prompt/prompt"]
  np.testing.assert_allclose(half, full / 2, rtol=1e-5, atol=1e-7)


def test_trainable_optax_is_adamw_on_the_trainable_part(encoder_models):
  _, _, params = encoder_models
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  new = trainable.flatten(_apply(optim.TrainableOptax(optim.adamw_direction(weight_decay=0.01)), params, grads, 1e-2))
  trained, _ = trainable.split_params(params, trainable.DEEP_PROMPT_PATTERNS)
  tx = optax.adamw(1e-2, weight_decay=0.01)
  updates, _ = tx.update(trainable.split_params(grads, trainable.DEEP_PROMPT_PATTERNS)[0], tx.init(trained), trained)
  expected = trainable.flatten(optax.apply_updates(trained, updates))
  for k, v in trainable.flatten(params).items():
    if k in expected:
      np.testing.assert_allclose(new[k], expected[k], rtol=1e-6, atol=1e-8)
    else:
      assert np.asarray(new[k]).tobytes() == np.asarray(v).tobytes(), k


def test_encoder_feature_converter_pads_and_refuses_packing():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = tf.data.Dataset.from_tensors({"inputs": tf.constant([101, 7, 102], tf.int32),
                                     "token_type_ids": tf.constant([0, 0, 0], tf.int32), "label": tf.constant(1)})
  example = next(iter(features.EncoderFeatureConverter()(ds, {"inputs": 5}).as_numpy_iterator()))
  np.testing.assert_array_equal(example["input_ids"], [101, 7, 102, 0, 0])
  np.testing.assert_array_equal(example["attention_mask"], [1, 1, 1, 0, 0])
  assert example["labels"].tolist() == [1] and example["weights"].tolist() == [1.0]
  from prompt_tuning_jax import errors  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.ConfigError, match="pack = False"):
    features.EncoderFeatureConverter(pack=True)


def _run(args, cwd=ROOT, timeout=900):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _train_losses(log: str):
  """The 'loss' t5x logs per training summary ([step] collection=train ... loss=X)."""
  return [float(line.split(" loss=")[1].split(",")[0]) for line in log.splitlines()
          if "collection=train " in line and " loss=" in line]


@pytest.fixture(scope="module")
def t5x_run(tmp_path_factory):
  """A converted tiny T5 and a 20-step t5x.train run on RTE from it: (tmp dir, source checkpoint, run dir, log)."""
  tmp = tmp_path_factory.mktemp("t5x")
  _run(["prompt_tuning_jax.convert_checkpoint", "--source", str(GOLDENS / "t5_tiny"), "--output", str(tmp / "t5")])
  result = _run(["t5x.train", "--gin_search_paths=gin", "--gin_file=t5x/models/t5_1_1_tiny_prompt.gin",
                 "--gin_file=t5x/runs/prompt_finetune.gin", f"--gin.MODEL_DIR='{tmp / 'run'}'",
                 "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'",
                 "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 8}", "--gin.TRAIN_STEPS=20",
                 f"--gin.INITIAL_CHECKPOINT_PATH='{tmp / 't5' / 'checkpoint_0'}'", "--gin.BATCH_SIZE=8",
                 "--gin.EVAL_PERIOD=10", "--gin.EVAL_STEPS=2", "--gin.PROMPT_LENGTH=5",
                 "--gin.MIXTURE_OR_TASK_MODULE='prompt_tuning_jax.tasks'"])
  return tmp, tmp / "t5" / "checkpoint_0", tmp / "run", result.stderr


def test_t5x_train_changes_only_the_prompt(t5x_run):
  _, source, run, log = t5x_run
  losses = _train_losses(log)
  print("t5x.train T5 losses at steps 10, 20:", losses)
  assert len(losses) == 2 and losses[1] < losses[0], losses
  before, _, _ = t5x_checkpoint.read_checkpoint(source)
  start, _, _ = t5x_checkpoint.read_checkpoint(run / "checkpoint_0")
  after, _, _ = t5x_checkpoint.read_checkpoint(run / "checkpoint_20")
  assert sorted(k for k in after if not k.startswith("backbone/")) == ["prompt/prompt"]
  assert {k[len("backbone/"):] for k in after if k.startswith("backbone/")} == set(before)
  assert all(np.asarray(after[f"backbone/{k}"]).tobytes() == np.asarray(v).tobytes() for k, v in before.items())
  assert not np.array_equal(after["prompt/prompt"], start["prompt/prompt"])
  # The prompt starts from rows of the pretrained embedding (read from the checkpoint), not t5x's random one.
  embedding = before["token_embedder/embedding"]
  assert all(any(np.array_equal(row, e) for e in embedding[:5000]) for row in start["prompt/prompt"])


def test_t5x_eval_infer_and_our_eval_agree(t5x_run):
  tmp, source, run, _ = t5x_run
  common = ["--gin_search_paths=gin", "--gin_file=t5x/models/t5_1_1_tiny_prompt.gin",
            f"--gin.CHECKPOINT_PATH='{run / 'checkpoint_20'}'", "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'",
            "--gin.PROMPT_LENGTH=5", "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 8}"]
  _run(["t5x.eval", *common, "--gin_file=t5x/runs/prompt_eval.gin", f"--gin.EVAL_OUTPUT_DIR='{tmp / 'eval'}'"])
  _run(["t5x.infer", *common, "--gin_file=t5x/runs/prompt_infer.gin", f"--gin.INFER_OUTPUT_DIR='{tmp / 'infer'}'"])
  _run(["prompt_tuning_jax.extract_prompt", "--checkpoint", str(run), "--output", str(tmp / "prompt.safetensors")])
  _run(["prompt_tuning_jax.eval", "--gin_file=gin/models/t5_1_1_tiny_prompt.gin", "--gin_file=gin/runs/prompt_eval.gin",
        f"--gin.CHECKPOINT_PATH='{source}'", f"--gin.PROMPT_FILE='{tmp / 'prompt.safetensors'}'",
        "--gin.PROMPT_LENGTH=5", f"--gin.EVAL_OUTPUT_DIR='{tmp / 'ours'}'",
        "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 8}"])
  ours = {r["idx"]: r["prediction"] for r in map(json.loads, (tmp / "ours" / "predictions.jsonl").open())}
  evaluated = [json.loads(line) for path in (tmp / "eval" / "inference_eval").glob("*-000020.jsonl")
               for line in path.open()]
  inferred = [json.loads(line) for path in (tmp / "infer").glob("*-predict.jsonl-*") if not path.name.endswith(
      ".COMPLETED") for line in path.open()]
  by_text = {r["inputs"]: r["prediction"] for r in map(json.loads, (tmp / "ours" / "predictions.jsonl").open())}
  assert len(ours) == len(evaluated) == len(inferred) == 277
  assert all(ours[r["input"]["idx"]] == r["prediction"] for r in evaluated)
  assert all(by_text[r["inputs"]["inputs_pretokenized"]] == r["prediction"] for r in inferred)


def test_t5x_run_starts_from_our_export(t5x_run, tmp_path):
  tmp, source, _, _ = t5x_run
  exported = tmp / "prompt.safetensors"
  if not exported.exists():
    _run(["prompt_tuning_jax.extract_prompt", "--checkpoint", str(tmp / "run"), "--output", str(exported)])
  _run(["t5x.train", "--gin_search_paths=gin", "--gin_file=t5x/models/t5_1_1_tiny_prompt.gin",
        "--gin_file=t5x/runs/prompt_finetune.gin", "--gin_file=t5x/prompts/from_file.gin",
        f"--gin.PROMPT_FILE='{exported}'", f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
        "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 8}",
        "--gin.TRAIN_STEPS=1", f"--gin.INITIAL_CHECKPOINT_PATH='{source}'", "--gin.BATCH_SIZE=8",
        "--gin.EVAL_PERIOD=1", "--gin.EVAL_STEPS=1", "--gin.PROMPT_LENGTH=5"])
  start, _, _ = t5x_checkpoint.read_checkpoint(tmp_path / "run" / "checkpoint_0")
  from prompt_tuning_jax import export  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(start["prompt/prompt"], export.load_export(exported)[0]["prompt/prompt"])


def test_t5x_encoder_run_changes_only_prompt_and_head(tmp_path):
  """gin/t5x/rte_deep_prompt.gin on the packaged MiniLM, converted, on a small learnable RTE set (DATA_DIR): 20
  steps, the loss falls, only prompt and head change (backbone bit-identical)."""
  from conftest import write_tiny_data  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models import bert_checkpoint  # pylint: disable=g-import-not-at-top
  _run(["prompt_tuning_jax.convert_checkpoint", "--source", str(bert_checkpoint.default_backbone_dir()),
        "--output", str(tmp_path / "minilm")])
  data = write_tiny_data(tmp_path / "data")
  result = _run(["t5x.train", "--gin_search_paths=gin", "--gin_file=t5x/rte_deep_prompt.gin",
                 f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--gin.TRAIN_STEPS=20", "--gin.EVAL_PERIOD=10",
                 "--gin.EVAL_STEPS=2", "--gin.BATCH_SIZE=16", "--gin.LEARNING_RATE=5e-2", "--gin.RANDOM_SEED=0",
                 f"--gin.DATA_DIR='{data}'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}",
                 f"--gin.INITIAL_CHECKPOINT_PATH='{tmp_path / 'minilm' / 'checkpoint_0'}'"])
  losses = _train_losses(result.stderr)
  print("t5x.train encoder losses at steps 10, 20:", losses)
  assert len(losses) == 2 and losses[1] < losses[0], losses
  before, _, _ = t5x_checkpoint.read_checkpoint(tmp_path / "minilm")
  start, _, _ = t5x_checkpoint.read_checkpoint(tmp_path / "run" / "checkpoint_0")
  after, _, _ = t5x_checkpoint.read_checkpoint(tmp_path / "run" / "checkpoint_20")
  assert sorted(k for k in after if not k.startswith("backbone/")) == ["head/bias", "head/kernel", "prompt/prefix"]
  assert all(np.asarray(after[f"backbone/{k}"]).tobytes() == np.asarray(v).tobytes() for k, v in before.items())
  assert all(not np.array_equal(after[k], start[k]) for k in ("head/kernel", "prompt/prefix"))


def test_t5x_class_label_prompt_reads_the_restored_embedding(t5x_run, tmp_path):
  _, source, _, _ = t5x_run
  _run(["t5x.train", "--gin_search_paths=gin", "--gin_file=t5x/models/t5_1_1_tiny_prompt.gin",
        "--gin_file=t5x/runs/prompt_finetune.gin", "--gin_file=t5x/prompts/from_class_labels.gin",
        "--gin.CLASS_LABELS=['entailment', 'not_entailment']", f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
        "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 8}",
        "--gin.TRAIN_STEPS=1", f"--gin.INITIAL_CHECKPOINT_PATH='{source}'", "--gin.BATCH_SIZE=8",
        "--gin.EVAL_PERIOD=1", "--gin.EVAL_STEPS=1", "--gin.PROMPT_LENGTH=5"])
  start = t5x_checkpoint.read_parameters(tmp_path / "run" / "checkpoint_0", ["prompt/prompt"])["prompt/prompt"]
  embedding = t5x_checkpoint.read_parameters(source, ["token_embedder/embedding"])["token_embedder/embedding"]
  vocabulary = vocabularies.sentencepiece_vocabulary(str(SPM), 100)
  for row, label in enumerate(["entailment", "not_entailment"]):
    np.testing.assert_allclose(start[row], embedding[vocabulary.encode(label)].mean(0), atol=1e-6)
