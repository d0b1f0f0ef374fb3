"""QA readers, character offsets, sliding windows, labels and n-best decoding back to the context text."""

import gzip
import json
import shutil

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA, require_shared_data
from prompt_tuning_jax.tasks import metrics
from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir
from prompt_tuning_jax.tasks import qa, wordpieces
from prompt_tuning_jax.tasks.sources import DataError
from prompt_tuning_jax.data.tokenizers import WordPieceVocabulary

FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def vocab():
  return WordPieceVocabulary(default_backbone_dir() / "vocab.txt")


@pytest.fixture(scope="module")
def squad_v2():
  return qa.read_squad(FIXTURES / "squad_v2_sample.json")


def _oracle_logits(features, peak=10.0, null=None):
  """Start/end logits peaked at each feature's labels; `null` overrides the [CLS] score."""
  starts, ends = [], []
  for f in features:
    s, e = np.zeros(len(f.input_ids)), np.zeros(len(f.input_ids))
    s[f.start_position] += peak
    e[f.end_position] += peak
    if null is not None:
      s[0] = e[0] = null / 2
    starts.append(s)
    ends.append(e)
  return starts, ends


def test_read_squad_v2_keeps_answers_and_marks_impossible(squad_v2):
  assert [ex.qid for ex in squad_v2] == ["q1", "q2", "q3", "q4", "q5", "q6"]
  assert squad_v2[1].answers == ("19 June 1978", "1978")
  for ex in squad_v2:
    assert [ex.context[s:e] for s, e in ex.answer_spans] == list(ex.answers)
  assert squad_v2[5].answers == () and squad_v2[5].answer_spans == ()  # plausible_answers are ignored.


def test_read_squad_errors_name_the_question(tmp_path):
  root = json.loads((FIXTURES / "squad_v2_sample.json").read_text())
  root["data"][0]["paragraphs"][0]["qas"][2]["answers"][0]["answer_start"] += 1
  path = tmp_path / "shifted.json"
  path.write_text(json.dumps(root))
  with pytest.raises(DataError, match=r"shifted\.json: data\[0\]\.paragraphs\[0\]\.qas\[2\]: answer 'Ça ira!' is not"):
    qa.read_squad(path)
  del root["data"][0]["paragraphs"][0]["qas"][0]["question"]
  path.write_text(json.dumps(root))
  with pytest.raises(DataError, match=r"qas\[0\]: missing field 'question'"):
    qa.read_squad(path)
  path.write_text("{\"data\": [\n")
  with pytest.raises(DataError, match=r"shifted\.json:2: malformed JSON"):
    qa.read_squad(path)


def test_read_mrqa_gzip_uses_detected_char_spans(tmp_path):
  path = tmp_path / "sample.jsonl.gz"
  with open(FIXTURES / "mrqa_sample.jsonl", "rb") as src, gzip.open(path, "wb") as dst:
    shutil.copyfileobj(src, dst)
  examples = qa.read_mrqa(path)
  assert [ex.qid for ex in examples] == ["m1", "m2", "m3"]
  assert examples[1].answers == ("3,555 km²", "3,555 square kilometres")
  assert [examples[1].context[s:e] for s, e in examples[1].answer_spans] == ["3,555 km²"]  # Inclusive end read.
  bad = tmp_path / "headless.jsonl"
  bad.write_text("\n".join((FIXTURES / "mrqa_sample.jsonl").read_text().splitlines()[1:]))
  with pytest.raises(DataError, match=r"headless\.jsonl:1: missing field 'header'"):
    qa.read_mrqa(bad)


@pytest.mark.parametrize("text", [
    'Zoë Saldaña-Perego (born 19 June 1978) co-founded "Café Rêve"; «Ça ira!»',
    "Ame\u0301lie's crêpes cost £20,980 — 3,555 km² of 東京\u200b! (U.S.A.)",
])
def test_offsets_follow_the_tokenizer(vocab, text):
  ids, offsets = wordpieces.tokenize_with_offsets(vocab, text)
  assert ids == vocab.encode(text)
  pieces = [vocab.decode([i]).removeprefix("##") for i in ids]
  # Every piece's characters normalise to the piece itself (vocab.decode normalises too).
  assert [vocab.decode(vocab.encode(text[s:e])) for s, e in offsets] == [p.replace(" ", "") for p in pieces]


def test_offsets_of_pieces_inside_accented_words(vocab):
  text = "Zoë Saldaña"
  ids, offsets = wordpieces.tokenize_with_offsets(vocab, text)
  assert [text[s:e] for s, e in offsets] == ["Zoë", "Sal", "daña"]
  assert [vocab.decode([i]) for i in ids] == ["zoe", "sal", "##dana"]


def test_windows_overlap_by_stride_and_end_at_the_context_end():
  assert qa.windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
  assert qa.windows(11, 4, 1) == [(0, 4), (3, 7), (6, 10), (9, 11)]
  assert qa.windows(4, 4, 1) == [(0, 4)]
  assert qa.windows(0, 4, 1) == [(0, 0)]
  with pytest.raises(ValueError, match="stride=4"):
    qa.windows(10, 4, 4)


def test_one_window_layout_and_labels(vocab, squad_v2):
  features = qa.featurize(squad_v2, vocab)
  assert [f.example_index for f in features] == list(range(6))
  f = features[0]
  question = vocab.encode(squad_v2[0].question)
  head = len(question) + 2
  assert f.input_ids.tolist() == [vocab.cls_id, *question, vocab.sep_id, *vocab.encode(squad_v2[0].context),
                                  vocab.sep_id]
  assert f.token_type_ids.tolist() == [0] * head + [1] * (len(f.input_ids) - head)
  assert f.context_mask.tolist() == [0] * head + [1] * (len(f.input_ids) - head - 1) + [0]
  assert (f.offsets[f.context_mask == 0] == -1).all()
  assert f.start_position == head  # "zoe" opens the context.
  assert (features[5].start_position, features[5].end_position) == (0, 0)  # Unanswerable.


def test_oracle_logits_give_back_the_exact_gold_text(vocab, squad_v2):
  features = qa.featurize(squad_v2, vocab)
  starts, ends = _oracle_logits(features)
  predictions = qa.postprocess(squad_v2, features, starts, ends, version_2=True)
  assert [predictions[ex.qid] for ex in squad_v2] == [
      "Zoë Saldaña-Perego", "19 June 1978", "Ça ira!", "Sétif", "Ame\u0301lie Poulain", ""]
  assert metrics.squad_v2([ex.answers for ex in squad_v2], [predictions[ex.qid] for ex in squad_v2])["em"] == 100.0


def test_null_score_against_best_span(vocab, squad_v2):
  features = qa.featurize(squad_v2[:1], vocab)
  starts, ends = _oracle_logits(features, peak=10.0, null=15.0)  # Best span 20 beats null 15.
  assert qa.postprocess(squad_v2[:1], features, starts, ends, version_2=True) == {"q1": "Zoë Saldaña-Perego"}
  starts, ends = _oracle_logits(features, peak=10.0, null=25.0)
  assert qa.postprocess(squad_v2[:1], features, starts, ends, version_2=True) == {"q1": ""}
  assert qa.postprocess(squad_v2[:1], features, starts, ends, version_2=True, null_threshold=6.0) == {
      "q1": "Zoë Saldaña-Perego"}
  # Without version_2 the null score is never chosen.
  assert qa.postprocess(squad_v2[:1], features, starts, ends) == {"q1": "Zoë Saldaña-Perego"}


def test_span_search_limits():
  context = "one two three four"
  example = qa.QAExample("x", "q", context, ("two three",), ((4, 13),))
  offsets = np.array([[-1, -1], [0, 3], [4, 7], [8, 13], [14, 18], [-1, -1]], np.int32)
  feature = qa.QAFeature(0, np.arange(6), np.zeros(6, np.int32), np.array([0, 1, 1, 1, 1, 0], np.int32), offsets, 2, 3)
  starts, ends = np.array([9.0, 0, 5, 0, 0, 9]), np.array([9.0, 0, 0, 4, 6, 9])
  assert qa.postprocess([example], [feature], [starts], [ends]) == {"x": "two three four"}
  assert qa.postprocess([example], [feature], [starts], [ends], max_answer_length=2) == {"x": "two three"}
  assert qa.postprocess([example], [feature], [starts], [ends], n_best=1, max_answer_length=2) == {"x": ""}


def test_sliding_windows_cover_the_context_and_label_only_windows_holding_the_answer(vocab, squad_v2):
  features = qa.featurize(squad_v2, vocab, max_length=24, stride=6, max_question_length=8)
  assert max(int((f.token_type_ids == 0).sum()) for f in features) == 8 + 2  # Long questions are cut to 8.
  context_ids, context_offsets = wordpieces.tokenize_with_offsets(vocab, squad_v2[0].context)
  for i, ex in enumerate(squad_v2):
    mine = [f for f in features if f.example_index == i]
    assert len(mine) > 1 and all(len(f.input_ids) <= 24 for f in mine)
    # Neighbours share exactly `stride` (6) context tokens; dropping them rebuilds the whole context.
    for a, b in zip(mine, mine[1:]):
      assert a.input_ids[a.context_mask > 0][-6:].tolist() == b.input_ids[b.context_mask > 0][:6].tolist()
    ids = [t for k, f in enumerate(mine) for t in f.input_ids[f.context_mask > 0][6 if k else 0:].tolist()]
    offsets = [tuple(o) for k, f in enumerate(mine) for o in f.offsets[f.context_mask > 0][6 if k else 0:].tolist()]
    assert ids == context_ids and offsets == context_offsets
    for f in mine:
      if f.start_position:
        s, e = f.offsets[f.start_position, 0], f.offsets[f.end_position, 1]
        assert ex.context[s:e] == ex.answers[0]
      elif ex.answer_spans:
        inside = f.offsets[f.context_mask > 0]
        start, end = ex.answer_spans[0]
        assert not (inside[0, 0] <= start and inside[-1, 1] >= end)
  starts, ends = _oracle_logits(features)
  predictions = qa.postprocess(squad_v2, features, starts, ends, version_2=True)
  assert [predictions[ex.qid] for ex in squad_v2] == [ex.answers[0] if ex.answers else "" for ex in squad_v2]


def test_answer_edges_on_whitespace_take_no_extra_word(vocab):
  context = "one two three four"
  example = qa.QAExample("x", "which?", context, (" two three ",), ((3, 14),))
  (feature,) = qa.featurize([example], vocab)
  assert context[feature.offsets[feature.start_position, 0]:feature.offsets[feature.end_position, 1]] == "two three"


def test_best_span_over_windows_wins(vocab, squad_v2):
  features = qa.featurize(squad_v2[:1], vocab, max_length=24, stride=6, max_question_length=8)
  starts, ends = _oracle_logits(features, peak=5.0)
  # "crêpes" (cr ##ep ##es) in the last window scores 16, above the labelled answer's 10.
  begin = squad_v2[0].context.index("crêpes")
  offsets = features[-1].offsets
  starts[-1][np.flatnonzero(offsets[:, 0] == begin)[0]] = 8.0
  ends[-1][np.flatnonzero(offsets[:, 1] == begin + len("crêpes"))[0]] = 8.0
  assert qa.postprocess(squad_v2[:1], features, starts, ends) == {"q1": "crêpes"}


def test_shared_squad_dev_size_and_oracle_decoding(vocab):
  require_shared_data("squad/v1.1/dev-v1.1.json")
  examples = qa.read_squad(SHARED_DATA / "squad" / "v1.1" / "dev-v1.1.json")
  assert len(examples) == 10_570 and len({ex.context for ex in examples}) == 2_067
  sample = examples[:500]
  features = qa.featurize(sample, vocab)
  assert all(len(f.input_ids) <= 384 for f in features)
  assert {f.example_index for f in features if f.start_position} == set(range(500))  # Every answer is labelled.
  predictions = qa.postprocess(sample, features, *_oracle_logits(features))
  assert all(ex.answers[0] in predictions[ex.qid] for ex in sample)
  # Not 100: a gold answer can be part of one word piece ("gold" in "golden", "8" in "18"); over the whole
  # dev set the oracle gets 99.7.
  assert metrics.squad([ex.answers for ex in sample], [predictions[ex.qid] for ex in sample])["em"] > 97.5
