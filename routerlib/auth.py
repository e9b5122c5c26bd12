"""Which Vertex addresses get Google credentials, and how: the one rule for tuning and serving
(docs/serving.md#credentials: a Vertex predict path over https gets an application-default bearer
token, a loopback ``http://`` stand-in and any other host none); and the aiplatform SDK pointed at
a project, region and address (:func:`init_vertex`), for serving, batch prediction and pipelines,
and what a failed SDK call becomes (:func:`remote_error`)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from routerlib.errors import InputError, PermissionDenied, RemoteError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Characters of an SDK error's text a RemoteError quotes (the rest is cut, with an ellipsis).
SDK_TEXT_LIMIT = 300
_VERTEX_HOST = re.compile(r"(^|.*[.-])aiplatform\.googleapis\.com$|.*\.prediction\.vertexai\.goog$")
_PREDICT_PATH = re.compile(
    r"^/v1(beta1)?/projects/[^/]+/locations/[^/]+/endpoints/[^/:]+:(predict|rawPredict)$"
)


def is_loopback(url: str) -> bool:
    """``http://`` on this machine: a stand-in or a local server; never sent a token."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS


def needs_credentials(url: str) -> bool:
    """True for an https Vertex predict address (shared regional or dedicated DNS)."""
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and bool(_VERTEX_HOST.match((parts.hostname or "").lower()))
        and bool(_PREDICT_PATH.match(parts.path))
    )


def application_default() -> tuple[Any, str | None]:
    """(credentials, project or None) of the application-default credentials; InputError saying
    how to set them up when there are none. Nothing is sent: the token is not fetched."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, project = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise InputError(
            "no Google application-default credentials: run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    return credentials, project or None


def principal(credentials: Any) -> str | None:
    """The account (an email) the credentials say they are for, or None."""
    info = getattr(credentials, "get_cred_info", lambda: None)() or {}
    for value in (
        info.get("principal"),
        getattr(credentials, "service_account_email", None),
        getattr(credentials, "account", None),
    ):
        if isinstance(value, str) and "@" in value:
            return value
    return None


class BearerToken:
    """An ``Authorization`` header from application-default credentials, refreshed when stale.
    Thread-safe; the token is never logged or written anywhere."""

    def __init__(self, credentials: Any = None) -> None:
        self._credentials = credentials
        self._lock = threading.Lock()

    def header(self) -> dict[str, str]:
        import google.auth.transport.requests

        with self._lock:
            if self._credentials is None:
                self._credentials = application_default()[0]
            if not self._credentials.valid:
                self._credentials.refresh(google.auth.transport.requests.Request())
            return {"Authorization": f"Bearer {self._credentials.token}"}


def headers_for(url: str) -> BearerToken | None:
    """The token source for requests to ``url`` under the rule above (None: send no token)."""
    return BearerToken() if needs_credentials(url) else None


# --------------------------------------------------------------------------- the aiplatform SDK


def _default_api_endpoint(location: str) -> str:
    from google.cloud.aiplatform import utils

    if location == "global":
        return "aiplatform.googleapis.com"
    if utils.is_mrep_location(location):
        return utils.mrep_endpoint("aiplatform.googleapis.com", location)
    return f"{location}-aiplatform.googleapis.com"


_init_lock = threading.Lock()
_current: tuple[str, str, str] | None = None


def init_vertex(project: str, location: str, api_endpoint: str = "") -> None:
    """Point the aiplatform SDK (REST transport) at ``api_endpoint`` for ``project``/``location``:
    anonymous for a loopback ``http://`` stand-in, application-default credentials otherwise.
    Without ``api_endpoint`` the regional Google endpoint is set explicitly, so an earlier
    stand-in address never lingers in the SDK's global config."""
    global _current
    if not project:
        raise InputError("a Google Cloud project is required: pass --project (or set `project`)")
    key = (project, location, api_endpoint)
    with _init_lock:
        if _current == key:
            return
    import vertexai
    from google.auth.credentials import AnonymousCredentials

    stand_in = api_endpoint and is_loopback(api_endpoint)
    credentials = AnonymousCredentials() if stand_in else application_default()[0]
    with _init_lock:
        vertexai.init(
            project=project,
            location=location,
            api_transport="rest",
            api_endpoint=api_endpoint or _default_api_endpoint(location),
            credentials=credentials,
        )
        _current = key


def sdk_errors() -> tuple[type[BaseException], ...]:
    """What a failed call to the SDK raises: API errors, transport errors, auth errors."""
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return (GoogleAPIError, requests.exceptions.RequestException, GoogleAuthError)


@contextlib.contextmanager
def sdk_call(action: str, needs: str = "") -> Iterator[None]:
    """A failed SDK call in the block raises :func:`remote_error` for ``action`` instead."""
    try:
        yield
    except sdk_errors() as exc:
        raise remote_error(action, exc, needs) from None


def remote_error(action: str, exc: BaseException, needs: str = "") -> RemoteError:
    """The RemoteError for a failed SDK call, ``<action>: <code> <message>`` (the message cut at
    ``SDK_TEXT_LIMIT`` characters); a 403 is a PermissionDenied naming ``needs`` (the permissions
    the call needs) when given."""
    code = getattr(exc, "code", None)
    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    if len(message) > SDK_TEXT_LIMIT:
        message = message[: SDK_TEXT_LIMIT - 1] + "…"
    if code == 403 and needs:
        return PermissionDenied(
            f"{action}: permission denied ({message}); the credentials need {needs} "
            "(role roles/aiplatform.user), and running as a service account needs "
            "iam.serviceAccounts.actAs on it"
        )
    return RemoteError(f"{action}: {code} {message}" if code else f"{action}: {message}")
