"""Behaviour cloning on recorded episodes, following the R3M protocol.

A frozen image encoder (`encoders.build_encoder`, a ResNet that loads R3M or torchvision checkpoints)
embeds one camera's frames (`features.load_features`, cached on disk); a small MLP (`policy.BCPolicy`)
maps the embedding and the joint positions to the action; `trainer.train` fits it with MSE and Adam and
saves a run directory that `runner.load_policy` turns back into a `PolicyRunner` for rollouts.

torch is an optional extra (`pip install 'teleop[train]'`). Importing this package, `trainer`, `runner`
and `features` never needs it; `encoders` and `policy` define torch modules and raise
MissingDependencyError with the install line when torch is missing.
"""
