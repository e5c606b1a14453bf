"""Object stores on 127.0.0.1 for the tests, each granting a sweep only object-level
permissions, as docs/storage.md tells a user to grant.

- S3: moto's server with IAM enforced. The bucket's user holds exactly the IAM policy
  that docs/storage.md shows (read from there); moto checks every request's signature
  and action against it.
- GCS: gcp-storage-emulator, which enforces nothing by itself; here every request is
  mapped to the IAM permission real GCS checks for it, and anything outside
  the four object permissions docs/storage.md grants is answered 403 as GCS does. Every request is recorded with its permission.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import pyarrow.fs as pafs

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sweeps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def documented_s3_policy(bucket: str) -> dict:
    """The IAM policy docs/storage.md tells a user to attach, for ``bucket``."""
    text = (ROOT / "docs" / "storage.md").read_text()
    (block,) = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    return json.loads(block.replace("BUCKET", bucket))


class S3Store:
    """moto's S3 on 127.0.0.1 with IAM enforced; ``env`` holds the sweeping user's keys."""

    kind = "s3"

    def __init__(self) -> None:
        import boto3
        import requests
        from moto.s3 import responses as s3_responses
        from moto.server import ThreadedMotoServer

        # AWS authorizes HeadBucket by s3:ListBucket (there is no s3:HeadBucket action);
        # moto checks a made-up "s3:HeadBucket", which no real policy grants.
        self._head_action = s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"]
        s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # Set up before authentication is switched on (moto answers anything until then).
        setup = {"endpoint_url": self.endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        iam = boto3.client("iam", **setup)
        self.keys = {}
        for user, policy in (("sweeper", documented_s3_policy(BUCKET)), ("no-delete", self._without_delete())):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="sweeps", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        self.env = self.keys["sweeper"]

    @staticmethod
    def _without_delete() -> dict:
        policy = documented_s3_policy(BUCKET)
        for statement in policy["Statement"]:
            statement["Action"] = [a for a in statement["Action"] if a != "s3:DeleteObject"]
        return policy

    def uri(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http&region=us-east-1"

    def filesystem(self) -> pafs.FileSystem:
        keys = self.env
        return pafs.S3FileSystem(access_key=keys["AWS_ACCESS_KEY_ID"], secret_key=keys["AWS_SECRET_ACCESS_KEY"],
                                 endpoint_override=f"127.0.0.1:{self.port}", scheme="http", region="us-east-1")

    def close(self) -> None:
        from moto.s3 import responses as s3_responses

        self._server.stop()
        s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = self._head_action


# What GCS checks for each JSON API request (method, path pattern): the permissions a
# caller needs (Cloud Storage's "IAM permissions for JSON methods").
_B = r"(?:/storage/v1)?/b/[-.\w]+"
GCS_PERMISSIONS = (
    ("POST", r"/upload/storage/v1/b/[-.\w]+/o", {"storage.objects.create"}),
    ("PUT", r"/upload/storage/v1/b/[-.\w]+/o", {"storage.objects.create"}),
    ("GET", r"/download/storage/v1/b/[-.\w]+/o/.+", {"storage.objects.get"}),
    ("POST", rf"{_B}/o/.+/(?:rewriteTo|copyTo)/b/[-.\w]+/o/.+", {"storage.objects.get", "storage.objects.create"}),
    ("POST", rf"{_B}/o/.+/compose", {"storage.objects.create"}),
    ("GET", rf"{_B}/o", {"storage.objects.list"}),
    ("GET", rf"{_B}/o/.+", {"storage.objects.get"}),
    ("DELETE", rf"{_B}/o/.+", {"storage.objects.delete"}),
    ("PATCH", rf"{_B}/o/.+", {"storage.objects.update"}),
    ("GET", _B, {"storage.buckets.get"}),
    ("PATCH", _B, {"storage.buckets.update"}),
    ("DELETE", _B, {"storage.buckets.delete"}),
    ("POST", r"(?:/storage/v1)?/b", {"storage.buckets.create"}),
)


def documented_gcs_permissions() -> frozenset[str]:
    """The object permissions docs/storage.md tells a user to grant on GCS."""
    text = (ROOT / "docs" / "storage.md").read_text()
    paragraph = text[text.index("**GCS**:"):].split("\n\n", 1)[0]
    return frozenset(re.findall(r"`(storage\.objects\.\w+)`", paragraph))


def gcs_permissions(method: str, path: str) -> set[str]:
    for rule_method, pattern, needed in GCS_PERMISSIONS:
        if method == rule_method and re.fullmatch(pattern, path):
            return needed
    return {f"unknown: {method} {path}"}  # never granted: a request this table does not know fails loudly


@dataclass
class GcsRequest:
    method: str
    path: str
    needed: set[str]
    allowed: bool


class GcsStore:
    """gcp-storage-emulator on 127.0.0.1, answering as GCS does for a caller that holds
    ``granted``; ``requests`` lists every request it got."""

    kind = "gcs"
    env: dict[str, str] = {}  # anonymous: no credentials

    def __init__(self, granted: frozenset[str] | None = None) -> None:
        from gcp_storage_emulator import server

        self.granted = documented_gcs_permissions() if granted is None else granted
        self.requests: list[GcsRequest] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._router, self._handle = server.Router, server.Router.handle
        store = self

        def handle(router, method):  # noqa: ANN001 - the emulator's own signature
            handler = router._request_handler
            method = handler.headers.get("x-http-method-override") or method
            path = handler.path.split("?", 1)[0]
            needed = gcs_permissions(method, path)
            allowed = needed <= store.granted
            with store._lock:
                store.requests.append(GcsRequest(method, path, needed, allowed))
            if allowed:
                return store._handle(router, method)
            missing = sorted(needed - store.granted)[0]
            body = json.dumps({"error": {"code": 403, "message": (
                f"sweeper@example.iam.gserviceaccount.com does not have {missing} access to the Google Cloud "
                f"Storage bucket. Permission '{missing}' denied on resource (or it may not exist).")}}).encode()
            handler.send_response(HTTPStatus.FORBIDDEN)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        server.Router.handle = handle
        logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
        self._server = server.create_server("127.0.0.1", self.port, in_memory=True, default_bucket=BUCKET)
        self._server.start()

    def uri(self, prefix: str) -> str:
        return f"gs://anonymous@{BUCKET}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def filesystem(self) -> pafs.FileSystem:
        return pafs.GcsFileSystem(anonymous=True, endpoint_override=f"127.0.0.1:{self.port}", scheme="http")

    def close(self) -> None:
        self._server.stop()
        self._router.handle = self._handle
