"""Recorded webhook deliveries: load and write ``<name>.json`` + ``<name>.headers`` pairs.

See ``fixtures/README.md`` for the on-disk format.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BODY_SUFFIX",
    "HEADERS_SUFFIX",
    "FixtureError",
    "RecordedDelivery",
    "fixtures_root",
    "iter_deliveries",
    "load_delivery",
    "write_delivery",
]

BODY_SUFFIX = ".json"
HEADERS_SUFFIX = ".headers"

_EVENT_HEADER = "X-GitHub-Event"
_GUID_HEADER = "X-GitHub-Delivery"


class FixtureError(ValueError):
    """A recorded delivery is missing, incomplete or malformed."""


@dataclass(frozen=True, slots=True)
class RecordedDelivery:
    """One recorded delivery: the raw body and the headers GitHub sent with it."""

    path: Path
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> str:
        """The ``X-GitHub-Event`` header."""
        return self._required(_EVENT_HEADER)

    @property
    def guid(self) -> str:
        """The ``X-GitHub-Delivery`` header."""
        return self._required(_GUID_HEADER)

    def header(self, name: str) -> str | None:
        """Return a header value by case-insensitive name, or None."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def _required(self, name: str) -> str:
        value = self.header(name)
        if value is None:
            raise FixtureError(f"{self.path}: missing {name} header")
        return value


def fixtures_root() -> Path:
    """Return the repository's ``fixtures/deliveries`` directory."""
    return Path(__file__).resolve().parents[2] / "fixtures" / "deliveries"


def _pair(path: Path) -> tuple[Path, Path]:
    """Return (body path, headers path) for either file of a pair."""
    if path.suffix == BODY_SUFFIX:
        return path, path.with_suffix(HEADERS_SUFFIX)
    if path.suffix == HEADERS_SUFFIX:
        return path.with_suffix(BODY_SUFFIX), path
    raise FixtureError(f"{path}: expected a {BODY_SUFFIX} or {HEADERS_SUFFIX} file")


def _is_token(name: str) -> bool:
    """True if ``name`` is a non-empty HTTP header field name."""
    return bool(name) and all(
        33 <= ord(ch) <= 126 and ch not in '"(),/:;<=>?@[\\]{}' for ch in name
    )


def _parse_headers(path: Path, text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        name, sep, value = raw.partition(":")
        if not sep or not _is_token(name):
            raise FixtureError(
                f"{path}:{lineno}: malformed header line {raw!r} (expected 'Name: value')"
            )
        if name.lower() in seen:
            raise FixtureError(f"{path}:{lineno}: duplicate header {name!r}")
        seen.add(name.lower())
        headers[name] = value.strip(" \t")
    return headers


def load_delivery(path: Path) -> RecordedDelivery:
    """Load the delivery whose body (``.json``) or headers (``.headers``) file is ``path``."""
    body_path, headers_path = _pair(Path(path))
    if not body_path.is_file():
        raise FixtureError(f"{body_path}: body file missing (headers: {headers_path})")
    if not headers_path.is_file():
        raise FixtureError(f"{body_path}: headers sidecar {headers_path.name} missing")
    try:
        text = headers_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FixtureError(f"{headers_path}: not valid UTF-8 ({exc})") from exc
    headers = _parse_headers(headers_path, text)
    delivery = RecordedDelivery(path=body_path, headers=headers, body=body_path.read_bytes())
    for required in (_EVENT_HEADER, _GUID_HEADER):
        if not delivery.header(required):
            raise FixtureError(f"{headers_path}: missing or empty {required} header")
    return delivery


def iter_deliveries(root: Path) -> Iterator[RecordedDelivery]:
    """Yield every delivery below ``root``, sorted by body path."""
    if not Path(root).is_dir():
        raise FixtureError(f"{root}: not a directory")
    for body_path in sorted(p for p in Path(root).rglob(f"*{BODY_SUFFIX}") if p.is_file()):
        yield load_delivery(body_path)


def _format_headers(headers: Mapping[str, str]) -> bytes:
    lines: list[str] = []
    seen: set[str] = set()
    for name, value in headers.items():
        if not _is_token(name):
            raise FixtureError(f"invalid header name {name!r}")
        if name.lower() in seen:
            raise FixtureError(f"duplicate header {name!r}")
        seen.add(name.lower())
        if any(ch in value for ch in "\r\n") or value != value.strip(" \t"):
            raise FixtureError(f"header {name!r}: value {value!r} cannot be stored")
        lines.append(f"{name}: {value}\n")
    return "".join(lines).encode("utf-8")


def write_delivery(directory: Path, name: str, headers: Mapping[str, str], body: bytes) -> Path:
    """Write ``<name>.json`` and ``<name>.headers`` into ``directory``; return the body path."""
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise FixtureError(f"invalid delivery name {name!r}")
    lowered = {key.lower() for key in headers}
    for required in (_EVENT_HEADER, _GUID_HEADER):
        if required.lower() not in lowered:
            raise FixtureError(f"{name}: missing {required} header")
    encoded = _format_headers(headers)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    body_path = directory / f"{name}{BODY_SUFFIX}"
    body_path.write_bytes(body)
    body_path.with_suffix(HEADERS_SUFFIX).write_bytes(encoded)
    return body_path
