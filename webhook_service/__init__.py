"""webhook-service: keeps pull-request and task state in sync with GitHub."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("webhook-service")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
