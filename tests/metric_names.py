"""Metric names, both ways: the series the code in services/flashsale exports (read from its source with `ast`)
and the metric names a PromQL expression reads, so dashboards and rules can be checked against the code.

    missing = metric_names.promql_metric_names(expr) - metric_names.exported_metric_names()
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "services" / "flashsale"

# the constructors that declare a metric family, by their dotted callee → the kind of family
_KINDS = {
    "prometheus_client.Counter": "counter",
    "prometheus_client.Gauge": "gauge",
    "prometheus_client.Histogram": "histogram",
    "prometheus_client.Summary": "summary",
    "metrics.BulkHistogram": "histogram",
    "flashsale.common.metrics.BulkHistogram": "histogram",
    **{
        f"{module}.{kind.capitalize()}MetricFamily": kind
        for module in ("prometheus_client.core", "prometheus_client.metrics_core")
        for kind in ("counter", "gauge", "histogram", "summary")
    },
}
# where the name is among the positional arguments: BulkHistogram takes the registry first
_NAME_POSITION = {"metrics.BulkHistogram": 1, "flashsale.common.metrics.BulkHistogram": 1}
_METRIC_LIKE = re.compile(r"^(flashsale|grpc|http)_[a-z0-9_]+$")


def _dotted(node: ast.expr) -> str:
    """`a.b.c` of an attribute chain on a name; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _constant(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _name_argument(call: ast.Call, position: int) -> ast.expr | None:
    """The expression a metric constructor gets as its name (positional or `name=`)."""
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if "name" in keywords:
        return keywords["name"]
    return call.args[position] if len(call.args) > position else None


def _full_name(call: ast.Call, name: str) -> str:
    """The name with prometheus-client's `namespace` and `subsystem` prefixes, when given as constants."""
    keywords = {k.arg: _constant(k.value) for k in call.keywords if k.arg}
    parts = [keywords.get("namespace"), keywords.get("subsystem"), name]
    return "_".join(part for part in parts if part)


def _series(name: str, kind: str) -> set[str]:
    """The series names Prometheus scrapes for a family of this kind."""
    if kind == "counter":
        return {f"{name.removesuffix('_total')}_total"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "summary":
        return {f"{name}_sum", f"{name}_count"}
    return {name}


def _table_names(tree: ast.Module) -> set[str]:
    """Metric-like names heading the rows of a table literal: a tuple `(name, ...)` that is an element of a tuple
    or list literal, as in `(("flashsale_sale_stock", doc, fn), ...)`."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List):
            for row in node.elts:
                if isinstance(row, ast.Tuple) and row.elts:
                    name = _constant(row.elts[0])
                    if name is not None and _METRIC_LIKE.match(name):
                        found.add(name)
    return found


def _module_series(tree: ast.Module) -> set[str]:
    """The series one module declares; names taken from a table get the kinds of the module's constructor calls
    whose name is not a literal."""
    series: set[str] = set()
    computed_kinds: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = _dotted(node.func)
        kind = _KINDS.get(callee)
        if kind is None:
            continue
        argument = _name_argument(node, _NAME_POSITION.get(callee, 0))
        name = _constant(argument)
        if name is not None:
            series |= _series(_full_name(node, name), kind)
        elif argument is not None:
            computed_kinds.add(kind)
    for name in _table_names(tree) if computed_kinds else ():
        for kind in computed_kinds:
            series |= _series(name, kind)
    return series


@functools.cache
def _exported() -> frozenset[str]:
    found: set[str] = set()
    for path in sorted(SOURCES.rglob("*.py")):
        found |= _module_series(ast.parse(path.read_text(), filename=str(path)))
    return frozenset(found)


def exported_metric_names() -> set[str]:
    """The series names (`x_total`, `x_bucket`/`x_sum`/`x_count`, `x`) of every metric family declared in
    services/flashsale, as Prometheus sees them."""
    return set(_exported())


_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "limitk", "limit_ratio",
}  # fmt: skip
_KEYWORDS = {
    "and", "or", "unless", "atan2", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
    "start", "end", "step", "inf", "nan",
}  # fmt: skip
_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count",
    "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "double_exponential_smoothing", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}  # fmt: skip
_NOT_METRICS = _AGGREGATIONS | _KEYWORDS | _FUNCTIONS

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'\b__name__\s*=\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_TOKENS = re.compile(
    r"(?P<variable>\$\{[^}]*\}|\$\w+)"
    r"|(?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:ms|[smhdwy]))+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers (a `__name__="x"`
    matcher counts as x), ranges, label lists of by/without/on/ignoring/group_*, numbers, durations, Grafana
    variables, and function, aggregation and keyword names are taken away."""
    found = set(_NAME_MATCHER.findall(expr))
    text = _MATCHERS.sub(" ", _STRING.sub(" ", expr))
    text = _LABEL_LISTS.sub(" ", _RANGES.sub(" ", text))
    for token in _TOKENS.finditer(text):
        name = token.group("name")
        if name is not None and not token.group("call") and name.lower() not in _NOT_METRICS:
            found.add(name)
    return found
