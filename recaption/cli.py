"""``reelforge caption DATASET`` (a caption version for a built dataset) and ``reelforge caption-serve``
(the local captioner behind an OpenAI-compatible endpoint). ``add_parser`` is wired into reelforge/cli.py;
nothing heavy is imported until a command runs."""
from __future__ import annotations

import json
import sys

from reelforge.configs import CONFIG_DIR

DEFAULT_CONFIG = CONFIG_DIR / "caption" / "default.yaml"  # package data: in a wheel too


def add_upsample_arguments(parser) -> None:
    """--upsample, --upsample-model, --upsample-set (recaption/prompt_upsample.py reads them)."""
    parser.add_argument("--upsample", action="store_true",
                        help="rewrite each prompt into a dense caption with a text LLM before generating")
    parser.add_argument("--upsample-model", help="hub id or local path of the LLM (default: UpsampleConfig.model)")
    parser.add_argument("--upsample-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an UpsampleConfig key, e.g. generation.max_new_tokens=150")


def _config(args):
    from reelforge.config import load_config
    from reelforge.recaption.job import CaptionJobConfig
    return load_config(CaptionJobConfig, args.config, args.set)


def _check_dataset(dataset: str) -> None:
    """A URL that cannot work or a folder that is no dataset: one line (``--list`` printed no versions)."""
    from reelforge import storage
    storage.check_input_url(dataset)
    if not storage.exists(storage.join(dataset, "index.parquet")):
        raise FileNotFoundError(f"{dataset} is not a dataset (no index.parquet): a `reelforge build` output, "
                                f"or shards indexed with `reelforge shards index`")


def cmd_caption(args) -> int:
    from reelforge.shards import captions as store
    if args.list or args.make_default:
        _check_dataset(args.dataset)
    if args.list:
        listing = {"default": store.default_version(args.dataset), "versions": store.versions(args.dataset)}
        pending = store.not_imported_counts(args.dataset)
        if pending:  # a fresh build's sidecar captions: versions once a caption run imports them
            listing["in_shards_not_imported"] = pending
        print(json.dumps(listing, indent=2))
        return 0
    if args.make_default:
        try:
            store.set_default_version(args.dataset, args.make_default)
        except KeyError as exc:
            print(f"reelforge: {exc.args[0]}", file=sys.stderr)
            return 2
        print(f"default caption version of {args.dataset}: {args.make_default}")
        return 0
    cfg = _config(args)
    from reelforge.recaption.job import caption_dataset
    summary = caption_dataset(args.dataset, cfg.recaption, cfg.ray)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["failed"] < max(1, summary["todo"]) or not summary["todo"] else 1


def cmd_serve(args) -> int:
    from reelforge.recaption.captioner import Captioner
    from reelforge.recaption.serve import CaptionServer
    from reelforge.recaption.templates import load_template
    cfg = _config(args).recaption
    server = CaptionServer(Captioner(cfg.captioner, load_template(cfg.template)), args.host, args.port,
                           max_pixels=cfg.frames.max_pixels)
    print(f"serving {cfg.captioner.model} at {server.url}/chat/completions (Ctrl-C stops)", flush=True)
    server.start()
    try:
        server._threads[0].join()
    except KeyboardInterrupt:
        server.stop()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("caption", help="add a caption version to a built dataset with a vision-language model")
    p.add_argument("dataset", help="dataset dir or URL, e.g. s3://bucket/ds (with index.parquet and shards/)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="caption job YAML (configs/caption/default.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override, e.g. recaption.template=short-v1 or recaption.captioner.model=/models/qwen")
    p.add_argument("--list", action="store_true", help="list caption versions and the default, then exit")
    p.add_argument("--make-default", metavar="VERSION", help="name VERSION the dataset's default, then exit")
    p.set_defaults(func=cmd_caption)

    s = sub.add_parser("caption-serve", help="serve the local captioner as an OpenAI-compatible endpoint")
    s.add_argument("--config", default=str(DEFAULT_CONFIG), help="caption job YAML: the captioner and template served")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override, e.g. recaption.captioner.model=/models/qwen")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.set_defaults(func=cmd_serve)
