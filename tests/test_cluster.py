"""Workers on other machines through Ray: a real local Ray cluster (a head without CPUs for work and
two one-CPU nodes, all on 127.0.0.1), started once for the module, running the real worker loop on
the demo model. Each node has a studio home of its own (as another machine would: no shared data
folder), so image inputs must travel with their jobs.

Ray's addresses stay on loopback: Ray turns "127.0.0.1" into the machine's network address unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (read when ray is imported), which the fixture sets first.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from studio.cluster import wire
from studio.cluster.connect import ClusterInfo, NodeInfo
from studio.cluster.placement import places
from studio.core.jobs import Job
from studio.core.pngfile import read_chunks
from studio.core.spec import ImageSpec
from studio.pool.worker import DELAY_ENV
from tests.conftest import ROOT, cli_env
from tests.homes import make_home

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (the cluster extra)")
OBJECT_STORE_BYTES = 80 * 2**20  # Ray's floor is 75 MiB; a 256² PNG is a few kB
ACTOR_STEP_DELAY_S = 0.15  # added to each step of the studio's two actors: a kill lands mid-image


# ----------------------------------------------------------------- placement rules (no cluster)

def _node(n: int, host: str, cpus: float, gpus: int, driver: bool = False) -> NodeInfo:
    return NodeInfo(f"{n:02d}" + "ab" * 27, host, cpus, gpus, driver)


def test_places_one_worker_per_gpu_and_one_per_cpu_node() -> None:
    cluster = ClusterInfo("10.0.0.1:6379", (_node(1, "10.0.0.1", 16, 2, driver=True), _node(2, "10.0.0.2", 8, 0),
                                            _node(3, "10.0.0.3", 0, 0)))
    got = places(cluster)
    assert [p.name for p in got] == ["ray:10.0.0.1/cuda:0", "ray:10.0.0.1/cuda:1", "ray:10.0.0.2/cpu"]
    assert [(p.num_gpus, p.threads) for p in got] == [(1, 8), (1, 8), (0, 8)]
    # beside local workers, the studio's own machine is theirs
    assert [p.host for p in places(cluster, with_local_workers=True)] == ["10.0.0.2"]


def test_places_tell_nodes_of_one_host_apart() -> None:
    cluster = ClusterInfo("127.0.0.1:1", (_node(1, "127.0.0.1", 1, 0), _node(2, "127.0.0.1", 1, 0)))
    names = [p.name for p in places(cluster)]
    assert len(set(names)) == 2 and all(n.startswith("ray:127.0.0.1~") for n in names)


def test_workers_grammar_takes_a_ray_part() -> None:
    from studio.core.settings_check import workers_problem
    from studio.core.workers_spec import parse_workers_text

    alone, beside = parse_workers_text("ray"), parse_workers_text("cuda:0, ray")
    assert alone.ray and alone.workers(["0"], 8) == []  # no worker process here
    assert beside.ray and [w.name for w in beside.workers(["0", "1"], 8)] == ["cuda:0"]
    assert not parse_workers_text("cpu:2").ray
    assert workers_problem("cpu:1,ray") is None and workers_problem("ray,bogus") is not None


# ----------------------------------------------------------------- no cluster

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_ray
def test_no_cluster_is_one_clear_line_or_a_fallback() -> None:
    """`ray` alone fails with one line; beside local workers it falls back to them, saying so once."""
    code = ("from studio.cluster.connect import ClusterUnavailable\n"
            "from studio.cluster.workers import cluster_workers\n"
            "try:\n    cluster_workers(with_local_workers=False)\nexcept ClusterUnavailable as exc:\n    print(exc)\n"
            "got = cluster_workers(with_local_workers=True)\nprint(len(got.places), got.notice)\n")
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{_free_port()}", "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("No Ray cluster answers at 127.0.0.1:"), out
    assert "ray start --head" in lines[0] and "Traceback" not in out.stderr
    assert lines[1] == f"0 {lines[0]} Using this machine's workers only."
    assert time.monotonic() - t0 < 30  # the probe answers at once; ray.init alone would retry for minutes


@needs_ray
def test_cli_workers_ray_without_a_cluster_fails_with_one_line(home: Path) -> None:
    env = {**cli_env(home), "RAY_ADDRESS": f"127.0.0.1:{_free_port()}", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "studio", "generate", "a red star", "--workers", "ray"], env=env,
                       capture_output=True, text=True, timeout=120)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("zaoxiang: No Ray cluster answers at 127.0.0.1:") and not p.stdout


# ----------------------------------------------------------------- one local cluster for the module

def node_homes(home: Path) -> list[Path]:
    """The nodes' own ZAOXIANG_HOMEs, beside the studio's `home`."""
    return [home.parent / f"node-{i}" for i in range(2)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, demo_model_master: Path):
    """A head (no CPUs: nothing runs there) and two one-CPU nodes, each with its own home; this
    process is the driver."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (the cluster extra)")
    with pytest.MonkeyPatch.context() as mp:
        home = make_home(tmp_path_factory.mktemp("ray-home"), demo_model_master, mp)
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # every worker of the studio (cpu:0 and its two actors) as slow, so the measured-speed planner
        # gives the actors their share: a local worker many times faster may rightly take all eight
        mp.setenv(DELAY_ENV, ",".join(f"{i}:{ACTOR_STEP_DELAY_S}" for i in range(3)))
        mp.setenv("PYTHONPATH", str(ROOT))  # the nodes' workers import this checkout's studio
        mp.delenv("RAY_ADDRESS", raising=False)
        from ray.cluster_utils import Cluster

        from studio.cluster.connect import connect, disconnect

        loopback = {"object_store_memory": OBJECT_STORE_BYTES, "node_ip_address": "127.0.0.1"}
        ray_cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                    **loopback})
        try:
            for node_home in node_homes(home):  # a node's processes inherit the environment it starts in
                mp.setenv("ZAOXIANG_HOME", str(node_home))
                ray_cluster.add_node(num_cpus=1, **loopback)
            mp.setenv("ZAOXIANG_HOME", str(home))
            ray_cluster.wait_for_nodes()
            info = connect(ray_cluster.address)
            yield info, home
        finally:
            disconnect()
            ray_cluster.shutdown()


class Link:
    """One worker actor with the pool's ends of its pipes, as the pool holds a worker process."""

    def __init__(self, info: ClusterInfo, place_index: int, *, model_path: str = "",
                 model_name: str = "demo") -> None:
        from studio.cluster.process import RayContext

        self.place = places(info)[place_index]
        ctx = RayContext([self.place])
        child_control, self.control = ctx.Pipe(duplex=False)
        self.results, child_results = ctx.Pipe(duplex=False)
        cfg = {"index": 0, "name": self.place.name, "device": "cpu", "visible_devices": "", "threads": 1,
               "model_path": model_path, "model_name": model_name, "memory_profile": None}
        self.proc = ctx.Process(target=None, args=(cfg, child_control, child_results), name=self.place.name)
        self.proc.start()
        child_control.close()  # as the pool does: the actor's relays hold their own copies
        child_results.close()
        self.seen: list[Any] = []

    def next(self, kind: str, timeout: float = 240.0) -> dict[str, Any]:
        """The payload of the next message of `kind` (those before it are kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.results.poll(min(1.0, max(0.0, deadline - time.monotonic()))):
                msg = self.results.recv()
                self.seen.append((wire.kind(msg), wire.payload(msg)))
                if wire.kind(msg) == kind:
                    return wire.payload(msg)
        raise AssertionError(f"no {kind!r} within {timeout} s; seen: {[s for s, _ in self.seen]}")

    def ended(self, timeout: float = 60.0) -> int | None:
        from multiprocessing.connection import wait

        assert wait([self.proc.sentinel], timeout), "the actor did not end"
        self.proc.join(5.0)
        return self.proc.exitcode

    def close(self) -> None:
        self.control.close()
        self.proc.join(10.0)


def _job(home: Path, name: str, *, steps: int = 4, seed: int = 7) -> dict[str, Any]:
    spec = ImageSpec(prompt="a red star", width=256, height=256, steps=steps, seed=seed, model="demo")
    return Job(job_id=name, request_id="r-" + name, index=0, spec=spec,
               output_path=str(home / "gallery" / f"{name}.png")).to_dict()


@pytest.fixture(scope="module")
def link(cluster):
    """A ready worker actor on the first node, for the tests that send it jobs (the node has room for
    one actor: the studio's fixture closes this one first)."""
    info, home = cluster
    from studio.models.demo import demo_model_dir

    one = Link(info, 0, model_path=str(demo_model_dir()))
    one.next("ready")
    yield one
    one.close()


def test_actor_image_lands_in_the_gallery_atomically(cluster, link: Link) -> None:
    _info, home = cluster
    job = _job(home, "round-trip")
    link.control.send(wire.job(job))
    started = link.next("started")
    done = link.next("done")
    steps = [p for s, p in link.seen if s == "step" and p["job_id"] == job["job_id"]]
    assert started["job_id"] == done["job_id"] == job["job_id"]
    assert [p["step"] for p in steps] == [1, 2, 3, 4]  # progress streams back from the node
    assert done["path"] == job["output_path"] and done["worker"] == link.place.name
    target = Path(job["output_path"])
    assert target.is_file()  # written before `done` was passed on
    # the node's `done` named its scratch file: the studio wrote only its own path, nothing there
    import ray

    scratch = Path(ray.get(link.proc.actor.where.remote())["scratch"])
    assert scratch.is_dir() and not list(scratch.iterdir())
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".part-")]
    chunks = read_chunks(target)
    assert "a red star" in chunks["parameters"] and link.place.name in chunks["zaoxiang"]
    from PIL import Image

    with Image.open(target) as im:
        assert im.size == (256, 256)


def test_image_inputs_travel_with_the_job_to_the_node(cluster, link: Link) -> None:
    """Issue 23: an image-to-image job on a node whose home has never seen its init image; the bytes
    go with the job and land in that node's inputs folder under their hash (once per actor: the
    shipper's own test below)."""
    import numpy as np
    from PIL import Image

    from studio.core.image_inputs import InputStore

    _info, home = cluster
    picture = Image.new("RGB", (256, 256), (30, 40, 220))
    picture.paste((230, 200, 20), (0, 0, 128, 256))
    digest = InputStore().put_image(picture).sha256  # in the studio's home only
    stores = [InputStore(root=h / "data" / "inputs") for h in node_homes(home)]
    assert InputStore().path(digest) is not None and not any(s.path(digest) for s in stores)
    spec = ImageSpec(prompt="a red star", width=256, height=256, steps=4, seed=3, model="demo",
                     init_image=digest, strength=0.3)
    made = []
    for name, job_spec in (("img2img-remote", spec), ("img2img-again", spec),
                           ("txt2img-same-seed", replace(spec, init_image=None, strength=None))):
        job = Job(job_id=name, request_id="r-" + name, index=0, spec=job_spec,
                  output_path=str(home / "gallery" / f"{name}.png")).to_dict()
        link.control.send(wire.job(job))
        done = link.next("done")
        assert done["job_id"] == name and not [p for s, p in link.seen if s == "failed"], link.seen
        made.append(np.asarray(Image.open(done["path"]).convert("RGB"), dtype=np.int16))
    landed = [s.path(digest) for s in stores if s.path(digest)]
    assert len(landed) == 1 and landed[0].read_bytes() == InputStore().path(digest).read_bytes()
    assert np.array_equal(made[0], made[1])  # the same job twice: the same pixels
    given = np.asarray(picture, dtype=np.int16)
    assert np.abs(made[0] - given).mean() < np.abs(made[2] - given).mean()  # drawn from the init image
    assert "Denoising strength: 0.3" in read_chunks(home / "gallery" / "img2img-remote.png")["parameters"]


def test_input_shipper_sends_each_input_once_and_nodes_check_the_hash(tmp_path: Path) -> None:
    from PIL import Image

    from studio.cluster.inputs import InputShipper, job_inputs, land
    from studio.core.image_inputs import InputStore

    studio, node = InputStore(root=tmp_path / "studio"), InputStore(root=tmp_path / "node")
    image = studio.put_image(Image.new("RGB", (32, 32), (1, 2, 3))).sha256
    mask = studio.put_image(Image.new("L", (32, 32), 255)).sha256
    job = {"spec": {"init_image": image, "mask": mask, "control": {"image": image}}}
    assert job_inputs(job) == [image, mask, image] and job_inputs({"spec": {"prompt": "x"}}) == []
    shipper = InputShipper(studio)
    first = shipper.for_job(job)
    assert set(first) == {image, mask} and shipper.for_job(job) == {}
    assert land({**first, "0" * 64: first[image]}, node) == ["0" * 64]  # bytes that are not what they claim
    assert node.path(image).read_bytes() == studio.path(image).read_bytes() and node.path("0" * 64) is None
    assert InputShipper(studio).for_job({"spec": {"init_image": "f" * 64}}) == {}  # gone here: nothing sent


def test_a_node_that_cannot_store_an_input_refuses_it_instead_of_failing(tmp_path: Path) -> None:
    """Reliability review: an input the node's disk refuses (full, read-only; here a file stands where
    the store's folder should be) raised out of the actor's `deliver`, and the relay stopped delivering
    to that worker for good. It is now refused like bad bytes: the worker reports it missing."""
    from PIL import Image

    from studio.cluster.inputs import InputShipper, land
    from studio.core.image_inputs import InputStore

    studio = InputStore(root=tmp_path / "studio")
    image = studio.put_image(Image.new("RGB", (32, 32), (4, 5, 6))).sha256
    sent = InputShipper(studio).for_job({"spec": {"init_image": image}})
    (tmp_path / "node").write_text("a file where the node's inputs folder should be")
    assert land(sent, InputStore(root=tmp_path / "node")) == [image]
    # a node's copy cut short (a crash, a full disk) is written whole again when the input comes again
    node = InputStore(root=tmp_path / "node2")
    assert land(sent, node) == []
    node.path(image).write_bytes(node.path(image).read_bytes()[:100])
    assert land(sent, node) == [] and node.path(image).read_bytes() == studio.path(image).read_bytes()


def test_a_nodes_done_is_written_only_where_the_studio_sent_the_job(tmp_path: Path) -> None:
    """Security review F8: a node's `done` naming another file (a compromised node aiming at ~/.bashrc)
    writes the PNG where the job said when it left, and the pool hears that path; a `done` for a job
    never sent to this actor writes nothing and is not passed on; a job's other endings let its path go."""
    from studio.cluster.actor import Relayed
    from studio.cluster.process import Outputs
    from studio.pool import protocol as p

    outputs = Outputs()
    ours = tmp_path / "gallery" / "ours.png"
    aimed = tmp_path / "home" / ".bashrc"
    aimed.parent.mkdir()
    aimed.write_text("# the person's own\n")
    job = _job(tmp_path, "ours")
    job["output_path"] = str(ours)
    outputs.sent(wire.job(job))

    def done(job_id: str) -> p.Done:
        return p.Done(job_id, "r", 0, str(aimed), 7, "ray:node/cpu", 1.0, 1.0, time.time())

    landed = outputs.land(Relayed(done("ours"), b"\x89PNG fake bytes"))
    assert wire.done_path(landed) == ("ours", str(ours)) and ours.read_bytes() == b"\x89PNG fake bytes"
    assert aimed.read_text() == "# the person's own\n"
    assert outputs.land(Relayed(done("ours"), b"again")) is None  # a job lands once
    assert outputs.land(Relayed(done("never-sent"), b"junk")) is None
    assert aimed.read_text() == "# the person's own\n" and ours.read_bytes() == b"\x89PNG fake bytes"
    outputs.sent(wire.job(_job(tmp_path, "fails")))
    failed = p.Failed("fails", 0.5, p.ErrorKind.ERROR, "out of memory")
    assert outputs.land(Relayed(failed)) is failed
    assert outputs.land(Relayed(done("fails"), b"late")) is None
    assert not (tmp_path / "gallery" / "fails.png").exists()


def test_a_nodes_controlnet_is_the_studios_path_where_it_exists_else_its_name(tmp_path: Path) -> None:
    from studio.cluster.node_model import controlnet_here

    here = tmp_path / "union-2.1"
    here.mkdir()
    job = {"job_id": "j", "spec": {"prompt": "x", "control": {"image": "ab" * 32, "model": str(here)}}}
    assert controlnet_here(job) == job
    for studio_path, name in (("/studio/only/Z-Image-Fun-Controlnet-Union.safetensors",
                               "Z-Image-Fun-Controlnet-Union"), ("/studio/only/union-2.1", "union-2.1")):
        moved = controlnet_here({**job, "spec": {**job["spec"], "control": {"image": "ab" * 32, "model": studio_path}}})
        assert moved["spec"]["control"] == {"image": "ab" * 32, "model": name} and moved["job_id"] == "j"
    plain = {"job_id": "k", "spec": {"prompt": "x", "control": None}}
    assert controlnet_here(plain) is plain


def test_cancel_stops_a_running_image(cluster, link: Link) -> None:
    _info, home = cluster
    job = _job(home, "cancelled", steps=60)
    link.control.send(wire.job(job))
    link.next("step")
    link.control.send(wire.revoke(job["job_id"], "cancel"))
    cancelled = link.next("cancelled", timeout=60)
    assert cancelled["job_id"] == job["job_id"]
    assert sum(1 for s, p in link.seen if s == "step" and p["job_id"] == job["job_id"]) < 60
    assert not Path(job["output_path"]).exists()


DRIVER = """
import sys, time
import ray
from studio.cluster.connect import connect
from studio.cluster.placement import places
from studio.cluster.process import RayContext
from studio.models.demo import demo_model_dir

place = places(connect())[1]
ctx = RayContext([place])
child_control, control = ctx.Pipe(duplex=False)
results, child_results = ctx.Pipe(duplex=False)
cfg = {"index": 0, "name": place.name, "device": "cpu", "visible_devices": "", "threads": 1,
       "model_path": str(demo_model_dir()), "model_name": "demo", "memory_profile": None}
proc = ctx.Process(target=None, args=(cfg, child_control, child_results), name=place.name)
proc.start()
where = ray.get(proc.actor.where.remote())  # its worker process is spawned: enough to be orphaned
print(where["pid"], where["worker_pid"], flush=True)
time.sleep(600)
"""


def test_actor_and_worker_end_with_a_killed_studio(cluster) -> None:
    """SIGKILL of the studio process: Ray ends the actors it owned, and their worker processes go too
    (as a local worker's death pipe makes it exit)."""
    info, _home = cluster
    env = {**os.environ, "RAY_ADDRESS": info.address}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = driver.stdout.readline()
        actor_pid, worker_pid = (int(x) for x in line.split())
        assert _alive(actor_pid) and _alive(worker_pid)
    finally:
        driver.kill()
        driver.wait(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (_alive(actor_pid) or _alive(worker_pid)):
        time.sleep(0.3)
    assert not _alive(actor_pid) and not _alive(worker_pid), "the studio's actor or its worker outlived it"


def test_node_without_the_model_says_so(cluster) -> None:
    info, _home = cluster
    missing = Link(info, 1, model_path="/nowhere/Z-Image-Turbo", model_name="Tongyi-MAI/Z-Image-Turbo")
    fatal = missing.next("fatal", timeout=120)
    assert fatal["message"].startswith("No model Tongyi-MAI/Z-Image-Turbo on ")
    assert "zaoxiang models download" in fatal["message"]
    assert missing.ended() == 3  # as a local worker that cannot load: the pool retries, then gives up
    missing.close()  # the monitor shows the message (tests/test_ui.py: pool rows say why)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ----------------------------------------------------------------- one pool: a local worker and two actors

@pytest.fixture(scope="module")
def studio_on_cluster(cluster, link: Link):
    """`--workers cpu:1,ray`: one local worker process and one actor on each node (the last tests here)."""
    from tests.pool_helpers import running_studio

    link.close()  # its node's one CPU is the studio's actor's now
    with running_studio("cpu:1,ray") as both:
        yield both


def _request(count: int = 8, seed: int = 300):
    from studio.core.request import GenerationRequest

    return GenerationRequest(prompt="a red star on a white background", width=256, height=256, steps=4, seed=seed,
                             seed_mode="increment", count=count)


def _arrived_once(studio: Any, recorder: Any, rid: str, results: list[dict[str, Any]]) -> set[str]:
    """Every image of `rid` done, in the gallery and the history once each; returns the workers that made them."""
    from tests.pool_helpers import png_worker

    assert [r["status"] for r in results] == ["done"] * 8
    paths = [Path(r["path"]) for r in results]
    assert len(set(paths)) == 8 and all(p.is_file() for p in paths)
    # events reach subscribers on the studio's event thread, in order: the request's end comes after its
    # jobs', and `wait` can return before the recorder has seen it
    recorder.wait_for(lambda e: e["type"] == "request_done" and e.get("request_id") == rid, timeout=30)
    assert sorted(e["job_id"] for e in recorder.of("job_done", request_id=rid)) == sorted(r["job_id"] for r in results)
    [entry] = [h for h in studio.store.history(limit=20) if h["request_id"] == rid]
    assert entry["jobs_done"] == 8 and sorted(i["path"] for i in entry["images"]) == sorted(map(str, paths))
    in_gallery = {i["path"] for i in studio.store.gallery(per_page=500)}
    assert set(map(str, paths)) <= in_gallery
    assert not list(paths[0].parent.glob(".part-*"))
    makers = {png_worker(p) for p in paths}
    assert makers == {r["worker"] for r in results}
    return makers


def test_eight_images_across_a_local_worker_and_two_actors(studio_on_cluster) -> None:
    studio, recorder = studio_on_cluster
    names = [row["name"] for row in studio.pool_status()]
    assert names[0] == "cpu:0" and len(names) == 3 and all(n.startswith("ray:") for n in names[1:])
    rid = studio.submit(_request())
    makers = _arrived_once(studio, recorder, rid, studio.wait(rid, timeout=300))
    assert any(m.startswith("ray:") for m in makers)  # the cluster's workers took part


def test_killed_actor_mid_request_all_eight_still_arrive(studio_on_cluster) -> None:
    import ray

    studio, recorder = studio_on_cluster
    rid = studio.submit(_request(seed=400))
    started = recorder.wait_for(lambda e: e["type"] == "job_started" and e["request_id"] == rid
                                and e["worker"].startswith("ray:"))
    victim = started["worker"]
    [name] = [n for n in ray.util.list_named_actors() if n.startswith(victim + " ")]
    where = ray.get(ray.get_actor(name).where.remote())
    os.kill(where["pid"], signal.SIGKILL)
    _arrived_once(studio, recorder, rid, studio.wait(rid, timeout=300))
    died = recorder.wait_for(lambda e: e["type"] == "worker_died" and e["worker"] == victim, timeout=60)
    assert "signal 9" in died["message"]
    assert not _alive(where["worker_pid"]), "the worker process outlived its actor"
    # restarted (after its back-off) where Ray finds room: its node, still there
    deadline = time.monotonic() + 60
    row = {}
    while time.monotonic() < deadline:
        row = next(r for r in studio.pool_status() if r["name"] == victim)
        if row["restarts"] >= 1:
            break
        time.sleep(0.2)
    assert row["restarts"] >= 1 and row["state"] in ("starting", "warming", "idle", "busy"), row
