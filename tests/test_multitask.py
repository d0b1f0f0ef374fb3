"""Multi-task prompts (shared, and one per task in mixed batches), MPT-2 initialisation,
prompt ensembles and the ways an ensemble's members are combined."""

import json

import numpy as np
import pytest

from conftest import write_tiny_data
from prompt_tuning_jax import export, train
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.tasks import ensembles

H, L = 384, 6  # MiniLM hidden size and layers.


def run(capsys, model_dir, data_dir, *args, steps=4):
  code = train.main([*args, f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{data_dir}'",
                     f"--gin.TRAIN_STEPS={steps}", f"--gin.EVAL_PERIOD={steps}", "--gin.BATCH_SIZE=8",
                     "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}", "--gin.PROMPT_LENGTH=4"])
  out, err = capsys.readouterr()
  assert code == 0, err
  tensors, metadata = export.load_export(model_dir / "export" / "best.safetensors")
  return json.loads((model_dir / "results.json").read_text()), tensors, metadata, out


def test_shared_prompt_on_a_mixture_then_mpt2(capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  results, tensors, metadata, _ = run(capsys, tmp_path / "mt", data_dir, "--gin_file=gin/sst2_rte.gin",
                                      "--gin_file=gin/methods/deep_prompt.gin")
  assert results["tasks"] == ["rte", "sst2"] and json.loads(metadata["tasks"]) == ["rte", "sst2"]
  scores = results["validation_metrics"]
  assert scores["accuracy"] == pytest.approx((scores["rte/accuracy"] + scores["sst2/accuracy"]) / 2)
  assert tensors["prompt/prefix"].shape == (L, 2, 4, 12, 32)  # One prompt shared by both tasks...
  assert tensors["head/kernel"].shape == (2, H, 2)  # ...and one head per task.

  # MPT-2: RTE alone, its prompt initialised from the shared one. A zero learning rate keeps
  # the initialisation, so the exported prompt must equal the multi-task one exactly.
  gin_clear()
  _, single, _, out = run(capsys, tmp_path / "mpt2", data_dir, "--gin_file=gin/rte.gin",
                          "--gin_file=gin/methods/deep_prompt.gin", "--gin_file=gin/runs/from_multitask.gin",
                          f"--gin.MULTITASK_EXPORT='{tmp_path / 'mt' / 'export' / 'best.safetensors'}'",
                          "--gin.LEARNING_RATE=0.0", steps=1)
  assert "Initialised ['prompt/.*'] from" in out
  np.testing.assert_array_equal(single["prompt/prefix"], tensors["prompt/prefix"])
  assert single["head/kernel"].shape == (H, 2)


def test_per_task_prompts_in_mixed_batches(capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  results, tensors, _, _ = run(capsys, tmp_path / "run", data_dir, "--gin_file=gin/sst2_rte.gin",
                               "--gin_file=gin/methods/lester.gin", "--gin.MULTITASK_PROMPT='per_task'")
  assert {"rte/accuracy", "sst2/accuracy"} <= set(results["validation_metrics"])
  assert tensors["prompt/members_0/prompt"].shape == tensors["prompt/members_1/prompt"].shape == (4, H)
  assert tensors["head/kernel"].shape == (2, H, 2)


def test_ensemble_trains_k_members_and_reports_each(capsys, clean_gin, tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  results, tensors, metadata, out = run(capsys, tmp_path / "run", data_dir, "--gin_file=gin/sst2.gin",
                                        "--gin_file=gin/methods/deep_prompt.gin", "--gin_file=gin/runs/ensemble.gin",
                                        "--gin.ENSEMBLE_SIZE=3")
  scores = results["validation_metrics"]
  assert {"accuracy", "vote_accuracy", "member_0_accuracy", "member_1_accuracy", "member_2_accuracy"} <= set(scores)
  assert "member_2_accuracy" in out and json.loads(metadata["ensemble_size"]) == 3
  members = [tensors[f"prompt/members_{k}/prefix"] for k in range(3)]
  assert all(m.shape == (L, 2, 4, 12, 32) for m in members)
  assert not np.array_equal(members[0], members[1]) and not np.array_equal(members[1], members[2])
  assert tensors["head/kernel"].shape == (3, H, 2)
  # Its predictions are the members' mean probabilities, the prediction `accuracy` scores.
  lines = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "validation.jsonl").read_text().splitlines()]
  assert 100 * np.mean([line["label"] == line["target"] for line in lines]) == pytest.approx(scores["accuracy"])
  assert all(sum(line["probabilities"].values()) == pytest.approx(1.0) for line in lines)


@pytest.mark.parametrize("args, message", [
    (["--gin_file=gin/sst2.gin", "--gin_file=gin/methods/ptuning.gin", "--gin.ENSEMBLE_SIZE=2"],
     "an ensemble needs a bank of deep or input prompts, but the method's prompt is PTuningEncoder"),
    (["--gin_file=gin/sst2_rte.gin", "--gin_file=gin/methods/deep_prompt.gin", "--gin.ENSEMBLE_SIZE=2"],
     "an ensemble trains on one task, but MIXTURE_OR_TASK_NAME is a mixture of 2 tasks"),
    (["--gin_file=gin/sst2_rte.gin", "--gin_file=gin/methods/deep_prompt.gin", "--gin.MULTITASK_PROMPT='each'"],
     "unknown multitask_prompt 'each'"),
])
def test_bad_ensemble_or_mixture_settings(args, message, capsys, clean_gin, tmp_path):
  code = train.main([*args, f"--gin.MODEL_DIR='{tmp_path}'", "--gin.TRAIN_STEPS=1"])
  assert code == 2
  assert message in capsys.readouterr().err


def test_majority_vote_and_mean_probability_on_a_hand_computed_case():
  # Three members, two examples, three classes; member probabilities given directly
  # (log-probabilities are valid logits).
  probs = np.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]],
                    [[0.3, 0.4, 0.3], [0.1, 0.1, 0.8]],
                    [[0.1, 0.3, 0.6], [0.6, 0.3, 0.1]]])
  labels = np.array([2, 2])
  scores, predictions = ensembles.classification_metrics(np.log(probs), labels, num_labels=3)
  # Example 0: members vote 0, 1, 2 (a tie); mean probabilities (0.3, 0.333, 0.367) pick 2 for both.
  # Example 1: votes 2, 2, 0 -> 2; mean (0.267, 0.167, 0.567) -> 2.
  np.testing.assert_array_equal(predictions, [2, 2])
  assert scores["accuracy"] == 100.0 and scores["vote_accuracy"] == 100.0
  assert scores["member_0_accuracy"] == 50.0 and scores["member_1_accuracy"] == 50.0
  assert scores["member_2_accuracy"] == 50.0
  assert scores["loss"] == pytest.approx(-(np.log(1.1 / 3) + np.log(1.7 / 3)) / 2)


def test_vote_can_disagree_with_mean_probability():
  probs = np.array([[[0.55, 0.45]], [[0.55, 0.45]], [[0.01, 0.99]]])  # Votes 0, 0, 1; mean p(1) = 0.63.
  scores, predictions = ensembles.classification_metrics(np.log(probs), np.array([0]), num_labels=2)
  assert predictions.tolist() == [1] and scores["accuracy"] == 0.0 and scores["vote_accuracy"] == 100.0


def test_classes_beyond_a_tasks_labels_are_ignored():
  logits = np.array([[[0.0, 1.0, 9.0]]])  # A 2-label task in a mixture whose widest task has 3.
  scores, predictions = ensembles.classification_metrics(logits, np.array([1]), num_labels=2)
  assert predictions.tolist() == [1] and scores["loss"] == pytest.approx(np.log(1 + np.e) - 1.0)


def test_mixture_batches_hold_every_example_of_every_task_once_per_epoch():
  def part(n, task_id):
    return batching.Examples([np.arange(1, 3 + i % 5) for i in range(n)], [np.zeros(2 + i % 5, np.int32)
                                                                      for i in range(n)],
                         np.arange(n, dtype=np.int32), np.full(n, task_id, np.int32))
  mixed = batching.concatenate([part(24, 0), part(40, 1)])
  batches = batching.TrainBatches(mixed, batch_size=8, max_length=16, seed=3, group_batches=2)
  seen = [(int(t), int(l)) for s in range(batches.steps_per_epoch) for t, l, w in
          zip(batches.batch(s)["task_ids"], batches.batch(s)["labels"], batches.batch(s)["weights"]) if w]
  assert sorted(seen) == [(0, i) for i in range(24)] + [(1, i) for i in range(40)]
  assert any(len(set(batches.batch(s)["task_ids"])) == 2 for s in range(batches.steps_per_epoch))


def test_restore_matching_names_the_tensor_and_both_shapes(tmp_path):
  path = tmp_path / "p.safetensors"
  export.save_export(path, {"prompt/prefix": np.ones((2, 3), np.float32)}, {"task": "x"})
  params = {"prompt": {"prefix": np.zeros((2, 4), np.float32)}, "head": {"bias": np.zeros(2, np.float32)}}
  with pytest.raises(ValueError, match=r"'prompt/prefix' has shape \(2, 3\) but this model's is \(2, 4\)"):
    export.restore_matching(params, path, [r"prompt/.*"])
  params["prompt"]["prefix"] = np.zeros((2, 3), np.float32)
  restored = export.restore_matching(params, path, [r"prompt/.*"])
  np.testing.assert_array_equal(restored["prompt"]["prefix"], 1.0)
  np.testing.assert_array_equal(restored["head"]["bias"], 0.0)
  with pytest.raises(ValueError, match="no tensor matches"):
    export.restore_matching(params, path, [r"head/.*"])


def gin_clear():
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
