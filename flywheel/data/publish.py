"""Publish the example DVC dataset inside a cluster: build it, push its data, serve its git read-only.

A TrainingRun on a fresh kind cluster needs a git repository its pods can clone and a DVC remote
they can fetch from; a placeholder URL leaves every first run failing at data resolution. This
builds the example repository (examples.make_repo: period-1 and period-2 tags) with its DVC remote
set to a bucket the pods reach (the kind MinIO), pushes the data there, and serves a bare copy of
the git repository over git's smart HTTP protocol, fetch only: Python's http.server in front of
`git http-backend`. Not the "dumb" protocol (static files): DVC fetches through libgit2, which
cannot speak it. Pushes are refused.
The server starts only once the repository is complete, which makes an HTTP readiness probe on
<name>.git/info/refs true exactly when the data can be resolved.

    python -m flywheel.data.publish DIR [--remote-url s3://bucket/prefix --endpoint-url URL] [--serve PORT]

The remote's credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and
are never written into the repository; without --remote-url the remote is a local directory.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

from flywheel.data import examples

REPO_NAME = "shuttle.git"
PUBLIC = "public"  # the only directory served
WORK = "work"  # the working repository (and a local DVC remote), never served


def remote_options(url: str | None, endpoint_url: str | None = None) -> dict[str, str] | None:
    """The DVC remote options committed to the repository: location only, no credentials."""
    if not url:
        if endpoint_url:
            raise ValueError("--endpoint-url needs --remote-url")
        return None
    options = {"url": url}
    if endpoint_url:
        options["endpointurl"] = endpoint_url
    return options


def build(root: Path, remote: dict[str, str] | None = None) -> Path:
    """Build the example repository under `root`/work, push its data, and publish a bare copy at
    `root`/public/shuttle.git ready for `git http-backend`; the bare repository's path.

    Whatever an earlier (crashed or restarted) build left is replaced: the data is deterministic,
    so a rebuild yields the same DVC hashes and the push is a no-op for objects already there."""
    root = root.resolve()
    for leftover in (root / WORK, root / PUBLIC):
        shutil.rmtree(leftover, ignore_errors=True)
    made = examples.make_repo(root / WORK / "shuttle", remote=remote)
    staging = root / PUBLIC / (REPO_NAME + ".tmp")
    staging.parent.mkdir(parents=True)
    examples.git(made.root, "clone", "-q", "--bare", str(made.root), str(staging))
    examples.git(staging, "remote", "remove", "origin")  # no path of this machine in what is served
    examples.git(staging, "update-server-info")  # dumb-HTTP files too, for clients that ask for them
    bare = staging.with_name(REPO_NAME)
    staging.rename(bare)  # the served name appears only once complete
    return bare


class ReadOnlyHandler(http.server.BaseHTTPRequestHandler):
    """git's smart HTTP protocol, fetch only, through `git http-backend` (CGI).

    Smart, not dumb: DVC fetches through libgit2 (pygit2), which has no dumb-HTTP transport. Only
    GET and a POST to git-upload-pack reach git; git-receive-pack (a push) is refused here, and
    http-backend itself refuses it to an unauthenticated client."""

    public: Path

    def do_GET(self) -> None:
        self._backend(b"")

    def do_POST(self) -> None:
        if not self.path.split("?")[0].endswith("/git-upload-pack"):
            self.send_error(403, "read-only: only git-upload-pack (fetch) is served")
            return
        self._backend(self._body())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    def _backend(self, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        if ".." in urllib.parse.unquote(path).split("/"):
            self.send_error(404, "nothing outside the served repositories")
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.public),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": urllib.parse.unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_ADDR": self.client_address[0],
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False, timeout=300
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        headers = [line.split(":", 1) for line in head.decode("latin-1").split("\r\n") if ":" in line]
        status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
        code, _, reason = status.partition(" ")
        if done.returncode != 0 and not head:  # git found no repository there, or failed
            self.send_error(404, done.stderr.decode(errors="replace").strip()[:200] or None)
            return
        self.send_response(int(code), reason or None)
        for key, value in headers:
            if key.lower() != "status":
                self.send_header(key, value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def server(public: Path, port: int, host: str = "") -> http.server.ThreadingHTTPServer:
    """An HTTP server of `public` (not yet serving: call serve_forever)."""
    handler = type("Handler", (ReadOnlyHandler,), {"public": public.resolve()})
    return http.server.ThreadingHTTPServer((host, port), handler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flywheel.data.publish", description=__doc__.split("\n")[0]
    )
    parser.add_argument("dir", type=Path, help="working directory (rebuilt from scratch)")
    parser.add_argument("--remote-url", help="DVC remote URL, e.g. s3://flywheel-dvc/shuttle")
    parser.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://minio.flywheel-system.svc:9000")
    parser.add_argument("--serve", type=int, metavar="PORT", help="then serve the git repository on PORT")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        remote = remote_options(args.remote_url, args.endpoint_url)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bare = build(args.dir, remote)
    print(f"published {bare} (DVC remote {remote['url'] if remote else 'local directory'})", flush=True)
    if args.serve is not None:
        with server(bare.parent, args.serve) as httpd:
            print(f"serving {bare.parent} on :{args.serve} (GET/HEAD only)", flush=True)
            httpd.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
