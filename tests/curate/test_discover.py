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
