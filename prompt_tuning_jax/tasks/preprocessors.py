"""seqio preprocessors: plain functions over tf.data datasets, one per task family.

Classification and multiple choice tokenize in tf.data maps. Token classification and extractive QA
run the numpy featurizers of tasks/conll.py and tasks/qa.py over the whole split at once (the split is
held in memory by the trainer anyway): one tokenizer call then encodes every word of the split, and one
context's character offsets serve all its questions, which a per-example map could not share.
"""

from typing import List, Mapping, Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from prompt_tuning_jax.tasks import conll, qa, wordpieces
from prompt_tuning_jax.tasks.labels import IGNORE_LABEL
from prompt_tuning_jax.tasks.sources import host_value, rows_to_dataset
from prompt_tuning_jax.data.tokenizers import encode_for_encoder


def tokenize_for_encoder(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                         output_features: Mapping[str, seqio.Feature], text_a: str,
                         text_b: Optional[str] = None) -> tf.data.Dataset:
  """Rows with text fields -> {'inputs' [T], 'token_type_ids' [T], 'label', 'idx', the other fields as they are}.

  `[CLS] a [SEP] (b [SEP])`, longest-first truncation to sequence_length['inputs'].
  """
  vocab = output_features["inputs"].vocabulary
  max_length = sequence_length["inputs"]

  def encode(ex):
    ids, types = encode_for_encoder(vocab, ex[text_a], None if text_b is None else ex[text_b], max_length)
    rest = {k: v for k, v in ex.items() if k not in (text_a, text_b)}
    return {**rest, "inputs": ids, "token_type_ids": types, "label": tf.cast(ex["label"], tf.int32),
            "idx": tf.cast(ex["idx"], tf.int32)}

  return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)


def tokenize_choices(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                     output_features: Mapping[str, seqio.Feature], text_a: str = "text_a",
                     choices: str = "choices") -> tf.data.Dataset:
  """Rows with a context and K choices [K] -> {'inputs' [K, T], 'token_type_ids' [K, T], 'label', 'idx'}: row k is
  `[CLS] context [SEP] choice_k [SEP]`, zero-padded to the longest choice's length T."""
  vocab = output_features["inputs"].vocabulary
  max_length = sequence_length["inputs"]

  def encode(ex):
    pairs = [encode_for_encoder(vocab, ex[text_a], ex[choices][k], max_length) for k in range(ex[choices].shape[0])]
    longest = tf.reduce_max([tf.size(ids) for ids, _ in pairs])
    pad = lambda x: tf.pad(x, [[0, longest - tf.size(x)]])
    return {"inputs": tf.stack([pad(ids) for ids, _ in pairs]), "token_type_ids": tf.stack([pad(t) for _, t in pairs]),
            "label": tf.cast(ex["label"], tf.int32), "idx": tf.cast(ex["idx"], tf.int32)}

  return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)


def _materialize(dataset: tf.data.Dataset) -> List[dict]:
  return [host_value(ex) for ex in tfds.as_numpy(dataset)]


TAGGED_TYPES = {"inputs": tf.int32, "token_type_ids": tf.int32, "labels": tf.int32, "word_ids": tf.int32,
                "tags": tf.string}


def encode_tagged(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                  output_features: Mapping[str, seqio.Feature], label_names: Sequence[str],
                  with_predicate: bool = False) -> tf.data.Dataset:
  """Sentences {'tokens' [W], 'tags' [W]} -> {'inputs' [T], 'token_type_ids' [T], 'labels' [T] (a word's label id
  on its first piece, IGNORE_LABEL elsewhere), 'word_ids' [T] (-1 off words), 'tags' [W] (every word's gold tag,
  also of words cut by the length limit)}, as conll.encode_sentence.

  with_predicate (SRL): rows also hold 'predicate', the predicate's word index, and the input becomes
  `[CLS] sentence [SEP] predicate [SEP]` with token type 1 on the predicate segment, which carries no labels.
  """
  vocab = output_features["inputs"].vocabulary
  max_length = sequence_length["inputs"]
  rows = _materialize(dataset)
  pieces = wordpieces.encode_words(vocab, [w for row in rows for w in row["tokens"]])  # One tokenizer call.
  out, start = [], 0
  for row in rows:
    words = list(row["tokens"])
    mine, start = pieces[start:start + len(words)], start + len(words)
    tail = [*(mine[row["predicate"]] or [vocab.unk_id]), vocab.sep_id] if with_predicate else []
    encoded = conll.encode_sentence(words, row["tags"], lambda _, mine=mine: mine, label_names=label_names,
                                    cls_id=vocab.cls_id, sep_id=vocab.sep_id, unk_id=vocab.unk_id,
                                    max_length=max_length - len(tail))
    n = len(encoded["input_ids"])
    out.append({"inputs": np.concatenate([encoded["input_ids"], np.asarray(tail, np.int32)]),
                "token_type_ids": np.asarray([0] * n + [1] * len(tail), np.int32),
                "labels": np.concatenate([encoded["labels"], np.full(len(tail), IGNORE_LABEL, np.int32)]),
                "word_ids": np.concatenate([encoded["word_ids"], np.full(len(tail), -1, np.int32)]),
                "tags": list(row["tags"])})
  return rows_to_dataset(out, TAGGED_TYPES)


QA_TYPES = {"inputs": tf.int32, "token_type_ids": tf.int32, "context_mask": tf.int32, "offsets": tf.int32,
            "start_position": tf.int32, "end_position": tf.int32, "example_index": tf.int32, "id": tf.string,
            "context": tf.string, "answers": tf.string}


def featurize_qa(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                 output_features: Mapping[str, seqio.Feature], stride: int = 128,
                 max_question_length: int = 64) -> tf.data.Dataset:
  """Questions {'id', 'question', 'context', 'answers' [A], 'answer_starts' [A], 'answer_ends' [A]} -> windows
  (qa.featurize: `[CLS] question [SEP] window [SEP]`, neighbours sharing `stride` context tokens) {'inputs' [T],
  'token_type_ids' [T], 'context_mask' [T], 'offsets' [T, 2], 'start_position', 'end_position',
  'example_index' (the question's index in the split), 'id', 'context', 'answers'}.

  Short inputs shrink the limits so a window always holds context: a question takes at most half the input and
  the stride at most half of what is left (stride 128 needs inputs >= 64 + 3 + 256, which 384 meets).
  """
  vocab = output_features["inputs"].vocabulary
  max_length = sequence_length["inputs"]
  examples = [qa.QAExample(row["id"], row["question"], row["context"], tuple(row["answers"]),
                           tuple(zip(row["answer_starts"], row["answer_ends"]))) for row in _materialize(dataset)]
  max_question_length = min(max_question_length, (max_length - 3) // 2)
  stride = min(stride, (max_length - max_question_length - 3) // 2)
  features = qa.featurize(examples, vocab, max_length, stride, max_question_length)
  return rows_to_dataset([{"inputs": f.input_ids, "token_type_ids": f.token_type_ids, "context_mask": f.context_mask,
                           "offsets": f.offsets, "start_position": f.start_position, "end_position": f.end_position,
                           "example_index": f.example_index, "id": examples[f.example_index].qid,
                           "context": examples[f.example_index].context,
                           "answers": list(examples[f.example_index].answers)} for f in features], QA_TYPES)


def qa_row(example: qa.QAExample, path=None) -> dict:
  """A QAExample -> the source row featurize_qa reads."""
  del path
  return {"id": example.qid, "question": example.question, "context": example.context,
          "answers": list(example.answers), "answer_starts": [s for s, _ in example.answer_spans],
          "answer_ends": [e for _, e in example.answer_spans]}


QA_ROW_TYPES = {"id": tf.string, "question": tf.string, "context": tf.string, "answers": tf.string,
                "answer_starts": tf.int32, "answer_ends": tf.int32}
