"""Local paths and Cloud Storage (gs://) URIs: parse, check, upload with verification, read. The
only importer of google-cloud-storage (inside functions)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerlib.atomic import atomic_writer
from routerlib.errors import InputError, RemoteError

#: Bucket names per Cloud Storage naming rules (dotted names may be up to 222 characters).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")

_CHUNK = 1 << 20


def is_gcs_uri(value: str | os.PathLike[str]) -> bool:
    """True when ``value`` looks like it means Cloud Storage (starts with ``gs:``)."""
    return str(value).strip().lower().startswith("gs:")


def parse_gcs_uri(uri: str, *, allow_empty_path: bool = True) -> tuple[str, str]:
    """Split ``gs://bucket/path`` into (bucket, path without outer ``/``; empty for the bucket
    root unless ``allow_empty_path`` is False) or raise InputError saying what is wrong."""
    text = str(uri)
    scheme = text.split(":", 1)[0] + ":" if ":" in text else ""
    wrong_scheme = not text.startswith("gs://")
    bucket, _, path = text.removeprefix("gs://").partition("/")
    path = path.rstrip("/")
    for bad, hint in (
        (text != text.strip(), "remove the surrounding whitespace"),
        (
            wrong_scheme and scheme.lower() == "gs:",
            "write it as gs://BUCKET/PATH (two slashes after gs:)",
        ),
        (wrong_scheme and scheme, f"the scheme must be gs://, not {scheme}//"),
        (wrong_scheme, "it must start with gs://"),
        (not bucket, "no bucket name after gs://"),
        (
            not _BUCKET_RE.match(bucket) or ".." in bucket,
            f"{bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, '-', '_' or "
            "'.', starting and ending with a letter or digit)",
        ),
        ("//" in path or path.startswith("/"), "empty path segment ('//')"),
        (any(ch in path for ch in "\r\n\x00"), "control characters in the path"),
        ({".", ".."} & set(path.split("/")), "'.' and '..' segments are not allowed"),
        (not path and not allow_empty_path, "no object path after the bucket"),
    ):
        if bad:
            raise InputError(f"bad Cloud Storage URI {text!r}: {hint}")
    return bucket, path


def join_uri(prefix: str, name: str) -> str:
    """``gs://bucket/prefix`` + ``name`` -> ``gs://bucket/prefix/name``."""
    bucket, path = parse_gcs_uri(prefix)
    return f"gs://{bucket}/{path + '/' if path else ''}{name}"


def gcs_client(project: str | None = None) -> Any:
    """A google.cloud.storage Client on the application-default credentials; with
    STORAGE_EMULATOR_HOST set (the tests), anonymous on that emulator."""
    from google.cloud import storage as gcs  # type: ignore[attr-defined]

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or "routerlib-local"
    try:
        return gcs.Client(project=project)
    except Exception as exc:  # credentials or project missing
        raise RemoteError(f"cannot create a Cloud Storage client: {exc}") from exc


def _blob(uri: str, client: Any = None, reload: bool = False) -> Any:
    bucket, path = parse_gcs_uri(uri, allow_empty_path=False)
    blob = (client or gcs_client()).bucket(bucket).blob(path)
    if reload:
        with _remote("reading metadata of", uri):
            blob.reload()
    return blob


@contextlib.contextmanager
def _remote(action: str, uri: str) -> Iterator[None]:
    """Turn a failed Cloud Storage call into RemoteError ``<action> <uri> failed: <first line>``
    (an InputError, a bad URI, passes through)."""
    try:
        yield
    except (InputError, RemoteError):
        raise
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RemoteError(f"{action} {uri} failed: {message}") from exc


def file_crc32c(path: str | os.PathLike[str]) -> str:
    """CRC32C of a local file, base64 of the big-endian 4 bytes (Cloud Storage's format)."""
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode("ascii")


@dataclass(frozen=True)
class BucketInfo:
    """A bucket's placement as Cloud Storage reports it (``location`` e.g. US-CENTRAL1, US, NAM4;
    ``location_type`` region, dual-region or multi-region; ``data_locations`` a dual's regions)."""

    name: str
    location: str
    location_type: str
    data_locations: tuple[str, ...] = ()


class BucketNotFound(RemoteError):
    """The bucket does not exist (Cloud Storage answered 404)."""


@contextlib.contextmanager
def _bucket_call(action: str, prefix: str) -> Iterator[str]:
    """:func:`_remote` on the bucket of ``prefix``, yielding its name; 404 is BucketNotFound."""
    from google.api_core import exceptions

    bucket_name, _ = parse_gcs_uri(prefix)
    with _remote(action, f"gs://{bucket_name}"):
        try:
            yield bucket_name
        except exceptions.NotFound:
            raise BucketNotFound(
                f"bucket gs://{bucket_name} does not exist (from {prefix})"
            ) from None


def bucket_info(prefix: str, client: Any = None) -> BucketInfo:
    """The location of the bucket of ``prefix`` (a bucket get, nothing written); BucketNotFound
    when it does not exist, RemoteError when it cannot be read (403, no answer)."""
    client = client or gcs_client()
    with _bucket_call("reading the metadata of bucket", prefix) as name:
        bucket = client.get_bucket(name)
    return BucketInfo(
        name=name,
        location=str(bucket.location or ""),
        location_type=str(bucket.location_type or ""),
        data_locations=tuple(bucket.data_locations or ()),
    )


def missing_permissions(prefix: str, permissions: Iterable[str], client: Any = None) -> list[str]:
    """The ``permissions`` the caller lacks on the bucket of ``prefix`` (Cloud Storage
    ``testIamPermissions``: it answers the subset the caller holds; nothing is written)."""
    wanted = list(permissions)
    client = client or gcs_client()
    with _bucket_call("testing permissions on bucket", prefix) as name:
        held = set(client.bucket(name).test_iam_permissions(wanted))
    return [p for p in wanted if p not in held]


def size(uri: str | os.PathLike[str], client: Any = None) -> int:
    """Bytes of a local file or gs:// object (RemoteError when it cannot be read)."""
    if not is_gcs_uri(uri):
        return Path(uri).stat().st_size
    return int(_blob(str(uri), client, reload=True).size or 0)


def exists(uri: str | os.PathLike[str], client: Any = None) -> bool:
    """Whether a local path or a gs:// object exists."""
    if not is_gcs_uri(uri):
        return Path(uri).exists()
    with _remote("checking", str(uri)):
        return bool(_blob(str(uri), client).exists())


def require_checkpoint(uri: str) -> None:
    """Refuse (InputError) a gs:// checkpoint folder that holds no file, before a deploy. A local
    path, or a folder this machine cannot list (Vertex reads it with its own service account), is
    not refused."""
    if not is_gcs_uri(uri):
        return
    try:
        bucket, path = parse_gcs_uri(uri)
        blobs = gcs_client().list_blobs(bucket, prefix=path and f"{path}/", max_results=1)
        found = any(True for _ in blobs)
    except Exception:  # noqa: BLE001 - a bad URI or one this machine cannot list: not refused
        return
    if not found:
        raise InputError(
            f"{uri}: no checkpoint there (the folder holds no file); nothing was created. A "
            "tuning job's checkpoint is <output_uri>/postprocess/node-0/checkpoints/final "
            "(`routerlib jobs show NAME` prints it)"
        )


def verify_upload(local: str | os.PathLike[str], uri: str, client: Any = None) -> None:
    """Compare the stored object's size and crc32c with the local file; RemoteError if they differ."""
    blob = _blob(uri, client, reload=True)
    size = os.path.getsize(local)
    crc = file_crc32c(local)
    if blob.size is None or int(blob.size) != size:
        raise RemoteError(f"upload check failed for {uri}: size {blob.size} != local {size} bytes")
    if not blob.crc32c:
        raise RemoteError(f"upload check failed for {uri}: the service reported no crc32c")
    if blob.crc32c != crc:
        raise RemoteError(f"upload check failed for {uri}: crc32c {blob.crc32c} != local {crc}")


def upload_file(local: str | os.PathLike[str], gs_uri: str, client: Any = None) -> str:
    """Upload ``local`` with a crc32c, then verify the stored size and crc32c; returns the URI."""
    client = client or gcs_client()
    blob = _blob(gs_uri, client)
    content_type = "application/json" if str(local).endswith(".json") else "application/jsonl"
    with _remote("uploading to", gs_uri):
        blob.upload_from_filename(str(local), content_type=content_type, checksum="crc32c")
    verify_upload(local, gs_uri, client)
    return gs_uri


def upload_splits(files: dict[str, Path], gcs_prefix: str, client: Any = None) -> dict[str, str]:
    """Upload each split file prepare just wrote (split -> path) under ``gcs_prefix`` by its file
    name, in order; returns split -> URI."""
    client = client or gcs_client()
    return {s: upload_file(p, join_uri(gcs_prefix, p.name), client) for s, p in files.items()}


def download_file(uri: str, local: str | os.PathLike[str], client: Any = None) -> Path:
    """Download a gs:// object to ``local`` (atomically) and return the path."""
    blob = _blob(uri, client)
    with _remote("downloading", uri), atomic_writer(local, "wb") as handle:
        blob.download_to_file(handle)
    return Path(local)


def read_text(uri: str | os.PathLike[str], client: Any = None) -> str:
    """The whole UTF-8 text of a local file or gs:// object."""
    if not is_gcs_uri(uri):
        return Path(uri).read_text(encoding="utf-8")
    with _remote("reading", str(uri)):
        return str(_blob(str(uri), client).download_as_text(encoding="utf-8"))


def open_text(uri: str | os.PathLike[str], client: Any = None) -> Iterator[str]:
    """Lines (with their line ends) of a local file or gs:// object, read as a stream."""
    if not is_gcs_uri(uri):
        with open(uri, encoding="utf-8", newline="") as handle:
            yield from handle
        return
    blob = _blob(str(uri), client)
    with _remote("reading", str(uri)), blob.open("r", encoding="utf-8", newline="") as handle:
        yield from handle
