"""The Prometheus text exposition (format 0.0.4), fast enough for an exporter with a thousand reps.

prometheus_client builds every sample anew at each scrape and formats it label by label
(about 20 µs a series: a labels dict, a ``Sample``, each label escaped), so 1000 reps took
most of a second. The families here keep each series' line prefix (``name{labels} ``)
rendered once, when the series first appears, and the observer keeps its value current; a
scrape joins prefixes and formatted values. They are ordinary collectors on an injected
registry and their metrics also carry samples (built on demand), so
``registry.get_sample_value``, ``generate_latest`` and the tests read them like any others.

:func:`render` writes a whole registry: these families from their prefixes, every other
metric through prometheus_client's own formatter. Series are only added, never removed
(a rep or a line seen once stays exported until the process restarts, as before).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

#: The value a series takes in the text format: ``1.0``, ``+Inf``, ``1.7e+09`` (Go's spelling).
format_value: Callable[[float], str] = floatToGoString

#: Content type of the text format :func:`render` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def no_created_series() -> None:
    """Stop prometheus_client writing a ``_created`` series beside every counter and histogram.

    A third of a floor exporter's series, read by nothing we ship. It is a switch of
    prometheus_client's for the whole process (every registry in it).
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def label_text(pairs: Iterable[tuple[str, str]]) -> str:
    """``{a="x",b="y"}`` with the names in sorted order (as prometheus_client writes them); empty for none."""
    ordered = sorted(pairs)
    if not ordered:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in ordered) + "}"


def _header(name: str, documentation: str, typ: str) -> str:
    help_text = documentation.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {help_text}\n# TYPE {name} {typ}\n"


class RenderedMetric(Metric):
    """A metric family whose text is already written; its samples are built only when someone asks.

    :param text: the family's sample lines in the text format.
    :param samples: the same series as prometheus_client samples (for ``get_sample_value``,
        ``generate_latest`` and tests; never called by :func:`render`).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        *,
        text: Callable[[], str],
        samples: Callable[[], list[Sample]],
    ) -> None:
        super().__init__(name, documentation, typ)
        self._text = text
        self._samples = samples

    @property
    def samples(self) -> list[Sample]:
        """The series as samples, built now."""
        return self._samples()

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ assigns an empty list; the samples always come from the callable.
        pass

    def text(self) -> str:
        """``# HELP``, ``# TYPE`` and the sample lines."""
        exposed = f"{self.name}_total" if self.type == "counter" else self.name
        return _header(exposed, self.documentation, self.type) + self._text()


class Prefixes:
    """Line prefixes (``name{labels} ``) of one sample name, rendered once per label set.

    :param name: the sample's name as exposed (``cti_calls_total``).
    :param labelnames: the label names, in the order values are given.
    """

    def __init__(self, name: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.labelnames = tuple(labelnames)
        self._made: dict[tuple[str, ...], str] = {}

    def __call__(self, values: tuple[str, ...]) -> str:
        """The prefix for ``values`` (one per label name)."""
        made = self._made.get(values)
        if made is None:
            made = f"{self.name}{label_text(zip(self.labelnames, values, strict=True))} "
            self._made[values] = made
        return made


def gauge_metric(
    name: str, documentation: str, prefixes: Prefixes, rows: Sequence[tuple[tuple[str, ...], float]]
) -> RenderedMetric:
    """A gauge family of ``rows`` (label values, value), its lines written from ``prefixes``."""

    def text() -> str:
        return "".join([f"{prefixes(labels)}{format_value(value)}\n" for labels, value in rows])

    def samples() -> list[Sample]:
        names = prefixes.labelnames
        return [Sample(name, dict(zip(names, labels, strict=True)), float(value)) for labels, value in rows]

    return RenderedMetric(name, documentation, "gauge", text=text, samples=samples)


class CounterValue:
    """One counter series: its line prefix and its value."""

    __slots__ = ("labels", "prefix", "value")

    def __init__(self, labels: tuple[str, ...], prefix: str) -> None:
        self.labels = labels
        self.prefix = prefix
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (not negative)."""
        if amount < 0:
            raise ValueError("a counter can only go up")
        self.value += amount

    def get(self) -> float:
        """The value now."""
        return self.value


class CounterFamily(Collector):
    """A labelled counter, like ``prometheus_client.Counter`` without ``_created``, for many series.

    :param name: without ``_total`` (the exposition adds it).
    :param registry: where to register (None: not registered).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._prefixes = Prefixes(f"{name}_total", labelnames)
        self._children: dict[tuple[str, ...], CounterValue] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> CounterValue:
        """The series for these label values (one per label name), made at 0 the first time."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._prefixes.labelnames):
                raise ValueError(f"{self.name}: expected labels {self._prefixes.labelnames}, got {values}")
            child = CounterValue(values, self._prefixes(values))
            self._children[values] = child
        return child

    def describe(self) -> Iterable[Metric]:
        """The family without samples (for the registry's name-clash check)."""
        return [Metric(self.name, self.documentation, "counter")]

    def collect(self) -> Iterable[Metric]:
        """The family as of now."""
        # A snapshot: a scrape served from a worker thread must not see the dict grow under it.
        children = list(self._children.values())

        def text() -> str:
            return "".join([f"{child.prefix}{format_value(child.value)}\n" for child in children])

        def samples() -> list[Sample]:
            names = self._prefixes.labelnames
            total = f"{self.name}_total"
            return [Sample(total, dict(zip(names, c.labels, strict=True)), c.value) for c in children]

        return [RenderedMetric(self.name, self.documentation, "counter", text=text, samples=samples)]


class HistogramValue:
    """One histogram series: a count per bucket (not cumulative), the sum, and the line prefixes."""

    __slots__ = ("bounds", "counts", "labels", "prefixes", "sum")

    def __init__(self, labels: tuple[str, ...], bounds: tuple[float, ...], prefixes: tuple[str, ...]) -> None:
        self.labels = labels
        self.bounds = bounds
        self.prefixes = prefixes  # one per bucket, then _count, then _sum
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def lines(self) -> str:
        """The series' lines: cumulative buckets, then ``_count`` (the ``+Inf`` bucket), then ``_sum``."""
        out = []
        running = 0
        prefixes = self.prefixes
        for index, count in enumerate(self.counts):
            running += count
            out.append(f"{prefixes[index]}{format_value(running)}\n")
        out.append(f"{prefixes[-2]}{format_value(running)}\n{prefixes[-1]}{format_value(self.sum)}\n")
        return "".join(out)


class HistogramFamily(Collector):
    """A labelled histogram, like ``prometheus_client.Histogram`` without ``_created``, for many series."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self.bounds = tuple(bounds)
        self._les = tuple(format_value(b) for b in self.bounds)
        self._children: dict[tuple[str, ...], HistogramValue] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> HistogramValue:
        """The series for these label values, made empty the first time."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            pairs = list(zip(self.labelnames, values, strict=True))
            bucket = f"{self.name}_bucket"
            prefixes = [f"{bucket}{label_text([*pairs, ('le', le)])} " for le in self._les]
            prefixes.append(f"{self.name}_count{label_text(pairs)} ")
            prefixes.append(f"{self.name}_sum{label_text(pairs)} ")
            child = HistogramValue(values, self.bounds, tuple(prefixes))
            self._children[values] = child
        return child

    def describe(self) -> Iterable[Metric]:
        """The family without samples."""
        return [Metric(self.name, self.documentation, "histogram")]

    def collect(self) -> Iterable[Metric]:
        """The family as of now."""
        children = list(self._children.values())

        def text() -> str:
            return "".join([child.lines() for child in children])

        def samples() -> list[Sample]:
            out: list[Sample] = []
            for child in children:
                labels = dict(zip(self.labelnames, child.labels, strict=True))
                running = 0
                for le, count in zip(self._les, child.counts, strict=True):
                    running += count
                    out.append(Sample(f"{self.name}_bucket", {**labels, "le": le}, float(running)))
                out.append(Sample(f"{self.name}_count", labels, float(running)))
                out.append(Sample(f"{self.name}_sum", labels, child.sum))
            return out

        return [RenderedMetric(self.name, self.documentation, "histogram", text=text, samples=samples)]


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self.metric]


def render(registry: Collector) -> bytes:
    """The registry in the text format: rendered families from their prefixes, others by prometheus_client."""
    parts: list[bytes] = []
    for metric in registry.collect():
        if isinstance(metric, RenderedMetric):
            parts.append(metric.text().encode("utf-8"))
        else:
            parts.append(generate_latest(_One(metric)))
    return b"".join(parts)
