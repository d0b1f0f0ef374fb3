"""Task families end to end below the command line: batches of ragged token labels and [K, T] choices, heads
that line up with the text under every prompt, and each family's decoding into its task's metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_params
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.tasks import scoring
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.data.batching import IGNORE_LABEL
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder
from prompt_tuning_jax.tasks import conll, qa
from prompt_tuning_jax.models.encoder_model import task_loss
from prompt_tuning_jax.data.vocabularies import wordpiece_vocabulary
from task_fixtures import FIXTURES

BACKBONE_VOCABULARY = wordpiece_vocabulary()  # The packaged MiniLM's.

IDS = np.array([[101, 2000, 2001, 2002, 102, 0], [101, 2003, 102, 0, 0, 0]], np.int32)


def test_pad_batch_pads_token_labels_with_ignore_and_choices_per_row():
  tokens = batching.Examples([np.array([101, 5, 6, 102]), np.array([101, 7, 102])], [np.zeros(4, int), np.zeros(3, int)],
                         [np.array([-100, 1, 2, -100]), np.array([-100, 3, -100])])
  batch = batching.pad_batch(tokens, [1, 0], [8], 3)
  assert batch["labels"].shape == (3, 8) and batch["labels"][0, :3].tolist() == [-100, 3, -100]
  assert (batch["labels"][0, 3:] == IGNORE_LABEL).all() and (batch["labels"][2] == IGNORE_LABEL).all()
  assert batch["weights"].tolist() == [1, 1, 0]
  choices = batching.Examples([np.array([[101, 5, 102, 0], [101, 6, 7, 102]])], [np.zeros((2, 4), int)], np.array([1]),
                          token_fields={"context_mask": [np.array([[0, 1, 0, 0], [0, 1, 1, 0]])]})
  batch = batching.pad_batch(choices, [0], [8], 2)
  assert batch["input_ids"].shape == batch["context_mask"].shape == (2, 2, 8)
  assert batch["attention_mask"][0].sum(-1).tolist() == [3, 4] and batch["labels"].tolist() == [1, 0]


def test_train_batches_keep_each_input_shape_apart():
  singles = [np.arange(1, 3 + i % 4) for i in range(10)]
  pairs = [np.ones((2, 2 + i % 3), int) for i in range(9)]
  mixed = batching.Examples(singles + pairs, singles + pairs, np.arange(19), np.array([0] * 10 + [1] * 9))
  batches = batching.TrainBatches(mixed, batch_size=3, max_length=8, seed=0)
  assert batches.steps_per_epoch == 3 + 3
  seen = []
  for step in range(batches.steps_per_epoch):
    batch = batches.batch(step)
    assert len(set(batch["task_ids"].tolist())) == 1  # One input shape ([T] or [2, T]) per batch.
    assert batch["input_ids"].ndim == (2 if batch["task_ids"][0] == 0 else 3)
    seen += batch["labels"].tolist()
  assert len(set(seen)) == 18 and len([s for s in seen if s >= 10]) == 9  # 10 // 3 * 3 singles, all 9 pairs.


@pytest.fixture(scope="module")
def models(minilm):
  config, backbone = minilm
  out = {}
  for prompt_name, prompt in (("deep", DeepPrompt(length=3)), ("input", InputPrompt(length=3))):
    for kind, labels in (("token", 5), ("span", 2), ("sequence", 1)):
      model = EncoderClassifier(config, labels, prompt=prompt, head_kind=kind, head_dropout=0.0)
      shape = (1, 2, 8) if kind == "sequence" else (1, 8)
      out[prompt_name, kind] = model, init_params(model, backbone, 0, input_shape=shape)
  return out


@pytest.mark.parametrize("prompt", ["deep", "input"])
def test_token_and_span_heads_read_the_text_tokens_only(models, prompt):
  for kind, width in (("token", 5), ("span", 2)):
    model, params = models[prompt, kind]
    outputs, state = model.apply({"params": params}, IDS, np.zeros_like(IDS), (IDS > 0).astype(np.int32),
                                 capture_intermediates=True)
    hidden = state["intermediates"]["backbone"]["__call__"][0][0]  # [B, P + T, H] after an input prompt.
    assert outputs.shape == (2, 6, width) and hidden.shape[1] == 6 + (3 if prompt == "input" else 0)
    head = params["head"]
    np.testing.assert_allclose(outputs, hidden[:, hidden.shape[1] - 6:] @ head["kernel"] + head["bias"], atol=1e-4)


@pytest.mark.parametrize("prompt", ["deep", "input"])
def test_multiple_choice_scores_each_pair_on_its_own(models, prompt):
  model, params = models[prompt, "sequence"]
  choices = np.stack([IDS, IDS[::-1]])  # [B=2, K=2, T]
  scores = model.apply({"params": params}, choices, np.zeros_like(choices), (choices > 0).astype(np.int32))
  single = model.apply({"params": params}, choices.reshape(4, 6), np.zeros((4, 6), np.int32),
                       (choices.reshape(4, 6) > 0).astype(np.int32))
  assert scores.shape == (2, 2)
  np.testing.assert_allclose(scores, single[:, 0].reshape(2, 2), atol=1e-5)


def test_ptuning_refuses_heads_that_need_token_alignment(minilm):
  model = EncoderClassifier(minilm[0], 3, prompt=PTuningEncoder(length=6), head_kind="token")
  with pytest.raises(ValueError, match="P-Tuning virtual tokens sit between text tokens, so a 'token' head"):
    model.init(jax.random.key(0), IDS, np.zeros_like(IDS), (IDS > 0).astype(np.int32))


def test_task_losses_follow_the_head_kind():
  logits = jax.random.normal(jax.random.key(0), (2, 4, 3))
  labels = jnp.array([[IGNORE_LABEL, 2, 0, IGNORE_LABEL], [IGNORE_LABEL, 1, IGNORE_LABEL, IGNORE_LABEL]])
  batch = {"labels": labels, "weights": jnp.array([1.0, 0.0])}
  loss, stats = task_loss("token", logits, batch)
  logp = jax.nn.log_softmax(logits)
  np.testing.assert_allclose(loss, -(logp[0, 1, 2] + logp[0, 2, 0]) / 2, rtol=1e-5)  # Row 1 has weight 0.
  assert float(stats["count"]) == 2
  span_batch = {"labels": jnp.array([[0, 0], [1, 2]]), "weights": jnp.ones(2),
                "context_mask": jnp.array([[0, 1, 1, 0], [0, 1, 1, 0]])}
  spans = jnp.zeros((2, 4, 2)).at[0, 0].set(5.0).at[1, 1, 0].set(5.0).at[1, 2, 1].set(5.0)
  loss, stats = task_loss("span", spans, span_batch)
  assert float(stats["correct"]) == 2 and float(loss) < 0.05  # [CLS] (0, 0) stays in the softmax.


def _outputs(rows):
  return [np.asarray(r, np.float32)[None] for r in rows]  # One ensemble member.


def test_token_decoding_maps_first_sub_words_back_to_words():
  word_ids = [np.array([-1, 0, 0, 1, 2, -1]), np.array([-1, 0, 1, -1])]
  tags = [["B-PER", "O", "B-LOC"], ["I-ORG", "O"]]  # I- without B- still opens an entity (seqeval).
  labels = [np.array([-100, 1, -100, 0, 5, -100]), np.array([-100, 4, 0, -100])]
  examples = batching.Examples([np.arange(6), np.arange(4)], [np.zeros(6), np.zeros(4)], labels,
                           meta={"word_ids": word_ids, "tags": tags})
  # Predicted label per token: right on first pieces except word 2 of sentence 0; noise on other pieces.
  predicted = [[0, 1, 8, 0, 0, 0], [0, 4, 0, 0, 0, 0]]
  logits = [np.eye(len(conll.CONLL03_LABELS))[p][:len(w)] * 9.0 for p, w in zip(predicted, word_ids)]
  got = scoring.score("conll2003", examples, _outputs(logits))
  # Gold entities: PER, LOC, ORG; predicted: PER, ORG. Precision 1, recall 2/3.
  assert got["precision"] == 100.0 and got["recall"] == pytest.approx(200 / 3)
  assert got["loss"] > 0


def test_grouped_classification_scores_questions_and_queries():
  labels = np.array([1, 0, 1, 0])
  multirc = batching.Examples([np.arange(3)] * 4, [np.zeros(3)] * 4, labels, meta={"group": [5, 5, 6, 6]})
  logits = _outputs([[0.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])  # Question 6's second option is wrong.
  got = scoring.score("multirc", multirc, logits)
  assert got["em"] == 50.0 and got["f1a"] == pytest.approx(100 * 2 * 2 / (2 * 2 + 1)) and got["accuracy"] == 75.0
  record = batching.Examples([np.arange(3)] * 3, [np.zeros(3)] * 3, np.array([0, 1, 0]),
                         meta={"group": [1, 1, 1], "entity": ["Oslo", "Bergen", "Tromsø"],
                               "answers": [["Bergen"]] * 3})
  got = scoring.score("record", record, _outputs([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0]]))
  assert (got["em"], got["f1"]) == (100.0, 100.0)  # Bergen has the highest P(True).


def test_span_decoding_reads_answers_back_from_character_offsets():
  questions = qa.read_squad(FIXTURES / "squad_v2_sample.json")
  features = qa.featurize(questions, BACKBONE_VOCABULARY, max_length=40, stride=10, max_question_length=16)
  examples = batching.Examples([f.input_ids for f in features], [f.token_type_ids for f in features],
                           np.array([[f.start_position, f.end_position] for f in features]),
                           token_fields={"context_mask": [f.context_mask for f in features]},
                           meta={"example_index": [f.example_index for f in features],
                                 "id": [questions[f.example_index].qid for f in features],
                                 "context": [questions[f.example_index].context for f in features],
                                 "answers": [list(questions[f.example_index].answers) for f in features],
                                 "offsets": [f.offsets for f in features]})
  oracle = []
  for f in features:  # Peaked at the labels: windows without the answer point at [CLS] (no answer).
    logits = np.zeros((48, 2))  # Longer than the window, as a padded batch's outputs are.
    logits[f.start_position, 0] = logits[f.end_position, 1] = 10.0
    oracle.append(logits)
  got = scoring.score("squad_v2", examples, _outputs(oracle))
  assert got["em"] == 100.0 and got["f1"] == 100.0 and got["loss"] < 0.01
