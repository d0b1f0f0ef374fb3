"""seqio mixtures for multi-task prompts.

The trainer mixes a mixture's tasks in proportion to their sizes (one shuffled pool
of all training examples, each tagged with its task id), which is what
seqio.mixing_rate_num_examples describes; per-task rates other than that are not used.
A mixture's tasks share a head kind (families.py); tasks without a training split are
evaluated only (MRQA's out-of-domain sets), which needs the shared head of QA tasks.
"""

import seqio

# pylint: disable=unused-import  (they register the tasks)
from prompt_tuning_jax.tasks import classification, extractive_qa, ner, srl, superglue

MIXTURES = {
    # Two classification tasks with signal at different scales: the smallest mixture that
    # exercises a shared prompt with per-task heads.
    "sst2_rte": ("sst2", "rte"),
    # All eight SuperGLUE tasks; COPA's multiple-choice batches are batched apart from the others.
    "superglue": ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"),
    "ner": ("conll2003", "conll2004", "ontonotes", "wnut17"),
    "srl": ("conll2005", "conll2012"),
    # SQuAD 1.1 and 2.0 and MRQA's other in-domain sets (mrqa_squad is SQuAD 1.1 again).
    "qa": ("squad_v1", "squad_v2") + tuple(name for name, _, _ in extractive_qa.MRQA_IN_DOMAIN[1:]),
    "mrqa_in_domain": tuple(name for name, _, _ in extractive_qa.MRQA_IN_DOMAIN),
    # Domain transfer: train on SQuAD, evaluate on each out-of-domain set.
    "mrqa_squad_to_out_of_domain": ("mrqa_squad",) + tuple(name for name, _, _ in extractive_qa.MRQA_OUT_OF_DOMAIN),
}

for _name, _tasks in MIXTURES.items():
  seqio.MixtureRegistry.add(_name, list(_tasks), default_rate=seqio.mixing_rate_num_examples)
