"""Getting Z-Image weights once: Hugging Face (or a mirror via HF_ENDPOINT) or ModelScope.

The studio sets the hubs offline at every start (core/process_env.py); a download is the one moment it
goes online, and `hub_online` undoes exactly that for the download's duration. Progress is measured
on disk (bytes of finished files plus the growing temp files) so it does not depend on the hub
library's progress-bar internals, and every file is checked against the size and hash the hub
publishes (sha256 for LFS files, git-sha1 for small ones) before the download counts as done.

Resuming: files already downloaded are kept and skipped on the next run; a dropped connection is
resumed with an HTTP Range request inside the same run (huggingface_hub's own retry).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import StudioError

DEFAULT_REPO = "Tongyi-MAI/Z-Image-Turbo"
SOURCES = ("hf", "modelscope")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.onnx", "*.msgpack", "*.h5")
MODELSCOPE_HINT = "ModelScope downloads need the modelscope package: pip install modelscope"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class DownloadError(StudioError, RuntimeError):
    """A download that did not finish or did not check out; the message says what to do next."""


@dataclass(frozen=True)
class Progress:
    phase: str  # listing | downloading | checking | done
    done_bytes: int
    total_bytes: int
    files_total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # LFS files
    git_sha1: str | None  # small files kept in git


@contextlib.contextmanager
def hub_online() -> Iterator[None]:
    """Let huggingface_hub reach the network for the duration; restore the offline flags after."""
    saved = {k: os.environ.get(k) for k in OFFLINE_VARS}
    for k in OFFLINE_VARS:
        os.environ[k] = "0"
    constants = None
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency
        pass
    old = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = False  # read once at import; the env var alone would not do it
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if constants is not None and old is not None:
            constants.HF_HUB_OFFLINE = old


def wanted(path: str, configs_only: bool, allow: tuple[str, ...] | None = None) -> bool:
    """Whether `path` is fetched: no weights under `configs_only`; only names matching `allow` where given."""
    name = path.rsplit("/", 1)[-1]
    if allow is not None and not any(fnmatch.fnmatch(name, p) for p in allow):
        return False
    return not (configs_only and any(fnmatch.fnmatch(name, p) for p in WEIGHT_PATTERNS))


def hf_cache_dir() -> Path:
    """Where the download goes by default: the same cache discovery looks in first."""
    from studio.models.discovery import hf_cache_dirs

    return hf_cache_dirs()[0]


def _endpoint(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _hf_list(repo: str, revision: str, endpoint: str) -> tuple[str, list[RemoteFile]]:
    """The commit a revision points to and its files with their published sizes and hashes."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint)
    try:
        sha = api.model_info(repo, revision=revision).sha
        files = [RemoteFile(f.path, f.size, f.lfs.sha256 if f.lfs else None, None if f.lfs else f.blob_id)
                 for f in api.list_repo_tree(repo, recursive=True, revision=sha) if isinstance(f, RepoFile)]
    except Exception as exc:  # huggingface_hub raises many kinds; all mean the same to a person
        raise DownloadError(_explain(exc, repo, endpoint)) from exc
    if not sha:
        raise DownloadError(f"{endpoint} did not say which commit {repo}@{revision} is.")
    return sha, files


def _explain(exc: Exception, repo: str, endpoint: str) -> str:
    name = type(exc).__name__
    if "RepositoryNotFound" in name or "RevisionNotFound" in name:
        return f"{repo} was not found at {endpoint} ({name})."
    if "Consistency check failed" in str(exc):
        return f"A file arrived with the wrong size from {endpoint}: {str(exc).splitlines()[0]} Run the download again."
    return (f"Could not download {repo} from {endpoint}: {name}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "Check the network, set HF_ENDPOINT to a mirror (e.g. https://hf-mirror.com), or use --source modelscope.")


def _file_hash(path: Path, algo: str) -> str:
    if algo == "git-sha1":
        size = path.stat().st_size
        h = hashlib.sha1(f"blob {size}\0".encode())
    else:
        h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * 2**20):
            h.update(chunk)
    return h.hexdigest()


def verify(folder: Path, files: list[RemoteFile], progress: Callable[[int], None] | None = None) -> list[str]:
    """Problems with the downloaded files (empty when every size and hash matches the hub's)."""
    problems = []
    for f in files:
        local = folder / f.path
        if not local.is_file():
            problems.append(f"{f.path} is missing")
            continue
        size = local.stat().st_size
        if size != f.size:
            problems.append(f"{f.path} has {size} bytes, the hub says {f.size}")
        elif f.sha256 and (got := _file_hash(local, "sha256")) != f.sha256:
            problems.append(f"{f.path} has sha256 {got[:12]}…, the hub says {f.sha256[:12]}…")
        elif f.git_sha1 and not f.sha256 and (got := _file_hash(local, "git-sha1")) != f.git_sha1:
            problems.append(f"{f.path} has git-sha1 {got[:12]}…, the hub says {f.git_sha1[:12]}…")
        else:
            if progress:
                progress(size)
            continue
        _remove(local)
    return problems


def _remove(local: Path) -> None:
    """Delete a bad file (and the cache blob it links to) so the next run fetches it again."""
    try:
        if local.is_symlink():
            blob = local.resolve()
            local.unlink()
            blob.unlink(missing_ok=True)
        else:
            local.unlink()
    except OSError:
        pass


class _DiskWatcher:
    """Reports bytes on disk for the expected files every half second, from a thread."""

    def __init__(self, folder: Path, temp_dirs: list[Path], files: list[RemoteFile], report: ProgressCallback):
        self.folder, self.temp_dirs, self.files, self.report = folder, temp_dirs, files, report
        self.total = sum(f.size for f in files)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-progress", daemon=True)

    def measure(self) -> int:
        done = 0
        for f in self.files:
            try:
                done += min((self.folder / f.path).stat().st_size, f.size)
            except OSError:
                pass
        for d in self.temp_dirs:
            for root, _dirs, names in os.walk(d):
                for n in names:
                    if n.endswith(".incomplete") or ".____temp" in root or n.endswith(".tmp"):
                        with contextlib.suppress(OSError):
                            done += os.stat(os.path.join(root, n)).st_size
        return min(done, self.total)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.report(Progress("downloading", self.measure(), self.total, len(self.files)))

    def __enter__(self) -> _DiskWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def list_files(source: str, repo: str, revision: str = "main", endpoint: str | None = None) -> list[RemoteFile]:
    """The files of `repo` at `revision` with their published sizes and hashes (DownloadError if it cannot)."""
    if source not in SOURCES:
        raise DownloadError(f"Unknown source {source!r}: use one of {', '.join(SOURCES)}.")
    if source == "modelscope":
        return _modelscope_list(repo, None if revision == "main" else revision, False, None)
    with hub_online():
        return _hf_list(repo, revision, _endpoint(endpoint))[1]


def download_model(source: str = "hf", repo: str = DEFAULT_REPO, target_dir: str | Path | None = None,
                   revision: str = "main", configs_only: bool = False, endpoint: str | None = None,
                   progress: ProgressCallback | None = None, allow: tuple[str, ...] | None = None) -> Path:
    """Download `repo` once (resuming what is there), check it, and return the model folder.

    `target_dir` None means the hub's cache (Hugging Face: HF_HUB_CACHE/HF_HOME; ModelScope:
    MODELSCOPE_CACHE), where discovery finds it. `configs_only` fetches configs, tokenizer and
    scheduler (a few MB): what ComfyUI single files need besides their weights. `allow` (file-name
    patterns) fetches only the matching files (a LoRA repo: its .safetensors). `progress` is called
    from a background thread as well as this one (the Settings tab passes a thread-safe callback).
    """
    report = progress or (lambda p: None)
    if source not in SOURCES:
        raise DownloadError(f"Unknown source {source!r}: use one of {', '.join(SOURCES)}.")
    report(Progress("listing", 0, 0, 0, f"Listing {repo}"))
    if source == "modelscope":
        return _download_modelscope(repo, target_dir, revision, configs_only, report, allow)
    return _download_hf(repo, target_dir, revision, configs_only, _endpoint(endpoint), report, allow)


def _download_hf(repo: str, target_dir, revision: str, configs_only: bool, endpoint: str,
                 report: ProgressCallback, allow: tuple[str, ...] | None = None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # ours is measured on disk; theirs would draw a second set of bars
    with hub_online():
        sha, files = _hf_list(repo, revision, endpoint)
        files = [f for f in files if wanted(f.path, configs_only, allow)]
        if target_dir is None:
            cache = hf_cache_dir()
            storage = cache / ("models--" + repo.replace("/", "--"))
            folder, temps = storage / "snapshots" / sha, [storage / "blobs"]
        else:
            cache, folder = None, Path(target_dir).expanduser().resolve()
            temps = [folder / ".cache" / "huggingface"]
        ignore = list(WEIGHT_PATTERNS) if configs_only else None
        try:
            with _DiskWatcher(folder, temps, files, report):
                # cache_dir always given: huggingface_hub reads HF_HUB_CACHE once, at import, and copies a
                # blob it finds there into local_dir without asking the hub (or checking our endpoint).
                got = snapshot_download(repo, revision=sha, cache_dir=str(cache or hf_cache_dir()),
                                        local_dir=str(folder) if cache is None else None, endpoint=endpoint,
                                        ignore_patterns=ignore, allow_patterns=list(allow) if allow else None, max_workers=4)
        except Exception as exc:
            raise DownloadError(_explain(exc, repo, endpoint)) from exc
        if cache is not None:  # snapshot_download stores refs/<revision> only for names, not for a sha
            (storage / "refs").mkdir(parents=True, exist_ok=True)
            (storage / "refs" / revision).write_text(sha)
    return _check(Path(got), files, report)


def _check(folder: Path, files: list[RemoteFile], report: ProgressCallback) -> Path:
    total = sum(f.size for f in files)
    checked = [0]

    def tick(n: int) -> None:
        checked[0] += n
        report(Progress("checking", checked[0], total, len(files)))

    problems = verify(folder, files, tick)
    if problems:
        raise DownloadError("The download did not check out: " + "; ".join(problems)
                            + ". The bad files were removed: run the download again to fetch them anew.")
    report(Progress("done", total, total, len(files), str(folder)))
    return folder


def _modelscope_list(repo: str, revision: str | None, configs_only: bool,
                     allow: tuple[str, ...] | None) -> list[RemoteFile]:
    try:
        from modelscope.hub.api import HubApi
    except ImportError as exc:
        raise DownloadError(MODELSCOPE_HINT) from exc
    files: list[RemoteFile] = []
    try:
        for f in HubApi().get_model_files(repo, revision=revision or "master", recursive=True):
            if f.get("Type") != "tree" and wanted(f["Path"], configs_only, allow):
                files.append(RemoteFile(f["Path"], int(f.get("Size", 0)), f.get("Sha256") or None, None))
    except Exception as exc:
        raise DownloadError(f"Could not list {repo} on ModelScope: {type(exc).__name__}: {exc}") from exc
    return files


def _download_modelscope(repo: str, target_dir, revision: str, configs_only: bool,
                         report: ProgressCallback, allow: tuple[str, ...] | None = None) -> Path:
    files = _modelscope_list(repo, None if revision == "main" else revision, configs_only, allow)
    from modelscope.hub.snapshot_download import snapshot_download

    from studio.models.discovery import modelscope_cache_dirs

    revision = None if revision == "main" else revision
    cache = modelscope_cache_dirs()[0] if target_dir is None else None
    org, name = repo.split("/")
    folder = Path(target_dir).expanduser().resolve() if target_dir else cache / "models" / org / name
    try:
        with _DiskWatcher(folder, [folder.parent], files, report):
            got = snapshot_download(repo, revision=revision, cache_dir=str(cache) if cache else None,
                                    local_dir=str(folder) if target_dir else None,
                                    ignore_patterns=list(WEIGHT_PATTERNS) if configs_only else None,
                                    allow_patterns=list(allow) if allow else None)
    except Exception as exc:
        raise DownloadError(f"Could not download {repo} from ModelScope: {type(exc).__name__}: {exc}") from exc
    return _check(Path(got), files, report)
