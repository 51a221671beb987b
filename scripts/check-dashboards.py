#!/usr/bin/env python3
"""Checks the chart's Grafana dashboards and PrometheusRule against the metrics Switchyard exposes.

Usage: check-dashboards.py RENDERED_YAML EXPOSITION OUT_DIR

- RENDERED_YAML: `helm template` output with grafanaDashboards and prometheusRule enabled;
- EXPOSITION: the three services' /metrics bodies, concatenated;
- OUT_DIR: where the rule files for promtool are written.

Fails when a dashboard is not well formed (unique uid, titles, grid positions, a Prometheus
target with an expression on every panel, the datasource variable), or when a dashboard or alert
names a metric that no service exposes. Writes OUT_DIR/rules.yaml (the PrometheusRule's groups)
and OUT_DIR/dashboard-rules.yaml (every dashboard expression as a recording rule, Grafana's
variables replaced), for `promtool check rules` to parse.
"""
import json
import re
import sys
from pathlib import Path

import yaml

rendered, exposition, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
errors = []

# What the services expose: each family's sample names, from its TYPE line (families with no
# sample yet have one too).
exposed = set()
for line in exposition.read_text().splitlines():
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if not m:
        continue
    name, kind = m.groups()
    exposed |= {
        "counter": {name + "_total", name + "_created"},
        "histogram": {name + "_bucket", name + "_sum", name + "_count", name + "_created"},
    }.get(kind, {name})
if not any(n.startswith("switchyard_orchestrator_") for n in exposed):
    errors.append("the exposition has no orchestrator metrics")


def names(expr):
    return set(re.findall(r"\bswitchyard_[a-z0-9_]+", expr))


def grafana_vars(expr):
    """An expression Prometheus can parse: Grafana's variables replaced by plausible values."""
    return (expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
            .replace("$namespace", ".*"))


# Dashboards: ConfigMaps labelled for the sidecar.
dashboards = [d for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]]
if len(dashboards) < 4:
    errors.append(f"expected at least 4 dashboard ConfigMaps, found {len(dashboards)}")
uids, recording = set(), []
for cm in dashboards:
    labels = cm["metadata"]["labels"]
    if labels.get("grafana_dashboard") != "1":
        errors.append(f"{cm['metadata']['name']}: no grafana_dashboard label")
    for key, body in cm["data"].items():
        d = json.loads(body)
        where = f"{key} ({d.get('title')})"
        if not d.get("title") or not d.get("uid"):
            errors.append(f"{where}: a title and a uid are required")
        if d["uid"] in uids:
            errors.append(f"{where}: uid {d['uid']} is used twice")
        uids.add(d["uid"])
        variables = {v["name"] for v in d.get("templating", {}).get("list", [])}
        if "datasource" not in variables:
            errors.append(f"{where}: no datasource variable")
        ids = set()
        for p in d["panels"]:
            pw = f"{where} / {p.get('title')}"
            if p.get("id") in ids:
                errors.append(f"{pw}: panel id {p.get('id')} is used twice")
            ids.add(p.get("id"))
            g = p.get("gridPos", {})
            if not all(k in g for k in "xywh") or g["x"] + g["w"] > 24:
                errors.append(f"{pw}: bad gridPos {g}")
            if p.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"{pw}: the panel does not use the datasource variable")
            if not p.get("targets"):
                errors.append(f"{pw}: no targets")
            for t in p.get("targets", []):
                expr = t.get("expr", "")
                if not expr:
                    errors.append(f"{pw}: a target without an expression")
                    continue
                if 'namespace=~"$namespace"' not in expr:
                    errors.append(f"{pw}: {expr} is not filtered by the namespace variable")
                for n in names(expr) - exposed:
                    errors.append(f"{pw}: {n} is not a metric any service exposes")
                recording.append({"record": f"dashboard:check:{len(recording)}",
                                  "expr": grafana_vars(expr)})
(out / "dashboard-rules.yaml").write_text(
    yaml.safe_dump({"groups": [{"name": "dashboards", "rules": recording}]}, sort_keys=False))

# Alerts.
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
if len(rules) != 1:
    errors.append(f"expected one PrometheusRule, found {len(rules)}")
else:
    spec = rules[0]["spec"]
    alerts = [r for g in spec["groups"] for r in g["rules"]]
    for r in alerts:
        for n in names(r["expr"]) - exposed:
            errors.append(f"alert {r.get('alert')}: {n} is not a metric any service exposes")
        if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            errors.append(f"alert {r.get('alert')}: no severity label")
    (out / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

for e in errors:
    print(e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"dashboards: {len(uids)} dashboards, {len(recording)} expressions; alerts: "
      f"{len(alerts)} rules; every metric they name is exposed ({len(exposed)} series names)")
