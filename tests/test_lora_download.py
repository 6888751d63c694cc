"""`zaoxiang models download --lora` against the local Hugging Face Hub stand-in of test_download.py.

A LoRA repo's .safetensors files land in the data dir's `loras` folder, checked against the hub's
hashes, and `models list` shows them with layout, rank and base model; a repo with only pickle
files is refused in one line before anything is fetched; a repo whose .safetensors are not LoRAs
is refused and leaves nothing behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.paths import get_paths
from studio.models.download import DownloadError
from studio.models.lora_download import download_lora, folder_for
from tests.conftest import cli_env
from tests.test_download import Hub

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "demo-lora"
REPO = "someone/z-image-purple"


def _repo(folder: Path, files: dict[str, bytes | Path]) -> Path:
    folder.mkdir(parents=True)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, folder / rel)
        else:
            (folder / rel).write_bytes(data)
    return folder


def _cli(home: Path, hub: Hub, *args: str) -> subprocess.CompletedProcess:
    env = cli_env(home)
    env["HF_ENDPOINT"] = hub.url
    return subprocess.run([sys.executable, "-m", "studio", "models", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_lora_repo_lands_in_loras_and_is_listed(home: Path, tmp_path: Path) -> None:
    src = _repo(tmp_path / "repo", {"README.md": b"# purple\n", "notes.txt": b"not fetched\n",
                                    "demo-purple.safetensors": ASSETS / "demo-purple.safetensors",
                                    "kohya/demo-purple-kohya.safetensors": ASSETS / "demo-purple.kohya.safetensors"})
    with Hub(src, REPO) as hub:
        done = _cli(home, hub, "download", "--lora", "--repo", REPO)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        fetched = sorted(p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p, _ in hub.log
                         if m == "GET" and "/resolve/" in p)
        assert fetched == ["demo-purple.safetensors", "kohya/demo-purple-kohya.safetensors"]
        # a second run fetches nothing again
        again = _cli(home, hub, "download", "--lora", "--repo", REPO)
        assert again.returncode == 0, again.stderr
        assert len([1 for m, p, _ in hub.log if m == "GET" and "/resolve/" in p]) == 2

    folder = folder_for(REPO, get_paths().loras_dir)
    for rel in ("demo-purple.safetensors", "kohya/demo-purple-kohya.safetensors"):
        assert (folder / rel).read_bytes() == hub.files[rel]
    assert not (folder / "README.md").exists() and not (folder / "notes.txt").exists()
    lines = done.stdout.splitlines()
    assert any(ln.split()[:4] == ["demo-purple", "diffusers", "rank", "4"] for ln in lines), done.stdout

    listed = _cli(home, hub, "list")
    assert listed.returncode == 0, listed.stderr
    rows = {ln.split()[0]: ln for ln in listed.stdout.split("LoRAs (", 1)[1].splitlines()[1:]
            if ln.startswith("  ") and not ln.startswith("    ")}
    assert rows["demo-purple"].split()[1:4] == ["diffusers", "rank", "4"]
    assert rows["demo-purple-kohya"].split()[1:4] == ["kohya", "rank", "4"]
    assert "z-image-demo-tiny" in rows["demo-purple"], rows  # the base model, from metadata or shapes
    assert str(folder / "demo-purple.safetensors") in listed.stdout


def test_pickle_only_repo_is_refused_in_one_line(home: Path, tmp_path: Path) -> None:
    src = _repo(tmp_path / "repo", {"README.md": b"# old\n", "adapter_model.bin": b"\x80\x04K\x01.",
                                    "lora.pt": b"\x80\x04K\x02."})
    with Hub(src, "someone/pickled") as hub:
        bad = _cli(home, hub, "download", "--lora", "--repo", "someone/pickled")
        assert not [p for m, p, _ in hub.log if "/resolve/" in p]  # nothing was fetched
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "zaoxiang: someone/pickled offers only pickle files (adapter_model.bin, lora.pt); only .safetensors "
        "LoRAs are downloaded (pickle can run code): look for a .safetensors version."]
    assert not folder_for("someone/pickled", get_paths().loras_dir).exists()


def test_safetensors_that_are_not_loras_are_refused_and_removed(home: Path, tmp_path: Path,
                                                              demo_model_master: Path) -> None:
    vae = demo_model_master / "vae" / "diffusion_pytorch_model.safetensors"
    src = _repo(tmp_path / "repo", {"model.safetensors": vae})
    with Hub(src, "someone/not-a-lora") as hub:
        with pytest.raises(DownloadError, match=r"^someone/not-a-lora holds no LoRA: model\.safetensors holds no "
                                                r"LoRA weights in a layout we know"):
            download_lora("hf", "someone/not-a-lora", get_paths().loras_dir, endpoint=hub.url)
    assert not folder_for("someone/not-a-lora", get_paths().loras_dir).exists()


def test_lora_flag_needs_a_repo(home: Path, tmp_path: Path) -> None:
    with Hub(_repo(tmp_path / "repo", {"a.txt": b"x"}), REPO) as hub:
        bad = _cli(home, hub, "download", "--lora")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--repo OWNER/NAME" in bad.stderr
        none = _cli(home, hub, "download", "--lora", "--repo", REPO)
    assert none.returncode == 1
    assert none.stderr.strip() == f"zaoxiang: {REPO} has no .safetensors file: it is not a LoRA repo."
