"""The values settings are made of, and how a raw string becomes one: :class:`Reader`
answers each setting as its type or raises :class:`ConfigError` naming the setting and
what it must be; :class:`Secret` keeps a value out of reprs, logs and tracebacks."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


class Secret:
    """A string that does not show itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class Reader:
    """One setting at a time from the raw strings, as the type it must be; a value that
    is not one is a :class:`ConfigError` naming the setting and what it must look like.
    An empty value is an unset one."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def text(self, key: str) -> str | None:
        value = self._values.get(key, "").strip()
        return value or None

    def secret(self, key: str) -> Secret | None:
        value = self.text(key)
        return Secret(value) if value else None

    def csv(self, key: str) -> list[str]:
        return [item.strip() for item in (self.text(key) or "").split(",") if item.strip()]

    def boolean(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {value!r}")

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"{key} must be between {low} and {high}, got {number}")
        return number

    def number(self, key: str, default: float, *, low: float, high: float = math.inf) -> float:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if not number >= low:
            raise ConfigError(f"{key} must be at least {low}, got {value!r}")
        if number > high:
            raise ConfigError(f"{key} must be at most {high}, got {value!r}")
        return number

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        given = self.text(key) or default
        if given.lower() not in options:
            raise ConfigError(f"{key} must be one of {', '.join(options)}, got {given!r}")
        return given.lower()

    def pattern(self, key: str, default: str) -> re.Pattern[str]:
        source = self.text(key) or default
        try:
            compiled = re.compile(source)
        except re.error as exc:
            raise ConfigError(f"{key} is not a valid regular expression: {exc}") from None
        if "task_id" not in compiled.groupindex:
            raise ConfigError(f"{key} must have a named group (?P<task_id>...)")
        return compiled
