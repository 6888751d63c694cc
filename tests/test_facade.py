"""The facade's contracts: light imports, one copy of the `--workers` rules, the error family, and
"request finished" known once the store has it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from studio.app import Studio, StudioError, UnknownRequestError
from studio.core import events as ev
from studio.core.settings_check import workers_problem
from studio.pool.spec import WorkerSpecError, parse_workers
from studio.store.recorder import EventRecorder
from tests.conftest import cli_env

HEAVY = ("torch", "diffusers", "gradio", "transformers")
PROBE = """
import json, sys
import studio.app, studio.cli
loaded = {"import": [m for m in %(heavy)r if m in sys.modules]}
for argv in (["--help"], ["history"], ["history", "--json"]):
    try:
        studio.cli.main(argv)
    except SystemExit:
        pass
    loaded[" ".join(argv)] = [m for m in %(heavy)r if m in sys.modules]
print(json.dumps(loaded), file=sys.stderr)
"""


def test_facade_and_cli_never_import_torch_diffusers_or_gradio(home: Path) -> None:
    """A clean interpreter: importing the facade and the CLI, `--help` and `history` load none of them."""
    p = subprocess.run([sys.executable, "-c", PROBE % {"heavy": HEAVY}], env=cli_env(home), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stderr.strip().splitlines()[-1])
    assert loaded == {"import": [], "--help": [], "history": [], "history --json": []}


@pytest.mark.parametrize("text", ["auto", "", "cpu", "cpu:1", "cpu:64", "cpu:0", "cpu:65", "cpu:x", "cuda", "cuda:0",
                                  "gpu:1", "cuda:0,cuda:1", "cuda:0,gpu:0", "cuda,cuda:1", "cuda:2", "gpu:banana",
                                  "cuda:-1", "tpu:0", "cuda:0,,cuda:1", " CUDA:1 , cuda:0 "])
@pytest.mark.parametrize("gpus", [0, 2])
def test_settings_and_pool_read_workers_alike(text: str, gpus: int) -> None:
    """The settings check refuses exactly what the pool cannot run, with the same message key."""
    try:
        parse_workers(text, gpus=[str(i) for i in range(gpus)], cpus=4)
        refused = None
    except WorkerSpecError as exc:
        refused = exc.key
        assert str(exc) and "\n" not in str(exc)
    problem = workers_problem(text, gpu_count=gpus)
    assert (problem.key if problem else None) == refused


def test_workers_grammar_needs_no_gpu_count() -> None:
    assert workers_problem("cuda:0,gpu:0").key == "set.bad.gpu_twice"
    assert workers_problem("cuda:7") is None  # whether cuda:7 exists is known only with a count
    assert [w.name for w in parse_workers("cpu:2", gpus=[], cpus=4)] == ["cpu:0", "cpu:1"]
    assert [w.visible_devices for w in parse_workers("cuda:1,cuda:0", gpus=["4", "5"], cpus=4)] == ["5", "4"]


def test_errors_are_one_family() -> None:
    from studio.app import ModelNotFoundError, StoreError
    from studio.core.settings_check import SettingsError

    for cls in (ModelNotFoundError, StoreError, WorkerSpecError, SettingsError, UnknownRequestError):
        assert issubclass(cls, StudioError)
    assert ModelNotFoundError.usage and WorkerSpecError.usage and not StoreError.usage
    assert str(UnknownRequestError("No request 'x'.")) == "No request 'x'."  # not quoted like a KeyError


def test_wait_on_an_unknown_request_is_a_key_error(home: Path) -> None:
    with Studio(workers="cpu:1") as studio, pytest.raises(UnknownRequestError):
        studio.wait("nope", timeout=0.1)


def test_a_request_is_finished_once_its_end_is_recorded(store) -> None:
    """`wait_finished` answers from the recorder: after the store took the last event, even when the
    store failed on it (the history must never hold the pool up)."""
    recorder = EventRecorder(store)
    assert not recorder.wait_finished("r1", timeout=0.05)
    later = threading.Timer(0.1, recorder.record, [ev.make_event(ev.REQUEST_DONE, request_id="r1", jobs=0)])
    later.start()
    assert recorder.wait_finished("r1", timeout=10)
    store.close()  # every write now fails: the job event is logged, the request still ends
    recorder.record(ev.make_event(ev.JOB_STARTED, job_id="j", request_id="r2", worker="cpu:0"))
    recorder.record(ev.make_event(ev.REQUEST_DONE, request_id="r2", jobs=1))
    assert recorder.finished("r2")


def test_callers_reach_the_layers_below_only_through_the_facade() -> None:
    """cli.py, the commands and the Settings tab import no engine, pool, models, store or monitor
    module (type-only imports under TYPE_CHECKING aside)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "studio"
    below = ("studio.engine", "studio.pool", "studio.models", "studio.store", "studio.monitor")
    files = [root / "cli.py", root / "ui" / "settings.py", *sorted((root / "commands").glob("*.py"))]
    found = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and ast.unparse(node.test) == "TYPE_CHECKING" for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.startswith(below)]
    assert found == []
