"""GET /metrics: Prometheus text format, from a registry of this server's own (prometheus-client). Counted as
requests go: requests by status, errors by kind, inputs, latency and batch-size histograms, per model and version.
Read at each scrape from the versions themselves: queue depth, which version is the default, and the skew guard's
drift figures (dlrun/serve/drift.py)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import disable_created_metrics
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MAX_CHANNEL_SERIES = 64  # drift per channel or feature up to this many; beyond, the summary figures only
UNKNOWN = "(unknown)"  # the label of a request for a model or version that is not served (bounded cardinality)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """The server's metrics; `versions()` lists the served versions at scrape time."""

    def __init__(self, versions):
        disable_created_metrics()  # no *_created series: this process serves, nothing else counts in it
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter("dlrun_requests", "Prediction requests answered, by HTTP status",
                                [*labels, "status"], registry=self.registry)
        self.errors = Counter("dlrun_request_errors", "Prediction requests refused or failed, by kind of error",
                              [*labels, "kind"], registry=self.registry)
        self.inputs = Counter("dlrun_inputs", "Inputs predicted", labels, registry=self.registry)
        self.latency = Histogram("dlrun_request_latency_seconds", "Time from a request's arrival to its answer",
                                 labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("dlrun_batch_size", "Inputs per forward pass (dynamic batching)", labels,
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.registry.register(_VersionState(versions))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _VersionState:
    """Gauges read from the served versions when /metrics is scraped."""

    def __init__(self, versions):
        self.versions = versions

    def collect(self):
        labels = ["model", "version"]
        depth = GaugeMetricFamily("dlrun_queue_depth", "Requests waiting for a forward pass", labels=labels)
        default = GaugeMetricFamily("dlrun_model_default", "1 for the default version of each model", labels=labels)
        mean_z = GaugeMetricFamily("dlrun_input_drift_mean_z", "Mean over channels/features of |served mean - "
                                   "training mean| / training std (recent inputs)", labels=labels)
        ratio = GaugeMetricFamily("dlrun_input_drift_std_ratio", "Mean over channels/features of served std / "
                                  "training std (1: the training spread)", labels=labels)
        outside = GaugeMetricFamily("dlrun_input_outside_share", "Share of recent inputs with a value beyond the "
                                    "training mean +- 4 std", labels=labels)
        z_c = GaugeMetricFamily("dlrun_input_channel_z", "(served mean - training mean) / training std, per channel "
                                "or feature", labels=[*labels, "channel"])
        ratio_c = GaugeMetricFamily("dlrun_input_channel_std_ratio", "Served std / training std, per channel or "
                                    "feature", labels=[*labels, "channel"])
        for v in self.versions():
            key = list(v.labels)
            depth.add_metric(key, v.batcher.depth if v.batcher else 0)
            default.add_metric(key, 1.0 if v.is_default else 0.0)
            figures = v.drift.figures() if v.drift else None
            if figures is None:
                continue
            mean_z.add_metric(key, figures["mean_z"])
            ratio.add_metric(key, figures["std_ratio_mean"])
            outside.add_metric(key, figures["outside_share"])
            if len(figures["z"]) <= MAX_CHANNEL_SERIES:
                for c, (z, r) in enumerate(zip(figures["z"], figures["std_ratio"])):
                    z_c.add_metric([*key, str(c)], z)
                    ratio_c.add_metric([*key, str(c)], r)
        yield from (depth, default, mean_z, ratio, outside, z_c, ratio_c)
