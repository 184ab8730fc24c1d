"""The quality report of a dataset on object storage (a moto S3 server): written into the bucket, or to a
local file, with the same numbers and thumbnails as the report of the same dataset on disk."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from reelforge import storage
from reelforge.curate.report import add_parser, write_report
from reelforge.storage import StorageError

_spec = importlib.util.spec_from_file_location(
    "report_fixtures", Path(__file__).resolve().parents[1] / "curate" / "test_report.py")
report_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_fixtures)


def _upload(local: Path, url: str) -> None:
    for f in sorted(local.rglob("*")):
        if f.is_file():
            storage.write_bytes_atomic(f"{url}/{f.relative_to(local).as_posix()}", f.read_bytes())


def _same_numbers(a: dict, b: dict) -> None:
    for key in ("notes", "summary", "funnel", "thresholds", "scores", "distributions", "inputs", "contact_sheet"):
        assert a[key] == b[key], key


@pytest.fixture
def datasets(s3, bucket, tmp_path) -> tuple[Path, str]:
    local = report_fixtures.make_dataset(tmp_path / "ds")
    url = f"s3://{bucket}/ds"
    _upload(local, url)
    return local, url


def test_report_of_an_s3_dataset_is_written_into_it(datasets):
    local, url = datasets
    assert write_report(url) == f"{url}/report.html"
    local_html = write_report(local)
    remote = json.loads(storage.read_bytes(f"{url}/report.json"))
    _same_numbers(remote, json.loads(local_html.with_suffix(".json").read_text()))
    assert remote["dataset"] == url
    page = report_fixtures.Page(storage.read_bytes(f"{url}/report.html").decode())
    local_page = report_fixtures.Page(local_html.read_text())
    assert page.imgs == local_page.imgs and sum(s.startswith("data:image/jpeg") for s in page.imgs) == 3
    assert page.svg_columns == local_page.svg_columns and not page.refs
    assert url in page.all_text


def test_report_command_reads_s3_and_writes_local_or_s3(datasets, tmp_path, capsys):
    _, url = datasets
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["report", url, "--out", str(tmp_path / "r" / "q.html"), "--per-group", "2"])
    assert args.func(args) == 0
    assert (tmp_path / "r" / "q.html").is_file() and (tmp_path / "r" / "q.json").is_file()
    other = f"{url}-reports/latest.html"
    args = parser.parse_args(["report", url, "--out", other])
    assert args.func(args) == 0
    assert f"report written to {other} (numbers in {url}-reports/latest.json)" in capsys.readouterr().out
    assert storage.exists(other) and json.loads(storage.read_bytes(f"{url}-reports/latest.json"))["dataset"] == url


def test_report_to_an_output_that_cannot_work_fails_before_reading(datasets):
    _, url = datasets
    with pytest.raises(StorageError, match="http:// is read-only"):
        write_report(url, "http://example.com/r.html")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(f"{url}/nothing-here")
    assert not storage.exists(f"{url}/report.html")
