"""Mistakes a user makes with the ``reelforge`` command: each ends in one line that says what is wrong (exit
2), never a traceback, and writes nothing where it should not."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reelforge.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))
from shard_fixtures import write_captioned_dataset  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_captioned_dataset(tmp_path_factory.mktemp("ds") / "d", 2, 1, [3])


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No credential source botocore could find (env, files, instance metadata): it fails at signing, offline."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # an earlier test's filesystem would carry its credentials
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("argv", [["report", "s3://reelforge-test-no-creds/ds"],
                                  ["caption", "s3://reelforge-test-no-creds/ds", "--list"],
                                  ["shards", "stats", "s3://reelforge-test-no-creds/ds"],
                                  ["shards", "index", "s3://reelforge-test-no-creds/ds"]])
def test_a_bucket_without_credentials_is_one_line(no_aws_credentials, argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot reach bucket 'reelforge-test-no-creds'" in err and "Credentials" in err
    assert len(err.strip().splitlines()) == 1


def test_report_of_a_folder_that_is_no_build_output(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a dataset")
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a build output" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()  # it wrote an empty report and said it had


def test_caption_list_and_make_default_on_a_wrong_path_or_version(dataset, tmp_path, capsys):
    assert main(["caption", str(tmp_path / "missing"), "--list"]) == 2  # printed an empty version list
    assert "is not a dataset (no index.parquet)" in capsys.readouterr().err
    assert main(["caption", str(dataset), "--make-default", "v2"]) == 2  # a KeyError traceback
    assert capsys.readouterr().err.strip() == f"reelforge: no caption version 'v2' in {dataset} (have ['v1'])"
    assert main(["caption", str(dataset), "--make-default", "v1"]) == 0


def test_output_piped_into_a_reader_that_leaves_is_no_traceback(dataset):
    # `reelforge shards stats DIR | head -3`: head exits, the next write gets EPIPE
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from reelforge.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", "shards", "stats", str(dataset)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command has imported enough to print
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("model, says", [("nobody-here/no-such-vlm", "HF_HUB_OFFLINE is set"),
                                         ("/models/no-such-vlm", "is not a folder")])
def test_caption_with_a_model_this_machine_cannot_load_stops_before_ray(dataset, model, says, monkeypatch, capsys):
    # the README's default model on a box without the hub: every caption actor retried for minutes, then a traceback
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["caption", str(dataset), "--set", f"recaption.captioner.model={model}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"reelforge: config error: recaption.captioner.model: {model} ") and says in err
    assert len(err.splitlines()) == 1
    import ray
    assert not ray.is_initialized()


def test_ctrl_c_ends_in_one_line_saying_how_to_resume():
    # a build interrupted with Ctrl-C printed a KeyboardInterrupt traceback from inside ray.wait
    code = ("import sys, reelforge.cli as cli\n"
            "def interrupted(args): raise KeyboardInterrupt\n"
            "cli.cmd_samples = interrupted\n"
            "sys.exit(cli.main(['samples', 'unused']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 130, out.stderr
    assert out.stderr.startswith("reelforge: interrupted.") and "same command resumes" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def _subparsers(parser, path=()):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subparsers(sub, (*path, name))


def test_every_option_of_every_command_says_what_it_is():
    # `reelforge demo --help` listed --output, --config, --preset and --set with no word about them
    from reelforge.cli import build_parser
    bare = [f"reelforge {' '.join(path)} {a.option_strings[0] if a.option_strings else a.dest}"
            for path, sub in _subparsers(build_parser()) for a in sub._actions
            if a.dest != "help" and not a.help and type(a).__name__ != "_SubParsersAction"]
    assert bare == []


def test_starting_a_local_ray_says_so_before_the_wait(monkeypatch, capsys):
    # the first line of a build came after Ray had started: 30-40 s of silence on a loaded machine
    import ray

    from reelforge import cluster

    class Started(Exception):
        pass

    def init(**kwargs):
        assert "starting a local Ray" in capsys.readouterr().err
        raise Started

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(Started):
        cluster.init_ray(cluster.RayConfig())


def test_refilter_without_a_config_takes_the_outputs_own(tmp_path, monkeypatch, capsys):
    # a demo-built output refiltered as the README shows it was refused: the shipped default.yaml's split
    # and transcode differ from the demo's ("settings that change the clips")
    from reelforge.config import dump_config
    from reelforge.configs import CONFIG_DIR
    from reelforge.curate import pipeline
    from reelforge.curate.pipeline import BuildConfig

    cfg = BuildConfig()
    cfg.curate.split.min_seconds, cfg.curate.transcode.max_side = 0.8, 640
    dump_config(cfg, tmp_path / "config.yaml")
    seen = []
    monkeypatch.setattr(pipeline, "run_refilter", lambda out, c: seen.append(c))
    assert main(["build", "--output", str(tmp_path), "--refilter", "--set", "curate.filters.motion.min_motion=0.001"]) == 0
    (got,) = seen
    assert (got.curate.split.min_seconds, got.curate.transcode.max_side) == (0.8, 640)
    assert got.curate.filters.motion.min_motion == 0.001
    assert f"settings from {tmp_path / 'config.yaml'}" in capsys.readouterr().err
    # a CONFIG given is used as given
    given = tmp_path / "given.yaml"
    given.write_text((CONFIG_DIR / "build" / "default.yaml").read_text())
    assert main(["build", str(given), "--output", str(tmp_path), "--refilter"]) == 0
    assert seen[1].curate.split.min_seconds == 1.0
