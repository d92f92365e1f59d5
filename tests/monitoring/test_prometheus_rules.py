"""prometheus.yml and the rules: promtool accepts them, and every rule is unit-tested."""

import re
from collections import defaultdict

import pytest

from .helpers import (
    APP_JOB,
    PROMETHEUS_YML,
    RULE_TESTS_DIR,
    RULES_DIR,
    alert_rules,
    load_yaml,
    materialize_prometheus_config,
    metric_names,
    need,
    recorded_names,
    recording_rules,
    rule_files,
    rule_groups,
    rule_test_files,
    rules,
    run,
)

SEVERITIES = {"critical", "warning"}
# level:metric:operations, e.g. job_reason:login_failures:increase1m
RECORD_NAME = re.compile(r"^[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")


# --- prometheus.yml --------------------------------------------------------------------------


def test_promtool_accepts_prometheus_yml_with_every_rule_file(tmp_path):
    promtool = need("promtool")
    config = materialize_prometheus_config(tmp_path)
    result = run([promtool, "check", "config", str(config)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(rule_files())} rule files found" in output, output
    for path in rule_files():
        assert f"Checking {tmp_path}/rules/{path.name}" in output, output


def test_the_scrape_jobs_of_the_compose_stack():
    config = load_yaml(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        name: [target for static in job["static_configs"] for target in static["targets"]]
        for name, job in jobs.items()
    }
    assert targets == {
        APP_JOB: ["app:8000"],
        "redis": ["redis_exporter:9121"],
        "postgres": ["postgres_exporter:9187"],
        "prometheus": ["localhost:9090"],
    }
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    alertmanagers = config["alerting"]["alertmanagers"]
    assert alertmanagers[0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_the_app_is_scraped_with_a_token_read_from_a_file_not_written_here():
    app = next(
        job for job in load_yaml(PROMETHEUS_YML)["scrape_configs"] if job["job_name"] == APP_JOB
    )
    assert app["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/prometheus/secrets/metrics_token",
    }
    text = PROMETHEUS_YML.read_text()
    for inline_secret in ("bearer_token:", "credentials:", "password:"):
        assert inline_secret not in text


def test_every_rule_file_is_picked_up_by_the_glob():
    assert rule_files(), "no rule file in prometheus/rules/"
    assert sorted(p.name for p in RULES_DIR.iterdir()) == sorted(p.name for p in rule_files())


# --- The rules -------------------------------------------------------------------------------


def test_promtool_check_rules():
    promtool = need("promtool")
    for path in rule_files():
        result = run([promtool, "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_every_alert_has_severity_summary_description_and_for():
    problems = []
    for name, rule in alert_rules().items():
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r}")
        if not labels.get("component"):
            problems.append(f"{name}: no component label")
        for key in ("summary", "description"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key}")
        if "for" not in rule:
            problems.append(f"{name}: no explicit `for:` (write `for: 0m` to fire at once)")
    assert not problems, problems


def test_the_alerts_the_issue_asks_for_exist():
    assert {
        "ActiveSessionsDropped",
        "ActiveSessionsAbsent",
        "LoginFailuresHigh",
        "CredentialStuffing",
        "SyncBacklogGrowing",
        "SyncLagHigh",
        "SyncStalled",
        "RedisDown",
        "SessionhubRedisUnreachable",
        "PostgresDown",
        "SessionhubDown",
        "SessionhubTargetMissing",
        "CeleryHeartbeatStale",
    } <= set(alert_rules())


def test_recording_rules_follow_level_metric_operations():
    bad = [rule["record"] for rule in recording_rules() if not RECORD_NAME.match(rule["record"])]
    assert not bad


def test_recorded_series_are_defined_before_they_are_read():
    """Every name with a colon is a recording rule, defined earlier in the same group when a
    recording rule reads it (so one evaluation sees the fresh value)."""
    defined = recorded_names()
    problems = []
    for group in rule_groups():
        seen: set[str] = set()
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                if ":" not in name:
                    continue
                if name not in defined:
                    problems.append(f"{rule.get('alert') or rule['record']}: {name} undefined")
                elif "record" in rule and name not in seen:
                    problems.append(f"{rule['record']} reads {name} before it is recorded")
            if "record" in rule:
                seen.add(rule["record"])
    assert not problems, problems


def test_job_matchers_name_real_scrape_jobs():
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS_YML)["scrape_configs"]}
    for rule in rules():
        for matcher in re.findall(r'job\s*=~?\s*"([^"]+)"', rule["expr"]):
            named = set(matcher.split("|"))
            assert named <= jobs, f"{rule.get('alert') or rule['record']}: {named - jobs}"


# --- The unit tests of the rules ------------------------------------------------------------


def test_promtool_test_rules():
    promtool = need("promtool")
    files = rule_test_files()
    assert files, "no unit tests in prometheus/tests/"
    result = run([promtool, "test", "rules", *map(str, files)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("SUCCESS") == len(files), output


def test_the_unit_tests_load_every_rule_file_in_a_fixed_group_order():
    groups = [group["name"] for group in rule_groups()]
    recording = {g["name"] for g in rule_groups() if all("record" in r for r in g["rules"])}
    for path in rule_test_files():
        spec = load_yaml(path)
        loaded = {(path.parent / name).resolve() for name in spec["rule_files"]}
        assert loaded == {p.resolve() for p in rule_files()}, path.name
        # promtool evaluates the groups in a random order unless told.
        order = spec.get("group_eval_order", [])
        assert sorted(order) == sorted(groups), f"{path.name}: group_eval_order"
        assert set(order[: len(recording)]) == recording, f"{path.name}: recording rules first"


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_stays_silent():
    """Firing: an alert_rule_test expecting alerts. Silent: a test group (its own series) in
    which the alert is tested and expected to stay quiet throughout."""
    fires, silent = defaultdict(int), defaultdict(int)
    for path in rule_test_files():
        for group in load_yaml(path)["tests"]:
            expectations = defaultdict(list)
            for case in group.get("alert_rule_test", []):
                expectations[case["alertname"]].append(bool(case.get("exp_alerts")))
            for name, cases in expectations.items():
                if any(cases):
                    fires[name] += 1
                else:
                    silent[name] += 1
    defined = set(alert_rules())
    assert set(fires) | set(silent) <= defined, "tests for alerts that do not exist"
    assert not sorted(defined - set(fires)), "alerts never tested firing"
    assert not sorted(defined - set(silent)), "alerts never tested staying silent"


def test_every_recording_rule_has_expected_values():
    tested = []
    for path in rule_test_files():
        for group in load_yaml(path)["tests"]:
            for case in group.get("promql_expr_test", []):
                if case.get("exp_samples"):
                    tested.append(case["expr"])
    untested = sorted(
        name
        for name in recorded_names()
        if not any(re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", e) for e in tested)
    )
    assert not untested


MUTATIONS = {
    # Summing the replicas would count every call once per replica.
    "a wrong rule": (
        RULES_DIR / "recording.yml",
        "max by (job) (rate(api_calls_total",
        "sum by (job) (rate(api_calls_total",
        "recording_test.yml",
    ),
    "a wrong expectation": (
        RULE_TESTS_DIR / "alerts_test.yml",
        'summary: "7 failed logins per minute"',
        'summary: "8 failed logins per minute"',
        "alerts_test.yml",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_promtool_test_rules_can_fail(tmp_path, mutation):
    """The unit tests are not vacuous: a wrong rule, or a wrong expectation, fails them."""
    promtool = need("promtool")
    target, old, new, test_file = MUTATIONS[mutation]
    for folder, paths in (("rules", rule_files()), ("tests", rule_test_files())):
        (tmp_path / folder).mkdir()
        for path in paths:
            text = path.read_text()
            if path == target:
                assert old in text, f"{path.name} changed: update this test"
                text = text.replace(old, new)
            (tmp_path / folder / path.name).write_text(text)
    result = run([promtool, "test", "rules", str(tmp_path / "tests" / test_file)])
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_rule_test_directory_holds_only_promtool_tests():
    assert sorted(p.name for p in RULE_TESTS_DIR.iterdir()) == sorted(
        p.name for p in rule_test_files()
    )
