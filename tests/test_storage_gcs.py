"""Cloud Storage against gcp-storage-emulator on 127.0.0.1 (the real google-cloud-storage client,
no mock): URI parsing, upload with size/crc32c verification, prepare --gcs-prefix, reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import dataset, storage, synth
from routerlib.cli import main
from routerlib.errors import InputError, RemoteError
from tests.support import gcs_emulator as emulator_support

gcs_emulator = emulator_support.gcs_emulator  # the fixture

pytestmark = pytest.mark.wire


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("gs://bucket", ("bucket", "")),
        ("gs://bucket/", ("bucket", "")),
        ("gs://my-bucket.data/a/b/", ("my-bucket.data", "a/b")),
        ("gs://b_1/x.jsonl", ("b_1", "x.jsonl")),
    ],
)
def test_parse_gcs_uri(uri: str, expected: tuple[str, str]) -> None:
    assert storage.parse_gcs_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "gs:/x",
        "gs://",
        "s3://bucket/x",
        "bucket/x",
        "gs:///x",
        "gs://ab/x",
        "gs://Bucket/x",
        "gs://bucket//x",
        " gs://bucket/x",
        "gs://bucket/../x",
        "gs://-bucket/x",
        "gs:bucket",
    ],
)
def test_malformed_uris(uri: str) -> None:
    with pytest.raises(InputError, match="bad Cloud Storage URI"):
        storage.parse_gcs_uri(uri)


def test_upload_verify_exists_and_read(gcs_emulator, tmp_path: Path) -> None:
    gcs_emulator.make_bucket("data-bucket")
    local = tmp_path / "x.jsonl"
    local.write_text("".join(f'{{"i": {i}, "t": "café"}}\n' for i in range(2000)), encoding="utf-8")
    uri = storage.upload_file(local, "gs://data-bucket/runs/x.jsonl")
    assert uri == "gs://data-bucket/runs/x.jsonl"
    assert storage.exists(uri) and not storage.exists("gs://data-bucket/runs/y.jsonl")
    assert storage.read_text(uri) == local.read_text(encoding="utf-8")
    assert list(storage.open_text(uri)) == list(storage.open_text(local))
    blob = gcs_emulator.client().bucket("data-bucket").get_blob("runs/x.jsonl")
    assert blob.size == local.stat().st_size and blob.crc32c == storage.file_crc32c(local)

    # Verification is real: an object whose bytes differ (same size) is caught.
    tampered = local.read_bytes().replace(b"caf\xc3\xa9", b"CAF\xc3\xa9", 1)
    gcs_emulator.client().bucket("data-bucket").blob("runs/x.jsonl").upload_from_string(tampered)
    with pytest.raises(RemoteError, match="crc32c"):
        storage.verify_upload(local, uri)
    gcs_emulator.client().bucket("data-bucket").blob("runs/x.jsonl").upload_from_string(b"short")
    with pytest.raises(RemoteError, match="size 5 != local"):
        storage.verify_upload(local, uri)


def test_missing_bucket_is_a_remote_error(gcs_emulator, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="bucket gs://nowhere does not exist"):
        storage.bucket_info("gs://nowhere/prefix")
    src = synth.write_rows(tmp_path / "rows.jsonl", 20, 1)
    code = main(
        [
            "prepare",
            "--input",
            str(src),
            "--output-dir",
            str(tmp_path / "out"),
            "--gcs-prefix",
            "gs://nowhere/p",
            "--no-progress",
        ]
    )
    assert code == 3
    assert not (tmp_path / "out").exists()  # failed before any work


def test_prepare_uploads_and_verifies(
    gcs_emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gcs_emulator.make_bucket("router-data")
    src = synth.write_rows(tmp_path / "rows.jsonl", 200, 2)
    out = tmp_path / "out"
    code = main(
        [
            "prepare",
            "--input",
            str(src),
            "--output-dir",
            str(out),
            "--gcs-prefix",
            "gs://router-data/week2/v1/",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    client = gcs_emulator.client()
    names = sorted(b.name for b in client.list_blobs("router-data"))
    assert names == [
        "week2/v1/prepare.json",
        "week2/v1/test.jsonl",
        "week2/v1/train.jsonl",
        "week2/v1/validation.jsonl",
    ]
    for name in ("train", "validation", "test"):
        uri = f"gs://router-data/week2/v1/{name}.jsonl"
        assert uri in printed
        remote = client.bucket("router-data").blob(f"week2/v1/{name}.jsonl").download_as_bytes()
        assert remote == (out / f"{name}.jsonl").read_bytes()
    manifest = json.loads(
        client.bucket("router-data").blob("week2/v1/prepare.json").download_as_bytes()
    )
    assert manifest == json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    assert manifest["uris"]["train"] == "gs://router-data/week2/v1/train.jsonl"

    # The Python API returns the URIs.
    result = dataset.prepare(
        src, tmp_path / "api", gcs_prefix="gs://router-data/api", progress=False
    )
    assert result.uris == {
        "train": "gs://router-data/api/train.jsonl",
        "validation": "gs://router-data/api/validation.jsonl",
        "test": "gs://router-data/api/test.jsonl",
        "manifest": "gs://router-data/api/prepare.json",
    }
    assert all(storage.exists(uri) for uri in result.uris.values())


def test_prepare_reads_gs_input(gcs_emulator, tmp_path: Path) -> None:
    gcs_emulator.make_bucket("inputs")
    src = synth.write_rows(tmp_path / "rows.jsonl", 60, 4)
    storage.upload_file(src, "gs://inputs/rows.jsonl")
    a = dataset.prepare("gs://inputs/rows.jsonl", tmp_path / "a", progress=False)
    b = dataset.prepare(src, tmp_path / "b", progress=False)
    for name in dataset.SPLITS:
        assert a.split_paths[name].read_bytes() == b.split_paths[name].read_bytes()
    assert a.manifest["input"]["sha256"] == b.manifest["input"]["sha256"]
    assert a.uris == {}
