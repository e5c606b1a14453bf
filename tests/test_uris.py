"""Paths joined onto URIs keep the URI's options; URIs pyarrow refuses, or that carry a
secret, are one line. (Against real stores: test_object_storage.py.)"""

from __future__ import annotations

import shlex

import pyarrow.fs as pafs
import pytest

from tune_selcopy import run, trial_logs, uris
from tune_selcopy.errors import UserError
from tune_selcopy.sweeps import folder

S3 = "s3://sweeps/x?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1"


@pytest.mark.parametrize(
    "base, parts, joined",
    [
        (S3, ("run", "logs"), "s3://sweeps/x/run/logs?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1"),
        ("gs://anonymous@b/x?scheme=http", ("y",), "gs://anonymous@b/x/y?scheme=http"),
        ("s3://b", ("y",), "s3://b/y"),
        ("/data/what?/runs", ("y",), "/data/what?/runs/y"),  # a local path: '?' is part of a name
    ],
)
def test_joins_go_before_the_query(base, parts, joined):
    assert uris.join(base, *parts) == joined


def test_every_path_of_a_sweep_keeps_the_options():
    settings = folder.SweepSettings(space="attn_act", name="run", storage=S3, trials=1, max_inputs=None,
                                    val_count=None, cpus_per_trial=1.0, gpus_per_trial=0.0, max_concurrent=None)
    logs = trial_logs.logs_uri(settings.storage, settings.name)
    paths = [folder.experiment_uri(settings), logs, trial_logs.row_file(logs, "t1", 3)]
    for path in paths:
        fs, where = uris.resolve(path)
        assert (fs.region, where.split("/")[:3]) == ("us-east-1", ["sweeps", "x", "run"])
    assert trial_logs.row_file(logs, "t1", 3) == (
        "s3://sweeps/x/run/logs/t1/validation-003.parquet?endpoint_override=127.0.0.1:9000&scheme=http&region=us-east-1"
    )
    hint = run._resume_hint(settings)
    assert shlex.split(hint)[-2:] == ["--storage", S3]  # pasted into a shell, the URI stays whole


@pytest.mark.parametrize(
    "uri, message",
    [
        ("s3://b/x?bogus=1", "cannot open s3://b/x?bogus=1: Unexpected query parameter in S3 URI: 'bogus'"),
        ("gs://b/x?anonymous=true", "cannot open gs://b/x?anonymous=true: Unexpected query parameter in GCS URI: "
                                    "'anonymous'"),
        ("s3://b/x?allow_bucket_creation=maybe", "cannot open s3://b/x?allow_bucket_creation=maybe: String is not a "
                                                 "valid boolean value: 'maybe'."),
        ("nope://b/x", "cannot open nope://b/x: Unrecognized filesystem type in URI: nope://b/x"),
        ("s3://AKIAX:hunter2@b/x", "s3://***@b/x: a URI must not carry a secret (it is saved with the sweep and "
                                   "printed); give credentials through the environment, e.g. AWS_ACCESS_KEY_ID and "
                                   "AWS_SECRET_ACCESS_KEY"),
        # the host starts after the last "@": nothing of a secret holding one is printed
        ("s3://AKIAX:se@cret@b/x?region=r", "s3://***@b/x?region=r: a URI must not carry a secret (it is saved "
                                            "with the sweep and printed); give credentials through the environment, "
                                            "e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_uris_pyarrow_refuses_or_with_secrets_are_one_line(uri, message):
    with pytest.raises(UserError) as refused:
        uris.resolve(uri)
    assert str(refused.value) == message


def test_make_dirs_locally_is_mkdir_p(tmp_path):
    uris.make_dirs(pafs.LocalFileSystem(), str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize("uri", ["s3://b/x/curves.png?endpoint_override=h:9000&scheme=http", "/a/b/curves.png",
                                 "gs://b/curves.png"])
def test_a_file_next_to_another_keeps_the_uris_options(uri):
    from tune_selcopy.analysis.plots import intervals_file

    assert uris.join(*uris.split_name(uri)) == uri
    folder, name = uris.split_name(uri)
    assert name == "curves.png" and intervals_file(uri) == uris.join(folder, "intervals.png")
    assert intervals_file(uri).endswith(uri.partition("?")[2])
