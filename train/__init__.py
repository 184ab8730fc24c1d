"""Training: one shared trainer (``trainer.py``) that every model family plugs into through a
``TrainTask`` (``task.py``), launched on N workers by Ray Train (``launch.py``, the only module here
that touches Ray); the video VAE (``vae/``) and the diffusion transformer (``dit/``) are tasks.

The shard readers (``reelforge.shards.reader`` / ``.stream``) take ``rank``/``world_size`` as
arguments: the launcher passes ``ray.train.get_context()``'s values into the task's loader.
"""
