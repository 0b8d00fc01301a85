"""requirements.txt is what the app needs at run time (a Space installs only it): the app imports,
builds its page and answers a search in an environment that holds nothing else.

Installing requirements.txt into a fresh venv would download torch and the rest (gigabytes) at
every run. Instead the test builds a venv whose site-packages holds links to exactly the installed
distributions that requirements.txt asks for, followed through their own requirements (extras
and environment markers honoured). That is what `pip install -r requirements.txt` would put there,
at the same versions, so an import of anything else (a test tool, a benchmark peer, Ray) fails as
it would on a Space, and a runtime dependency missing from requirements.txt fails the same way."""
import importlib.metadata as md
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow
DEV_ONLY = ("pytest", "ray", "usearch", "torchmetrics", "nbclient", "playwright", "ruff")


def requirement_lines(path: Path) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def runtime_distributions(path: Path = ROOT / "requirements.txt") -> dict[str, md.Distribution]:
    """The installed distributions that the requirements in `path` pull in, by canonical name."""
    found, todo = {}, [(r.name, frozenset(r.extras)) for r in requirement_lines(path)]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        dist = found.get(key) or md.distribution(name)
        if key in found and not extras:
            continue
        found[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((req.name, frozenset(req.extras)))
    return found


def lean_venv(folder: Path) -> Path:
    """A venv holding only the runtime distributions (linked from this one); its Python."""
    venv.create(folder, with_pip=False)
    site = next(folder.glob("lib/python*/site-packages"))
    for dist in runtime_distributions().values():
        base = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}:
            if not (site / top).exists():
                (site / top).symlink_to(base / top)
    return folder / "bin" / "python"


APP = """
import importlib.util, sys
sys.path.append({tests!r})
from fakes import FakeEncoder
from mosaic import models
models.ENCODERS["fake"] = lambda name, device: FakeEncoder()
import gradio.mcp, mosaic.cli, mosaic.publish
from mosaic.app import Library, build_app, handlers
library = Library([{collection!r}])
build_app(library)
_, hits = handlers.caption_search(library, "paintings", "a red boat", "image", 3, 0)
print(hits[0]["id"], [m for m in {dev!r} if importlib.util.find_spec(m)])
"""


def test_the_runtime_requirements_leave_the_dev_tools_out():
    runtime = runtime_distributions()
    assert {"torch", "gradio", "mcp", "open-clip-torch", "annoy"} <= set(runtime)
    assert not {"pytest", "ray", "usearch", "torchmetrics", "playwright"} & set(runtime)
    dev = {canonicalize_name(r.name) for r in requirement_lines(ROOT / "requirements-dev.txt")}
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text() and not dev & {
        canonicalize_name(r.name) for r in requirement_lines(ROOT / "requirements.txt")}


def test_the_app_runs_with_only_the_runtime_requirements(tiny, tmp_path):
    python = lean_venv(tmp_path / "venv")
    script = APP.format(tests=str(ROOT / "tests"), collection=str(tiny.collection.path), dev=DEV_ONLY)
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                              "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split("\n")[-2] == "red-boat.png []"
    probe = subprocess.run([str(python), "-c", "import pytest"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'pytest'" in probe.stderr
    assert sys.prefix not in subprocess.run([str(python), "-c", "import sys; print(sys.path)"],
                                            capture_output=True, text=True).stdout
