"""Recaptioning (next on the roadmap): a vision-language model writes dense captions per clip.

Seams already in place: clips are re-read from shards by ``clip_id`` through ``index.parquet``
(no re-curation), ``clips.parquet`` carries ``caption`` and ``caption_source`` (today: ``sidecar``
captions found next to input videos), and the readers choose a caption version via
``ReaderConfig.caption_version``. A recaption job adds a version; it never overwrites one.
"""
