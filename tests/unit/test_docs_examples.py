"""The configuration shown in README.md is a valid document (docs stay true to the code)."""

import re
from pathlib import Path

from renewal.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_example_is_valid(monkeypatch):
    monkeypatch.chdir(ROOT)  # its trust anchors are files of the repository
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md shows a JSON configuration"
    config = parse_config(blocks[0], source="README.md")
    assert {i["name"] for i in config.issuers} == {"corp-pki", "corp-acme"}


def test_local_settings_sample_configuration_is_valid(monkeypatch, tmp_path):
    import json

    from ca_clients.local import create_ca_files

    create_ca_files(tmp_path / "dev")  # the dev CA files the sample names
    monkeypatch.chdir(tmp_path)
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    config = parse_config(values["RENEWAL_CONFIG"], source="local.settings.sample.json")
    assert config.default_issuer == "local"
