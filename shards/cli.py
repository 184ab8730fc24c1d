"""``reelforge shards {index,verify,stats,import,export}``. ``add_parser`` is wired into reelforge/cli.py."""
from __future__ import annotations

import argparse
import json
import sys

import yaml


def _buckets(path: str | None):
    from reelforge.config import load_config
    from reelforge.shards.buckets import BucketTable
    return load_config(BucketTable, path) if path else None


def _cmd_index(args) -> int:
    from reelforge import storage
    from reelforge.shards.index import build_index
    storage.check_input_url(args.dataset)  # a bucket without credentials: one line, not the SDK's traceback
    print(build_index(args.dataset, _buckets(args.buckets)))
    return 0


def _cmd_verify(args) -> int:
    from reelforge.shards.verify import verify_dataset
    report = verify_dataset(args.dataset, decode=not args.no_decode, full_decode=not args.fast)
    for err in report.errors:
        print(f"ERROR {err}", file=sys.stderr)
    print(f"{'OK' if report.ok else 'FAILED'}: {report.shards} shards, {report.samples} samples, "
          f"{report.members} members, {report.known_failed} recorded as failed, {len(report.errors)} errors")
    return 0 if report.ok else 1


def _cmd_stats(args) -> int:
    from reelforge import storage
    from reelforge.shards.stats import dataset_stats
    storage.check_input_url(args.dataset)
    stats = dataset_stats(args.dataset, _buckets(args.buckets))
    print(json.dumps(stats, indent=2) if args.json else yaml.safe_dump(stats, sort_keys=False))
    return 0


def _cmd_import(args) -> int:
    from reelforge.shards.interop import import_shards
    summary = import_shards(args.source, args.out, copy=args.copy, buckets=_buckets(args.buckets))
    print(yaml.safe_dump(summary, sort_keys=False))
    return 0


def _cmd_export(args) -> int:
    from reelforge.shards.export import export_shards
    summary = export_shards(args.dataset, args.out, where=args.where, buckets=_buckets(args.buckets),
                            target_bytes=args.target_mb * 2**20, caption_version=args.caption_version)
    print(yaml.safe_dump(summary, sort_keys=False))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("shards", help="index, check, inspect, import and export WebDataset shards")
    sub = p.add_subparsers(dest="shards_cmd", required=True)

    q = sub.add_parser("index", help="scan DIR/shards/*.tar (+ DIR/clips.parquet) -> DIR/index.parquet")
    q.add_argument("dataset", help="dataset dir (with shards/)")
    q.add_argument("--buckets", help="bucket table YAML (default: the built-in table)")
    q.set_defaults(func=_cmd_index)

    q = sub.add_parser("verify", help="every member readable and decodable, shards match the index")
    q.add_argument("dataset", help="dataset dir or index.parquet")
    q.add_argument("--fast", action="store_true", help="probe videos instead of decoding every frame")
    q.add_argument("--no-decode", action="store_true", help="only check tar structure against the index")
    q.set_defaults(func=_cmd_verify)

    q = sub.add_parser("stats", help="counts, buckets, hours, captions and numeric-column summaries from the index")
    q.add_argument("dataset", help="dataset dir or URL (with index.parquet)")
    q.add_argument("--buckets", help="preview another bucket table YAML")
    q.add_argument("--json", action="store_true", help="JSON instead of YAML")
    q.set_defaults(func=_cmd_stats)

    q = sub.add_parser("import", help="index shards made by video2dataset or img2dataset into a dataset dir")
    q.add_argument("source", nargs="+", help="tar files or folders holding them")
    q.add_argument("--out", required=True, help="dataset dir to create (shards are symlinked unless --copy)")
    q.add_argument("--copy", action="store_true", help="copy the tars instead of linking them")
    q.add_argument("--buckets", help="bucket table YAML")
    q.set_defaults(func=_cmd_import)

    q = sub.add_parser("export", help="write a bucket-grouped training shard set from an index query")
    q.add_argument("dataset", help="dataset dir or URL (with index.parquet)")
    q.add_argument("--out", required=True, help="new dataset dir or URL for the exported shards")
    q.add_argument("--where", help="filter, e.g. \"aesthetic >= 5 AND duration_s BETWEEN 2 AND 8\"")
    q.add_argument("--buckets", help="bucket table YAML (default: the table the index was built with)")
    q.add_argument("--target-mb", type=int, default=256, help="shard size in MiB (default 256)")
    q.add_argument("--caption-version", help="caption version written as <key>.txt (default: the dataset's default; "
                                             "every version goes into the JSON 'captions' object)")
    q.set_defaults(func=_cmd_export)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m reelforge.shards.cli``) until reelforge/cli.py wires add_parser in."""
    parser = argparse.ArgumentParser(prog="reelforge")
    add_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
