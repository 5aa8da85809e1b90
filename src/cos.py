"""The provider side of the `cos_agent` interface: what this unit publishes to the collector.

The collector subordinate (opentelemetry-collector or grafana-agent) reads one key, `config`,
from each principal unit's databag on the `cos-agent` relation, and parses it with the
`CosAgentProviderUnitData` model of the `charms.grafana_agent.v0.cos_agent` library (LIBAPI 0,
LIBPATCH 26, published on Charmhub): `metrics_alert_rules` and `log_alert_rules` (rule files
as dicts), `dashboards` (JSON, LZMA-compressed then base64-encoded: cosl's `LZMABase64`),
`metrics_scrape_jobs` (Prometheus scrape configs), `log_slots` (snap slots), and the optional
`subordinate` and `tracing_protocols`. This module builds exactly that content, the way the
library's `COSAgentProvider` does, without the library's dependencies (pydantic, cosl) in the
charm: rule groups named and labelled with the Juju topology as cosl's `Rules` does, dashboard
uids as cosl's `DashboardPath40UID`, job names as the library's deterministic ones. The
collector (and Prometheus) inject the topology label matchers into the rules' expressions.

Every unit publishes the same rules and dashboards: the collector keeps one copy per
application, from whichever unit it reads first. Only the unit whose agent runs (the leader
with a complete configuration) publishes the scrape job: a standby unit has nothing listening
on the metrics port, and a scrape job there would only make a target that is always down.

Logs: the published library (LIBPATCH 26) has no field for log files, and none is needed. The
agent writes its log to the journal and to `/var/log/whirlwind/agent.log` (workload.py,
logsetup.py). Both collectors read every file matching `/var/log/**/*log` on the machine
whatever the relation says (opentelemetry-collector's `filelog/var-log` receiver, grafana-agent's
`varlog` job: their charm.py); grafana-agent also ships the journal (job `syslog`).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import fnmatch
import hashlib
import json
import lzma
import pathlib
import re
from typing import Any

import yaml

RELATION_NAME = "cos-agent"
DATA_KEY = "config"  # CosAgentProviderUnitData.KEY
RULES_DIR = pathlib.Path("src") / "prometheus_alert_rules"
DASHBOARDS_DIR = pathlib.Path("src") / "grafana_dashboards"
RULE_SUFFIXES = (".rule", ".rules", ".yml", ".yaml")  # the suffixes cosl's Rules reads
METRICS_PATH = "/metrics"
JOB_NAME = "agent"
# The agent serves its metrics on loopback only (metrics.py); the collector runs on the machine.
METRICS_HOST = "127.0.0.1"
# The files both collectors read, `/var/log/**/*log` (doublestar: `**` is any depth, none too).
COLLECTED_LOG_DIR = pathlib.PurePosixPath("/var/log")
COLLECTED_LOG_NAME = "*log"


class CosError(Exception):
    """A rule file or dashboard shipped with the charm cannot be read."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """The Juju topology of this unit, as cosl's JujuTopology.from_charm builds it."""

    model: str
    model_uuid: str
    application: str
    unit: str
    charm_name: str

    @property
    def identifier(self) -> str:
        """`<model>_<uuid[:8]>_<application>`, the prefix of rule group names (cosl)."""
        return f"{self.model}_{self.model_uuid[:8]}_{self.application}".replace("/", "_")

    @property
    def rule_labels(self) -> dict[str, str]:
        """The labels added to every rule: topology without the unit (label_matcher_dict)."""
        labels = {
            "juju_model": self.model,
            "juju_model_uuid": self.model_uuid,
            "juju_application": self.application,
            "juju_charm": self.charm_name,
        }
        return {key: value for key, value in labels.items() if value}


def encode_dashboard(dashboard: dict[str, Any]) -> str:
    """A dashboard as the interface carries it: JSON, LZMA (xz), then base64 (LZMABase64)."""
    return base64.b64encode(lzma.compress(json.dumps(dashboard).encode("utf-8"))).decode("ascii")


def decode_dashboard(encoded: str) -> dict[str, Any]:
    """The inverse of `encode_dashboard`, as the collector decodes it."""
    return json.loads(lzma.decompress(base64.b64decode(encoded.encode("ascii"))).decode("utf-8"))


def dashboard_uid(charm_name: str, relative_path: str) -> str:
    """The dashboard uid of cosl's DashboardPath40UID: 40 hex digits from charm and path."""
    return hashlib.shake_256(f"{charm_name}-{relative_path}".encode()).hexdigest(20)


def load_alert_rules(charm_dir: pathlib.Path, topology: Topology) -> dict[str, Any]:
    """The charm's Prometheus rule files as one rule file, named and labelled as cosl does."""
    rules_dir = charm_dir / RULES_DIR
    files = sorted(p for p in rules_dir.glob("*") if p.is_file() and p.suffix in RULE_SUFFIXES)
    groups: list[dict[str, Any]] = []
    for path in files:
        try:
            content = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CosError(f"cannot read alert rules {path.name}: {exc}") from exc
        if not isinstance(content, dict) or not isinstance(content.get("groups"), list):
            raise CosError(f"alert rules {path.name}: not a Prometheus rule file (groups)")
        for group in content["groups"]:
            groups.append(_label_group(group, topology, path.name))
    return {"groups": groups} if groups else {}


def _label_group(group: Any, topology: Topology, file_name: str) -> dict[str, Any]:
    """One group with its name prefixed by the topology and its rules labelled (cosl Rules)."""
    if not isinstance(group, dict) or not group.get("name") or not group.get("rules"):
        raise CosError(f"alert rules {file_name}: every group needs a name and rules")
    group = copy.deepcopy(group)
    name = f"{topology.identifier}_{group['name']}"
    if not name.endswith("_rules"):
        name += "_rules"
    group["name"] = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    for rule in group["rules"]:
        labels = rule.setdefault("labels", {})
        for key, value in topology.rule_labels.items():
            labels.setdefault(key, value)
    return group


def load_dashboards(charm_dir: pathlib.Path, charm_name: str) -> list[str]:
    """The charm's dashboards, with uid and charm tag set as the library does, encoded."""
    encoded = []
    for path in sorted((charm_dir / DASHBOARDS_DIR).glob("*.json")):
        try:
            dashboard = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CosError(f"cannot read dashboard {path.name}: {exc}") from exc
        dashboard["uid"] = dashboard_uid(charm_name, str(path.relative_to(charm_dir)))
        tags = list(dashboard.get("tags") or [])
        if not any(str(tag).startswith("charm: ") for tag in tags):
            tags.append(f"charm: {charm_name}")
        dashboard["tags"] = tags
        encoded.append(encode_dashboard(dashboard))
    return encoded


def scrape_jobs(application: str, metrics_port: int) -> list[dict[str, Any]]:
    """The scrape job for the local agent, named `<app>_agent_<hash>` as the library does."""
    job: dict[str, Any] = {
        "metrics_path": METRICS_PATH,
        "static_configs": [{"targets": [f"{METRICS_HOST}:{metrics_port}"]}],
    }
    digest = hashlib.blake2b(json.dumps(job, sort_keys=True).encode(), digest_size=4)
    return [{"job_name": f"{application}_{JOB_NAME}_{digest.hexdigest()}", **job}]


def is_collected_log_file(path: pathlib.PurePath) -> bool:
    """Whether a collector picks `path` up by its `/var/log/**/*log` glob."""
    posix = pathlib.PurePosixPath(path)
    return (
        posix.is_absolute()
        and COLLECTED_LOG_DIR in posix.parents
        and fnmatch.fnmatchcase(posix.name, COLLECTED_LOG_NAME)
    )


def build_unit_data(
    charm_dir: pathlib.Path, topology: Topology, metrics_port: int | None
) -> dict[str, Any]:
    """The CosAgentProviderUnitData of this unit (metrics_port None: no agent runs here)."""
    return {
        "metrics_alert_rules": load_alert_rules(charm_dir, topology),
        "log_alert_rules": {},
        "dashboards": load_dashboards(charm_dir, topology.charm_name),
        "subordinate": None,
        "metrics_scrape_jobs": (
            scrape_jobs(topology.application, metrics_port) if metrics_port is not None else []
        ),
        # The agent is no snap: its log file is under /var/log, which collectors read anyway.
        "log_slots": [],
        "tracing_protocols": None,
    }


def dump_unit_data(data: dict[str, Any]) -> str:
    """The value of the `config` key (stable: unchanged data is not written again)."""
    return json.dumps(data, sort_keys=True)
