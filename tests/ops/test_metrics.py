"""GET /metrics: Prometheus text with the figures operators need."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import make_settings, payload, post_delivery, running_app


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_deliveries_outcomes_and_latency(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as (_service, client):
        await post_delivery(client, payload("pull_request/opened"))
        await post_delivery(client, payload("pull_request/closed.merged"))
        await post_delivery(client, payload("pull_request/closed.merged"), guid="same")
        await post_delivery(client, payload("pull_request/closed.merged"), guid="same")
        await client.post("/webhooks/github", content=b"{}", headers={"Content-Type": "text/plain"})
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    applied = (("event", "pull_request"), ("outcome", "applied"))
    assert samples[("webhook_deliveries_total", applied)] == 3
    duplicate = (("event", "pull_request"), ("outcome", "duplicate"))
    assert samples[("webhook_deliveries_total", duplicate)] == 1
    assert samples[("webhook_deliveries_total", (("event", "-"), ("outcome", "rejected")))] == 1
    assert samples[("webhook_reconcile_results_total", (("outcome", "transitioned"),))] == 1
    assert samples[("webhook_reconcile_results_total", (("outcome", "created"),))] == 1
    assert samples[("webhook_ingest_latency_seconds_count", ())] == 5
    assert samples[("webhook_socketio_clients", ())] == 0
    assert ("webhook_outbox_backlog", ()) in samples
    assert ("webhook_sync_cycles_total", ()) not in samples  # no worker without GitHub access
