"""Resumable, verified downloads: HTTP Range resume, retries with back-off, and a sha256 registry.

The registry (`$PAIRFORGE_HOME/registry.json`, default `~/.cache/pairforge`) records each URL's size and sha256
the first time it is downloaded whole; later downloads of the same URL must match it (trust on first use).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pairforge.errors import PairforgeError
from pairforge.prep.imageio import write_atomic

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


class DownloadError(PairforgeError):
    """The archive could not be fetched or is not the archive it should be."""


@dataclass(frozen=True)
class Retry:
    tries: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 30.0


def registry_path() -> Path:
    home = os.environ.get("PAIRFORGE_HOME") or Path.home() / ".cache" / "pairforge"
    return Path(home) / "registry.json"


def load_registry() -> dict[str, dict]:
    path = registry_path()
    return json.loads(path.read_text()) if path.is_file() else {}


def record(url: str, size: int, sha256: str) -> None:
    registry = load_registry()
    registry[url] = {"size": size, "sha256": sha256}
    write_atomic(registry_path(), (json.dumps(registry, indent=1, sort_keys=True) + "\n").encode())


def fetch_file(url: str, dest: Path, retry: Retry = Retry(), progress: Progress | None = None) -> Path:
    """Download `url` to `dest`, resuming `dest.part` with HTTP Range; retried with back-off on network errors."""
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, retry.tries + 1):
        try:
            _transfer(url, part, retry.timeout_s, progress)
            os.replace(part, dest)
            return dest
        except (urllib.error.URLError, OSError, ConnectionError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code != 416:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            if attempt == retry.tries:
                raise DownloadError(_network_message(url, exc)) from None
            time.sleep(retry.backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _transfer(url: str, part: Path, timeout: float, progress: Progress | None) -> None:
    import urllib.request  # here, not at the top: the HTTP stack (ssl, email, ...) costs every command 40 ms

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", 200)
        if have and status != 206:  # the server ignored Range: start again from zero
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with part.open("ab" if have else "wb") as fh:
            done = have
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done < total:
            raise ConnectionError(f"connection closed after {done} of {total} bytes")


def _network_message(url: str, exc: Exception) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror | ConnectionRefusedError | TimeoutError | socket.timeout):
        return (
            f"cannot reach {urllib.parse.urlparse(url).netloc} ({reason}); offline? "
            "use --url with a mirror or a file:// copy of the archive, or set PAIRFORGE_MIRROR"
        )
    return f"{url}: download failed ({reason})"


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify(url: str, archive: Path, expected_sha256: str | None = None) -> str:
    """Check the archive against `expected_sha256` or the registry (recording it on first sight)."""
    digest, size = sha256_of(archive), archive.stat().st_size
    known = load_registry().get(url)
    expected = expected_sha256 or (known or {}).get("sha256")
    if expected and digest != expected:
        archive.unlink()
        raise DownloadError(
            f"{archive.name}: sha256 {digest[:12]}... does not match the recorded {expected[:12]}... "
            f"({size} bytes); the download was removed, run the command again"
        )
    if known is None:
        record(url, size, digest)
    return digest
