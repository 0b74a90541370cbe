"""What a Prometheus scrape of logmond returns: the daemon's state, read at scrape time, as
metric families rendered by prometheus_client's own encoders (classic text or OpenMetrics), so
that names, escaping and types are right by construction.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from logmond import __version__
from logmond.core.monitor import Monitor
from logmond.core.replies import rules

OPENMETRICS = "application/openmetrics-text"


class LogmondCollector:
    """Reads the monitor and the followed file's position each time Prometheus asks."""

    def __init__(self, monitor: Callable[[], Monitor], file_status: Callable[[], dict[str, Any]]) -> None:
        self._monitor = monitor
        self._file_status = file_status

    def collect(self) -> Iterator[Metric]:
        monitor = self._monitor()
        counters = monitor.counters
        if counters is not None:
            requests = CounterMetricFamily("logmon_http_requests", "Requests in the log, by section (the busiest "
                                           "ones; the rest are (other)), method and status code",
                                           labels=["section", "method", "code"])
            for (section, method, code), n in sorted(counters.requests.items()):
                requests.add_metric([section, method, str(code)], n)
            yield requests
            size = CounterMetricFamily("logmon_http_response_size_bytes", "Response bytes in the log, by section",
                                       labels=["section"])
            for section, n in sorted(counters.bytes.items()):
                size.add_metric([section], n)
            yield size
            if monitor.log_format is not None and monitor.log_format.latency:
                durations = HistogramMetricFamily("logmon_http_request_duration_seconds",
                                                  "Request times in the log, by section", labels=["section"])
                for section in sorted(counters.durations):
                    durations.add_metric([section], counters.histogram(section),
                                         sum_value=counters.duration_sums[section])
                yield durations
        lines = CounterMetricFamily("logmon_lines", "Lines read: counted, malformed, or late (parsed but past "
                                    "the lateness)", labels=["result"])
        malformed = sum(monitor.malformed_by_reason.values())
        for result, n in (("parsed", monitor.parsed - monitor.late), ("malformed", malformed), ("late", monitor.late)):
            lines.add_metric([result], n)
        yield lines
        reasons = CounterMetricFamily("logmon_malformed_lines", "Malformed lines, by reason", labels=["reason"])
        for reason, n in sorted(monitor.malformed_by_reason.items()):
            reasons.add_metric([reason], n)
        yield reasons
        yield from _alerts(monitor)
        file = self._file_status()
        for key, name, text in (("offset", "logmon_file_offset_bytes", "Bytes of the log read"),
                                ("size", "logmon_file_size_bytes", "Size of the log (size - offset is the backlog)")):
            if file.get(key) is not None:
                yield GaugeMetricFamily(name, text, value=file[key])
        info = GaugeMetricFamily("logmon_build_info", "logmond's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def _alerts(monitor: Monitor) -> Iterator[Metric]:
    firing = GaugeMetricFamily("logmon_alert_firing", "1 while the rule fires", labels=["rule", "severity"])
    value = GaugeMetricFamily("logmon_alert_value", "The rule's value at the last evaluated second (hits/s, a "
                              "share from 0 to 1, or seconds); NaN while it is not evaluated", labels=["rule"])
    threshold = GaugeMetricFamily("logmon_alert_threshold", "The value past which the rule fires", labels=["rule"])
    for rule in rules(monitor):
        firing.add_metric([rule["name"], rule["severity"]], 1 if rule["active"] else 0)
        value.add_metric([rule["name"]], math.nan if rule["value"] is None else rule["value"])
        threshold.add_metric([rule["name"]], rule["threshold"])
    yield from (firing, value, threshold)
    yield GaugeMetricFamily("logmon_window_rate", "Hits/s over the high-traffic rule's window", value=monitor.rate())


class Exposition:
    """The registry a scrape renders: logmond's collector and the process' own metrics."""

    def __init__(self, collector: LogmondCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)

    def render(self, accept: str) -> tuple[bytes, str]:
        """(body, content type): OpenMetrics when the scraper accepts it, the classic text (as
        version 0.0.4, which every Prometheus reads) otherwise."""
        if OPENMETRICS in accept:
            return openmetrics.generate_latest(self.registry), openmetrics.CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
