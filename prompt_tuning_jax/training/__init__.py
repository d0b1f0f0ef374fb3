"""The training core: one `fit` for every model of the contract (models/base.py), its steps, loop,
checkpoints, partitioning, export and metric writer. It imports the contract, never a backbone."""
