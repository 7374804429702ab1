"""`pairforge fetch` against an HTTP server on loopback: download, resume, verify, safe extraction."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairforge.prep.download import DownloadError, Retry, fetch_file
from tests.conftest import pattern, read_manifest, tar_gz


def jpeg(seed: int, width: int = 32, height: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pattern(width, height, seed)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


class Server:
    """Serves `files` on 127.0.0.1; can honour Range or not, and cut the first response short."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.cut_first_after: int | None = None
        self.requests: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                server.requests.append(self.headers.get("Range"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if server.ranges and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_first_after is not None:
                    body, server.cut_first_after = body[: server.cut_first_after], None
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("PAIRFORGE_HOME", str(tmp_path / "home"))
    srv = Server()
    yield srv
    srv.httpd.shutdown()


FACADES = {
    "facades/train/1.jpg": jpeg(1),
    "facades/train/2.jpg": jpeg(2),
    "facades/test/3.jpg": jpeg(3),
    "facades/README.txt": b"CMP facades",
}


def test_pix2pix_tarball_downloads_extracts_and_checks(server, tmp_path, cli):
    server.files["/facades.tar.gz"] = tar_gz(FACADES)
    out = tmp_path / "data" / "facades"
    result = cli("fetch", "facades", out, "--url", f"{server.url}/facades.tar.gz", "-q")
    assert result.code == 0, result.err
    assert (out / "train" / "1.jpg").read_bytes() == FACADES["facades/train/1.jpg"]
    manifest = read_manifest(out)
    assert manifest["layouts"] == ["ab"] and manifest["counts"] == {"test": 1, "train": 2}
    assert manifest["rejected"][0]["paths"] == {"archive": "facades/README.txt"}
    assert not (out / "README.txt").exists() and not list(tmp_path.glob("data/.*"))
    assert cli("check", out, "-q").code == 0
    again = cli("fetch", "facades", out, "--url", f"{server.url}/facades.tar.gz")
    assert again.code == 0 and "already fetched" in again.out


def test_cyclegan_zip_becomes_unaligned_dataset(server, tmp_path, cli):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ["trainA/h1.jpg", "trainA/h2.jpg", "trainB/z1.jpg", "testA/h3.jpg", "testB/z2.jpg"]:
            zf.writestr(f"horse2zebra/{name}", jpeg(len(name)))
    server.files["/horse2zebra.zip"] = buf.getvalue()
    out = tmp_path / "h2z"
    assert cli("fetch", "horse2zebra", out, "--url", f"{server.url}/horse2zebra.zip", "-q").code == 0
    manifest = read_manifest(out)
    assert manifest["layouts"] == ["unaligned"] and manifest["counts"] == {"test": 2, "train": 3}
    assert {it["key"]: it["sources"] for it in manifest["items"]}["z1"] == {"B": "trainB/z1.jpg"}
    assert cli("check", out, "-q").code == 0


def test_cut_download_resumes_with_range_to_the_same_bytes(server, tmp_path):
    data = np.random.default_rng(0).bytes(300_000)
    server.files["/big.bin"] = data
    server.cut_first_after = 100_000
    dest = fetch_file(f"{server.url}/big.bin", tmp_path / "big.bin", Retry(tries=3, backoff_s=0))
    assert dest.read_bytes() == data
    assert server.requests == [None, "bytes=100000-"]


def test_server_without_range_restarts_cleanly(server, tmp_path):
    data = np.random.default_rng(1).bytes(200_000)
    server.files["/big.bin"] = data
    server.ranges = False
    server.cut_first_after = 50_000
    assert fetch_file(f"{server.url}/big.bin", tmp_path / "big.bin", Retry(backoff_s=0)).read_bytes() == data


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (tar_gz({"x/train/1.jpg": jpeg(1), "../evil.jpg": jpeg(2)}), "would be written outside"),
        (tar_gz({"/tmp/evil_abs.jpg": jpeg(2)}), "would be written outside"),
        (tar_gz({"x/train/1.jpg": jpeg(1)}, links={"x/train/evil.jpg": "/etc/passwd"}), "link or special file"),
        (tar_gz(FACADES)[:-200], "corrupt or unreadable archive"),
    ],
    ids=["dotdot", "absolute", "symlink", "truncated"],
)
def test_unsafe_or_corrupt_archives_are_refused_and_nothing_is_written(server, tmp_path, cli, archive, message):
    server.files["/x.tar.gz"] = archive
    out = tmp_path / "area" / "out"
    result = cli("fetch", "x", out, "--url", f"{server.url}/x.tar.gz", "-q")
    assert result.code == 1
    assert message in result.err and result.err.count("\n") == 1
    assert not out.exists()
    assert not (tmp_path / "area" / "evil.jpg").exists() and not Path("/tmp/evil_abs.jpg").exists()


def test_checksum_mismatch_with_the_registry_is_refused(server, tmp_path, cli):
    server.files["/facades.tar.gz"] = tar_gz(FACADES)
    url = f"{server.url}/facades.tar.gz"
    assert cli("fetch", "facades", tmp_path / "one", "--url", url, "-q").code == 0
    server.files["/facades.tar.gz"] = tar_gz({**FACADES, "facades/test/4.jpg": jpeg(4)})  # changed upstream
    result = cli("fetch", "facades", tmp_path / "two", "--url", url, "-q")
    assert result.code == 1 and "does not match the recorded" in result.err
    assert not (tmp_path / "two").exists()


def test_offline_is_one_line_error(server, tmp_path, cli):
    server.httpd.shutdown()
    server.httpd.server_close()
    result = cli("fetch", "facades", tmp_path / "f", "--url", f"{server.url}/facades.tar.gz", "--retries", "1")
    assert result.code == 1
    assert "offline?" in result.err and "PAIRFORGE_MIRROR" in result.err and result.err.count("\n") == 1


def test_fetch_file_reports_http_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_file(f"{server.url}/missing.tar.gz", tmp_path / "m", Retry(backoff_s=0))
