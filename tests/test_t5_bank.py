"""Prompt banks on T5: a mixed-task batch equals each task's own run (input and deep prompts, greedy and
beam decoding, rank classification), a mixture tags rows by task, ranks each task's own targets and
exports each task's prompt alone, and a 3-member ensemble trains from the command line and reports each
member and the votes."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest
import seqio

from conftest import GOLDENS, REPO, write_tiny_data
from test_t5_cli import CHECKPOINT, COMMON, MODEL, _lines, _run
from prompt_tuning_jax import export, train
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.data.vocabularies import sentencepiece_vocabulary
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.bank import PromptBank
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.recipes import t5_train
from prompt_tuning_jax.tasks import ensembles

MIXTURE = "t5_rte_and_taskless_rte_test"
TASKS = ("super_glue_rte_v102", "taskless_super_glue_rte_v102")  # seqio's order: task ids 0, 1
if MIXTURE not in seqio.MixtureRegistry.names():
  seqio.MixtureRegistry.add(MIXTURE, list(TASKS), default_rate=seqio.mixing_rate_num_examples)

LABELS = ["entailment", "not_entailment"]
ENC = np.array([[5, 6, 7, 8, 1, 0], [9, 10, 1, 0, 0, 0], [11, 12, 13, 1, 0, 0], [14, 1, 0, 0, 0, 0]], np.int32)
TARGETS = np.array([[20, 21, 1, 0], [22, 1, 0, 0], [23, 24, 25, 1], [26, 1, 0, 0]], np.int32)
PROMPT_IDS = np.array([0, 1, 1, 0], np.int32)  # rows of two tasks mixed in one batch


@pytest.fixture(scope="module")
def tiny():
  return load_t5(GOLDENS / "t5_tiny")


def _batch(prompt_ids=None):
  batch = {"encoder_input_tokens": ENC, "decoder_target_tokens": TARGETS,
           "decoder_input_tokens": text_batching.shift_right(TARGETS),
           "decoder_loss_weights": (TARGETS > 0).astype(np.float32)}
  return batch if prompt_ids is None else {**batch, "prompt_ids": prompt_ids}


def _evaluator(module, vocabulary, beam_size=1):
  """The jitted eval_batch of `module` (decoded ids, per-row loss, rank scores)."""
  return jax.jit(EncoderDecoderModel(module, vocabulary, max_decode_length=6, beam_size=beam_size,
                                     target_strings=LABELS).eval_batch)


def _bank(config, backbone, template):
  """(PromptedT5 with a bank of two `template` prompts, its parameters, each member's prompt parameters)."""
  bank = PromptedT5(config, PromptBank(template, 2))
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = EncoderDecoderModel(bank).init_params(jax.random.key(0), backbone, shapes)
  members = [params["prompt"][f"members_{k}"] for k in range(2)]
  assert all(np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3  # each member its own initialisation
             for a, b in zip(jax.tree.leaves(members[0]), jax.tree.leaves(members[1])))
  return bank, params, members


def test_mixed_task_batch_equals_each_tasks_own_run(tiny):
  """A batch mixing two tasks' rows (one compiled program): per-row losses, rank scores and beam-decoded ids equal
  those of a batch of one task; and what the prompt changes, the encoder states (input prompts) or the layer
  prefixes (deep prompts), equals per row what the plain model with that task's single prompt computes."""
  config, backbone = tiny
  vocabulary = sentencepiece_vocabulary(REPO / "tests" / "fixtures" / "t5_tiny_spm.model", 100)
  template = InputPrompt(length=3)
  bank, params, members = _bank(config, backbone, template)
  evaluate = _evaluator(bank, vocabulary, beam_size=2)
  mixed = evaluate(params, _batch(PROMPT_IDS))
  for k in range(2):
    rows, own = PROMPT_IDS == k, evaluate(params, _batch(np.full_like(PROMPT_IDS, k)))
    np.testing.assert_array_equal(np.asarray(mixed["predictions"])[rows], np.asarray(own["predictions"])[rows])
    for name in ("loss", "rank_scores"):
      np.testing.assert_allclose(np.asarray(mixed[name])[rows], np.asarray(own[name])[rows], atol=1e-5, rtol=0,
                                 err_msg=name)
    other = evaluate(params, _batch(np.full_like(PROMPT_IDS, 1 - k)))
    assert np.abs(np.asarray(mixed["rank_scores"])[rows] - np.asarray(other["rank_scores"])[rows]).max() > 1e-4
  encode = lambda module: jax.jit(lambda p, ids: module.apply({"params": p}, ENC, enable_dropout=False,
                                                             prompt_ids=ids, method=PromptedT5.encode))
  mixed_states, single = encode(bank)(params, PROMPT_IDS), encode(PromptedT5(config, template))
  for k in range(2):  # Task k alone: the plain model with task k's prompt.
    np.testing.assert_allclose(np.asarray(mixed_states)[PROMPT_IDS == k], np.asarray(single(
        {"backbone": params["backbone"], "prompt": members[k]}, None))[PROMPT_IDS == k], atol=1e-5, rtol=0)
  deep = PromptBank(DeepPrompt(length=2), 2)  # Only the prompt is needed for the layer prefixes.
  shape = (config.num_encoder_layers + config.num_decoder_layers, config.num_heads, config.d_kv)
  prompts = nn.meta.unbox(deep.init(jax.random.key(1), PROMPT_IDS, *shape, method=PromptBank.deep)["params"])
  prefixes = lambda module, p, ids: module.apply({"params": {"prompt": p}}, len(ENC), False, ids,
                                                 method=lambda m, *a: m._deep_prefixes(*a))  # pylint: disable=protected-access
  mixed = prefixes(PromptedT5(config, deep), prompts, PROMPT_IDS)
  assert np.abs(prompts["members_0"]["prefix"] - prompts["members_1"]["prefix"]).max() > 1e-3
  for k in range(2):
    own = prefixes(PromptedT5(config, DeepPrompt(length=2)), prompts[f"members_{k}"], None)
    for got, want in zip(jax.tree.leaves(mixed), jax.tree.leaves(own)):  # [B, P, N, D] keys and values per layer
      np.testing.assert_allclose(np.asarray(got)[PROMPT_IDS == k], np.asarray(want)[PROMPT_IDS == k], atol=1e-6)


@pytest.mark.parametrize("strings,log_probs,expected", [
    ([["a", "b"], ["a", "c"], ["b", "c"]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], ["a", "c"]),  # plain majority
    ([["a"], ["b"]], [[np.log(0.4)], [np.log(0.7)]], ["b"]),  # tie: the voters' higher mean probability
    ([["a"], ["b"], ["b"], ["a"]], [[np.log(0.6)], [np.log(0.5)], [np.log(0.5)], [np.log(0.2)]], ["b"]),
    ([["x"], ["y"], ["z"]], [[np.log(0.5)], [np.log(0.5)], [np.log(0.5)]], ["x"]),  # exact tie: member 0's
])
def test_majority_vote_over_strings(strings, log_probs, expected):
  assert ensembles.majority_vote_strings(strings, np.array(log_probs)) == expected


def _train(model_dir, data_dir, *args):
  return _run(train.main, [MODEL, "--gin_file=runs/prompt_finetune.gin", *args, f"--gin.MODEL_DIR='{model_dir}'",
                           f"--gin.DATA_DIR='{data_dir}'", f"--gin.INITIAL_CHECKPOINT_PATH='{CHECKPOINT}'",
                           "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2", *COMMON, "--gin.BATCH_SIZE=8",
                           "--gin.train_seq2seq.eval_batch_size=16"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_tiny_data(tmp_path_factory.mktemp("t5_bank_data"))


def test_mixture_tags_rows_by_task_ranks_each_tasks_own_targets_and_exports_each_prompt(tiny, data_dir):
  """A per-task mixture's host side: rows tagged with task ids in training and evaluation, each task ranked among
  its own candidates, each task's prompt exported alone under its name (the bank itself trains in the ensemble
  test below; a mixed batch is the tests above)."""
  config, _ = tiny
  vocabulary = sentencepiece_vocabulary(REPO / "tests" / "fixtures" / "t5_tiny_spm.model", 100)
  model, members = t5_train.bank_model(PromptedT5(config, InputPrompt(length=4)), TASKS, "per_task", 1)
  assert isinstance(model.prompt, PromptBank) and model.prompt.size == 2 and members == TASKS
  assert t5_train.bank_model(PromptedT5(config, InputPrompt(length=4)), TASKS, "shared", 1)[1] == ()
  targets = {TASKS[0]: ("entailment", "not_entailment"), TASKS[1]: ("yes", "no", "entailment")}
  t5 = t5_train.contract_model(model, vocabulary, {"inputs": 32, "targets": 8}, data_dir, task_targets=targets,
                               member_names=members)
  assert t5.target_strings == ("entailment", "not_entailment", "yes", "no")  # the union, each candidate once
  data = t5_train.load_data(t5.batcher, TASKS, TASKS, TASKS, True, "train", "validation", 8, 0, targets)
  assert sorted(set(data.train.prompt_ids.tolist())) == [0, 1] and len(data.train) == 2 * 48
  assert [set(data.eval_sets[t].prompt_ids.tolist()) for t in TASKS] == [{0}, {1}]
  batch = data.batches.batch(0)
  np.testing.assert_array_equal(batch["prompt_ids"], data.train.prompt_ids[data.batches.indices(0)])
  scores = np.array([[-2.0, -1.0, -0.5, -0.1]] * 10)  # union order: task 0 picks not_entailment, task 1 'no'
  outputs = {"predictions": [np.array([1] + [0] * 7)] * 10, "loss": np.ones(10), "rank_scores": list(scores)}
  rows = t5.prediction_rows(data.eval_sets[TASKS[1]], outputs, task_name=TASKS[1])
  assert {r["rank_prediction"] for r in rows} == {"no"} and len(rows[0]["rank_scores"]) == 3
  assert {r["rank_prediction"] for r in t5.prediction_rows(data.eval_sets[TASKS[0]], outputs,
                                                           task_name=TASKS[0])} == {"not_entailment"}
  trained = {"prompt": {f"members_{k}": {"prompt": np.full((4, 64), k, np.float32)} for k in range(2)}}
  exports = t5.member_exports(trained)
  assert sorted(exports) == sorted(TASKS) and exports[TASKS[1]]["prompt/prompt"].mean() == 1.0


def test_ensemble_of_three_trains_and_reports_members_and_votes(data_dir, tmp_path, capsys):
  model_dir = tmp_path / "ensemble"
  code = _train(model_dir, data_dir, "--gin_file=runs/t5_ensemble.gin", "--gin.ENSEMBLE_SIZE=3",
                "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'")
  assert code == 0, capsys.readouterr().err
  results = json.loads((model_dir / "results.json").read_text())
  metrics = results["validation_metrics"]
  assert results["step"] == 2 and results["trainable"] == 3 * 4 * 64
  expected = {"accuracy", "vote_accuracy", "rank_accuracy", "rank_vote_accuracy", "loss"}
  expected |= {f"{p}member_{k}_accuracy" for p in ("", "rank_") for k in range(3)}
  assert expected <= set(metrics), sorted(metrics)
  assert metrics["accuracy"] == metrics["vote_accuracy"]
  lines = _lines(model_dir / "predictions" / "validation.jsonl")
  assert len(lines) == 10 and all(len(line["member_predictions"]) == 3 for line in lines)
  for k in range(3):  # Each member's metric is its own decoded strings' accuracy.
    right = np.mean([line["member_predictions"][k] == line["target"] for line in lines])
    assert metrics[f"member_{k}_accuracy"] == pytest.approx(100 * right)
  for line in lines:  # The vote: a string at least two of three members decoded wins.
    votes = line["member_predictions"]
    majority = [s for s in votes if votes.count(s) >= 2]
    assert line["prediction"] == (majority[0] if majority else line["prediction"]) and line["prediction"] in votes
    assert sum(line["rank_scores"]) == pytest.approx(1.0, abs=1e-3)  # the members' mean probabilities
  assert metrics["accuracy"] == pytest.approx(100 * np.mean([l["prediction"] == l["target"] for l in lines]))
  exported = [export.load_export(model_dir / "export" / f"member_{k}.safetensors") for k in range(3)]
  prompts = [tensors["prompt/prompt"] for tensors, _ in exported]
  assert [metadata["bank_member"] for _, metadata in exported] == ["member_0", "member_1", "member_2"]
  assert all(p.shape == (4, 64) for p in prompts) and np.abs(prompts[0] - prompts[1]).max() > 1e-3
  losses = [r["loss"] for r in _lines(model_dir / "metrics.jsonl") if r["split"] == "train"]
  assert losses and all(np.isfinite(losses))


@pytest.mark.parametrize("args,message", [
    ([f"--gin.MIXTURE_OR_TASK_NAME='{MIXTURE}'", "--gin.ENSEMBLE_SIZE=3"],
     f"error: an ensemble trains on one task, but MIXTURE_OR_TASK_NAME is a mixture of 2 tasks; set "
     "--gin.ENSEMBLE_SIZE=1 or name one task."),
    ([f"--gin.MIXTURE_OR_TASK_NAME='{MIXTURE}'", "--gin.MULTITASK_PROMPT='per_tsk'"],
     "error: unknown multitask_prompt 'per_tsk'; use one of ('shared', 'per_task')."),
], ids=["ensemble_of_a_mixture", "unknown_multitask_prompt"])
def test_bank_settings_are_refused_before_anything_runs(tmp_path, capsys, args, message):
  from test_bad_input import fails_with_one_line  # pylint: disable=g-import-not-at-top
  gin_args = [MODEL, "--gin_file=runs/prompt_finetune.gin", f"--gin.MODEL_DIR='{tmp_path / 'run'}'", *args,
              f"--gin.INITIAL_CHECKPOINT_PATH='{CHECKPOINT}'", "--gin.TRAIN_STEPS=1", *COMMON]
  assert fails_with_one_line(capsys, gin_args, main=lambda a: _run(train.main, a)) == message
  assert not (tmp_path / "run").exists()  # refused before MODEL_DIR was made
