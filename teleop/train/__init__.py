"""Behaviour cloning on recorded episodes, following the R3M protocol.

A frozen image encoder (`encoders.build_encoder`: a ResNet that loads R3M or torchvision checkpoints, or a
ViT that loads MAE or MVP checkpoints) embeds one camera's frames (`features.load_features`, cached on
disk); a small MLP (`policy.BCPolicy`) maps the embedding and what the action space lets it see of the robot
to the action space's target (`actions`: recorded joint targets, or the commanded end-effector motion that
the IK follows at run time); `trainer.train` fits it with MSE and Adam and saves a run directory that
`runner.load_policy` turns back into a `PolicyRunner` for rollouts.

torch is an optional extra (`pip install 'teleop[train]'`). Importing this package, `trainer`, `runner`
and `features` never needs it; `encoders` and `policy` define torch modules and raise
MissingDependencyError with the install line when torch is missing.
"""
