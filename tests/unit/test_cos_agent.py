"""The cos-agent data the charm publishes, parsed the way the collector parses it.

`CosAgentProviderUnitData` below is the model of `charms.grafana_agent.v0.cos_agent` (LIBAPI 0,
LIBPATCH 26, canonical/grafana-agent-operator and canonical/opentelemetry-collector-operator
ship the same file), copied field for field: the collector's `COSAgentRequirer` reads the
principal unit's `config` key with `CosAgentProviderUnitData(**json.loads(raw))`, decodes each
dashboard with `json.loads(LZMABase64.decompress(...))` (cosl) and names the rule files by
topology. The rules and dashboards must also be what the library's own `COSAgentProvider`
would publish from the same files (cosl's `AlertRules`, `DashboardPath40UID`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, ClassVar

import cosl
import ops
import pydantic
import pytest
import yaml
from cosl import rules as cosl_rules
from ops import testing

import charm
import cos
from tests.unit.conftest import MODEL_UUID, FakeWorkload, leader_state, peer_relation

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_NAME = "prod"
DASHBOARD_PATH = "src/grafana_dashboards/whirlwind.json"


class CosAgentProviderUnitData(pydantic.BaseModel):
    """Unit databag model for `cos-agent` relation (upstream, pydantic 2 branch)."""

    model_config = pydantic.ConfigDict(
        extra="ignore", populate_by_name=True, arbitrary_types_allowed=True
    )

    metrics_alert_rules: dict
    log_alert_rules: dict
    dashboards: list[str]
    subordinate: bool | None = None
    metrics_scrape_jobs: list[dict]
    log_slots: list[str]
    tracing_protocols: list[str] | None = None

    KEY: ClassVar[str] = "config"


@pytest.fixture
def charm_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """A charm root with the real src/ (ops.testing writes its metadata files into it)."""
    (tmp_path / "src").symlink_to(ROOT / "src", target_is_directory=True)
    return tmp_path


@pytest.fixture
def cos_ctx(
    ctx: testing.Context, charm_root: pathlib.Path, fake_workload: FakeWorkload
) -> testing.Context:
    return testing.Context(charm.WhirlwindCharm, charm_root=charm_root)


def cos_relation() -> testing.Relation:
    # Container-scoped by the subordinate's side; from the principal, a relation with one unit.
    return testing.Relation(
        "cos-agent", remote_app_name="opentelemetry-collector", remote_units_data={0: {}}
    )


def state_with_cos(**kwargs: Any) -> testing.State:
    state = leader_state(relations=[peer_relation(), cos_relation()], **kwargs)
    return dataclasses.replace(
        state, model=testing.Model(name=MODEL_NAME, uuid=MODEL_UUID, type="lxd")
    )


def published(out: testing.State) -> CosAgentProviderUnitData:
    """The collector's reading of this unit's databag."""
    relation = out.get_relations("cos-agent")[0]
    raw = relation.local_unit_data[CosAgentProviderUnitData.KEY]
    return CosAgentProviderUnitData(**json.loads(raw))


def upstream_rules(unit: str) -> dict[str, Any]:
    """What the library's COSAgentProvider puts in metrics_alert_rules (its own rules part)."""
    topology = cosl.JujuTopology(
        model=MODEL_NAME,
        model_uuid=MODEL_UUID,
        application="whirlwind",
        unit=unit,
        charm_name="whirlwind",
    )
    rules = cosl_rules.AlertRules(query_type="promql", topology=topology)
    rules.add_path(ROOT / "src" / "prometheus_alert_rules", recursive=False)
    return rules.as_dict()


def test_leader_publishes_rules_dashboard_and_scrape_job(cos_ctx: testing.Context):
    state = state_with_cos()

    out = cos_ctx.run(cos_ctx.on.relation_joined(state.get_relations("cos-agent")[0]), state)

    data = published(out)
    assert data.metrics_alert_rules == upstream_rules("whirlwind/0")
    assert data.log_alert_rules == {}
    assert data.log_slots == []
    [job] = data.metrics_scrape_jobs
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9587"]}]
    assert job["metrics_path"] == "/metrics"
    assert job["job_name"].startswith("whirlwind_agent_")


def test_rules_carry_the_topology_labels_and_group_names(cos_ctx: testing.Context):
    out = cos_ctx.run(cos_ctx.on.config_changed(), state_with_cos())

    [group] = published(out).metrics_alert_rules["groups"]
    assert group["name"] == f"{MODEL_NAME}_{MODEL_UUID[:8]}_whirlwind_whirlwind_rules"
    shipped = yaml.safe_load((ROOT / "src/prometheus_alert_rules/whirlwind.rules").read_text())
    assert [r["alert"] for r in group["rules"]] == [
        r["alert"] for r in shipped["groups"][0]["rules"]
    ]
    for rule in group["rules"]:
        assert rule["labels"]["juju_model"] == MODEL_NAME
        assert rule["labels"]["juju_model_uuid"] == MODEL_UUID
        assert rule["labels"]["juju_application"] == "whirlwind"
        assert rule["labels"]["juju_charm"] == "whirlwind"
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_dashboard_decodes_as_the_collector_decodes_it(cos_ctx: testing.Context):
    out = cos_ctx.run(cos_ctx.on.config_changed(), state_with_cos())

    [encoded] = published(out).dashboards
    dashboard = json.loads(cosl.LZMABase64.decompress(encoded))
    shipped = json.loads((ROOT / DASHBOARD_PATH).read_text())
    assert dashboard["title"] == shipped["title"] == "Whirlwind"
    assert dashboard["uid"] == cosl.DashboardPath40UID.generate("whirlwind", DASHBOARD_PATH)
    assert cosl.DashboardPath40UID.is_valid(dashboard["uid"])
    assert dashboard["tags"] == [*shipped["tags"], "charm: whirlwind"]
    assert dashboard["panels"] == shipped["panels"]
    assert cos.decode_dashboard(encoded) == dashboard


@pytest.mark.parametrize("port", [1024, 9600, 65535])
def test_metrics_port_goes_to_the_scrape_job_and_the_agent(
    cos_ctx: testing.Context, fake_workload: FakeWorkload, port: int
):
    out = cos_ctx.run(cos_ctx.on.config_changed(), state_with_cos(config={"metrics-port": port}))

    [job] = published(out).metrics_scrape_jobs
    assert job["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}]
    assert fake_workload.settings is not None
    assert fake_workload.settings.metrics_port == port


@pytest.mark.parametrize("port", [0, 80, 1023, 65536, -1])
def test_a_bad_metrics_port_blocks_and_publishes_no_scrape_job(
    cos_ctx: testing.Context, fake_workload: FakeWorkload, port: int
):
    out = cos_ctx.run(cos_ctx.on.config_changed(), state_with_cos(config={"metrics-port": port}))

    assert out.unit_status == testing.BlockedStatus(
        f"Invalid config: metrics-port must be a port number 1024..65535, got {port}"
    )
    assert not fake_workload.running
    data = published(out)
    assert data.metrics_scrape_jobs == []
    assert data.metrics_alert_rules == upstream_rules("whirlwind/0")


def test_standby_unit_publishes_the_same_rules_and_dashboard_but_no_scrape_job(
    cos_ctx: testing.Context,
):
    # The collector keeps one copy of an application's rules and dashboards, from whichever
    # unit it reads first: a standby unit's copy must be as complete as the leader's.
    leader = published(cos_ctx.run(cos_ctx.on.config_changed(), state_with_cos()))

    out = cos_ctx.run(cos_ctx.on.config_changed(), state_with_cos(leader=False))

    standby = published(out)
    assert standby.metrics_scrape_jobs == []
    assert standby.metrics_alert_rules == leader.metrics_alert_rules
    assert standby.dashboards == leader.dashboards


def test_leader_without_credentials_publishes_no_scrape_job(
    cos_ctx: testing.Context, fake_workload: FakeWorkload
):
    state = state_with_cos(config={"credentials": None}, secret=None)

    out = cos_ctx.run(cos_ctx.on.relation_changed(state.get_relations("cos-agent")[0]), state)

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert not fake_workload.running
    assert published(out).metrics_scrape_jobs == []


def test_the_job_name_is_stable_and_names_the_application():
    first = cos.scrape_jobs("whirlwind", 9587)
    again = cos.scrape_jobs("whirlwind", 9587)
    other_port = cos.scrape_jobs("whirlwind", 9600)

    assert first == again
    assert first[0]["job_name"] != other_port[0]["job_name"]
    assert cos.scrape_jobs("ww2", 9587)[0]["job_name"].startswith("ww2_agent_")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("groups: [", "cannot read alert rules broken.rules"),
        ("alert: X\nexpr: up\n", "not a Prometheus rule file"),
        ("groups:\n  - name: g\n", "every group needs a name and rules"),
    ],
)
def test_a_broken_rule_file_raises_naming_it(tmp_path: pathlib.Path, content: str, message: str):
    rules_dir = tmp_path / cos.RULES_DIR
    rules_dir.mkdir(parents=True)
    (rules_dir / "broken.rules").write_text(content)
    topology = cos.Topology(MODEL_NAME, MODEL_UUID, "whirlwind", "whirlwind/0", "whirlwind")

    with pytest.raises(cos.CosError, match=message):
        cos.load_alert_rules(tmp_path, topology)


def test_the_agent_logs_to_a_file_the_collectors_read(
    cos_ctx: testing.Context, fake_workload: FakeWorkload
):
    out = cos_ctx.run(cos_ctx.on.config_changed(), state_with_cos())

    # No field of the published schema names log files: both collectors read /var/log/**/*log.
    assert published(out).log_slots == []
    assert fake_workload.settings is not None
    log_file = fake_workload.settings.log_file
    assert log_file is not None
    assert log_file == pathlib.Path("/var/log/whirlwind/agent.log")
    assert cos.is_collected_log_file(log_file)


@pytest.mark.parametrize(
    ("path", "collected"),
    [
        ("/var/log/whirlwind/agent.log", True),
        ("/var/log/agent.log", True),
        ("/var/log/a/b/c/syslog", True),
        ("/var/log/whirlwind/agent.log.1", False),  # a rotated backup is not read twice
        ("/var/log/whirlwind/agent.txt", False),
        ("/var/lib/whirlwind/agent.log", False),
        ("/var/logs/agent.log", False),
        ("var/log/agent.log", False),
    ],
)
def test_which_files_the_collectors_glob_matches(path: str, collected: bool):
    assert cos.is_collected_log_file(pathlib.PurePosixPath(path)) is collected
