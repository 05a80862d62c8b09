"""AmiAvailableSensor and AmiAvailableTrigger against the sandbox (describe-count latencies, nothing sleeps)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from phoenix_fleet.sensors.ami_sensors import AmiAvailableSensor, AmiNotAvailableError

from tests.helpers.airflow_run import make_context, rebuild_trigger, run_task
from tests.helpers.image_support import make_image


def _sensor(image_id: str, **kwargs: Any) -> AmiAvailableSensor:
    kwargs.setdefault("task_id", "ami_available")
    kwargs.setdefault("poll_interval", 0)
    kwargs.setdefault("inline_poll_interval", 0)  # inline checks without sleeping (describe-count latencies)
    return AmiAvailableSensor(image_id=image_id, **kwargs)


@pytest.fixture
def base(seeded) -> str:
    return seeded["base_ami"]["id"]


def test_template_fields():
    assert set(AmiAvailableSensor.template_fields) == {"image_id", "owners", "aws_conn_id", "region_name"}


def test_trigger_serialize_round_trip(monkeypatch):
    from phoenix_fleet.triggers.ami_triggers import AmiAvailableTrigger, PhoenixEc2Hook

    monkeypatch.setenv("AIRFLOW_CONN_AWS_X", '{"conn_type": "aws"}')  # our hooks refuse an unknown connection

    trigger = AmiAvailableTrigger(
        image_id="ami-0123", owners=["self", "111122223333"], waiter_delay=7, waiter_max_attempts=9,
        aws_conn_id="aws_x", region_name="eu-west-1",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "phoenix_fleet.triggers.ami_triggers.AmiAvailableTrigger"
    assert kwargs == {
        "image_id": "ami-0123", "owners": ["self", "111122223333"], "waiter_delay": 7, "waiter_max_attempts": 9,
        "aws_conn_id": "aws_x", "region_name": "eu-west-1",
    }
    again = rebuild_trigger(trigger)
    assert again.serialize() == trigger.serialize()
    assert again.waiter_args == {"ImageIds": ["ami-0123"], "Owners": ["self", "111122223333"]}
    assert isinstance(again.hook(), PhoenixEc2Hook)
    assert "ImageAvailablePinned" in again.hook().list_waiters()


def test_pending_then_available_defers_and_the_trigger_fires(sandbox_clean, base):
    sandbox_clean.update_config(image_build={"describes": 3})
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-1", {"phoenix:role": "web"})
    record = run_task(_sensor(ami, timeout=600, inline_wait=0), make_context())
    (deferral,) = record.deferrals
    assert deferral["trigger"] == "AmiAvailableTrigger" and deferral["method"] == "execute_complete"
    assert deferral["timeout"] == timedelta(seconds=600)
    assert deferral["event"] == {"status": "success", "image_id": ami}
    assert record.result["image_id"] == ami and record.result["state"] == "available"


def test_a_short_wait_is_polled_inline_and_never_deferred(sandbox_clean, base):
    """An AMI available after a few checks: the sensor waits on the worker (no deferral, no resume race)."""
    sandbox_clean.update_config(image_build={"describes": 3})
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-5", {"phoenix:role": "web"})
    record = run_task(_sensor(ami, inline_wait=5), make_context())
    assert record.deferrals == [] and record.result == {
        "image_id": ami, "state": "available", "name": "phoenix-web-2026.11.30-5", "owner_id": record.result["owner_id"],
    }


def test_a_long_wait_is_polled_inline_up_to_the_bound_then_deferred(sandbox_clean, base):
    sandbox_clean.update_config(image_build={"describes": 40})
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-6", {"phoenix:role": "web"})
    record = run_task(_sensor(ami, inline_wait=1), make_context())  # 10 inline checks (no sleep in tests)
    assert [d["trigger"] for d in record.deferrals] == ["AmiAvailableTrigger"]
    assert record.result["state"] == "available"


def test_an_ami_that_fails_while_polled_inline_fails_at_once(sandbox_clean, base):
    sandbox_clean.update_config(fail_image_name_patterns=["phoenix-web-2026.11.30-7"], image_build={"describes": 3})
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-7", {})
    with pytest.raises(AmiNotAvailableError, match="is failed"):
        _sensor(ami, inline_wait=5).execute(make_context())  # no TaskDeferred


def test_already_available_returns_without_deferring(sandbox_clean, base):
    record = run_task(_sensor(base), make_context())
    assert record.deferrals == [] and record.result["state"] == "available"


def test_failed_ami_fails_at_once_with_its_reason(sandbox_clean, base):
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-2", {"phoenix-sandbox:fail": "true"})
    with pytest.raises(AmiNotAvailableError, match=rf"AMI {ami} is failed: phoenix-sandbox: injected image failure"):
        run_task(_sensor(ami, inline_wait=0), make_context())  # the trigger's failure


def test_failed_by_config_pattern_fails_before_deferring(sandbox_clean, base):
    sandbox_clean.update_config(fail_image_name_patterns=["phoenix-worker-*"], image_build={"describes": 0})
    ami = make_image(sandbox_clean, base, "phoenix-worker-2026.11.30-1", {})
    sandbox_clean.settle()
    op = _sensor(ami)
    with pytest.raises(AmiNotAvailableError, match="is failed"):
        op.execute(make_context())  # no TaskDeferred: it failed on the worker, at once


def test_not_ours_is_refused(sandbox_clean):
    ec2 = sandbox_clean.client("ec2")
    amazon = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    with pytest.raises(AmiNotAvailableError, match="refusing to use it|not found among"):
        _sensor(amazon).execute(make_context())
    with pytest.raises(AmiNotAvailableError, match="not found among the images of owners"):
        _sensor("ami-0000000000000dead").execute(make_context())
    with pytest.raises(AmiNotAvailableError, match="is not an AMI id"):
        _sensor("None").execute(make_context())


def test_bounded_by_attempts(sandbox_clean, base):
    from airflow.sdk.exceptions import AirflowException

    sandbox_clean.update_config(image_build={"describes": 50})
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-3", {})
    with pytest.raises(AirflowException, match="max attempts reached") as err:
        run_task(_sensor(ami, max_attempts=2, inline_wait=0), make_context())
    assert not isinstance(err.value, AmiNotAvailableError)  # a timeout may be retried; a failed AMI may not


def test_poke_mode(sandbox_clean, base):
    sandbox_clean.update_config(image_build={"describes": 2})
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-4", {})
    op = _sensor(ami, deferrable=False)
    ctx = make_context()
    assert op.poke(ctx) is False
    assert op.poke(ctx) is False
    done = op.poke(ctx)
    assert done and done.xcom_value["image_id"] == ami and done.xcom_value["state"] == "available"
    # and the whole non-deferrable execute returns the image
    assert op.execute(ctx)["state"] == "available"


def test_waiter_attempts_follow_the_timeout():
    assert _sensor("ami-1", poll_interval=30, timeout=3600)._waiter_attempts() == 120
    assert _sensor("ami-1", poll_interval=30, timeout=3600, max_attempts=5)._waiter_attempts() == 5


def test_the_inline_bound_comes_from_the_worker_environment_unless_given(sandbox_clean, base, monkeypatch):
    from phoenix_fleet.operators.inline_wait import inline_bound

    monkeypatch.delenv("PHOENIX_INLINE_WAIT_SECONDS", raising=False)
    assert inline_bound(None) == 20 and inline_bound(3) == 3
    monkeypatch.setenv("PHOENIX_INLINE_WAIT_SECONDS", "soon")
    with pytest.raises(ValueError, match="PHOENIX_INLINE_WAIT_SECONDS: 'soon' is not a number of seconds.*Fix"):
        inline_bound(None)
    monkeypatch.setenv("PHOENIX_INLINE_WAIT_SECONDS", "0")  # a deployment that defers at once
    sandbox_clean.update_config(image_build={"describes": 2})
    ami = make_image(sandbox_clean, base, "phoenix-web-2026.11.30-8", {})
    assert [d["trigger"] for d in run_task(_sensor(ami), make_context()).deferrals] == ["AmiAvailableTrigger"]
