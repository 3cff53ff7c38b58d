"""``GET /metrics`` (Prometheus text format): the work waiting, read from the database at scrape.

Read at scrape time rather than counted in the process, so every replica reports the same truth
and a restarted process loses nothing: the outbox *is* the database.
"""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from jpki_service.adapters.db import Store, utcnow
from jpki_service.ca_commands.service import queue_summary, retrying_summary
from jpki_service.notifications.service import pending_count
from jpki_service.registrations.models import Registration


class _ServiceCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily("jpki_ca_commands", "Changes not yet carried to the CA: pending (waiting) or "
                                  "failed (refused by the CA)", labels=["state"])
        summary = queue_summary(self.store, waiting_only=True)
        for state in ("pending", "failed"):
            queue.add_metric([state], summary.get(state, 0))
        yield queue
        retrying = retrying_summary(self.store)
        # One series per distinct cause (a handful: the CA down, our token refused...), never per command.
        by_error = GaugeMetricFamily("jpki_ca_commands_retrying", "Pending changes the CA has not taken yet, by the "
                                     "last error met (they are retried until the CA has them)", labels=["last_error"])
        for error, count in sorted(retrying.by_error.items()):
            by_error.add_metric([error], count)
        yield by_error
        oldest = retrying.oldest_pending_at
        yield GaugeMetricFamily("jpki_ca_commands_oldest_pending_seconds", "Age of the oldest change not yet at the "
                                "CA (0: none waiting)", value=(utcnow() - oldest).total_seconds() if oldest else 0)
        yield GaugeMetricFamily("jpki_owner_notifications_pending", "Owner notices not yet sent",
                                value=pending_count(self.store))
        registrations = GaugeMetricFamily("jpki_registrations", "Registrations by state", labels=["state"])
        with self.store.sessions() as session:
            for state, count in session.execute(select(Registration.state, func.count())
                                                .group_by(Registration.state)):
                registrations.add_metric([state], count)
        yield registrations


def metrics_endpoint(store: Store):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ServiceCollector(store))

    def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
