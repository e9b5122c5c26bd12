"""``routerlib doctor``: before a first real run, check what would make it fail late, each with
its fix (docs/vertex-facts.md lists the checks). Every check only reads: nothing is created or
billed. A check is ``ok``, ``warn``, ``FAIL`` (the command exits non-zero) or ``skip``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from routerlib import auth, jobs, models, pricing, storage
from routerlib.config import RunConfig, default_project
from routerlib.errors import InputError, RemoteError
from routerlib.jobs import text_table, when
from routerlib.serving import vertex
from routerlib.serving.settings import VertexSettings
from routerlib.tuning import get_backend

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
#: What the caller needs on the bucket: write outputs, read datasets, list checkpoint folders.
BUCKET_PERMISSIONS = ("storage.objects.create", "storage.objects.get", "storage.objects.list")
VERTEX_API, STORAGE_API = "aiplatform.googleapis.com", "storage.googleapis.com"


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table: what was checked, how it went, what was found, the fix."""

    name: str
    status: str
    found: str
    fix: str = ""


def _bucket_cmd(bucket: str, location: str) -> str:
    where = "US" if location == "global" else location
    return f"gcloud storage buckets create gs://{bucket} --location={where}"


def _api_fix(message: str, service: str, project: str) -> str:
    """The fix for an API call that failed with ``message``."""
    if "SERVICE_DISABLED" in message or "has not been used in project" in message:
        return f"gcloud services enable {service} --project={project}"
    if "403" in message or "PERMISSION_DENIED" in message or "permission" in message.lower():
        role = "roles/aiplatform.user" if service == VERTEX_API else "roles/storage.admin"
        return f"grant the caller {role} on project {project} (or the permission named above)"
    if "401" in message or "credentials" in message.lower():
        return "gcloud auth application-default login"
    return "check the network and the API endpoint, then run the doctor again"


class Doctor:
    """The checks for one run config (``checkpoint``: a folder for the deploy check)."""

    def __init__(self, cfg: RunConfig, checkpoint: str | None = None) -> None:
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.checks: list[Check] = []
        self.project = ""
        self.who: str | None = None
        self._adc_project: str | None = None
        self.shape = VertexSettings.from_config(cfg).hardware(cfg.base_model)

    def add(self, name: str, status: str, found: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, found, fix if status in (FAIL, WARN) else ""))

    def api_failed(self, name: str, exc: RemoteError, service: str) -> None:
        self.add(name, FAIL, str(exc), _api_fix(str(exc), service, self.project))

    def skip(self, names: tuple[str, ...], why: str) -> None:
        self.checks += [Check(name, SKIP, why) for name in names]

    def run(self) -> list[Check]:
        """Every check, in order (see the module docstring); later checks are skipped when what
        they need failed."""
        if self.cfg.backend != "vertex":
            found = (
                f"backend {self.cfg.backend}: this run needs no cloud (pass a vertex params file)"
            )
            self.add("cloud checks", SKIP, found)
        else:
            self.credentials()
            self.project_set()
            self.vertex_api()
            self.bucket()
            self.tuning_location()
            self.deploy_machine()
        self.price_table()
        return self.checks

    def credentials(self) -> None:
        try:
            found, self._adc_project = auth.application_default()
        except InputError as exc:
            fix = "gcloud auth application-default login (or set GOOGLE_APPLICATION_CREDENTIALS)"
            self.add("credentials", FAIL, str(exc).split(":", 1)[0], fix)
            return
        self.who = auth.principal(found)
        info = getattr(found, "get_cred_info", lambda: None)() or {}
        kind = info.get("credential_type") or type(found).__name__
        whose = self.who or "an account the credentials do not name"
        self.add("credentials", OK, f"application-default credentials of {whose} ({kind})")

    def project_set(self) -> None:
        env = default_project()
        self.project = default_project(self.cfg.project) or self._adc_project or ""
        if not self.project:
            self.add(
                "project",
                FAIL,
                "no project: params project is empty, GOOGLE_CLOUD_PROJECT is unset",
                "set project in the params file or `export GOOGLE_CLOUD_PROJECT=<id>`",
            )
            return
        origin = "params" if self.cfg.project else "GOOGLE_CLOUD_PROJECT" if env else "credentials"
        self.add("project", OK, f"{self.project} (from {origin})")

    def vertex_api(self) -> None:
        if not self.project:
            self.add("Vertex AI API", SKIP, "no project")
            return
        cfg = self.cfg
        try:
            backend = get_backend(
                "vertex",
                project=self.project,
                location=cfg.location,
                api_endpoint=cfg.api_endpoint or None,
            )
            self.add("Vertex AI API", OK, backend.probe())  # type: ignore[attr-defined]
        except RemoteError as exc:
            self.api_failed("Vertex AI API", exc, VERTEX_API)

    def bucket(self) -> None:
        cfg = self.cfg
        prefix = cfg.gcs_prefix or (cfg.output_uri if cfg.output_uri.startswith("gs://") else "")
        names = ("Cloud Storage API", "bucket exists", "bucket location", "bucket write access")
        if not prefix:
            return self.skip(names, "no gcs_prefix in the params")
        bucket, _ = storage.parse_gcs_uri(prefix)
        try:
            client = storage.gcs_client(self.project or None)
            info = storage.bucket_info(prefix, client)
        except storage.BucketNotFound:
            self.add("Cloud Storage API", OK, "answered (bucket metadata: 404)")
            found = f"gs://{bucket} does not exist (gcs_prefix {prefix})"
            self.add("bucket exists", FAIL, found, _bucket_cmd(bucket, cfg.location))
            return self.skip(names[2:], "no bucket")
        except RemoteError as exc:
            self.api_failed("Cloud Storage API", exc, STORAGE_API)
            return self.skip(names[1:], "Cloud Storage did not answer")
        self.add("Cloud Storage API", OK, "answered (bucket metadata)")
        self.add("bucket exists", OK, f"gs://{bucket}")
        problem = models.bucket_problem(
            cfg.location, bucket, info.location, info.location_type, info.data_locations
        )
        if problem:
            fix = _bucket_cmd(f"{bucket}-{cfg.location.lower()}", cfg.location)
            self.add("bucket location", FAIL, problem, f"{fix} and point gcs_prefix at it")
        else:
            found = f"{info.location} ({info.location_type}) serves tuning in {cfg.location}"
            self.add("bucket location", OK, found)
        try:
            missing = storage.missing_permissions(prefix, BUCKET_PERMISSIONS, client)
        except RemoteError as exc:
            self.add("bucket write access", FAIL, str(exc), "check the bucket's IAM policy")
            return
        caller = self.who or "the caller"
        if missing:
            self.add(
                "bucket write access",
                FAIL,
                f"{caller} lacks {', '.join(missing)} on gs://{bucket}",
                f"gcloud storage buckets add-iam-policy-binding gs://{bucket} "
                f"--member=user:{self.who or 'YOU'} --role=roles/storage.objectUser",
            )
        else:
            self.add("bucket write access", OK, f"{caller} holds {', '.join(BUCKET_PERMISSIONS)}")

    def tuning_location(self) -> None:
        cfg = self.cfg
        row = models.contract(cfg.base_model)
        if row is None:
            self.add(
                "tuning location",
                WARN,
                models.unchecked_line(cfg.base_model).removeprefix("note: "),
                "use a model from routerlib/data/models.yaml to have its region checked",
            )
        else:  # a region the model is not tuned in: load_config refused it (models.contract_problems)
            runs_in = " or ".join(models.TABLE.global_runs_in)
            note = f"; Vertex runs a global job in {runs_in}" if cfg.location == "global" else ""
            self.add("tuning location", OK, f"{row.display} is tuned in {cfg.location}{note}")

    def _checkpoint(self) -> str | None:
        if self.checkpoint:
            return self.checkpoint
        if self.cfg.custom_base_model.startswith("gs://"):
            return self.cfg.custom_base_model
        wanted = models.short_id(self.cfg.base_model)
        for job in reversed(jobs.load_registry()):
            uri = job.checkpoint_uri or ""
            if (
                job.succeeded
                and uri.startswith("gs://")
                and models.short_id(job.spec.base_model) == wanted
            ):
                return uri
        return None

    def deploy_machine(self) -> None:
        cfg, shape, region = self.cfg, self.shape, self.cfg.deploy_location
        what = f"{shape.label()} in {region}"
        checkpoint = self._checkpoint() if self.project else None
        if not self.project or checkpoint is None:
            why = f"{what}: RecommendSpec needs a checkpoint folder and this run has none yet"
            self.add("deploy machine", SKIP, why if self.project else "no project")
            return
        try:
            options = vertex.deploy_options(
                checkpoint, project=self.project, location=region, api_endpoint=cfg.api_endpoint
            )
        except RemoteError as exc:
            self.api_failed("deploy machine", exc, VERTEX_API)
            return
        wanted = (shape.machine_type, shape.accelerator_count, region)
        same = [
            o
            for o in options
            if (o.hardware.machine_type, o.hardware.accelerator_count, o.region or region) == wanted
        ]
        offered = "; ".join(
            f"{o.hardware.machine_type} in {o.region or region}" for o in options[:4]
        )
        if not same:
            self.add(
                "deploy machine",
                FAIL,
                f"{what} is not available (RecommendSpec offers: {offered or 'nothing'})",
                "set machine_type/accelerator_type/accelerator_count and deploy_location to an "
                "offered option (`routerlib deploy --list-options --checkpoint ...` lists them)",
            )
        elif any(o.has_quota is False for o in same) and not any(o.has_quota for o in same):
            self.add(
                "deploy machine",
                FAIL,
                f"no quota for {what}",
                f"request quota for {shape.accelerator_count} x {shape.accelerator_type} "
                f"(Vertex AI custom model serving) in {region} on project {self.project}, or "
                "choose an option with quota",
            )
        else:
            quota = "with quota" if any(o.has_quota for o in same) else "quota not reported"
            self.add("deploy machine", OK, f"{what} available, {quota}")

    def price_table(self) -> None:
        cfg = self.cfg
        try:
            table = pricing.load_pricing()
        except InputError as exc:
            self.add("price table", FAIL, str(exc), "fix the file named above")
            return
        oldest = table.oldest_source_date()
        age = (dt.date.today() - oldest).days if oldest else None
        machine = pricing.serving_machine(cfg.backend, self.shape.machine_type)
        found = f"dated {table.date}; oldest source {oldest} ({age} days)"
        missing = [cfg.base_model] if table.price(cfg.base_model) is None else []
        missing += [machine] if table.machine_price(machine) is None else []
        unverified = table.unverified(cfg.base_model, machine) if cfg.backend == "vertex" else []
        stale = age is not None and age > pricing.STALE_AFTER_DAYS
        notes = [
            when(", ".join(missing), "no price for {}"),
            when(", ".join(unverified), "not verified: {}"),
            when(stale and pricing.STALE_AFTER_DAYS, "older than {} days"),
        ]
        if any(notes):
            self.add(
                "price table",
                WARN,
                f"{found}; {'; '.join(n for n in notes if n)}",
                "re-read the sources docs/vertex-facts.md names and update "
                f"{pricing.default_pricing_path().name} (rows, sources, dates)",
            )
        else:
            self.add("price table", OK, found)


def render(checks: list[Check]) -> str:
    """One aligned table (check, status, what was found, the fix) and a count of each status
    (the command exits non-zero when one is FAIL)."""
    rows = [(c.name, c.status, c.found, c.fix or "-") for c in checks]
    counts = {s: sum(1 for c in checks if c.status == s) for s in (OK, WARN, FAIL, SKIP)}
    tail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    table = text_table(("CHECK", "STATUS", "FOUND", "FIX"), rows)
    return f"{table}\n({tail}; nothing was created or billed)"
