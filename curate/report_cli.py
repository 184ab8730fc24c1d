"""``reelforge report DATASET``: the parser, light to import (the report itself, with the stage list
and the scorers' modules behind its column names, is imported when the command runs)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="write DATASET/report.html: funnel, score histograms, contact sheet")
    p.add_argument("dataset", metavar="DATASET", help="a build's output directory, local or a URL (s3://bucket/ds)")
    p.add_argument("--out", default=None, help="HTML path or URL (default DATASET/report.html); report.json goes "
                                               "beside it")
    p.add_argument("--per-group", type=int, default=24, help="thumbnails per contact-sheet group")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from reelforge.curate.report import run as run_report

    return run_report(args)
