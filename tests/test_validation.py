"""training/validation.py's memory estimate: a lower bound that refuses what cannot fit and nothing usual.
The command-line rows (one line per bad setting) are in test_bad_input.py."""

import optax
import pytest

from prompt_tuning_jax import errors
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.training import validation

MINILM = BertConfig()  # all-MiniLM-L6-v2's shape: 6 layers, hidden 384, 12 heads.
GIB = 2**30


def test_usual_runs_need_a_few_hundred_mib():
  deep = EncoderClassifier(MINILM, 2, prompt=DeepPrompt(length=20))
  memory = validation.check_encoder_step(deep, MINILM, 32, 128, [r"prompt/.*", r"head/.*"], available=(GIB, "host RAM"))
  # Attention probabilities 6 x [32, 12, 128, 148] and the layers' activations, all float32.
  assert memory.activations == 4 * 6 * 32 * (12 * 128 * 148 + 128 * (2 * 384 + 1536))
  assert memory.total < GIB
  finetune = EncoderClassifier(MINILM, 2)
  tuned = validation.check_encoder_step(finetune, MINILM, 32, 128, [r".*"], available=(GIB, "host RAM"))
  assert tuned.gradients_and_optimizer > 20e6 * 4  # The whole backbone has gradients.


def test_remat_keeps_only_the_layer_inputs():
  model = EncoderClassifier(MINILM, 2, prompt=InputPrompt(length=20))
  kept = validation.check_encoder_step(model, MINILM, 32, 128, [r"prompt/.*"], available=(GIB, "host RAM"))
  remat = MINILM.__class__(remat=True)
  recomputed = validation.check_encoder_step(model, remat, 32, 128, [r"prompt/.*"], available=(GIB, "host RAM"))
  assert recomputed.activations < kept.activations / 3


def test_a_step_that_cannot_fit_is_refused_with_both_numbers():
  model = EncoderClassifier(MINILM, 2, prompt=DeepPrompt(length=100_000))
  with pytest.raises(errors.ConfigError, match=r"^a train step needs at least 113\.7 GiB per device \(BATCH_SIZE=32, "
                     r"TASK_FEATURE_LENGTHS\['inputs'\]=128, PROMPT_LENGTH=100000: .*\) but NVIDIA H100 0 has 80\.0 "
                     r"GiB available; lower BATCH_SIZE, TASK_FEATURE_LENGTHS or PROMPT_LENGTH, set REMAT=True"):
    validation.check_encoder_step(model, MINILM, 32, 128, [r"prompt/.*"], available=(80 * GIB, "NVIDIA H100 0"))
  # Split over 2 devices, the activations fit.
  validation.check_encoder_step(model, MINILM, 32, 128, [r"prompt/.*"], available=(80 * GIB, "NVIDIA H100 0"),
                                devices=2)


def test_a_learning_rate_schedule_is_accepted_and_a_negative_rate_is_not():
  validation.check_learning_rate(optax.linear_schedule(1e-2, 0.0, 10), "adafactor.learning_rate")
  validation.check_learning_rate(0.0, "adamw.learning_rate")
  with pytest.raises(errors.ConfigError, match=r"^LEARNING_RATE=-0.1 \(adamw.learning_rate\) must be a number >= 0"):
    validation.check_learning_rate(-0.1, "adamw.learning_rate")
