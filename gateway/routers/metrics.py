"""GET /metrics: the gateway's own counters in Prometheus' text format, read from the services at scrape time (a
registry per scrape, so two gateways in one test process never collide). Unauthenticated like /health: counts only."""

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.deps import ServicesDep
from gateway.services import Services

router = APIRouter()


class _ServicesCollector:
    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        metering, limiter, supervisor = self._services.metering, self._services.limiter, self._services.supervisor
        yield CounterMetricFamily("hearth_gateway_usage_events_spooled", "Usage events written to the spool file "
                                  "(Redis refused them, or the queue was full).", value=metering.num_spooled)
        yield CounterMetricFamily("hearth_gateway_usage_events_overflowed", "Usage events that found the in-memory "
                                  "queue full (spooled at once).", value=metering.num_overflowed)
        yield CounterMetricFamily("hearth_gateway_usage_events_replayed", "Spooled usage events moved into the "
                                  "usage stream.", value=metering.num_replayed)
        yield CounterMetricFamily("hearth_gateway_rate_limit_corrections_expired", "Rate-limit corrections dropped "
                                  "after Redis refused them for longer than a bucket's refill window.",
                                  value=limiter.num_settlements_expired)
        restarts = CounterMetricFamily("hearth_gateway_background_task_restarts", "Background tasks restarted by the "
                                       "supervisor after dying.", labels=["task"])
        up = GaugeMetricFamily("hearth_gateway_background_task_up", "1 while the background task runs.",
                               labels=["task"])
        running = supervisor.running()
        for task, count in supervisor.num_restarts.items():
            restarts.add_metric([task], count)
            up.add_metric([task], 1.0 if running.get(task) else 0.0)
        yield restarts
        yield up
        yield GaugeMetricFamily("hearth_gateway_workers", "Workers in this process's registry snapshot.",
                                value=len(self._services.registry.workers()))


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)  # per scrape: it only reads counters the services keep
    registry.register(_ServicesCollector(services))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
