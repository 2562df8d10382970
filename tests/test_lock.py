"""The lock files agree with pyproject.toml.

``scripts/lock`` writes ``requirements/runtime.txt`` (``[project.dependencies]`` and what
they pull in: the image and the quick start install it) and ``requirements/test.txt``
(the same plus the ``test`` extra: CI installs it) with ``uv pip compile``: every pin
``==`` with its hashes, and under it uv's ``# via`` annotation, the pins (or
``webhook-service (pyproject.toml)``) that require it. This test reads the three files,
no network and no resolver, and fails when a lock is out of step with pyproject.toml,
i.e. when ``scripts/lock`` must be run again:

* each runtime dependency is pinned in both locks, each ``test`` extra in test.txt, at
  releases its specifier admits;
* a lock pins nothing its roots do not need: the pins reachable from pyproject's
  requirements along the ``# via`` edges are exactly the lock's pins, the pins that
  say ``via webhook-service (pyproject.toml)`` are exactly pyproject's requirements, and
  what runtime.txt pins is needed by the runtime dependencies in test.txt's graph too
  (test.txt was resolved with the test extra: a package only a test tool needs is
  there and not in runtime.txt);
* test.txt pins every package of runtime.txt at the same release with the same hashes
  (CI tests what ships);
* on CPython 3.11, 3.12 and 3.13 on Linux each lock installs every requirement, one
  release of each.

A transitive dependency missing from a lock is not looked for here: pip's
``--require-hashes`` mode (scripts/test, scripts/serve, the Dockerfile) refuses to
install a requirement the lock does not pin. ``_problems`` is tested on altered copies
too, so each rule is known to fail when broken.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
RUNTIME = ROOT / "requirements" / "runtime.txt"
TEST = ROOT / "requirements" / "test.txt"

#: uv's ``# via`` name for a requirement of pyproject.toml itself.
FROM_PYPROJECT = "webhook-service (pyproject.toml)"


@dataclass
class Pin:
    name: NormalizedName
    version: Version
    marker: Marker | None
    hashes: set[str] = field(default_factory=set)
    via: set[str] = field(default_factory=set)  # pin names, or FROM_PYPROJECT


def read_lock(text: str) -> list[Pin]:
    """The pins of a ``uv pip compile --generate-hashes`` output, with their annotations."""
    pins: list[Pin] = []
    in_via = False
    for raw in text.splitlines():
        line = raw.strip().removesuffix("\\").strip()
        if not line or (line.startswith("#") and not raw[0].isspace()):
            continue  # the header
        if not raw[0].isspace():
            requirement = Requirement(line)
            (spec,) = requirement.specifier  # one ==, or it is not a pin
            assert spec.operator == "==", line
            pins.append(Pin(canonicalize_name(requirement.name), Version(spec.version),
                            requirement.marker))
            in_via = False
        elif line.startswith("--hash="):
            pins[-1].hashes.add(line.removeprefix("--hash="))
        elif line.startswith("#"):
            note = line.lstrip("#").strip()
            if note == "via":
                in_via = True
                continue
            if note.startswith("via "):
                note = note.removeprefix("via ")
            elif not in_via:
                continue
            if note.startswith("-c "):  # test.txt's constraint: runtime.txt
                continue
            pins[-1].via.add(note if note == FROM_PYPROJECT else canonicalize_name(note))
        else:
            raise AssertionError(f"unexpected line in a lock file: {raw!r}")
    return pins


def _requirements(pyproject: str) -> tuple[list[Requirement], list[Requirement]]:
    project = tomllib.loads(pyproject)["project"]
    return (
        [Requirement(r) for r in project["dependencies"]],
        [Requirement(r) for r in project["optional-dependencies"]["test"]],
    )


def _reachable(pins: list[Pin], roots: Iterable[NormalizedName]) -> set[str]:
    """Names reachable from ``roots`` along the lock's edges (requirer -> required)."""
    required: dict[str, set[str]] = {}
    for pin in pins:
        for requirer in pin.via:
            required.setdefault(requirer, set()).add(pin.name)
    seen: set[str] = set()
    todo: list[str] = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(required.get(name, ()))
    return seen


def _linux(python: str) -> dict[str, str]:
    """Marker variables of CPython ``python`` on Linux x86_64."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
    }


PYTHONS = ("3.11", "3.12", "3.13")


def _problems(pyproject: str, runtime_text: str, test_text: str) -> list[str]:
    """Every way the two locks disagree with pyproject.toml (and each other)."""
    runtime_requirements, test_requirements = _requirements(pyproject)
    runtime, test = read_lock(runtime_text), read_lock(test_text)
    problems: list[str] = []
    locks = {"runtime.txt": (runtime, runtime_requirements),
             "test.txt": (test, runtime_requirements + test_requirements)}

    for lock_name, (pins, requirements) in locks.items():
        by_name: dict[str, list[Pin]] = {}
        for pin in pins:
            by_name.setdefault(pin.name, []).append(pin)
            if not pin.hashes:
                problems.append(f"{lock_name}: {pin.name} has no --hash")
        roots = {canonicalize_name(r.name) for r in requirements}
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            if name not in by_name:
                problems.append(f"{lock_name}: {requirement} is not pinned")
            for pin in by_name.get(name, []):
                if not requirement.specifier.contains(pin.version, prereleases=True):
                    problems.append(f"{lock_name}: {name}=={pin.version} is not {requirement}")
        named = {pin.name for pin in pins if FROM_PYPROJECT in pin.via}
        if named - roots:
            problems.append(f"{lock_name}: pinned as pyproject's but not in it: "
                            f"{sorted(named - roots)}")
        if roots - named:
            problems.append(f"{lock_name}: in pyproject but not pinned as its: "
                            f"{sorted(roots - named)}")
        unneeded = set(by_name) - _reachable(pins, roots)
        if unneeded:
            problems.append(f"{lock_name}: pins that nothing of pyproject needs: "
                            f"{sorted(unneeded)}")
        for python in PYTHONS:
            environment = _linux(python)
            active = [p.name for p in pins if p.marker is None or p.marker.evaluate(environment)]
            twice = {name for name in active if active.count(name) > 1}
            if twice:
                problems.append(f"{lock_name}: two releases at once on {python}: {sorted(twice)}")
            missing = {
                canonicalize_name(r.name) for r in requirements
                if r.marker is None or r.marker.evaluate(environment)
            } - set(active)
            if missing:
                problems.append(f"{lock_name}: nothing installs {sorted(missing)} on {python}")

    runtime_roots = [canonicalize_name(r.name) for r in runtime_requirements]
    beyond = {pin.name for pin in runtime} - _reachable(test, runtime_roots)
    if beyond:
        problems.append(f"runtime.txt: pins the runtime dependencies do not need in test.txt's "
                        f"graph: {sorted(beyond)}")
    for pin in runtime:
        twins = [p for p in test if p.name == pin.name]
        same = [p for p in twins if p.version == pin.version]
        if not same:
            problems.append(f"test.txt: {pin.name} is {[str(p.version) for p in twins]}; "
                            f"runtime.txt: {pin.version}")
        elif any(p.hashes != pin.hashes for p in same):
            problems.append(f"test.txt: {pin.name} {pin.version} has other hashes than in "
                            f"runtime.txt")
    return problems


def test_the_locks_agree_with_pyproject() -> None:
    problems = _problems(PYPROJECT.read_text(), RUNTIME.read_text(), TEST.read_text())
    assert problems == [], "run scripts/lock:\n" + "\n".join(problems)


def test_the_locks_are_written_by_scripts_lock() -> None:
    for path in (RUNTIME, TEST):
        header = path.read_text().splitlines()[:2]
        assert header == ["# This file was autogenerated by uv via the following command:",
                          "#    scripts/lock"], path
        pins = read_lock(path.read_text())
        assert len(pins) > 10, path
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for p in pins for h in p.hashes)


# -- the rules fail when broken ----------------------------------------------------------


def _pin_span(text: str, name: str) -> tuple[list[str], int, int]:
    """The lines of a lock, and where ``name``'s pin (with its hash and via lines) is."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}=="))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i][0].isspace()),
               len(lines))
    return lines, start, end


def _pin_block(text: str, name: str) -> str:
    lines, start, end = _pin_span(text, name)
    return "".join(lines[start:end])


def _drop_pin(text: str, name: str) -> str:
    lines, start, end = _pin_span(text, name)
    return "".join(lines[:start] + lines[end:])


def _set_version(text: str, name: str, version: str) -> str:
    return re.sub(rf"(?m)^{re.escape(name)}==\S+", f"{name}=={version}", text)


Texts = tuple[str, str, str]  # pyproject.toml, runtime.txt, test.txt

#: An alteration of the three files, and a problem _problems must then report.
ALTERATIONS: dict[str, tuple[Callable[[str, str, str], Texts], str]] = {
    "a new runtime dependency": (
        lambda p, r, t: (p.replace('"redis>=5",', '"redis>=5",\n    "rich>=13",'), r, t),
        "runtime.txt: rich>=13 is not pinned",
    ),
    "a new test extra": (
        lambda p, r, t: (p.replace('"pytest>=8",', '"pytest>=8",\n    "rich>=13",'), r, t),
        "test.txt: rich>=13 is not pinned",
    ),
    "a raised lower bound": (
        lambda p, r, t: (p.replace('"orjson>=3.9"', '"orjson>=99"'), r, t),
        "runtime.txt: orjson==",
    ),
    "a cap below the pin": (
        lambda p, r, t: (p.replace('"python-socketio>=5.11,<6"', '"python-socketio>=5,<5.1"'),
                         r, t),
        "runtime.txt: python-socketio==",
    ),
    "a dropped runtime dependency": (
        lambda p, r, t: (p.replace('"prometheus-client>=0.20",', ""), r, t),
        "runtime.txt: pinned as pyproject's but not in it: ['prometheus-client']",
    ),
    "a runtime pin only a test tool needs": (
        lambda p, r, t: (p, r + _pin_block(t, "pluggy"), t),
        "runtime.txt: pins that nothing of pyproject needs: ['pluggy']",
    ),
    "two releases at once": (
        lambda p, r, t: (p, r + _set_version(_pin_block(r, "orjson"), "orjson", "3.10.0"), t),
        "runtime.txt: two releases at once on 3.11: ['orjson']",
    ),
    "other hashes in the test lock": (
        lambda p, r, t: (p, r, t.replace(_pin_block(t, "yarl"), re.sub(
            r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, _pin_block(t, "yarl"), count=1))),
        "has other hashes than in runtime.txt",
    ),
    "a pin without hashes": (
        lambda p, r, t: (p, re.sub(r"(?m)^ +--hash=.*\n", "", r), t),
        "runtime.txt: aiohttp has no --hash",
    ),
    "the test lock on another release": (
        lambda p, r, t: (p, r, _set_version(t, "starlette", "0.47.0")),
        "test.txt: starlette is ['0.47.0']; runtime.txt: ",
    ),
    "a runtime pin missing from the test lock": (
        lambda p, r, t: (p, r, _drop_pin(t, "redis")),
        "test.txt: redis>=5 is not pinned",
    ),
}


@pytest.mark.parametrize("alteration", sorted(ALTERATIONS))
def test_each_rule_fails_when_broken(alteration: str) -> None:
    alter, expected = ALTERATIONS[alteration]
    texts = (PYPROJECT.read_text(), RUNTIME.read_text(), TEST.read_text())
    altered = alter(*texts)
    assert altered != texts, "the alteration changed nothing: update it"
    problems = _problems(*altered)
    assert any(expected in problem for problem in problems), problems
