"""`zaoxiang models download` against a local Hugging Face Hub stand-in on 127.0.0.1.

The server implements the part of the Hub HTTP API that huggingface_hub's snapshot_download uses
(model info, recursive tree listing, file resolve with HEAD, ETag / X-Repo-Commit / X-Linked-Size
headers and Range), serving a copy of the demo model; faults (a dropped connection mid-file, a slow
file, a corrupted or short body) are switched on per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from studio.models.discovery import find_models, resolve_model
from studio.models.download import DownloadError, Progress, download_model
from tests.conftest import cli_env

REPO = "Tongyi-MAI/Z-Image-Turbo"
BIG = "transformer/diffusion_pytorch_model.safetensors"
VAE = "vae/diffusion_pytorch_model.safetensors"


class Hub:
    """A tiny Hub: one repo, one commit, files from a folder; records every request."""

    def __init__(self, folder: Path, repo: str = REPO):
        self.repo = repo
        self.files = {p.relative_to(folder).as_posix(): p.read_bytes()
                      for p in sorted(folder.rglob("*")) if p.is_file()}
        self.sha = hashlib.sha1(b"".join(self.files.values())).hexdigest()
        self.log: list[tuple[str, str, str | None]] = []
        self.sent: dict[str, int] = {}
        self.drop_once: dict[str, int] = {}  # path -> bytes to send before cutting the connection
        self.corrupt: set[str] = set()
        self.short: dict[str, int] = {}  # path -> bytes actually served, with a matching Content-Length
        self.slow: dict[str, float] = {}  # path -> seconds per 16 KiB
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.handle(self, head=True)

            def do_GET(self) -> None:
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def lfs(path: str) -> bool:
        return path.endswith(".safetensors")

    def entry(self, path: str) -> dict:
        data = self.files[path]
        e = {"type": "file", "path": path, "size": len(data),
             "oid": hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()}
        if self.lfs(path):
            e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return e

    def gets(self, path: str) -> list[str | None]:
        return [rng for m, p, rng in self.log if m == "GET" and p == path]

    def handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        api = f"/api/models/{self.repo}"
        resolve = f"/{self.repo}/resolve/"
        with self.lock:
            self.log.append(("HEAD" if head else "GET", path, h.headers.get("Range")))
        if path in (api, f"{api}/revision/main", f"{api}/revision/{self.sha}"):
            return self.json(h, {"id": self.repo, "sha": self.sha, "private": False,
                                 "siblings": [{"rfilename": p} for p in self.files]}, head)
        if path in (f"{api}/tree/main", f"{api}/tree/{self.sha}"):
            return self.json(h, [self.entry(p) for p in self.files], head)
        if path.startswith(resolve):
            rev, _, name = path[len(resolve):].partition("/")
            if rev in ("main", self.sha) and name in self.files:
                return self.file(h, name, head)
        h.send_response(404)
        h.send_header("X-Error-Code", "RepoNotFound" if not path.startswith((api, resolve)) else "EntryNotFound")
        h.send_header("Content-Length", "0")
        h.end_headers()

    def json(self, h: BaseHTTPRequestHandler, obj, head: bool) -> None:
        body = json.dumps(obj).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def file(self, h: BaseHTTPRequestHandler, name: str, head: bool) -> None:
        data = self.files[name]
        e = self.entry(name)
        etag = e["lfs"]["oid"] if "lfs" in e else e["oid"]
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and not head:
            start = int(rng[6:].split("-")[0])
        body = data[start:]
        if not head and name in self.corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if not head and name in self.short:
            body = body[: self.short[name]]
        h.send_response(206 if start else 200)
        h.send_header("ETag", f'"{etag}"')
        if "lfs" in e:
            h.send_header("X-Linked-Etag", f'"{etag}"')
            h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("X-Repo-Commit", self.sha)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if head:
            return
        cut = self.drop_once.pop(name, None) if not start else None
        for i in range(0, len(body), 16384):
            if cut is not None and i >= cut:
                h.close_connection = True
                h.wfile.flush()
                h.connection.shutdown(2)  # the body stops short of its Content-Length
                return
            h.wfile.write(body[i:i + 16384])
            with self.lock:
                self.sent[name] = self.sent.get(name, 0) + len(body[i:i + 16384])
            if name in self.slow:
                time.sleep(self.slow[name])

    def __enter__(self) -> Hub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(demo_model_master: Path):
    with Hub(demo_model_master) as h:
        yield h


def _same_files(folder: Path, hub: Hub) -> None:
    for rel, data in hub.files.items():
        assert (folder / rel).read_bytes() == data, rel


def test_download_into_hf_cache_then_found_and_loaded(home: Path, hub: Hub,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as every studio process sets it
    seen: list[Progress] = []
    folder = download_model("hf", REPO, endpoint=hub.url, progress=seen.append)
    cache = Path(os.environ["HF_HUB_CACHE"]) / "models--Tongyi-MAI--Z-Image-Turbo"
    assert folder == cache / "snapshots" / hub.sha
    assert (cache / "refs" / "main").read_text() == hub.sha
    assert (folder / BIG).is_symlink() and (folder / BIG).resolve().parent == (cache / "blobs").resolve()
    _same_files(folder, hub)
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # offline again after the download

    total = sum(len(d) for d in hub.files.values())
    assert seen[0].phase == "listing" and seen[-1].phase == "done"
    assert seen[-1].done_bytes == seen[-1].total_bytes == total and seen[-1].files_total == len(hub.files)
    checking = [p.done_bytes for p in seen if p.phase == "checking"]
    assert checking == sorted(checking) and checking[-1] == total

    info = resolve_model()
    assert info.source == "huggingface" and info.path == str(folder) and info.complete

    import torch

    from studio.engine.loader import load_pipeline

    pipe = load_pipeline(info.path, torch.device("cpu"), torch.float32)
    assert type(pipe).__name__ == "ZImagePipeline"

    # A second run finds everything in place: no file is fetched again.
    before = len([1 for m, p, _ in hub.log if m == "GET" and "/resolve/" in p])
    assert download_model("hf", REPO, endpoint=hub.url) == folder
    assert len([1 for m, p, _ in hub.log if m == "GET" and "/resolve/" in p]) == before


def test_dropped_connection_resumes_with_range(home: Path, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    # huggingface_hub writes (and so can resume from) 10 MB chunks; the demo file is 2.3 MB.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    size = len(hub.files[BIG])
    hub.drop_once[BIG] = size // 2
    folder = download_model("hf", REPO, endpoint=hub.url)
    _same_files(folder, hub)
    ranges = hub.gets(f"/{REPO}/resolve/{hub.sha}/{BIG}")
    assert ranges[0] is None and len(ranges) == 2, hub.log
    resumed_at = int(ranges[1].removeprefix("bytes=").split("-")[0])
    assert 0 < resumed_at < size  # only the rest was asked for


def test_killed_download_keeps_finished_files(home: Path, hub: Hub) -> None:
    hub.slow[BIG] = 0.25  # ~64 KiB/s: the big file is still coming when the process is killed
    env = cli_env(home)
    env["HF_ENDPOINT"] = hub.url
    cmd = [sys.executable, "-m", "studio", "models", "download", "--repo", REPO]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    others = [p for p in hub.files if p != BIG]
    snap = Path(env["HF_HUB_CACHE"]) / "models--Tongyi-MAI--Z-Image-Turbo" / "snapshots" / hub.sha
    deadline = time.time() + 120
    while time.time() < deadline:
        if all((snap / p).is_file() for p in others) and hub.sent.get(BIG, 0) > 0:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    else:
        pytest.fail("the first download never got going")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (snap / BIG).exists() and hub.sent[BIG] < len(hub.files[BIG])

    hub.slow.clear()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(snap)
    _same_files(snap, hub)
    for p in others:  # finished files were not fetched a second time
        assert len(hub.gets(f"/{REPO}/resolve/{hub.sha}/{p}")) == 1, p


def test_corrupted_file_is_detected_removed_and_refetched(home: Path, hub: Hub) -> None:
    hub.corrupt.add(VAE)
    with pytest.raises(DownloadError, match=r"vae/diffusion_pytorch_model\.safetensors has sha256") as err:
        download_model("hf", REPO, endpoint=hub.url)
    assert "run the download again" in str(err.value)
    snap = Path(os.environ["HF_HUB_CACHE"]) / "models--Tongyi-MAI--Z-Image-Turbo" / "snapshots" / hub.sha
    assert not (snap / VAE).exists()
    assert not resolve_model().source == "huggingface"  # an unchecked model is not used
    hub.corrupt.clear()
    folder = download_model("hf", REPO, endpoint=hub.url)
    _same_files(folder, hub)


def test_short_file_is_detected(home: Path, hub: Hub, tmp_path: Path) -> None:
    hub.short[BIG] = 1000
    with pytest.raises(DownloadError, match="wrong size|1000"):
        download_model("hf", REPO, target_dir=tmp_path / "z", endpoint=hub.url)
    hub.short.clear()
    folder = download_model("hf", REPO, target_dir=tmp_path / "z", endpoint=hub.url)
    assert folder == (tmp_path / "z").resolve()
    _same_files(folder, hub)
    assert resolve_model(str(folder)).complete


def test_configs_only_gives_single_files_their_tokenizer(home: Path, hub: Hub, tmp_path: Path,
                                                         demo_model_master: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_single_file import write_comfyui_files

    folder = download_model("hf", REPO, endpoint=hub.url, configs_only=True)
    assert (folder / "tokenizer" / "tokenizer.json").is_file() and not (folder / BIG).exists()
    assert not any("/resolve/" in p and p.endswith(".safetensors") for _m, p, _r in hub.log)
    # the demo folder must not be what completes the set
    for d in (home / "data" / "models").iterdir():
        if d.name.startswith("zaoxiang-demo-"):
            import shutil

            shutil.rmtree(d)
    root = write_comfyui_files(demo_model_master, tmp_path / "ComfyUI")
    monkeypatch.setenv("ZAOXIANG_COMFYUI", str(root))
    models = find_models(include_demo=False)
    hf = next(m for m in models if m.source == "huggingface")
    assert not hf.complete and "transformer weights" in hf.missing
    comfy = next(m for m in models if m.format == "comfyui-single-file")
    assert comfy.complete, comfy.missing
    assert json.loads(Path(comfy.path).read_text())["tokenizer"] == str(folder)


def test_unknown_repo_and_unreachable_hub_are_one_line(home: Path, hub: Hub) -> None:
    env = cli_env(home)
    env["HF_ENDPOINT"] = hub.url
    bad = subprocess.run([sys.executable, "-m", "studio", "models", "download", "--repo", "nobody/nothing"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "nobody/nothing was not found" in bad.stderr
    assert "Traceback" not in bad.stderr
    with pytest.raises(DownloadError, match="Could not download .* HF_ENDPOINT"):
        download_model("hf", REPO, endpoint="http://127.0.0.1:9")  # nothing listens on port 9


def test_modelscope_needs_its_package(home: Path) -> None:
    try:
        import modelscope  # noqa: F401
    except ImportError:
        with pytest.raises(DownloadError, match=r"^ModelScope downloads need the modelscope package: "
                                                r"pip install modelscope$"):
            download_model("modelscope", REPO)
    else:
        pytest.skip("modelscope is installed here; its download needs the real ModelScope hub")
