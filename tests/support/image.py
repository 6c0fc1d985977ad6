"""The gateway image's file system, rebuilt without a Docker engine.

`build_context` copies what ``.dockerignore`` admits, matched by the Docker SDK's
`PatternMatcher` (the SDK's port of the Docker engine's matcher; unlike the engine on
Linux it ignores case, which the project's patterns do not rely on). `replay` then runs the
Dockerfile's stages, parsed by `dockerfile_parse`, under a directory that stands for the
image's ``/``: each ``WORKDIR``, ``COPY`` and ``RUN`` of the build stages as written, with
the image's own paths (``/opt/gateway``, ``/src``: those the Dockerfile creates) moved
under that directory and ``python`` standing for the base image's interpreter. A change to
the Dockerfile or to ``.dockerignore`` is therefore what gets tested.

Differences from a real build, each deliberate: the base image is this machine (its
Python, its pip configuration and registries); the last stage's ``RUN`` steps are not run
(they may only create the unprivileged user, which would change this machine), and
``USER`` is recorded, not switched to. An instruction the replay cannot carry out fails
the replay, naming it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from docker.utils.build import PatternMatcher
from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter

HOST_ONLY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
"""Variables of this process that would let the checkout or the test venv leak in."""
LAST_STAGE_RUN_COMMANDS = frozenset({"groupadd", "useradd"})
RECORDED = frozenset({"USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "STOPSIGNAL"})
METADATA = frozenset({"ARG", "ENV", "LABEL"})
"""Instructions whose effect `dockerfile_parse` already folded into each line's variables."""


class ReplayError(Exception):
    """The Dockerfile has a step the replay cannot carry out, or a step failed."""


def dockerignore_patterns(context: Path) -> list[str]:
    """The patterns of ``context/.dockerignore``, read as the Docker SDK reads them."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_paths(context: Path, patterns: list[str] | None = None) -> set[str]:
    """Paths (files and directories, relative, ``/``-separated) that a ``COPY`` can see.

    The SDK's matcher always keeps ``.dockerignore`` itself (the builder needs it); like
    BuildKit, a ``COPY`` sees it only when a pattern admits it.
    """
    patterns = dockerignore_patterns(context) if patterns is None else patterns
    paths = {str(PurePosixPath(path)) for path in PatternMatcher(list(patterns)).walk(context)}
    if "!.dockerignore" not in patterns:
        paths.discard(".dockerignore")
    return paths


def build_context(context: Path, target: Path) -> set[str]:
    """Copy what ``COPY`` can see of ``context`` into ``target``; returns the paths.

    Symbolic links are copied as links, as the build context carries them.
    """
    paths = context_paths(context)
    for relative in sorted(paths):
        source, destination = context / relative, target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            destination.symlink_to(os.readlink(source))
        elif source.is_dir():
            destination.mkdir(exist_ok=True)
        else:
            shutil.copy2(source, destination)
    return paths


@dataclass
class Image:
    """The replayed image: its root directory and what its last stage declared."""

    root: Path
    env: dict[str, str]
    workdir: str
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    exposed: list[str]
    user: str | None
    path_map: dict[str, Path] = field(repr=False)

    def host_path(self, image_path: str) -> Path:
        """Where an absolute path of the image lies on this machine."""
        return Path(_to_host(image_path, self.path_map))

    def command(self, *args: str) -> list[str]:
        """``docker run IMAGE ARGS...``: the entrypoint, then ``args`` (else ``CMD``)."""
        argv = [*self.entrypoint, *(args or self.cmd)]
        return [_to_host(arg, self.path_map) for arg in argv]

    def exec(self, *argv: str) -> list[str]:
        """``docker exec``-style: ``argv`` with the image's paths on this machine."""
        return [_to_host(arg, self.path_map) for arg in argv]


def replay(dockerfile: Path, context: Path, root: Path, *, timeout: float = 600) -> Image:
    """Run ``dockerfile``'s stages on the files of ``context`` under ``root``.

    ``context`` must already be what ``.dockerignore`` admits (`build_context`).

    Raises:
        ReplayError: an unsupported instruction, or a step that failed (with its output).
    """
    shim = root.parent / f"{root.name}-base-bin"
    shim.mkdir(parents=True)
    python = shim / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    base_env = {"PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    parser = DockerfileParser(str(dockerfile), parent_env=base_env)
    instructions = [
        (item, context_.envs)
        for item, context_ in zip(parser.structure, parser.context_structure, strict=True)
        if item["instruction"] != "COMMENT"
    ]
    path_map = {path: root / path.lstrip("/") for path in _image_paths(instructions)}
    return _Replay(context, root, path_map, timeout).run(instructions)


def host_environment() -> dict[str, str]:
    """This process's environment without what could make the checkout leak in."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in HOST_ONLY_VARIABLES and not name.startswith(("GATEWAY_", "PYTEST_"))
    }


class _Replay:
    def __init__(self, context: Path, root: Path, path_map: dict[str, Path], timeout: float):
        self.context = context
        self.root = root
        self.path_map = path_map
        self.timeout = timeout
        self.stages: dict[str, Path] = {}
        self.stage_count = 0
        self.workdir = "/"
        self.env: dict[str, str] = {}
        self.last_stage = False
        self.recorded: dict[str, str] = {}

    def run(self, instructions: list[tuple[dict[str, Any], dict[str, str]]]) -> Image:
        stage_starts = [
            i for i, (item, _) in enumerate(instructions) if item["instruction"] == "FROM"
        ]
        if not stage_starts:
            raise ReplayError("the Dockerfile has no FROM")
        for index, (item, envs) in enumerate(instructions):
            instruction, value = item["instruction"], item["value"]
            self.env = dict(envs)
            if instruction == "FROM":
                self.last_stage = index == stage_starts[-1]
                self._from(value)
            elif instruction in METADATA:
                continue
            elif instruction == "WORKDIR":
                self.workdir = self._absolute(self._substitute(value))
                self._host(self.workdir).mkdir(parents=True, exist_ok=True)
            elif instruction == "COPY":
                self._copy(value, item["startline"] + 1)
            elif instruction == "RUN":
                self._run(value, item["startline"] + 1)
            elif instruction in RECORDED:
                self.recorded[instruction] = value
            else:
                raise ReplayError(f"line {item['startline'] + 1}: {instruction} is not replayed")
        return Image(
            root=self.root,
            env={**host_environment(), **self._host_env()},
            workdir=self.workdir,
            entrypoint=_exec_form(self.recorded.get("ENTRYPOINT", "[]")),
            cmd=_exec_form(self.recorded.get("CMD", "[]")),
            healthcheck=_healthcheck_command(self.recorded.get("HEALTHCHECK", "")),
            exposed=self.recorded.get("EXPOSE", "").split(),
            user=self.recorded.get("USER"),
            path_map=self.path_map,
        )

    def _from(self, value: str) -> None:
        words = value.split()
        if self.stage_count:
            finished = self.root.with_name(f"{self.root.name}-stage-{self.stage_count}")
            self.root.rename(finished)
            for name in self.stages:
                if self.stages[name] == self.root:
                    self.stages[name] = finished
        self.root.mkdir(parents=True)
        self.stage_count += 1
        self.workdir = "/"
        if len(words) == 3 and words[1].upper() == "AS":
            self.stages[words[2]] = self.root
        self.stages[str(self.stage_count - 1)] = self.root

    def _copy(self, value: str, line: int) -> None:
        flags, words = _flags(value)
        if set(flags) - {"from", "chown", "chmod", "link"}:
            raise ReplayError(f"line {line}: COPY --{', --'.join(flags)} is not replayed")
        *sources, destination = [self._substitute(word) for word in words]
        origin = self.context
        if "from" in flags:
            stage = self.stages.get(flags["from"])
            if stage is None:
                raise ReplayError(
                    f"line {line}: COPY --from={flags['from']} names no earlier stage"
                )
            origin = stage
        target = self._host(self._absolute(destination))
        into_directory = destination.endswith("/") or len(sources) > 1
        for source in sources:
            base = origin / source.lstrip("/") if "from" in flags else origin / source
            matches = (
                sorted(base.parent.glob(base.name)) if any(c in source for c in "*?[") else [base]
            )
            for found in matches:
                if not found.exists() and not found.is_symlink():
                    raise ReplayError(f"line {line}: COPY source {source} is not in the context")
                if found.is_dir() and not found.is_symlink():
                    shutil.copytree(found, target, symlinks=True, dirs_exist_ok=True)
                else:
                    name = target / found.name if into_directory or target.is_dir() else target
                    name.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(found, name, follow_symlinks=False)

    def _run(self, value: str, line: int) -> None:
        if value.startswith("--"):
            raise ReplayError(f"line {line}: RUN flags are not replayed: {value.split()[0]}")
        argv = _exec_form(value) if value.lstrip().startswith("[") else ["/bin/sh", "-c", value]
        if self.last_stage:
            commands = {
                part.split()[0] for part in re.split(r"&&|;|\|\|", argv[-1]) if part.split()
            }
            if not commands <= LAST_STAGE_RUN_COMMANDS:
                unknown = sorted(commands - LAST_STAGE_RUN_COMMANDS)
                raise ReplayError(f"line {line}: the last stage runs {unknown}: not replayed")
            return
        result = subprocess.run(
            [_to_host(arg, self.path_map) for arg in argv],
            cwd=self._host(self.workdir),
            env={**host_environment(), **self._host_env()},
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ReplayError(
                f"line {line}: RUN {value}\nexit status {result.returncode}\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )

    def _host_env(self) -> dict[str, str]:
        return {name: _to_host(value, self.path_map) for name, value in self.env.items()}

    def _substitute(self, word: str) -> str:
        return str(WordSplitter(word, args={}, envs=self.env).dequote())

    def _absolute(self, path: str) -> str:
        return str(PurePosixPath(self.workdir, path))

    def _host(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")


def _image_paths(instructions: list[tuple[dict[str, Any], dict[str, str]]]) -> set[str]:
    """The absolute paths the Dockerfile itself creates: every ``WORKDIR``, and what a later
    stage copies from an earlier one. Those are moved under the replay's root."""
    paths: set[str] = set()
    for item, _ in instructions:
        if item["instruction"] == "WORKDIR" and item["value"].startswith("/"):
            paths.add(item["value"].rstrip("/") or "/")
        elif item["instruction"] == "COPY":
            flags, words = _flags(item["value"])
            if "from" in flags:
                paths.update(word.rstrip("/") for word in words if word.startswith("/"))
    paths.discard("/")
    return paths


def _to_host(text: str, path_map: dict[str, Path]) -> str:
    """``text`` (a command line, an argument, a variable's value) with each of the image's
    own paths replaced by where it lies under the replay's root."""
    if not path_map:
        return text
    alternatives = "|".join(re.escape(path) for path in sorted(path_map, key=len, reverse=True))
    pattern = rf"(?<![\w.~/-])({alternatives})(?![\w.-])"
    return re.sub(pattern, lambda match: str(path_map[match[1]]), text)


def _flags(value: str) -> tuple[dict[str, str], list[str]]:
    words = _exec_form(value) if value.lstrip().startswith("[") else shlex.split(value)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, flag_value = words.pop(0)[2:].partition("=")
        flags[name] = flag_value
    return flags, words


def _exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    if not isinstance(parsed, list) or not all(isinstance(arg, str) for arg in parsed):
        raise ReplayError(f"not an exec form: {value}")
    return parsed


def _healthcheck_command(value: str) -> list[str]:
    _, cmd, command = value.partition("CMD ")
    if not cmd:
        return []
    command = command.strip()
    return _exec_form(command) if command.startswith("[") else ["/bin/sh", "-c", command]
