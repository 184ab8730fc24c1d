"""Shards: the contract between curation and training (format in SPEC.md).

Read top to bottom: spec.py (names and fields) → writer.py (atomic tars) → tarscan.py (member offsets)
→ index.py + index_build.py + query.py (one parquet row per sample, its streamed build, SQL-ish selection) → buckets.py (shape table and the
assignment rule) → plan.py (equal batches per rank per epoch) → transform.py + members.py (decode, sample,
resize, crop) → reader.py (the trainer's IterableDataset and DataLoader, reading at index offsets) → stream.py (the
same batches from a WebDataset pipeline over any URL, for object storage) → interop.py / export.py /
verify.py / stats.py / cli.py (tools).
"""
