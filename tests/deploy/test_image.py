"""The Docker image, rebuilt without a Docker engine, starts and serves what a user needs.

The context is exactly what ``.dockerignore`` admits; the Dockerfile's own steps install it
into a fresh virtualenv (tests/support/image.py); the image's entrypoint then runs from
there, outside the source tree, so nothing comes from the checkout.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateways import REPO_ROOT
from tests.support.image import (
    Image,
    ReplayError,
    build_context,
    context_paths,
    replay,
)
from tests.support.net import free_port, wait_until_sync

DOCKERFILE = REPO_ROOT / "Dockerfile"
BROWSER_CLIENT = REPO_ROOT / "client" / "js" / "gateway.js"


def run(argv: list[str], image: Image, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=image.env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    base = tmp_path_factory.mktemp("image")
    context = base / "context"
    build_context(REPO_ROOT, context)
    return replay(DOCKERFILE, context, base / "root")


@pytest.fixture(scope="module")
def served(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image's entrypoint (``docker run IMAGE --host 127.0.0.1 --port N``); its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("served") / "gateway.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            image.command("--host", "127.0.0.1", "--port", str(port)),
            env=image.env,
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert process.poll() is None, f"the image's gateway exited:\n{log.read_text()}"
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until_sync(answering, 30, "the image's gateway to answer /healthz")
        yield url
    finally:
        process.terminate()
        process.wait(20)


# The build context: Docker's .dockerignore semantics, through the Docker SDK's matcher.

TREE = [
    "README.md",
    "notes.md",
    "Dockerfile",
    "docs/a.md",
    "docs/keep.md",
    "src/pkg/__init__.py",
    "src/pkg/mod.pyc",
    "src/pkg/__pycache__/mod.cpython-311.pyc",
    "client/js/gateway.js",
    "client/js/gateway.d.ts",
    "client/python/gc/__init__.py",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for relative in TREE:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(relative)
    return tmp_path


def files(tree: Path, *patterns: str) -> set[str]:
    (tree / ".dockerignore").write_text("\n".join(patterns) + "\n")
    return {path for path in context_paths(tree) if (tree / path).is_file()}


@pytest.mark.parametrize(
    ("patterns", "excluded"),
    [
        # Unlike .gitignore, a pattern without a slash matches at the root only.
        (["*.md"], {"README.md", "notes.md"}),
        (["**/*.md"], {"README.md", "notes.md", "docs/a.md", "docs/keep.md"}),
        # An exception re-admits a file inside an excluded directory.
        (["docs", "!docs/keep.md"], {"docs/a.md"}),
        # The last matching line wins.
        (["*.md", "!README.md"], {"notes.md"}),
        (["!README.md", "*.md"], {"README.md", "notes.md"}),
        # Comments and blank lines are no patterns; ``..`` and ``.`` are cleaned away.
        (["# docs", "", "./docs/../src"], {path for path in TREE if path.startswith("src/")}),
        (["src/"], {path for path in TREE if path.startswith("src/")}),
        (
            ["**/__pycache__", "**/*.py[cod]"],
            {"src/pkg/mod.pyc", "src/pkg/__pycache__/mod.cpython-311.pyc"},
        ),
    ],
)
def test_dockerignore_patterns_match_as_docker_matches_them(
    tree: Path, patterns: list[str], excluded: set[str]
) -> None:
    assert files(tree, *patterns) == set(TREE) - excluded


def test_everything_excluded_but_single_files_deep_inside(tree: Path) -> None:
    admitted = files(tree, "*", "!client/js/gateway.js", "!client/python/gc/")
    assert admitted == {"client/js/gateway.js", "client/python/gc/__init__.py"}


def test_the_dockerfile_and_dockerignore_are_copied_only_when_admitted(tree: Path) -> None:
    assert {"Dockerfile", ".dockerignore"}.isdisjoint(files(tree, "*", "!README.md"))
    assert "Dockerfile" in files(tree, "docs")


def test_context_is_the_wheels_sources_and_nothing_else() -> None:
    paths = context_paths(REPO_ROOT)
    admitted = {path for path in paths if (REPO_ROOT / path).is_file()}
    assert {
        "pyproject.toml",
        "README.md",
        "gateway/__init__.py",
        "gateway/http/static/index.html",
        "client/js/gateway.js",
        "client/python/gateway_client/__init__.py",
    } <= admitted
    tops = {path.split("/")[0] for path in admitted}
    assert tops == {"pyproject.toml", "README.md", "gateway", "client"}
    assert {path for path in admitted if path.startswith("client/")} - {"client/js/gateway.js"} == {
        path for path in admitted if path.startswith("client/python/gateway_client/")
    }
    assert not [path for path in paths if "__pycache__" in path or path.endswith(".pyc")]
    assert not [path for path in paths if (REPO_ROOT / path).is_symlink()]


def test_no_tracked_symlinks_under_the_packages() -> None:
    listing = subprocess.run(
        ["git", "ls-files", "-s", "gateway", "client"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing, "git lists no files"
    assert [line for line in listing.splitlines() if line.startswith("120000")] == []


# The replay itself refuses what it cannot do.


def test_replay_refuses_an_instruction_it_does_not_know(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11 AS build\nADD https://example.invalid/x /x\n")
    (tmp_path / "context").mkdir()
    with pytest.raises(ReplayError, match="ADD is not replayed"):
        replay(dockerfile, tmp_path / "context", tmp_path / "root")


def test_replay_refuses_install_steps_in_the_last_stage(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11 AS build\nFROM python:3.11\nRUN pip install x\n")
    (tmp_path / "context").mkdir()
    with pytest.raises(ReplayError, match=r"the last stage runs \['pip'\]"):
        replay(dockerfile, tmp_path / "context", tmp_path / "root")


def test_replay_reports_a_failing_step(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11 AS build\nWORKDIR /src\nCOPY . ./\nRUN test -f x\nFROM x\n"
    )
    (tmp_path / "context").mkdir()
    with pytest.raises(ReplayError, match="line 4: RUN test -f x\nexit status 1"):
        replay(dockerfile, tmp_path / "context", tmp_path / "root")


# The image.


def test_image_serves_the_demo_the_client_and_readiness(served: str) -> None:
    page = httpx.get(f"{served}/", timeout=5)
    assert page.status_code == 200 and 'from "./client/gateway.js"' in page.text
    script = httpx.get(f"{served}/client/gateway.js", timeout=5)
    assert script.status_code == 200 and script.content == BROWSER_CLIENT.read_bytes()
    ready = httpx.get(f"{served}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text


def test_image_healthcheck_passes(image: Image, served: str, tmp_path: Path) -> None:
    [exposed] = image.exposed
    port = served.rsplit(":", 1)[1]
    command = [arg.replace(f":{exposed}/", f":{port}/") for arg in image.healthcheck]
    assert command != image.healthcheck, "the healthcheck names the exposed port"
    result = run(command, image, tmp_path)
    assert result.returncode == 0, result.stderr


def test_image_has_the_python_client_and_the_cli(image: Image, tmp_path: Path) -> None:
    result = run(image.exec("python", "-c", "import gateway_client"), image, tmp_path)
    assert result.returncode == 0, result.stderr
    result = run(image.exec("gateway", "pub", "--help"), image, tmp_path)
    assert result.returncode == 0 and "--url" in result.stdout, result.stderr


def test_image_runs_its_own_install_not_the_checkout(image: Image, tmp_path: Path) -> None:
    venv = image.host_path("/opt/gateway")
    code = "import gateway, gateway_client; print(gateway.__file__); print(gateway_client.__file__)"
    result = run(image.exec("python", "-c", code), image, tmp_path)
    assert result.returncode == 0, result.stderr
    for location in result.stdout.split():
        assert Path(location).is_relative_to(venv), location
    assert image.entrypoint[:2] == ["gateway", "serve"] and image.user == "10001:10001"
