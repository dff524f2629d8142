"""The Dockerfile cannot be built here (no Docker engine); check it installs and starts what the README does."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_installs_requirements_and_serves_the_same_entry_as_make_run():
    docker = (ROOT / "Dockerfile").read_text()
    make = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme.split("\n## ")[0] and "make test" in readme.split("\n## ")[0]
    # Both install through the lock of versions tested together.
    assert re.search(r"pip install[^\n]*-c requirements\.lock -r requirements\.txt", docker)
    assert re.search(r"pip install -q \$\(LOCKS\) -r requirements\.txt", make)
    assert "LOCKS := -c requirements.lock" in make
    assert re.search(r"-c requirements-cpu\.lock torch", docker)
    entry = re.search(r"streamlit run (\S+)", make).group(1)
    cmd = re.search(r'^CMD \[(.*)\]$', docker, re.M).group(1)
    parts = [p.strip().strip('"') for p in cmd.split(",")]
    assert parts[:3] == ["streamlit", "run", entry], parts
    assert parts[parts.index("--server.port") + 1] == "8501"
    assert "EXPOSE 8501" in docker
    assert re.search(r"^ARG BASE=python:3\.11-slim", docker, re.M), "slim Python base by default"
    assert "BASE=" in docker.splitlines()[0] or "build-arg BASE" in docker, "a documented CUDA variant"
    assert (ROOT / entry).exists()
