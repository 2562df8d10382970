"""A fake GitHub API: a real aiohttp server on 127.0.0.1, for tests and benchmarks.

It imitates the parts of https://docs.github.com/en/rest that the poller, the
failed-delivery recovery and the PR creator use, with GitHub's semantics rather than
canned answers: token and GitHub App (JWT) authentication, installation access tokens
that expire, pull-request list/get with GitHub's sorting, filters and ``Link``
pagination, pull-request creation with GitHub's validation errors, conditional
requests (``ETag`` → 304, free of the primary limit), primary rate limits per credential
(REST and GraphQL apart), GitHub's secondary limits (points per minute and concurrent
requests per credential), injected secondary rate limits, errors and delays (for the
next requests, or for a period), webhook deliveries that can be listed and really
redelivered to a hook URL, and ``POST /graphql`` for the pull-request search the poller
sends (with an optional index lag). JSON shapes come from ``testing/rest/`` (GitHub's
own REST examples): the stored values replace the example's, field by field.

Redelivery (``POST .../attempts``) POSTs to the hook inside the request handler, before
the 202 is sent: once a client has the 202, the attempt is recorded, and no background
task outlives a request.

The modules, by what a reader looks for. What GitHub *knows* is plain data that does no
I/O, each kind on its own:

- ``state``: repositories, pull requests, installations, and GitHub's rules for changing
  them; ``clock``: the timestamps they carry;
- ``credentials``: tokens, installation tokens and App JWTs, each with its budget;
- ``budgets``: primary rate limits; ``limits``: secondary rate limits (and
  ``max_window_points`` to measure a client against them);
- ``faults``: errors, delays and refusals a test injects;
- ``deliveries``: webhooks and their delivery attempts (a redelivery is the one place
  the fake itself sends HTTP);
- ``search``: the index behind GraphQL's search, and ``graphql`` its query language.

How GitHub *answers* is the HTTP side: ``rendering`` turns state into the REST examples'
JSON, ``responses`` holds GitHub's error and pagination conventions, ``routes`` the
endpoints (one function per endpoint and a table of them), ``pipeline`` the order every
request goes through (limits, faults, authentication, budget, ETag), and ``apps`` the
App-manifest pages. ``server.FakeGitHub`` assembles the parts and is the one object a
test holds; the pipeline and endpoints see it as a ``context.Context``.

The split follows the old module's own sections (credentials, pull requests, rendering,
faults, deliveries, pipeline, endpoints), which had grown into one 1,400-line class: each
is now a part with its own state, and ``FakeGitHub`` keeps only the public methods,
which delegate.
"""

from __future__ import annotations

from webhook_service.testing.fake_github.deliveries import Delivery
from webhook_service.testing.fake_github.limits import max_window_points
from webhook_service.testing.fake_github.records import RequestRecord
from webhook_service.testing.fake_github.rendering import rest_fixtures_root
from webhook_service.testing.fake_github.server import FakeGitHub

__all__ = [
    "Delivery",
    "FakeGitHub",
    "RequestRecord",
    "max_window_points",
    "rest_fixtures_root",
]
