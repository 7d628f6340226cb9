"""Where copies live: an S3 bucket prefix (boto3) or a plain directory, behind one interface.

Both promise the same two things: an object is never visible under its key until it is
complete (S3 multipart completes atomically; a directory gets a temp file and a rename),
and every transfer is verified (size and sha256) before it counts. An S3 object that
fails that verification (a file that grew while it was read) is deleted before the error
is raised, so no short object stays behind to pass for a copy.
"""

from __future__ import annotations

import hashlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from fovea_tui.config import S3Settings
from fovea_tui.engine.infra.files import fsync_dir
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.engine.progress import CancelToken, ProgressEvent
from fovea_tui.errors import Cancelled, ConfigError, OperationFailed
from fovea_tui.formatting import plural

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

SHA256_META = "sha256"
TEMP_PREFIX = ".fovea-tmp-"
CHUNK = 1 << 20
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
SINGLE_PUT_MAX = 2 * 1024 * 1024  # below this, one verified PutObject from memory (no HEAD)


class StoreError(OperationFailed):
    """An object-store call failed; the message names the store and the object."""


class ServerCopyUnavailable(StoreError):
    """The store (or the credentials) will not copy between these buckets server-side."""


class ReadStream(Protocol):
    """What `open_read` hands out: a local file or botocore's StreamingBody (not an IO[bytes])."""

    def read(self, amt: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: datetime
    sha256: str | None = None


def sha256_file(path: Path, cancel: CancelToken | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            if cancel is not None:
                cancel.check()
            digest.update(chunk)
    return digest.hexdigest()


def safe_relative_key(key: str) -> PurePosixPath | None:
    """The key as a relative path that stays inside a destination, or None if it would not."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        return None
    parts = PurePosixPath(key).parts
    if any(p in ("..", "") for p in parts) or (parts and parts[0].endswith(":")):
        return None
    return PurePosixPath(*parts) if parts else None


class _ProgressFile:
    """Counts bytes handed to boto3 so uploads report progress and honour cancel."""

    def __init__(self, name: str, total: int, progress: Callable[[ProgressEvent], None] | None,
                 cancel: CancelToken | None) -> None:
        self.name, self.total, self.done = name, total, 0
        self.progress, self.cancel = progress, cancel

    def __call__(self, amount: int) -> None:
        self.done += amount
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(self.cancel.reason)
        if self.progress is not None:
            self.progress(ProgressEvent("transfer", self.done, self.total, "bytes", current=self.name))


class Store(ABC):
    """Where copies live; see S3Store and DirectoryStore. Keys are relative to the store's
    prefix or directory."""

    url: str
    #: Listing from a key onward is cheap (`iter_objects(start_after=...)`), so a long listing
    #: can be split into ranges read concurrently.
    lists_from_key: bool = False
    #: Listing is slow enough that a push keeps a snapshot of it, checked by a marker object
    #: (`read_if_exists`) and a sample; see engine/volume/listing.py.
    keeps_listing_snapshot: bool = False

    def describe(self) -> str:
        return self.url

    @abstractmethod
    def put_file(self, local: Path, key: str, *, sha256: str | None = None, progress=None,
                 cancel: CancelToken | None = None) -> ObjectInfo:
        """Upload a file, invisible under `key` until complete; verified size and sha256."""

    @abstractmethod
    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None, progress=None,
                 cancel: CancelToken | None = None) -> Path:
        """Download to a temp name, verify, rename to `dest`."""

    @abstractmethod
    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order."""

    @abstractmethod
    def list_dir(self, prefix: str = "", *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """The objects directly under `prefix` (a listing with the "/" delimiter: nothing in a
        nested folder), in key order."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, time and recorded sha256, or None when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object (absent is fine)."""

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    @abstractmethod
    def open_read(self, key: str) -> ReadStream:
        """A readable stream of the object."""

    def read_bytes(self, key: str) -> bytes:
        with closing(self.open_read(key)) as fh:
            return fh.read()

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Write a small object (a manifest) atomically."""

    @abstractmethod
    def cleanup_incomplete(self, older_than_s: float = 3600) -> int:
        """Remove what interrupted transfers left (temp files, multipart uploads)."""

    @abstractmethod
    def check(self) -> None:
        """Fail early, with a clear message, when the store cannot be reached or written."""


# --- a plain directory (an NFS mount, a USB disk, a second disk) ---------------------


class DirectoryStore(Store):
    def __init__(self, root: Path, key: str = "backups.offsite") -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.key = key  # the config key the directory comes from, named in errors
        self._made_by_run = False

    def expect_created(self) -> None:
        """A push's dry run: the run will create the missing root, so it holds nothing now."""
        self._made_by_run = True

    def _missing(self) -> StoreError:
        return StoreError(f"{self.key} directory {self.root} does not exist",
                          hint=f"is its disk mounted? If the copies are elsewhere, set {self.key} there")

    def _path(self, key: str) -> Path:
        rel = safe_relative_key(key)
        if rel is None:
            raise StoreError(f"refusing object key {key!r}: it would leave {self.root}")
        return self.root / rel

    def check(self) -> None:
        if not self.root.is_dir():
            raise self._missing()
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"{self.key} directory {self.root} is not writable by this user")

    def _tmp_for(self, dest: Path) -> Path:
        return dest.with_name(f"{TEMP_PREFIX}{dest.name}.{os.getpid()}")

    @staticmethod
    def _set_sha(path: Path, sha: str) -> None:
        try:
            os.setxattr(path, "user.fovea.sha256", sha.encode())
        except OSError:
            pass  # filesystems without user xattrs: the sha256 is still verified on copy

    @staticmethod
    def _get_sha(path: Path) -> str | None:
        try:
            return os.getxattr(path, "user.fovea.sha256").decode()
        except OSError:
            return None

    def _copy_verified(self, src: Path, dest: Path, expected_sha256: str | None, progress, cancel, label: str) -> str:
        ensure_private_dir(dest.parent)  # a caller that pulls into a shared tree made its directories itself
        tmp = self._tmp_for(dest)
        total = src.stat().st_size
        digest = hashlib.sha256()
        done = 0
        try:
            # Dumps and env copies hold everything: private from the first byte.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
                for chunk in iter(lambda: fin.read(CHUNK), b""):
                    if cancel is not None:
                        cancel.check()
                    fout.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(ProgressEvent("transfer", done, total, "bytes", current=label))
                fout.flush()
                os.fsync(fout.fileno())
            sha = digest.hexdigest()
            if done != total or tmp.stat().st_size != total:
                raise StoreError(f"copy of {label} to {self.root} is {tmp.stat().st_size} bytes, expected {total}")
            if expected_sha256 and sha != expected_sha256:
                raise StoreError(f"copy of {label} has sha256 {sha[:12]}…, expected {expected_sha256[:12]}…")
            self._set_sha(tmp, sha)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
            return sha
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_file(self, local, key, *, sha256=None, progress=None, cancel=None) -> ObjectInfo:
        dest = self._path(key)
        try:
            sha = self._copy_verified(Path(local), dest, sha256, progress, cancel, key)
        except OSError as exc:
            raise StoreError(f"cannot write {key} to {self.root}: {exc.strerror}") from None
        st = dest.stat()
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), sha)

    def get_file(self, key, dest, *, expected_sha256=None, progress=None, cancel=None) -> Path:
        src = self._path(key)
        if not src.is_file():
            raise StoreError(f"{key} is not in {self.root}")
        expected = expected_sha256 or self._get_sha(src)
        try:
            self._copy_verified(src, Path(dest), expected, progress, cancel, key)
        except OSError as exc:
            raise StoreError(f"cannot copy {key} from {self.root}: {exc.strerror}") from None
        return Path(dest)

    def iter_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            if self._made_by_run:
                return
            raise self._missing()
        yield from self._iter_dir(self.root, "", prefix)

    def list_dir(self, prefix: str = "", *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        """Files of the top directory named `prefix...` (dot files skipped, symlinks followed)."""
        if not self.root.is_dir():
            raise self._missing()
        out = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.startswith(prefix):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=True):
                        continue
                    st = entry.stat(follow_symlinks=True)
                except OSError:
                    continue
                out.append(ObjectInfo(entry.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        yield from sorted(out, key=lambda o: o.key)

    def _iter_dir(self, directory: Path, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        # In S3's order (full keys, UTF-8 byte order): sorting a directory's names with "/"
        # after subdirectory names makes this depth-first walk yield keys in that order,
        # which the volume sync's merge of two sorted streams relies on.
        with os.scandir(directory) as it:
            names = sorted(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name
                           for e in it if not e.name.startswith(TEMP_PREFIX))
        for name in names:
            key = rel + name
            if name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._iter_dir(directory / name[:-1], key, prefix)
                continue
            path = directory / name
            if key.startswith(prefix) and path.is_file() and not path.is_symlink():
                st = path.stat()
                yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def head(self, key) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        st = path.stat()
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), self._get_sha(path))

    def delete(self, key) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot delete {key} from {self.root}: {exc.strerror}") from None

    def open_read(self, key) -> ReadStream:
        path = self._path(key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise StoreError(f"{key} is not in {self.root}") from None

    def put_bytes(self, key, data: bytes) -> ObjectInfo:
        dest = self._path(key)
        ensure_private_dir(dest.parent)
        tmp = self._tmp_for(dest)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        sha = hashlib.sha256(data).hexdigest()
        self._set_sha(tmp, sha)
        os.replace(tmp, dest)
        return ObjectInfo(key, len(data), datetime.now(UTC), sha)

    def cleanup_incomplete(self, older_than_s: float = 3600) -> int:
        removed = 0
        cutoff = time.time() - older_than_s
        if not self.root.is_dir():
            return 0
        for path in self.root.rglob(f"{TEMP_PREFIX}*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _parse_timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)  # HTTP dates in headers, epoch numbers
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_s3_url(url: str, key: str = "backups.offsite") -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"config key {key}: {url!r} names no bucket", key=key)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


S3_TIMEOUT_ENV = "FOVEA_TUI_S3_TIMEOUT"          # seconds a request may stall (default 60)
S3_ATTEMPTS_ENV = "FOVEA_TUI_S3_MAX_ATTEMPTS"    # tries per request, retries included (default 5)


def s3_timeouts() -> tuple[float, int]:
    """(read time-out in seconds, attempts per request): how long a store that stalls may
    hold a run. The defaults suit a real store; a slow link or a test can change them."""
    def number(name: str, default: float, cast, low: float) -> float:
        raw = os.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = cast(raw)
        except ValueError:
            raise ConfigError(f"${name} must be a number, not {raw!r}", key=name) from None
        if value < low:
            raise ConfigError(f"${name} must be at least {low}", key=name)
        return value

    return float(number(S3_TIMEOUT_ENV, 60.0, float, 0.1)), int(number(S3_ATTEMPTS_ENV, 5, int, 1))


class S3Store(Store):
    lists_from_key = True
    keeps_listing_snapshot = True

    def __init__(self, url: str, s3: S3Settings, *, max_concurrency: int = 8,
                 credentials: tuple[str, str] | None = None) -> None:
        """`credentials` (access key id, secret) for a bucket whose keys come from the install's
        env file (the app's video bucket); None: boto3's usual chain (env, files, role)."""
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        timeout, attempts = s3_timeouts()
        config = Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=min(10.0, timeout),
            read_timeout=timeout,
            max_pool_connections=max(10, max_concurrency * 2),
        )
        session = boto3.session.Session()
        # Listing 1,000 keys spends most of its client CPU in dateutil parsing LastModified;
        # S3's ISO 8601 timestamps parse with the C fromisoformat instead.
        session._session.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=_parse_timestamp)
        key_id, secret = credentials if credentials else (None, None)
        self.endpoint_url = s3.endpoint_url or None
        self.client = session.client(
            "s3", endpoint_url=s3.endpoint_url or None, region_name=s3.region or None, config=config,
            aws_access_key_id=key_id, aws_secret_access_key=secret,
        )
        self.transfer_config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=max_concurrency, use_threads=True,
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def describe_error(self, action: str, key: str, exc: Exception) -> StoreError:
        """The StoreError to raise for `exc`, from an S3 call that tried to `action` `key`:
        it names the object and says what to check."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = f"s3://{self.bucket}/{self._key(key)}"
        if isinstance(exc, NoCredentialsError):
            return StoreError(f"cannot {action} {where}: no AWS credentials found",
                              hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or an instance role")
        from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError

        if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError)):
            timeout, attempts = s3_timeouts()
            return StoreError(f"cannot {action} {where}: the S3 endpoint did not answer within {timeout:g} s "
                              f"({plural(attempts, 'attempt')})",
                              hint=f"check the store and the network; ${S3_TIMEOUT_ENV} sets the time-out")
        if isinstance(exc, ConnectionClosedError):
            return StoreError(f"cannot {action} {where}: the S3 endpoint closed the connection",
                              hint="check the store and the network")
        if isinstance(exc, EndpointConnectionError):
            return StoreError(f"cannot {action} {where}: the S3 endpoint does not answer",
                              hint="check s3.endpoint_url and the network")
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            hints = {"NoSuchBucket": "create the bucket or fix the URL",
                     "InvalidAccessKeyId": "check the AWS credentials",
                     "SignatureDoesNotMatch": "check the AWS credentials",
                     "AccessDenied": "the credentials lack permission on this bucket"}
            return StoreError(f"cannot {action} {where}: {code or 'error'}", hint=hints.get(code))
        return StoreError(f"cannot {action} {where}: {type(exc).__name__}: {str(exc)[:200]}")

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - translated into one clear error
            raise self.describe_error("reach", "", exc) from None

    def put_file(self, local, key, *, sha256=None, progress=None, cancel=None) -> ObjectInfo:
        local = Path(local)
        size = local.stat().st_size
        if size < SINGLE_PUT_MAX:
            return self._put_small(local, key, size, sha256, progress, cancel)
        sha = sha256 or sha256_file(local, cancel)
        callback = _ProgressFile(key, size, progress, cancel)
        try:
            self.client.upload_file(
                str(local), self.bucket, self._key(key),
                ExtraArgs={"Metadata": {SHA256_META: sha}, "ChecksumAlgorithm": "SHA256"},
                Callback=callback, Config=self.transfer_config,
            )
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc.__context__, Cancelled) or (cancel is not None and cancel.cancelled):
                raise Cancelled(cancel.reason if cancel else "cancelled") from None
            raise self.describe_error("upload", key, exc) from None
        info = self.head(key)
        if info is None or info.size != size or info.sha256 != sha:
            what = (f"upload of {key} to s3://{self.bucket}/{self.prefix} did not verify "
                    f"(size {info.size if info else 'missing'} of {size}: did the file change while it was read?)")
            self._remove_unverified(key, what)
        return info

    def _remove_unverified(self, key: str, what: str) -> NoReturn:
        """Delete an object that failed verification, then raise `what`: the next run
        uploads the whole file instead of finding a short object under its key."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"{what}; removing the unverified object failed too "
                             f"({self.describe_error('delete', key, exc)}): delete it by hand") from None
        raise StoreError(f"{what}; the unverified object was removed, the next run uploads it again")

    def _put_small(self, local: Path, key: str, size: int, sha256, progress, cancel) -> ObjectInfo:
        """One PutObject, verified without a second request: the store checks Content-MD5
        and x-amz-checksum-sha256 against what it received (S3 answers BadDigest), and the
        ETag of a single-part upload is the MD5 of what it stored."""
        import base64

        if cancel is not None:
            cancel.check()
        with local.open("rb") as fh:
            data = fh.read(size + 1)
        if len(data) != size:
            raise StoreError(f"{local} changed size while being read ({len(data)} bytes, expected {size})")
        sha = hashlib.sha256(data).hexdigest()
        if sha256 and sha != sha256:
            raise StoreError(f"{local} has sha256 {sha[:12]}…, expected {sha256[:12]}…")
        md5 = hashlib.md5(data, usedforsecurity=False)
        try:
            resp = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, Metadata={SHA256_META: sha},
                ContentMD5=base64.b64encode(md5.digest()).decode(),
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha)).decode())
        except Exception as exc:  # noqa: BLE001
            if cancel is not None and cancel.cancelled:
                raise Cancelled(cancel.reason) from None
            raise self.describe_error("upload", key, exc) from None
        etag = (resp.get("ETag") or "").strip('"')
        echoed = resp.get("ChecksumSHA256")
        if echoed and base64.b64decode(echoed).hex() != sha:
            self._remove_unverified(key, f"upload of {key} did not verify (the store's sha256 differs)")
        if not echoed and etag != md5.hexdigest():
            info = self.head(key)  # an ETag that is not an MD5 (SSE-KMS...): check what was stored
            if info is None or info.size != size or info.sha256 != sha:
                self._remove_unverified(key, f"upload of {key} to s3://{self.bucket}/{self.prefix} did not verify")
        if progress is not None:
            progress(ProgressEvent("transfer", size, size, "bytes", current=key))
        return ObjectInfo(key, size, datetime.now(UTC), sha)

    def get_file(self, key, dest, *, expected_sha256=None, progress=None, cancel=None) -> Path:
        dest = Path(dest)
        ensure_private_dir(dest.parent)
        info = self.head(key)
        if info is None:
            raise StoreError(f"s3://{self.bucket}/{self._key(key)} does not exist")
        expected = expected_sha256 or info.sha256
        tmp = dest.with_name(f"{TEMP_PREFIX}{dest.name}.{os.getpid()}")
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp),
                                      Callback=_ProgressFile(key, info.size, progress, cancel),
                                      Config=self.transfer_config)
            os.chmod(tmp, 0o600)  # a dump or an env copy: never readable by other users
            size = tmp.stat().st_size
            if size != info.size:
                raise StoreError(f"download of {key} is {size} bytes, expected {info.size}")
            if expected:
                got = sha256_file(tmp, cancel)
                if got != expected:
                    raise StoreError(f"download of {key} has sha256 {got[:12]}…, expected {expected[:12]}…")
            os.replace(tmp, dest)
            return dest
        except (StoreError, Cancelled):
            tmp.unlink(missing_ok=True)
            raise
        except Exception as exc:  # noqa: BLE001
            tmp.unlink(missing_ok=True)
            if cancel is not None and cancel.cancelled:
                raise Cancelled(cancel.reason) from None
            raise self.describe_error("download", key, exc) from None

    def copy_from(self, source: S3Store, key: str, *, size: int, progress=None, cancel=None) -> ObjectInfo:
        """Copy `key` from `source` inside the store (CopyObject; UploadPartCopy parts above
        the multipart threshold): no byte passes through this host. A single CopyObject succeeds
        only once the store holds the whole copy; a multipart copy is checked by its size. Raises ServerCopyUnavailable when the store or
        the credentials do not allow a server-side copy (the caller streams instead)."""
        from botocore.exceptions import ClientError

        copy_source: CopySourceTypeDef = {"Bucket": source.bucket, "Key": source._key(key)}
        try:
            if size < MULTIPART_THRESHOLD:  # one CopyObject: the store answers only once it holds the copy
                if cancel is not None:
                    cancel.check()
                self.client.copy_object(CopySource=copy_source, Bucket=self.bucket, Key=self._key(key))
            else:
                self.client.copy(copy_source, self.bucket, self._key(key),
                                 Callback=_ProgressFile(key, size, progress, cancel), SourceClient=source.client,
                                 Config=self.transfer_config)
        except Cancelled:
            raise
        except ClientError as exc:
            if cancel is not None and cancel.cancelled:
                raise Cancelled(cancel.reason) from None
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("AccessDenied", "NotImplemented", "InvalidRequest", "XAmzContentSHA256Mismatch"):
                raise ServerCopyUnavailable(f"server-side copy of {key} refused ({code})") from None
            raise self.describe_error("copy", key, exc) from None
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc.__context__, Cancelled) or (cancel is not None and cancel.cancelled):
                raise Cancelled(cancel.reason if cancel else "cancelled") from None
            raise self.describe_error("copy", key, exc) from None
        if size < MULTIPART_THRESHOLD:
            if progress is not None:
                progress(ProgressEvent("transfer", size, size, "bytes", current=key))
            return ObjectInfo(key, size, datetime.now(UTC))
        info = self.head(key)  # parts assembled by the client: check the whole arrived
        if info is None or info.size != size:
            raise StoreError(f"copy of {key} to s3://{self.bucket}/{self.prefix} did not verify "
                             f"(size {info.size if info else 'missing'} of {size})")
        return info

    def iter_objects(self, prefix: str = "", *, start_after: str = "",
                     page_size: int | None = None) -> Iterator[ObjectInfo]:
        """In key order; `start_after` (a key relative to the store) lets callers list
        disjoint key ranges concurrently."""
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"StartAfter": self._key(start_after)} if start_after else {}
        if page_size:
            kwargs["PaginationConfig"] = {"PageSize": page_size}
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix), **kwargs):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix):]
                    yield ObjectInfo(key, int(obj["Size"]), obj["LastModified"])
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("list", prefix, exc) from None

    def list_dir(self, prefix: str = "", *, page_size: int | None = None) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"PaginationConfig": {"PageSize": page_size}} if page_size else {}
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix), Delimiter="/", **kwargs):
                for obj in page.get("Contents", []) or []:
                    yield ObjectInfo(obj["Key"][len(self.prefix):], int(obj["Size"]), obj["LastModified"])
        except Exception as exc:  # noqa: BLE001 - one clear error naming the store
            raise self.describe_error("list", "", exc) from None

    def head(self, key) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self.describe_error("inspect", key, exc) from None
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("inspect", key, exc) from None
        return ObjectInfo(key, int(resp["ContentLength"]), resp["LastModified"],
                          (resp.get("Metadata") or {}).get(SHA256_META))

    def delete(self, key) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("delete", key, exc) from None

    def delete_many(self, keys: Iterable[str]) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == 1000:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: list[str]) -> None:
        try:
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(k)} for k in keys], "Quiet": True})
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("delete", keys[0], exc) from None
        errors = resp.get("Errors") or []
        if errors:
            raise StoreError(f"{len(errors)} of {plural(len(keys), 'deletion')} failed in s3://{self.bucket}/{self.prefix}, "
                             f"first: {errors[0].get('Key')}: {errors[0].get('Code')}")

    def open_read(self, key) -> ReadStream:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("read", key, exc) from None

    def read_if_exists(self, key) -> bytes | None:
        """A small object's bytes in one GET, or None when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self.describe_error("read", key, exc) from None
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("read", key, exc) from None

    def put_bytes(self, key, data: bytes) -> ObjectInfo:
        sha = hashlib.sha256(data).hexdigest()
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   Metadata={SHA256_META: sha}, ChecksumAlgorithm="SHA256")
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("upload", key, exc) from None
        return ObjectInfo(key, len(data), datetime.now(UTC), sha)

    def cleanup_incomplete(self, older_than_s: float = 3600) -> int:
        """Abort multipart uploads under the prefix left by interrupted runs."""
        cutoff = datetime.now(UTC).timestamp() - older_than_s
        aborted = 0
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []) or []:
                    if upload["Initiated"].timestamp() <= cutoff:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
                        aborted += 1
        except Exception as exc:  # noqa: BLE001
            raise self.describe_error("clean up uploads in", "", exc) from None
        return aborted


def open_store(url: str, s3: S3Settings, *, key: str = "backups.offsite", **kwargs) -> Store:
    """The store behind an `s3://bucket/prefix/` URL or a directory path; `key` names the
    config key the URL came from, for the error when it is malformed."""
    if not url:
        raise ConfigError(f"config key {key} is empty: no location configured", key=key)
    if url.startswith("s3://"):
        parse_s3_url(url, key)
        return S3Store(url, s3, **kwargs)
    if "://" in url:
        raise ConfigError(f"config key {key}: unsupported URL scheme in {url!r}; use s3://bucket/prefix/ or a directory",
                          key=key)
    return DirectoryStore(Path(url), key)
