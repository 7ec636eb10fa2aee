"""What operators see of the service: Prometheus metrics, JSON log lines with a request id.

`/metrics` (Prometheus text format) counts requests by endpoint and status, times them and each
stage of a recommendation in histograms, and reads the service's state at scrape time: the
model version, known and recorded posts, records set aside, reloads, and the follower's lag.
Each request gets an id (the client's `X-Request-ID` when it is a short token, else a new one),
sent back in the answer's `X-Request-ID` and written in the request's log line.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from mishon.serve.service import HashtagService

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
request_log = logging.getLogger("mishon.serve.requests")


class ServiceMetrics:
    """The service's Prometheus registry (one per app, so several apps never share one)."""

    def __init__(self, service: HashtagService) -> None:
        self.registry = CollectorRegistry()
        self.endpoints: frozenset[str] = frozenset()  # the app's routes, set once they exist
        self.requests = Counter(
            "mishon_requests",
            "HTTP requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mishon_request_seconds",
            "time to answer a request, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "mishon_stage_seconds",
            "time of each stage of a recommendation (decode, one per modality, ranking)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(service))

    def endpoint(self, path: str) -> str:
        """The label of `path`: itself when it is a route, else 'other' (bounded labels)."""
        return path if path in self.endpoints else "other"

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            if stage != "total_s":
                self.stages.labels(stage.removesuffix("_s")).observe(seconds)


class _StateCollector:
    """Gauges read from the service at each scrape."""

    def __init__(self, service: HashtagService) -> None:
        self.service = service

    def collect(self) -> Iterable[Metric]:
        service = self.service
        model = service.model
        info = InfoMetricFamily("mishon_model", "the run being served")
        info.add_metric([], {"run": model.served.path.name, "version": model.version,
                             "weights_source": model.served.weights_source})  # fmt: skip
        yield info
        gauges = {
            "mishon_known_posts": ("posts whose hashtags the ranker reads",
                                   int(model.served.ranker.known_.known.sum())),
            "mishon_store_seq": ("last record-store sequence number taken in", model.applied),
            "mishon_damaged_records": ("recorded posts set aside as unreadable",
                                       len(service.damaged)),
            "mishon_reloads": ("run reloads since start", service.reloads),
            "mishon_model_loaded_timestamp_seconds": ("when the served model was loaded",
                                                      model.loaded_at),
            "mishon_follower_timestamp_seconds": ("when the record store last answered the "
                                                  "follower", service.last_followed),
        }  # fmt: skip
        for name, (text, value) in gauges.items():
            yield GaugeMetricFamily(name, text, value=value)


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if REQUEST_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


class RequestLog:
    """ASGI middleware: a request id, the request's metrics, and one JSON log line each."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            endpoint = self.metrics.endpoint(scope["path"])
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(seconds)
            request_log.info(
                "%s %s %d",
                scope["method"],
                endpoint,
                status,
                extra={"request_id": request_id, "method": scope["method"],
                       "endpoint": endpoint, "status": status,
                       "seconds": round(seconds, 4)},
            )  # fmt: skip


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the record's extra fields."""

    STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message",
        "asctime",
    }

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in self.STANDARD})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_json_lines(level: int = logging.INFO) -> None:
    """Send the service's logs (`mishon.*`) to standard error as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    root = logging.getLogger("mishon")
    root.handlers = [handler]
    root.setLevel(level)
    root.propagate = False
