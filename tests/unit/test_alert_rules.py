"""The alert rules and the dashboard the charm ships: promtool, structure, and metric names.

`promtool` is the real one from Debian's `prometheus` package (`.ci/run` installs it). The
metric names used by rules and dashboard must be ones the agent exports: the table in the
README's Observability section, which is the metrics contract.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

import cos

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "src" / "prometheus_alert_rules"
RULE_FILES = sorted(RULES_DIR.glob("*.rules"))
RULE_TESTS = ROOT / "tests" / "alerts" / "whirlwind_test.yml"
DASHBOARD = ROOT / "src" / "grafana_dashboards" / "whirlwind.json"
README = ROOT / "README.md"
PROMTOOL_TIMEOUT = 120  # seconds; the rule tests take about one
SEVERITIES = ("info", "warning", "critical")
# PromQL words that are neither metrics nor labels.
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2",
}  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
MODEL_UUID = "4f0c8a52-1c9e-4f6b-8a2e-0d5c7e9b1a23"


def promtool() -> str:
    """The promtool executable; fail (never skip: CI must run these) when it is missing."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package "
            "(sudo apt-get install -y --no-install-recommends prometheus), or run .ci/run, "
            "which installs it"
        )
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


def contract_metrics() -> dict[str, str]:
    """Metric name -> type, from the README's metrics table (Observability)."""
    text = README.read_text()
    section = text.split("\n## Observability", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(whirlwind_[a-z_]+)` \| (counter|gauge|histogram) \|", section, re.M)
    return dict(rows)


def rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for rule in rules_in(yaml.safe_load(path.read_text()))]


def rules_in(rule_file: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rule_file["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for panel in panels for p in (panel, *walk(panel.get("panels", [])))]

    return walk(dashboard()["panels"])


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard: panel targets, annotations, variables."""
    board = dashboard()
    queries = [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]
    queries += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
            assert match, variable["name"]
            queries.append(match.group(1))
    return queries


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (Grafana variables allowed in strings, ranges)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if word in PROMQL_KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword or a function
        names.add(word)
    return names


def contract_name(name: str, contract: dict[str, str]) -> str | None:
    """The contract metric a series name belongs to (histograms have three series)."""
    if name in contract:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and contract.get(base) == "histogram":
            return base
    return None


def test_promtool_check_rules_accepts_the_rule_files():
    assert RULE_FILES, f"no rule files in {RULES_DIR}"

    result = run_promtool("check", "rules", *map(str, RULE_FILES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_check_rules_accepts_the_rules_as_published(tmp_path: pathlib.Path):
    # The group names and labels the provider adds must keep the file valid.
    topology = cos.Topology("prod", MODEL_UUID, "ww", "ww/0", "ww")
    published = tmp_path / "published.rules"
    published.write_text(yaml.safe_dump(cos.load_alert_rules(ROOT, topology)))

    result = run_promtool("check", "rules", str(published))

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass():
    result = run_promtool("test", "rules", str(RULE_TESTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass_on_the_rules_as_cos_runs_them(tmp_path: pathlib.Path):
    # What Prometheus evaluates: the provider's groups and topology labels (cos.py), and the
    # topology matchers COS injects into every selector (cosl's CosTool, with cos-tool).
    # Series and alerts then carry the model UUID too.
    topology = cos.Topology("prod", MODEL_UUID, "whirlwind", "whirlwind/0", "whirlwind")
    published = cos.load_alert_rules(ROOT, topology)
    matchers = ",".join(
        f'{key}="{topology.rule_labels[key]}"'
        for key in ("juju_model", "juju_model_uuid", "juju_application")
    )
    for group in published["groups"]:
        for rule in group["rules"]:
            rule["expr"] = re.sub(r"\b(whirlwind_\w+)\b(?!\{)", rf"\1{{{matchers}}}", rule["expr"])
    rules_file = tmp_path / "published.rules"
    rules_file.write_text(yaml.safe_dump(published))
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(rules_file)]
    for test in tests["tests"]:
        for series in test["input_series"]:
            series["series"] = series["series"].replace(
                'juju_model="prod"', f'juju_model="prod",juju_model_uuid="{MODEL_UUID}"'
            )
        for case in test["alert_rule_test"]:
            for alert in case["exp_alerts"]:
                alert["exp_labels"].update(topology.rule_labels)
                # absent() has labels now: its commands name the model and application.
                description = alert["exp_annotations"]["description"]
                alert["exp_annotations"]["description"] = description.replace(
                    "-m  /leader", "-m prod whirlwind/leader"
                ).replace("-m  `", "-m prod whirlwind`")
    tests_file = tmp_path / "published_test.yml"
    tests_file.write_text(yaml.safe_dump(tests))

    result = run_promtool("test", "rules", str(tests_file))

    assert result.returncode == 0, result.stdout + result.stderr
    assert all("{juju_model=" in rule["expr"] for rule in rules_in(published))


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not():
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]

    for rule in rules():
        own = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in own), f"{rule['alert']}: no firing test"
        assert any(not case["exp_alerts"] for case in own), f"{rule['alert']}: no quiet test"


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_alert_tells_the_operator_what_to_do(rule: dict[str, Any]):
    assert rule["alert"].startswith("Whirlwind")
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"]
    description = rule["annotations"]["description"]
    assert re.search(r"`(juju (run|status|ssh|debug-log)|journalctl) ", description), description


def test_the_readme_lists_the_contract_metrics():
    contract = contract_metrics()

    assert len(contract) >= 20
    assert {"counter", "gauge", "histogram"} == set(contract.values())
    for name, kind in contract.items():
        assert name.endswith("_total") == (kind == "counter"), name


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("whirlwind_breaker_open == 1", {"whirlwind_breaker_open"}),
        (
            'sum by (result) (increase(ops_total{a=~"$b",c!="d"}[$__rate_interval]))',
            {"ops_total"},
        ),
        ("a > b unless ignoring(service) c == 1", {"a", "b", "c"}),
        ("count_over_time((x unless y)[7d:5m]) * 300 > 3 * z", {"x", "y", "z"}),
        ('histogram_quantile(0.9, sum by (le, step) (rate(h_bucket{s="x"}[1h])))', {"h_bucket"}),
        ("absent(whirlwind_build_info)", {"whirlwind_build_info"}),
        ("time() - t", {"t"}),
    ],
)
def test_metric_names_are_parsed_out_of_expressions(expr: str, names: set[str]):
    assert metric_names(expr) == names


def test_rules_and_dashboard_use_only_contract_metrics():
    contract = contract_metrics()
    queries = [rule["expr"] for rule in rules()] + dashboard_queries()

    used = {name for expr in queries for name in metric_names(expr)}

    unknown = sorted(name for name in used if contract_name(name, contract) is None)
    assert not unknown, f"not in the README's metrics table: {unknown}"
    assert "whirlwind_operations_finished_total" in used


def test_dashboard_has_what_grafana_and_cos_need():
    board = dashboard()
    panels = dashboard_panels()

    assert board["title"] == "Whirlwind"
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # The datasource variables COS's Grafana fills in (grafana_dashboard library).
    assert variables["prometheusds"]["type"] == "datasource"
    assert variables["prometheusds"]["query"] == "prometheus"
    assert variables["lokids"]["query"] == "loki"
    for name in ("juju_model", "juju_model_uuid", "juju_application", "juju_unit"):
        assert variables[name]["type"] == "query"
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) for i in ids)
    for panel in panels:
        assert panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${prometheusds}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"]
            assert '$juju_application"' in target["expr"], target["expr"]


def test_dashboard_annotates_every_finished_operation():
    annotations = dashboard()["annotations"]["list"]

    queries = [a for a in annotations if a.get("datasource", {}).get("uid") == "${prometheusds}"]

    assert any("whirlwind_operations_finished_total" in a["expr"] for a in queries)
    assert all(a["enable"] for a in queries)
