"""host.json, local.settings.sample.json, main.parameters.json, azure.yaml and the hooks agree with the code."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from renewal import settings
from tests.infra import templates as t

ROOT = t.ROOT
HOOKS = t.INFRA / "hooks"


def check_host_json(host: dict[str, Any]) -> list[str]:
    problems = []
    queues = host.get("extensions", {}).get("queues", {})
    expected = {
        "maxPollingInterval": "00:00:02",
        "visibilityTimeout": "00:00:30",
        "batchSize": 16,
        "maxDequeueCount": settings.MAX_DEQUEUE_COUNT,
        "newBatchThreshold": 8,
        "messageEncoding": "base64",
    }
    for key, value in expected.items():
        if queues.get(key) != value:
            problems.append(f"extensions.queues.{key} is {queues.get(key)!r}, expected {value!r}")
    if host.get("version") != "2.0":
        problems.append("version is not 2.0")
    if host.get("extensionBundle", {}).get("version") != "[4.*, 5.0.0)":
        problems.append("extensionBundle version is not [4.*, 5.0.0)")
    sampling = host.get("logging", {}).get("applicationInsights", {}).get("samplingSettings", {})
    if "Request" not in str(sampling.get("excludedTypes", "")):
        problems.append("Application Insights sampling does not exclude Request")
    timeout = host.get("functionTimeout", "")
    if not re.fullmatch(r"\d\d:\d\d:\d\d", timeout) or timeout > "00:30:00":
        problems.append(f"functionTimeout {timeout!r} is missing or above 30 minutes")
    return problems


def check_local_settings(sample: dict[str, Any]) -> list[str]:
    values = sample.get("Values", {})
    problems = [
        f"{s.name} is missing" for s in settings.ALL if s.name not in values and s.name not in settings.PLATFORM_SET
    ]
    if sample.get("IsEncrypted") is not False:
        problems.append("IsEncrypted is not false")
    if values.get("FUNCTIONS_WORKER_RUNTIME") != "python":
        problems.append("FUNCTIONS_WORKER_RUNTIME is not python")
    if values.get(settings.STORAGE.name) != "UseDevelopmentStorage=true":
        problems.append("AzureWebJobsStorage is not UseDevelopmentStorage=true")
    if not (values.get(settings.CONFIG.name) or values.get(settings.CONFIG_PATH.name)):
        problems.append("neither RENEWAL_CONFIG nor RENEWAL_CONFIG_PATH has an example")
    return problems


def test_host_json_matches_the_code():
    assert check_host_json(json.loads((ROOT / "host.json").read_text())) == []


@pytest.mark.parametrize(
    ("key", "value"), [("maxDequeueCount", settings.MAX_DEQUEUE_COUNT + 1), ("messageEncoding", "none")]
)
def test_host_json_checker_catches(key, value):
    host = json.loads((ROOT / "host.json").read_text())
    host["extensions"]["queues"][key] = value
    assert check_host_json(host)


def test_local_settings_sample_has_every_setting():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    assert check_local_settings(sample) == []
    if sample["Values"][settings.CONFIG.name]:
        json.loads(sample["Values"][settings.CONFIG.name])


def test_local_settings_checker_catches_a_missing_setting():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    del sample["Values"][settings.LOG_LEVEL.name]
    assert check_local_settings(sample) == ["RENEWAL_LOG_LEVEL is missing"]


def _main_parameters() -> dict[str, Any]:
    return t.parse(t.load_templates()[t.MAIN])["parameters"]


def test_parameters_file_covers_main_bicep():
    params = json.loads((t.INFRA / "main.parameters.json").read_text())["parameters"]
    declared = _main_parameters()
    assert set(params) <= set(declared), set(params) - set(declared)
    required = {name for name, p in declared.items() if p.get("default") is None}
    assert required <= set(params), required - set(params)
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"
    assert params["certificateVaultIds"]["value"].startswith("${RENEWAL_CERTIFICATE_VAULT_IDS")
    assert params["configVaultId"]["value"] == "${RENEWAL_CONFIG_VAULT_ID}"
    assert params["renewalConfig"]["value"] == "${RENEWAL_CONFIG}"
    assert params["sweepSchedule"]["value"] == "${RENEWAL_SWEEP_SCHEDULE=" + settings.SWEEP_SCHEDULE.default + "}"


def test_parameter_defaults_equal_the_settings_defaults():
    declared = _main_parameters()
    assert declared["sweepSchedule"]["default"] == settings.SWEEP_SCHEDULE.default
    assert declared["logLevel"]["default"] == settings.LOG_LEVEL.default


def test_deploy_doc_names_every_parameter_and_environment_variable():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    missing = [name for name in _main_parameters() if f"`{name}`" not in doc]
    env_vars = re.findall(r"\$\{(\w+)", (t.INFRA / "main.parameters.json").read_text())
    missing += [name for name in env_vars if name not in doc]
    assert missing == []


def test_azure_yaml_service_and_hooks():
    text = (ROOT / "azure.yaml").read_text()
    service = re.search(r"^services:\n  (\w[\w-]*):\n", text, re.MULTILINE)
    assert service, "no service in azure.yaml"
    assert f"'azd-service-name': '{service.group(1)}'" in t.load_templates()["app/platform.bicep"]
    assert "host: function" in text and "language: python" in text
    for hook in ("postprovision", "postdeploy"):
        assert re.search(rf"^  {hook}:\n", text, re.MULTILINE), hook
    for script in re.findall(r"run: \./(\S+)", text):
        assert (ROOT / script).is_file(), script


def test_hooks_use_outputs_that_main_bicep_declares():
    outputs = set(t.parse(t.load_templates()[t.MAIN])["outputs"])
    for script in ("postdeploy.sh", "postdeploy.ps1"):
        used = set(re.findall(r"\b(RENEWAL_[A-Z_]+)", (HOOKS / script).read_text())) - {
            "RENEWAL_HOOK_MODE",
            "RENEWAL_CERTIFICATE_VAULT_IDS",
        }
        assert used and used <= outputs, used - outputs
    subscription_params = set(t.parse(t.load_templates()[t.SUBSCRIPTIONS])["parameters"])
    hook = (HOOKS / "postdeploy.sh").read_text()
    passed = set(re.findall(r'"(\w+)": \{ "value"', hook))
    required = {
        n for n, p in t.parse(t.load_templates()[t.SUBSCRIPTIONS])["parameters"].items() if p["default"] is None
    }
    assert required <= passed <= subscription_params


# --- the hook, run against a stand-in `az` ------------------------------------------------------------

FAKE_AZ = """#!/bin/sh
echo "$*" >> "$AZ_LOG"
case "$1 $2" in
  "account show")
    [ -n "$AZ_SIGNED_OUT" ] && echo "ERROR: Please run 'az login' to setup account." >&2 && exit 1
    echo "${AZ_SUBSCRIPTION:-00000000-0000-0000-0000-000000000001}"; exit 0 ;;
  "resource show")
    [ -n "$AZ_FUNCTION_EXISTS" ] && echo id && exit 0
    [ -n "$AZ_LOOKUP_ERROR" ] && echo "ERROR: (AuthorizationFailed) no read access" >&2 && exit 1
    echo "ERROR: (ResourceNotFound) The Resource 'func-x/functions/on_certificate_event' was not found." >&2
    exit 3 ;;
  "deployment sub")
    while [ $# -gt 0 ]; do case "$1" in --parameters) cp "${2#@}" "$AZ_PARAMS_COPY" ;; esac; shift; done ;;
esac
exit 0
"""


def _run_hook(tmp_path: Path, script: str, *, topics: str, function_exists: bool, **fake: str) -> tuple[int, str, Path]:
    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(az.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "az.log"
    log.write_text("")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AZ_LOG": str(log),
        "AZ_PARAMS_COPY": str(tmp_path / "params.json"),
        "AZ_FUNCTION_EXISTS": "1" if function_exists else "",
        "AZURE_ENV_NAME": "test",
        "AZURE_LOCATION": "westeurope",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "RENEWAL_FUNCTION_APP_ID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/func-x",
        "RENEWAL_DEADLETTER_STORAGE_ID": (
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st"
        ),
        "RENEWAL_EVENTGRID_SYSTEM_TOPIC_IDS": topics,
        **fake,
    }
    done = subprocess.run(["sh", str(HOOKS / script)], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, log.read_text(), tmp_path / "params.json"


TOPICS = json.dumps(
    [
        "/subscriptions/s/resourceGroups/rg-a/providers/Microsoft.EventGrid/systemTopics/evgt-kv-a",
        "/subscriptions/t/resourceGroups/rg-b/providers/Microsoft.EventGrid/systemTopics/evgt-kv-b",
    ]
)


def test_postdeploy_hook_deploys_the_subscriptions_template(tmp_path):
    code, log, params = _run_hook(tmp_path, "postdeploy.sh", topics=TOPICS, function_exists=True)
    assert code == 0
    assert "deployment sub create" in log and "subscriptions.bicep" in log
    values = {k: v["value"] for k, v in json.loads(params.read_text())["parameters"].items()}
    assert values["systemTopicIds"] == json.loads(TOPICS)
    assert values["environmentName"] == "test"  # subscriptions of two environments sharing a vault stay apart
    assert values["functionAppId"].endswith("/sites/func-x")


def test_postprovision_hook_skips_until_the_function_exists(tmp_path):
    code, log, params = _run_hook(tmp_path, "postprovision.sh", topics=TOPICS, function_exists=False)
    assert code == 0
    assert "resource show" in log and "deployment" not in log
    assert not params.exists()


def test_hooks_do_nothing_without_vaults(tmp_path):
    code, log, _ = _run_hook(tmp_path, "postdeploy.sh", topics="[]", function_exists=True)
    assert code == 0 and log == ""


def test_azd_version_that_parses_json_parameters_is_required():
    text = (ROOT / "azure.yaml").read_text()
    assert re.search(r'requiredVersions:\s*\n\s+azd:\s*">= 1\.23\.4"', text), text[:400]


@pytest.mark.parametrize("hook", ["postdeploy.sh", "postdeploy.ps1"])
def test_hooks_check_the_cli_session_and_treat_only_resource_not_found_as_absent(hook):
    text = (t.INFRA / "hooks" / hook).read_text()
    assert "az account show" in text and "AZURE_SUBSCRIPTION_ID" in text
    assert "ResourceNotFound" in text
    assert "2>/dev/null" not in text and "2>$null" not in text  # no error is swallowed whole


def test_deploy_doc_names_the_event_grid_rights_and_the_real_retry_schedule():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    assert "EventGrid Contributor" in doc and "Microsoft.KeyVault/vaults/eventGridFilters/write" in doc
    assert "10 s, 30 s, 1 min, 5 min, 10 min" in doc and "about 11 attempts" in doc


@pytest.mark.parametrize(
    "fake",
    [
        {"AZ_SIGNED_OUT": "1"},  # no az login
        {"AZ_SUBSCRIPTION": "00000000-0000-0000-0000-00000000beef"},  # another subscription (or tenant)
        {"AZ_LOOKUP_ERROR": "1"},  # signed in without the right to read the function
    ],
)
def test_a_cli_problem_stops_the_hook_instead_of_skipping_the_subscriptions(tmp_path, fake):
    code, log, params = _run_hook(tmp_path, "postprovision.sh", topics=TOPICS, function_exists=False, **fake)
    assert code != 0 and "deployment" not in log and not params.exists()


def test_names_in_shared_vault_resource_groups_carry_the_environment():
    templates = t.load_templates()
    main = templates[t.MAIN]
    for prefix in ("vault-location-", "certificate-vault-", "config-vault-"):
        assert re.search(rf"name: '{prefix}\$\{{resourceToken\}}", main), prefix
    assert "take('certificate-renewal-${environmentName}', 64)" in templates[t.SUBSCRIPTIONS]
    assert "name: subscriptionName" in templates["app/event-subscription.bicep"]
    assert "uniqueString(environmentName, topicId)" in templates[t.SUBSCRIPTIONS]


def test_the_deploy_doc_says_what_azd_down_leaves_behind():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = doc.split("## Taking it down", 1)[1]
    for remains in ("system topic", "event subscription", "role assignment", "certificate-renewal-<environment>"):
        assert remains in section, remains
