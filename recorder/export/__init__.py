"""Datasets for learning frameworks, made from recorded episodes: one module per target format behind one
small interface (recorder.export.base.Exporter), listed by name in recorder.export.registry.EXPORTERS.

    robomimic          recorder/export/robomimic.py         robomimic 0.3.0 HDF5
    diffusion-policy   recorder/export/diffusion_policy.py  diffusion_policy replay buffer (zarr format 2)

Shared by every format: which episodes (recorder.export.selection), how they fit in one dataset
(recorder.export.plan), the action spaces (recorder.export.actions), the train/validation split
(recorder.export.split), frame resizing and compression on one thread per core (recorder.export.frames),
and writing under a temporary name renamed once complete (recorder.export.output).
`recorder.export.registry.export_directory` does it all for a folder of episodes.
"""
