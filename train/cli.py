"""``reelforge train MODEL CONFIG [--set key=value …]`` and ``reelforge encode DATASET --vae … --out DIR``.

Model families register in ``TRAINERS``: name -> "module:function" taking (config path, overrides) and
returning an exit code. Modules load only when their command runs (``reelforge --help`` stays fast).
"""
from __future__ import annotations

import importlib
import sys

# name -> "module:function(config_path, overrides) -> int"
TRAINERS = {
    "vae": "reelforge.train.vae.run:train_vae",
    "dit": "reelforge.train.dit.cli:train_dit",
}


def cmd_train(args) -> int:
    module, func = TRAINERS[args.model].split(":")
    return int(getattr(importlib.import_module(module), func)(args.config, args.set) or 0)


def cmd_encode(args) -> int:
    from reelforge.train.encode import EncodeConfig, encode_dataset

    cfg = EncodeConfig(vae=args.vae, vae_kind=args.vae_kind, store=args.store, batch_size=args.batch_size,
                       where=args.where, device=args.device, dtype=args.dtype, num_workers=args.num_workers,
                       bucket_config=args.buckets or "")
    summary = encode_dataset(args.dataset, args.out, cfg)
    print(" ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list))))
    if summary["unbucketed"]:
        print(f"reelforge encode: {summary['unbucketed']} selected sample(s) fit no bucket of "
              f"{args.buckets or 'the index’s bucket table'} (too short or too small for every bucket; "
              f"`reelforge shards stats {args.dataset}` lists the buckets): pass --buckets with a table that fits them",
              file=sys.stderr)
    return 0 if summary["encoded"] else 1


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model on a dataset's shards (Ray Train)")
    t.add_argument("model", choices=sorted(TRAINERS), help="what to train")
    t.add_argument("config", help="training config YAML (configs/train/<model>/*.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("encode", help="pre-extract VAE latents of a dataset into latent shards")
    e.add_argument("dataset", help="dataset folder (index.parquet + shards/)")
    e.add_argument("--vae", required=True, help="VAE folder (reelforge export or diffusers) or hub id")
    e.add_argument("--vae-kind", default="auto", choices=["auto", "reelforge", "wan", "ltx"],
                   help="the VAE's format (auto: read from its folder)")
    e.add_argument("--out", required=True, help="output dataset folder")
    e.add_argument("--store", default="mean_std", choices=["mean_std", "sample"],
                   help="latents stored: posterior mean and std, or one sample")
    e.add_argument("--batch-size", type=int, default=4, help="clips per VAE call (default 4)")
    e.add_argument("--where", default=None, help="index filter, e.g. \"aesthetic >= 5\"")
    e.add_argument("--buckets", default=None, help="bucket table YAML (default: the index's)")
    e.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda")
    e.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on GPU, fp32 on CPU")
    e.add_argument("--num-workers", type=int, default=2, help="decoding processes ahead of the VAE (default 2)")
    e.set_defaults(func=cmd_encode)
