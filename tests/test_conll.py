"""CoNLL reader (formats, breaks, file:line errors), first-sub-word labels and their way back to word tags."""

import functools
import gzip

import numpy as np
import pytest
from seqeval.metrics.sequence_labeling import get_entities

from conftest import REPO, SHARED_DATA, require_shared_data
from prompt_tuning_jax.tasks import metrics
from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir
from prompt_tuning_jax.tasks import conll, wordpieces
from prompt_tuning_jax.tasks.sources import DataError
from prompt_tuning_jax.data.tokenizers import WordPieceVocabulary

FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def vocab():
  return WordPieceVocabulary(default_backbone_dir() / "vocab.txt")


def test_label_sets():
  assert len(conll.CONLL03_LABELS) == 9 and conll.CONLL03_LABELS[0] == "O"
  assert {t[2:] for t in conll.CONLL03_LABELS[1:]} == {"PER", "ORG", "LOC", "MISC"}
  assert len(conll.WNUT17_LABELS) == 13 and "B-creative-work" in conll.WNUT17_LABELS


def test_conll2003_reads_the_last_column_and_skips_docstart():
  sentences = conll.read_conll(FIXTURES / "conll2003_sample.txt", "conll2003")
  assert len(sentences) == 2
  tokens, tags = sentences[0]
  assert tokens == ("Marta", "Okafor", "joined", "Lumen", "Robotics", "in", "Tallinn", ".")
  assert tags == ("B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O")
  assert sentences[1][1][3:5] == ("B-MISC", "I-MISC")


def test_wnut17_tab_only_line_breaks_sentences():
  sentences = conll.read_conll(FIXTURES / "wnut17_sample.conll", "wnut17")
  assert [len(tokens) for tokens, _ in sentences] == [6, 7]
  assert sentences[0][0][2] == "@kiwi_fan"
  assert [kind for kind, _, _ in get_entities(list(sentences[1][1]))] == ["product", "corporation"]


def test_generic_format_takes_first_and_last_columns_and_reads_gzip(tmp_path):
  path = tmp_path / "pos_ner.txt.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("Ada NNP B-PER\nsmiled VBD O\n\n\nOslo NNP B-LOC\n")
  assert conll.read_conll(path) == [(("Ada", "smiled"), ("B-PER", "O")), (("Oslo",), ("B-LOC",))]


@pytest.mark.parametrize("file_format, text, line, message", [
    ("conll2003", "Ada NNP B-NP B-PER\nsmiled VBD O\n", 2, r"3 column\(s\), expected 4 \(token POS chunk NER\)"),
    ("wnut17", "Ada\tB-person\n\nsmiled\tO\textra\n", 3, r"3 column\(s\), expected 2"),
    ("generic", "Ada B-PER\nlonely\n", 2, r"1 column\(s\), expected at least 2"),
    ("conll2003", "Ada NNP B-NP B-PER\nsmiled VBD B-VP B-PERSON\n", 2, r"tag 'B-PERSON' is not one of"),
    ("wnut17", "Ada\tB-PER\n", 1, r"tag 'B-PER' is not one of"),
])
def test_malformed_lines_name_file_and_line(tmp_path, file_format, text, line, message):
  path = tmp_path / "bad.txt"
  path.write_text(text, encoding="utf-8")
  with pytest.raises(DataError, match=rf"bad\.txt:{line}: {message}"):
    conll.read_conll(path, file_format)


def test_explicit_label_set_checks_generic_files(tmp_path):
  path = tmp_path / "tags.txt"
  path.write_text("Ada B-PER\nOslo B-GPE\n", encoding="utf-8")
  with pytest.raises(DataError, match=r"tags\.txt:2: tag 'B-GPE'"):
    conll.read_conll(path, label_names=conll.CONLL03_LABELS)


def _toy_encoder(words):
  """Word -> one piece per 3 characters (ids 10+), nothing for an empty word."""
  return [[10 + len(w[i:i + 3]) for i in range(0, len(w), 3)] for w in words]


def test_labels_sit_on_first_sub_words_only():
  tokens, tags = ("Okafor", "", "met", "Lumenberger"), ("B-PER", "O", "O", "B-ORG")
  got = conll.encode_sentence(tokens, tags, _toy_encoder, label_names=conll.CONLL03_LABELS, cls_id=1, sep_id=2,
                              unk_id=3, max_length=32)
  assert got["input_ids"].tolist() == [1, 13, 13, 3, 13, 13, 13, 13, 12, 2]  # The empty word became [UNK].
  assert got["word_ids"].tolist() == [-1, 0, 0, 1, 2, 3, 3, 3, 3, -1]
  per, o, org = (conll.CONLL03_LABELS.index(t) for t in ("B-PER", "O", "B-ORG"))
  ig = conll.IGNORE_LABEL
  assert got["labels"].tolist() == [ig, per, ig, o, o, org, ig, ig, ig, ig]
  assert got["weights"].tolist() == [0, 1, 0, 1, 1, 1, 0, 0, 0, 0]


def test_truncated_words_come_back_as_o():
  tokens, tags = ("Okafor", "met", "Lumenberger"), ("B-PER", "O", "B-ORG")
  got = conll.encode_sentence(tokens, tags, _toy_encoder, label_names=conll.CONLL03_LABELS, cls_id=1, sep_id=2,
                              unk_id=3, max_length=5)
  assert got["word_ids"].tolist() == [-1, 0, 0, 1, -1]
  assert conll.predicted_tags(got["labels"], got["word_ids"], 3, conll.CONLL03_LABELS) == ["B-PER", "O", "O"]


def test_real_word_pieces_round_trip_to_word_tags(vocab):
  tokens, tags = conll.read_conll(FIXTURES / "conll2003_sample.txt", "conll2003")[0]
  got = conll.encode_sentence(tokens, tags, functools.partial(wordpieces.encode_words, vocab),
                              label_names=conll.CONLL03_LABELS, cls_id=vocab.cls_id, sep_id=vocab.sep_id,
                              unk_id=vocab.unk_id, max_length=64)
  # Each word encoded alone gives the same pieces as the sentence (no piece straddles a word).
  assert got["input_ids"][1:-1].tolist() == vocab.encode(" ".join(tokens))
  assert int(got["weights"].sum()) == len(tokens) < len(got["input_ids"]) - 2
  # A model that is right on first pieces and wrong everywhere else still gets every word right.
  noisy = np.where(got["weights"] > 0, got["labels"], conll.CONLL03_LABELS.index("I-MISC"))
  predicted = conll.predicted_tags(noisy, got["word_ids"], len(tokens), conll.CONLL03_LABELS)
  assert predicted == list(tags)
  assert metrics.entity_f1([tags], [predicted])["f1"] == 100.0


@pytest.mark.parametrize("directory, file_format, files, sentences, entities", [
    ("conll2003", "conll2003", ("train.txt", "valid.txt", "test.txt"), (14_041, 3_250, 3_453),
     (23_499, 5_942, 5_648)),
    ("wnut17", "wnut17", ("train.conll", "dev.conll", "test.conll"), (3_394, 1_009, 1_287), (1_975, 836, 1_079)),
])
def test_shared_data_sizes(directory, file_format, files, sentences, entities):
  require_shared_data(*(f"ner/{directory}/{f}" for f in files))
  for name, want_sentences, want_entities in zip(files, sentences, entities):
    read = conll.read_conll(SHARED_DATA / "ner" / directory / name, file_format)
    assert len(read) == want_sentences, name
    assert sum(len(get_entities(list(tags))) for _, tags in read) == want_entities, name
