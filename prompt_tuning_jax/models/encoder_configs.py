"""A Hugging Face encoder's config.json as BertConfig's arguments, read by its `model_type`.

Each supported model type names its own keys (DistilBERT's `dim`, `n_layers`, ... are BERT's
`hidden_size`, `num_hidden_layers`, ...). A key that is neither read nor known to leave the
encoder's forward pass unchanged (ids of special tokens, head and initialisation settings,
library bookkeeping) is an error naming it, as is an unknown model type: silently falling back to
another architecture's defaults would build a model of the wrong size.
"""

from typing import Dict

from prompt_tuning_jax import errors

_BERT_KEYS = {k: k for k in (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "pad_token_id")}
_DISTILBERT_KEYS = {
    "vocab_size": "vocab_size", "dim": "hidden_size", "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads", "hidden_dim": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings", "activation": "hidden_act",
    "dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob",
    "pad_token_id": "pad_token_id"}

# model_type -> (its config keys -> BertConfig fields, fixed BertConfig fields).
MODEL_TYPES = {
    "bert": (_BERT_KEYS, {}),
    "roberta": (_BERT_KEYS, {}),
    "xlm-roberta": (_BERT_KEYS, {}),
    "camembert": (_BERT_KEYS, {}),
    "electra": ({**_BERT_KEYS, "embedding_size": "embedding_size"}, {"has_pooler": False}),
    # DistilBERT: no token types, no pooler; LayerNorm eps 1e-12 (BertConfig's default) is fixed in its code.
    "distilbert": (_DISTILBERT_KEYS, {"has_pooler": False, "type_vocab_size": 0}),
}
_POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert")  # real tokens start at pad_token_id + 1

# Keys that do not change the encoder's forward pass: library bookkeeping, special-token ids,
# initialisation, task heads (not loaded), generation and export flags.
_NEUTRAL_KEYS = frozenset((
    "_name_or_path", "architectures", "transformers_version", "model_type", "torch_dtype", "dtype",
    "gradient_checkpointing", "initializer_range", "initializer_factor", "use_cache", "classifier_dropout",
    "id2label", "label2id", "num_labels", "problem_type", "finetuning_task", "bos_token_id", "eos_token_id",
    "sep_token_id", "cls_token_id", "unk_token_id", "mask_token_id", "decoder_start_token_id",
    "tie_word_embeddings", "output_hidden_states", "output_attentions", "return_dict", "pruned_heads",
    "chunk_size_feed_forward", "is_encoder_decoder", "tokenizer_class", "prefix", "task_specific_params",
    "torchscript", "use_bfloat16", "tf_legacy_loss", "output_past", "directionality", "pooler_fc_size",
    "pooler_num_attention_heads", "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type",
    # ELECTRA's and DistilBERT's heads (sequence summary, QA, classifier dropout); DistilBERT's weight tying
    # of its MLM head; sinusoidal position tables are stored in the weights like learned ones.
    "summary_type", "summary_use_proj", "summary_activation", "summary_last_dropout", "qa_dropout",
    "seq_classif_dropout", "tie_weights_", "sinusoidal_pos_embds"))
# Keys whose value must be the one this encoder implements.
_REQUIRED_VALUES = {"position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False}


def bert_config_kwargs(d: Dict[str, object]) -> Dict[str, object]:
  """A Hugging Face encoder config dict -> BertConfig's keyword arguments; errors.CheckpointError for an
  unknown model_type, unknown keys or values this encoder does not implement. A config without model_type
  is read as BERT."""
  model_type = d.get("model_type") or "bert"
  if model_type not in MODEL_TYPES:
    raise errors.CheckpointError(
        f"config.json has model_type {model_type!r}, which the encoder loader does not read; supported: "
        f"{sorted(MODEL_TYPES)} (T5 checkpoints go to the T5 trainer, gin/models/).")
  keys, fixed = MODEL_TYPES[model_type]
  unknown = sorted(k for k in d if k not in keys and k not in _NEUTRAL_KEYS and k not in _REQUIRED_VALUES)
  if unknown:
    raise errors.CheckpointError(
        f"config.json (model_type {model_type!r}) has keys the encoder loader does not know: {unknown}. They may "
        f"change the architecture; a {model_type} config is read through {sorted(keys)}. Use a checkpoint of a "
        "supported model type, or remove the keys if they do not change the model.")
  wrong = {k: d[k] for k, v in _REQUIRED_VALUES.items() if k in d and d[k] != v}
  if wrong:
    raise errors.CheckpointError(f"config.json sets {wrong}; the encoder implements only "
                                 f"{ {k: _REQUIRED_VALUES[k] for k in wrong} }.")
  kwargs = {field: d[key] for key, field in keys.items() if key in d}
  if model_type in _POSITION_OFFSET_TYPES:
    kwargs["position_id_offset"] = d.get("pad_token_id", 1) + 1
  return {**kwargs, **fixed, "model_type": model_type}
