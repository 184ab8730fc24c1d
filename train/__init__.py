"""Training (next on the roadmap): the video VAE and the diffusion transformer, launched with Ray Train.

The data side is ready: ``reelforge.shards.reader`` / ``reelforge.shards.stream`` yield fixed-shape
batches per bucket, equal in number on every rank, with ``state_dict()`` for mid-epoch resume, and take
``rank``/``world_size`` as arguments so the Ray Train launcher (the one module here that will touch
Ray) passes ``ray.train.get_context()``'s values in.
"""
