"""``reelforge report DATASET``: one self-contained HTML page on a built dataset's quality.

Reads what a build leaves behind (``clips.parquet``, ``videos.parquet``, ``summary.json``, ``config.yaml``,
``shards/*.tar`` for kept clips, ``_work/shards/*.tar`` for removed ones) and writes ``DATASET/report.html``
(inline CSS, inline SVG charts, JPEG thumbnails as ``data:`` URIs: no JavaScript, no network) and
``DATASET/report.json`` (the numbers behind it). Every part is optional: a missing file or column leaves
its section saying so, never a crash.

One module per job:

- ``numbers``: what is read, the thresholds (from the config), the funnel, the histograms
- ``plots``:   the SVG charts drawn from those numbers
- ``contact``: the contact sheet's clips and their thumbnails, decoded from the shards
- ``page``:    the HTML page and ``report.json``; ``write_report`` ties them together
"""
from reelforge.curate.report.page import run, write_report
from reelforge.curate.report_cli import add_parser

__all__ = ["add_parser", "run", "write_report"]
