import os

import pytest

from reelforge.curate.discover import DiscoverConfig, discover


def _touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_folder_glob_and_list_file(tmp_path):
    a = _touch(tmp_path / "raw" / "a.mp4")
    b = _touch(tmp_path / "raw" / "sub" / "b.MKV")
    _touch(tmp_path / "raw" / "a.txt")          # sidecar caption: not an input
    _touch(tmp_path / "raw" / "a.json")         # sidecar ground truth: not an input
    junk = _touch(tmp_path / "raw" / "notes.bin")  # unknown: still an input, so it gets a failed row
    assert discover([str(tmp_path / "raw")]) == sorted(map(str, [a, b, junk]))
    assert discover([str(tmp_path / "raw")], DiscoverConfig(include="video")) == sorted(map(str, [a, b]))
    assert discover([str(tmp_path / "raw" / "*.mp4")]) == [str(a)]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# inputs\n{a}\n{b}\n")
    assert discover([f"@{lst}"]) == sorted(map(str, [a, b]))


def test_fsspec_url_same_code(tmp_path):
    a = _touch(tmp_path / "raw" / "a.mp4")
    assert discover([f"file://{tmp_path / 'raw'}"]) == [str(a)]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="input not found"):
        discover([str(tmp_path / "nope")])


def test_every_named_entry_is_an_input_or_a_skip_with_a_reason(tmp_path):
    from reelforge.curate.discover import discover_inputs

    raw = tmp_path / "raw"
    good = _touch(raw / "good.mp4")
    (raw / "x.mp4").mkdir()                                   # a directory named like a video
    (raw / "broken.mp4").symlink_to(tmp_path / "gone.mp4")    # a broken symlink
    linked = raw / "sub" / "linked.mp4"
    linked.parent.mkdir()
    linked.symlink_to(good)                                   # a working symlink is an input
    os.mkfifo(raw / "pipe.mp4")                               # not a regular file
    (raw / ".hidden.mp4").symlink_to(tmp_path / "gone")       # hidden: skipped silently, as hidden files are
    lst = tmp_path / "list.txt"
    lst.write_text(f"{good}\n{tmp_path / 'missing.mp4'}\n")
    found = discover_inputs([str(raw), str(tmp_path / "none*.mp4"), f"@{lst}", str(tmp_path / "typo"),
                             f"@{tmp_path / 'nolist.txt'}"])
    assert found.paths == sorted([str(good), str(linked)])
    reasons = {s["path"]: s["reason"] for s in found.skipped}
    assert all(s["status"] == "failed" for s in found.skipped)
    assert reasons == {
        str(raw / "x.mp4"): "discover: is a directory, not a video file",
        str(raw / "broken.mp4"): f"discover: broken symlink (points to {tmp_path / 'gone.mp4'}, which does not exist)",
        str(raw / "pipe.mp4"): "discover: not a regular file (a fifo, socket or device)",
        str(tmp_path / "none*.mp4"): "discover: glob matches no file",
        str(tmp_path / "missing.mp4"): f"discover: not found (listed in {lst} line 2)",
        str(tmp_path / "typo"): "discover: not found",
        f"@{tmp_path / 'nolist.txt'}": reasons[f"@{tmp_path / 'nolist.txt'}"],
    }
    assert reasons[f"@{tmp_path / 'nolist.txt'}"].startswith("discover: cannot read list file: FileNotFoundError")


def test_explicit_entries_that_are_no_file(tmp_path, monkeypatch):
    from reelforge.curate.discover import discover_inputs

    good = _touch(tmp_path / "good.mp4")
    (tmp_path / "dir.mp4").mkdir()                      # an explicit folder is a folder input: empty → skipped
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    secret = _touch(tmp_path / "secret.mp4")
    # tests run as root, which reads any file: pretend the permission check fails for one file
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: p != str(secret) and real_access(p, mode))
    found = discover_inputs([str(good), str(tmp_path / "dir.mp4"), str(tmp_path / "dangling.mp4"), str(secret)])
    assert found.paths == [str(good)]
    assert [(s["path"].rsplit("/", 1)[1], s["reason"]) for s in found.skipped] == [
        ("dir.mp4", "discover: folder holds no input file"),
        ("dangling.mp4", f"discover: broken symlink (points to {tmp_path / 'nowhere.mp4'}, which does not exist)"),
        ("secret.mp4", "discover: not readable (permission denied)"),
    ]


def test_nothing_found_at_all_is_an_error_listing_why(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"input not found: .*nope\*\.mp4: glob matches no file"):
        discover([str(tmp_path / "nope*.mp4")])
