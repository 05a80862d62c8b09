"""RealismConfig: defaults are plain moto, profiles, JSON round trips, validation, CLI precedence, version guard."""

from __future__ import annotations

import json

import pytest

from sandbox import realism
from sandbox.cli import build_config
from sandbox.realism import PROFILES, Latency, RealismConfig, SsmOutcome, SsmRule, parse_assignment


def test_default_is_plain_moto() -> None:
    cfg = RealismConfig()
    assert cfg == PROFILES["plain"]
    assert not any(
        getattr(cfg, name).enabled
        for name in (
            "instance_boot",
            "instance_status_checks",
            "target_health_checks",
            "image_build",
            "ssm_command",
        )
    )
    assert not (cfg.fault_tags or cfg.fix_ssm_targeting or cfg.fix_target_registration or cfg.balance_azs)
    assert not cfg.tracks_ssm


def test_tests_profile_never_sleeps_and_interactive_uses_seconds() -> None:
    tests, interactive = RealismConfig.profile("tests"), RealismConfig.profile("interactive")
    assert tests.instance_boot == Latency(describes=2)
    assert all(v is None or "describes" in v for k, v in tests.to_dict().items() if isinstance(v, dict))
    assert interactive.instance_boot == Latency(seconds=20)
    assert tests.fault_tags and tests.fix_ssm_targeting and tests.fix_target_registration and tests.balance_azs
    with pytest.raises(ValueError, match="unknown realism profile"):
        RealismConfig.profile("nope")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_json_round_trip(name: str) -> None:
    cfg = PROFILES[name].updated(
        {
            "fail_image_name_patterns": ["bad-*"],
            "ssm_rules": [{"document_name": "AWS-RunShellScript", "exit_code": 2, "stdout": "x"}],
        }
    )
    assert RealismConfig.from_dict(cfg.to_dict()) == cfg
    assert RealismConfig.from_json(json.dumps({"profile": name})) == PROFILES[name]


def test_partial_update_and_profile_key() -> None:
    cfg = RealismConfig().updated({"instance_boot": {"seconds": 5}, "fault_tags": True})
    assert cfg.instance_boot == Latency(seconds=5) and cfg.fault_tags
    assert cfg.updated({"instance_boot": None}).instance_boot == Latency()
    assert cfg.updated({"profile": "tests", "ssm_command": {"describes": 4}}) == RealismConfig.profile(
        "tests"
    ).updated({"ssm_command": {"describes": 4}})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"nope": 1}, "unknown config field"),
        ({"instance_boot": {"seconds": 1, "describes": 1}}, "not both"),
        ({"instance_boot": {"seconds": -1}}, ">= 0"),
        ({"instance_boot": {"describes": 1.5}}, "integer"),
        ({"instance_boot": {"describes": True}}, "integer"),
        ({"instance_boot": {"minutes": 1}}, "unknown latency key"),
        ({"instance_boot": 3}, "a latency is"),
        ({"fault_tags": "yes"}, "true or false"),
        ({"fail_image_name_patterns": "bad-*"}, "list of strings"),
        ({"ssm_rules": [{"status": "Exploded"}]}, "status must be one of"),
        ({"ssm_rules": [{"colour": "red"}]}, "unknown ssm rule key"),
    ],
)
def test_validation(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RealismConfig().updated(changes)


def test_parse_assignment() -> None:
    assert parse_assignment("instance_boot.seconds=20") == {"instance_boot": {"seconds": 20}}
    assert parse_assignment("fault_tags=true") == {"fault_tags": True}
    assert parse_assignment('fail_image_name_patterns=["a-*"]') == {"fail_image_name_patterns": ["a-*"]}
    with pytest.raises(ValueError):
        parse_assignment("no-equals-sign")


def test_ssm_outcome_defaults() -> None:
    assert SsmOutcome.build(None, None, None, None) == SsmOutcome("Success", 0, "", "")
    assert SsmOutcome.build(None, 3, "out", None) == SsmOutcome(
        "Failed", 3, "out", "failed to run commands: exit status 3"
    )
    assert SsmOutcome.build("TimedOut", None, "", None).exit_code == -1
    assert SsmRule(image_name="bad-*").matches("i-1", "ami-1", "bad-image", "AWS-RunShellScript")
    assert not SsmRule(image_name="bad-*", document_name="Other").matches(
        "i-1", "ami-1", "bad-image", "AWS-RunShellScript"
    )


def test_cli_config_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("PHOENIX_SANDBOX_CONFIG", raising=False)
    monkeypatch.delenv("PHOENIX_SANDBOX_PROFILE", raising=False)
    assert build_config(None, None, None) == RealismConfig.profile("interactive")
    monkeypatch.setenv("PHOENIX_SANDBOX_PROFILE", "plain")
    assert build_config(None, None, None) == RealismConfig()
    file = tmp_path / "realism.json"
    file.write_text('{"instance_boot": {"seconds": 3}}')
    monkeypatch.setenv("PHOENIX_SANDBOX_CONFIG", str(file))
    assert build_config("tests", None, None).instance_boot == Latency(seconds=3)
    cfg = build_config("tests", f"@{file}", ["instance_boot.describes=7"])
    assert cfg.instance_boot == Latency(describes=7) and cfg.fault_tags


def test_install_refuses_other_moto_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto

    monkeypatch.setattr(realism, "_installed", False)
    monkeypatch.setattr(moto, "__version__", "5.9.9")
    with pytest.raises(RuntimeError, match="moto==5.2.5"):
        realism.install()
