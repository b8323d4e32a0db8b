"""The ``[centre.recordings]`` settings: which recording store the centre uses, and its factory.

A directory on the centre's disk by default::

    [centre.recordings]
    dir = "/srv/cti/recordings"          # default: <data_dir>/recordings

or an S3-compatible object store when ``s3_url`` is set::

    [centre.recordings]
    s3_url = "https://rgw.example.internal"
    bucket = "cti-recordings"
    region = "us-east-1"                 # what the store expects; any value for Ceph/SeaweedFS/Garage
    prefix = "floor-1/"
    credentials_file = "/etc/cti-agent/s3.credentials"
    addressing_style = "path"            # "virtual" for Alibaba OSS and Tencent COS

The keys never sit in the TOML file: they come from ``credentials_file`` (the
AWS shared-credentials format every S3 tool writes: an INI section per profile
with ``aws_access_key_id`` and ``aws_secret_access_key``), or else from the
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optionally
``AWS_SESSION_TOKEN``).
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.errors import ConfigError
from storage.blobstore import (
    DEFAULT_PART_SIZE,
    MIN_PART_SIZE,
    DirectoryBlobStore,
    RecordingBlobStore,
    S3BlobStore,
    S3Credentials,
    validate_key,
)

logger = logging.getLogger(__name__)

RECORDINGS_DIR = "recordings"


class RecordingStoreSettings(BaseModel):
    """``[centre.recordings]``: a directory (the default) or, with ``s3_url``, an S3 bucket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: Path | None = None
    """The directory store's root; None: ``<data_dir>/recordings``. Ignored when ``s3_url`` is set."""
    s3_url: str | None = None
    bucket: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    credentials_file: Path | None = None
    credentials_profile: str = "default"
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    ca_file: Path | None = None
    """A CA bundle for a store with a certificate from an internal CA."""
    verify_tls: bool = True
    part_size_mb: int = Field(
        default=DEFAULT_PART_SIZE // (1024 * 1024), ge=MIN_PART_SIZE // (1024 * 1024), le=512
    )

    @field_validator("s3_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"s3_url must be an http:// or https:// URL, got {value!r}")
        if parts.username or parts.password:
            raise ValueError("s3_url must not carry credentials: use credentials_file or the environment")
        return value.rstrip("/")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        # The S3 rules: 3-63 characters, lower-case letters, digits, dots and hyphens.
        if value is not None and not (
            3 <= len(value) <= 63
            and all(c.islower() or c.isdigit() or c in ".-" for c in value)
            and value[0].isalnum()
            and value[-1].isalnum()
        ):
            raise ValueError(f"not a valid S3 bucket name: {value!r} (3-63 of a-z 0-9 . -)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value:
            validate_key(value)
            return value + "/"
        return ""

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> RecordingStoreSettings:
        if self.s3_url is not None and self.bucket is None:
            raise ValueError("bucket is required with s3_url")
        if self.s3_url is None and self.bucket is not None:
            raise ValueError("bucket is set but s3_url is not")
        return self

    @property
    def uses_s3(self) -> bool:
        """Whether the recordings go to an S3 bucket rather than a directory."""
        return self.s3_url is not None


def load_credentials(
    settings: RecordingStoreSettings, environ: Mapping[str, str] | None = None
) -> S3Credentials:
    """The S3 keys: from ``credentials_file`` when set, else from the environment.

    :raises ConfigError: the file cannot be read or lacks the profile or a key, or
        (without a file) the environment has no key pair.
    """
    env = os.environ if environ is None else environ
    if settings.credentials_file is not None:
        path = settings.credentials_file
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with path.open(encoding="utf-8") as f:
                parser.read_file(f)
            mode = path.stat().st_mode
        except (OSError, configparser.Error) as exc:
            raise ConfigError(f"[centre.recordings] credentials_file {path}: {exc}") from exc
        if mode & 0o077:
            logger.warning("S3 credentials file %s is readable by others than its owner (chmod 600)", path)
        profile = settings.credentials_profile
        if not parser.has_section(profile):
            raise ConfigError(f"[centre.recordings] credentials_file {path} has no [{profile}] section")
        section = parser[profile]
        key_id = section.get("aws_access_key_id", "").strip()
        secret = section.get("aws_secret_access_key", "").strip()
        if not key_id or not secret:
            raise ConfigError(
                f"[centre.recordings] credentials_file {path} [{profile}] needs aws_access_key_id "
                "and aws_secret_access_key"
            )
        token = section.get("aws_session_token", "").strip() or None
        return S3Credentials(key_id, secret, token)
    key_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not key_id or not secret:
        raise ConfigError(
            "[centre.recordings] s3_url is set but there are no S3 keys: set credentials_file, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
        )
    return S3Credentials(key_id, secret, env.get("AWS_SESSION_TOKEN", "").strip() or None)


def make_blob_store(
    settings: RecordingStoreSettings, data_dir: Path, environ: Mapping[str, str] | None = None
) -> RecordingBlobStore:
    """The recording store ``settings`` describe; no I/O but reading the credentials file.

    :param data_dir: the centre's data directory (the directory store defaults to ``recordings/`` in it).
    :param environ: where to look for the S3 keys without a credentials file (default: ``os.environ``).
    :raises ConfigError: S3 keys are missing or unreadable.
    """
    if settings.s3_url is None or settings.bucket is None:
        return DirectoryBlobStore(settings.dir if settings.dir is not None else data_dir / RECORDINGS_DIR)
    verify: bool | str = settings.verify_tls
    if settings.verify_tls and settings.ca_file is not None:
        verify = str(settings.ca_file)
    return S3BlobStore(
        settings.s3_url,
        settings.bucket,
        load_credentials(settings, environ),
        region=settings.region,
        prefix=settings.prefix,
        addressing_style=settings.addressing_style,
        verify=verify,
        part_size=settings.part_size_mb * 1024 * 1024,
    )
