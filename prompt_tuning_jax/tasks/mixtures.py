"""seqio mixtures for multi-task prompts.

The trainer mixes a mixture's tasks in proportion to their sizes (one shuffled pool
of all training examples, each tagged with its task id), which is what
seqio.mixing_rate_num_examples describes; per-task rates other than that are not used.
"""

import seqio

from prompt_tuning_jax.tasks import classification  # pylint: disable=unused-import  (registers the tasks)

MIXTURES = {
    # Two classification tasks with signal at different scales: the smallest mixture that
    # exercises a shared prompt with per-task heads.
    "sst2_rte": ("sst2", "rte"),
}

for _name, _tasks in MIXTURES.items():
  seqio.MixtureRegistry.add(_name, list(_tasks), default_rate=seqio.mixing_rate_num_examples)
