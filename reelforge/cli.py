"""``reelforge`` — one command, subcommands for each job.

    reelforge demo [--output DIR]                   sample videos → build, on a local Ray
    reelforge build CONFIG --input IN --output DIR [--set key=value …] [--refilter | --rebuild]
    reelforge scenes VIDEO… [--detector content|transnetv2] [--json]
    reelforge shards verify|stats|import|export …
    reelforge report DATASET                        self-contained HTML quality report
    reelforge samples OUT_DIR [--preset demo|test]
    reelforge generate --checkpoint RUN/export --prompt TEXT --out DIR   text → video with a trained DiT
    reelforge train vae CONFIG [--set key=value …]   the video VAE on Ray Train
    reelforge encode DATASET --vae VAE --out DIR     pre-extract latents into latent shards

The same commands run unchanged under ``ray job submit -- reelforge …``.
"""
from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from reelforge.config import ConfigError, load_config
from reelforge.configs import CONFIG_DIR

# the shipped configs are package data (configs/__init__.py): found in an installed wheel as in a checkout
DEFAULT_BUILD_CONFIG = CONFIG_DIR / "build" / "default.yaml"


def _load_build_config(path, overrides):
    from reelforge.curate.pipeline import BuildConfig

    return load_config(BuildConfig, path, overrides)


def _refilter_config(args):
    """``--refilter`` with no CONFIG re-decides with the output's own settings (its ``config.yaml``): the
    shipped default differs from what a demo or a tuned build used, and was refused as "settings that
    change the clips"."""
    from reelforge import storage

    path = storage.join(args.output, "config.yaml")
    if not storage.exists(path):
        return _load_build_config(str(DEFAULT_BUILD_CONFIG), args.set)
    print(f"reelforge build --refilter: settings from {path}", file=sys.stderr)
    with storage.local_source(path) as local:
        return _load_build_config(local, args.set)


def cmd_build(args) -> int:
    if args.refilter and args.config == str(DEFAULT_BUILD_CONFIG):  # no CONFIG given
        cfg = _refilter_config(args)
    else:
        cfg = _load_build_config(args.config, args.set)
    if args.refilter:
        if args.input or args.rebuild:
            raise ConfigError("--refilter re-decides an existing dataset: it takes no --input and no --rebuild")
        from reelforge.curate.pipeline import run_refilter

        run_refilter(args.output, cfg)
        return 0
    if not args.input:
        raise ConfigError("--input is required (a folder, a glob, @list.txt or an fsspec URL)")
    from reelforge.curate.pipeline import run_build

    summary = run_build(args.input, args.output, cfg, refresh=args.refresh, rebuild=args.rebuild)
    return 0 if summary["inputs"] else 1


def cmd_samples(args) -> int:
    from reelforge.samples import generate_samples

    paths = generate_samples(args.out_dir, preset=args.preset, seed=args.seed)
    for p in paths:
        print(p)
    return 0


def cmd_demo(args) -> int:
    """The README's main job: generate sample videos, then build a dataset from them on a local Ray."""
    from reelforge.curate.pipeline import run_build
    from reelforge.samples import generate_samples

    out = Path(args.output)
    raw = out / "raw"
    print(f"generating sample videos in {raw} …")
    generate_samples(raw, preset=args.preset)
    cfg = _load_build_config(args.config, args.set)
    run_build([str(raw)], out / "dataset", cfg, rebuild=args.rebuild)
    print(f"\ndataset written to {out / 'dataset'}  (videos.parquet, clips.parquet, shards/)")
    if args.train_minutes > 0:
        # the other half of the loop: (the tiny VAE, --vae-minutes) → attribute clips → latent shards →
        # DiT trained on CPU → generated videos of held-out (colour, direction) pairs, scored by a pixel oracle
        from reelforge.train.dit.demo import run_demo_t2v

        t2v = run_demo_t2v(out, train_minutes=args.train_minutes, vae_minutes=args.vae_minutes)
        print(f"text-to-video: {t2v['steps']} steps in {t2v['train_seconds']:.0f}s; held-out prompts: colour "
              f"{t2v['color_acc']:.0%}, direction {t2v['direction_acc']:.0%} (chance 25% each); "
              f"videos in {out / 't2v' / 'index.html'}, overview in {out / 'index.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reelforge", description="Open video-data engine for text-to-video models.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="curate raw videos into WebDataset shards")
    b.add_argument("config", nargs="?", default=str(DEFAULT_BUILD_CONFIG),
                   help="build config YAML (default: the shipped default.yaml; with --refilter, the output's config.yaml)")
    b.add_argument("--input", "-i", action="append", help="folder, glob, @list.txt or URL (repeatable)")
    b.add_argument("--output", "-o", required=True, help="dataset directory")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    b.add_argument("--refilter", action="store_true",
                   help="re-apply filter thresholds to an existing dataset (statuses, shards, index, summary, report)")
    b.add_argument("--rebuild", action="store_true",
                   help="redo the work whose settings changed since the output was built (or all of it)")
    b.add_argument("--refresh", action="store_true", help="re-probe and re-split every input")
    b.set_defaults(func=cmd_build)

    d = sub.add_parser("demo", help="generate sample videos and build a dataset from them")
    d.add_argument("--output", "-o", default="out/demo",
                   help="folder for raw/ (the sample videos), dataset/, t2v/ and index.html (default out/demo)")
    d.add_argument("--config", default=str(CONFIG_DIR / "build" / "demo.yaml"),
                   help="build config YAML (default configs/build/demo.yaml)")
    d.add_argument("--preset", default="demo", choices=["demo", "test"],
                   help="sample set: demo (8 videos, 3-6 s) or test (4 tiny videos of 2-3 s, for the tests)")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a build config key")
    d.add_argument("--train-minutes", type=float, default=1.5, dest="train_minutes",
                   help="CPU minutes for the text-to-video DiT (0: dataset only; 30: a better-trained run)")
    d.add_argument("--vae-minutes", type=float, default=0.0, dest="vae_minutes",
                   help="CPU minutes for the tiny VAE the DiT's latents come from (0: 4x-pooled pixels instead)")
    d.add_argument("--rebuild", action="store_true", help="redo work whose settings changed since the last demo")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("samples", help="write the deterministic sample videos with ground truth")
    s.add_argument("out_dir", help="folder for the videos and their JSON sidecars (true cuts, description)")
    s.add_argument("--preset", default="demo", choices=["demo", "test"],
                   help="demo (8 videos, 3-6 s) or test (4 tiny videos of 2-3 s, for the tests)")
    s.add_argument("--seed", type=int, default=0, help="noise and texture seed (same seed, same bytes)")
    s.set_defaults(func=cmd_samples)

    from reelforge.curate.report_cli import add_parser as add_report
    from reelforge.curate.scenes.cli import add_parser as add_scenes
    from reelforge.recaption.cli import add_parser as add_caption
    from reelforge.shards.cli import add_parser as add_shards

    add_scenes(sub)
    add_shards(sub)
    add_report(sub)
    from reelforge.train.dit.cli import add_parser as add_generate

    add_generate(sub)
    from reelforge.train.cli import add_parser as add_train

    add_train(sub)
    add_caption(sub)
    return p


# the output cannot take more: disk full, over quota, read-only, not permitted
_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _output_error(exc: OSError, output: str | None) -> str:
    """One line for a write that failed: the path, the OS error, what the output holds, how to go on."""
    from reelforge.shards.writer import ShardWriteError

    msg = str(exc) if isinstance(exc, ShardWriteError) else f"cannot write {exc.filename or '?'}: {exc.strerror}"
    if output and Path(output).is_dir():
        msg += f" ({sum(1 for _ in Path(output).rglob('*.tar'))} committed .tar file(s) under {output})"
    return msg + "; free space or fix permissions and run the same command again to resume"


def _storage_error():
    from reelforge.storage import StorageError  # fsspec: ~0.15 s of every command's start-up otherwise

    return StorageError


def _build_state_error():
    from reelforge.curate.buildstate import BuildStateError  # imports fsspec too

    return BuildStateError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: the commands clean up on the way out (a build kills its tasks, drops
        # uncommitted work); what the user needs is how to go on, not the stack of wherever the signal landed
        print("reelforge: interrupted. What was committed is kept: the same command resumes a build or a caption "
              "run (a training run with --set trainer.resume=latest)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `reelforge shards stats DIR | head`: the reader left, which is no error of ours
        # Python would report the pipe again when it flushes stdout at exit: point stdout at nothing first
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConfigError as exc:
        print(f"reelforge: config error: {exc}", file=sys.stderr)
        return 2
    except _storage_error() as exc:  # an input or output URL that cannot work, found before any work
        # (an except clause's class is evaluated only when an exception reaches it: no import otherwise)
        print(f"reelforge: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"reelforge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            raise
        print(f"reelforge: {_output_error(exc, getattr(args, 'output', None))}", file=sys.stderr)
        return 3
    except _build_state_error() as exc:  # raised before any work: the output is untouched
        print(f"reelforge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
