"""A strict stand-in for the Cloud Storage JSON API routes ``routerlib doctor`` reads, on
127.0.0.1 (the real google-cloud-storage client goes to it through STORAGE_EMULATOR_HOST).

gcp-storage-emulator (tests/support/gcs_emulator.py) cannot play these parts: it creates every
bucket in ``US`` (multi-region) whatever the insert asks for, and its ``testIamPermissions``
grants every permission asked for. This stand-in answers only:

- ``GET /storage/v1/b/{bucket}``: the bucket resource with its ``location`` (upper case, as
  Cloud Storage reports it), ``locationType`` and, for a configurable dual-region,
  ``customPlacementConfig.dataLocations``; 404 in Google's error envelope when it does not exist;
  403 when ``storage.buckets.get`` is not granted.
- ``GET /storage/v1/b/{bucket}/iam/testPermissions?permissions=...``: the subset of the asked
  permissions the caller holds (the ``permissions`` key is left out when that is none, as the
  JSON API leaves out empty lists); 400 without a ``permissions`` parameter or for one outside
  ``storage.*``; 404 for a missing bucket.

Anything else answers 404 ``no route``: tests that read or write objects use the emulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.recording_server import RecordingServer, Request

_BUCKET = r"/storage/v1/b/(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])"
#: Permissions a caller holds on a bucket unless a test takes some away.
ALL_BUCKET_PERMISSIONS = frozenset(
    {
        "storage.buckets.get",
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.list",
    }
)


def _error(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    """The Cloud Storage JSON API error envelope."""
    return code, {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


@dataclass
class GcsStandIn:
    """Buckets by name (location, type, data locations) and the permissions the caller holds."""

    server: RecordingServer = field(default_factory=RecordingServer)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    granted: dict[str, set[str]] = field(default_factory=dict)
    caller: str = "dev@example.com"

    def __post_init__(self) -> None:
        self._routes()

    def __enter__(self) -> GcsStandIn:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url

    def add_bucket(
        self,
        name: str,
        location: str = "US",
        location_type: str = "multi-region",
        data_locations: tuple[str, ...] = (),
        granted: set[str] | frozenset[str] = ALL_BUCKET_PERMISSIONS,
    ) -> None:
        """A bucket where Cloud Storage would report it, and what the caller may do there."""
        resource: dict[str, Any] = {
            "kind": "storage#bucket",
            "id": name,
            "name": name,
            "projectNumber": "123456789012",
            "location": location.upper(),
            "locationType": location_type,
            "storageClass": "STANDARD",
            "timeCreated": "2026-12-01T00:00:00.000Z",
            "updated": "2026-12-01T00:00:00.000Z",
            "metageneration": "1",
            "etag": "CAE=",
        }
        if data_locations:
            resource["customPlacementConfig"] = {
                "dataLocations": [d.upper() for d in data_locations]
            }
        self.buckets[name] = resource
        self.granted[name] = set(granted)

    def _routes(self) -> None:
        srv = self.server

        @srv.route("GET", _BUCKET)
        def get_bucket(request: Request, match: Any) -> tuple[int, Any]:
            name = match["bucket"]
            if name not in self.buckets:
                return _error(404, "notFound", "The specified bucket does not exist.")
            if "storage.buckets.get" not in self.granted[name]:
                return _error(
                    403,
                    "forbidden",
                    f"{self.caller} does not have storage.buckets.get access to the Google "
                    f"Cloud Storage bucket. Permission 'storage.buckets.get' denied on resource "
                    "(or it may not exist).",
                )
            return 200, self.buckets[name]

        @srv.route("GET", _BUCKET + r"/iam/testPermissions")
        def test_permissions(request: Request, match: Any) -> tuple[int, Any]:
            name = match["bucket"]
            asked = request.query.get("permissions") or []
            if not asked:
                return _error(400, "required", "Required parameter: permissions")
            invalid = [p for p in asked if not p.startswith("storage.")]
            if invalid:
                return _error(400, "invalid", f"Invalid permission: {invalid[0]}")
            if name not in self.buckets:
                return _error(404, "notFound", "The specified bucket does not exist.")
            held = [p for p in asked if p in self.granted[name]]
            body: dict[str, Any] = {"kind": "storage#testIamPermissionsResponse"}
            if held:
                body["permissions"] = held
            return 200, body
