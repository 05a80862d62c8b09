"""The lines a rollout run reports about itself (summary task, notification)."""

from phoenix_fleet.pipelines.rollout_summary import asg_line, canary_rollback_line, skipped_text


def test_skipped_instances_are_counted_with_their_reason():
    assert skipped_text({"skipped": []}) is None
    assert skipped_text({"skipped": ["i-1"], "skipped_reasons": {"i-1": "scale-in protected"}}) == (
        "1 instance skipped (scale-in protected)")
    assert skipped_text({"skipped": ["i-1", "i-2", "i-3"], "skipped_reasons": {
        "i-1": "scale-in protected", "i-2": "in standby", "i-3": "scale-in protected"}}) == (
        "3 instances skipped (1 in standby, 2 scale-in protected)")
    assert skipped_text({"skipped": ["i-9"]}) == "1 instance skipped (skipped by policy)"  # an older recycle result


def test_asg_line():
    result = {"asg": "web-a", "outcome": "forward", "from_image": "ami-old", "to_image": "ami-new", "replaced": 3,
              "skipped": ["i-1"], "skipped_reasons": {"i-1": "scale-in protected"}}
    assert asg_line(result) == ("web-a: forward ami-old -> ami-new, 3 instances replaced; 1 instance skipped "
                                "(scale-in protected): i-1 (still on ami-old)")
    assert asg_line({**result, "skipped": [], "skipped_reasons": {}}) == "web-a: forward ami-old -> ami-new, 3 instances replaced"
    assert canary_rollback_line(None) is None
    assert canary_rollback_line({"asg": "web-a", "message": "rolled back"}) == "Canary web-a: rolled back"


def test_the_failure_notification_says_the_canary_was_rolled_back():
    from types import SimpleNamespace

    from phoenix_fleet.pipelines.notify import rollout_message

    xcoms = {
        "plan": {"version": "2026.11.30-1", "targets": [{"asg_name": "web-a"}, {"asg_name": "web-b"}]},
        "canary_rollback": {"asg": "web-a", "outcome": "rolled_back",
                            "message": "rolled back to ami-old (the approval was rejected or not answered): ...; "
                                       "the lock released"},
    }
    ti = SimpleNamespace(task_id="approval", map_index=-1, dag_id="fleet_rollout_web",
                         xcom_pull=lambda task_ids, key="return_value": xcoms.get(task_ids))
    message = rollout_message("web", "failed", {"ti": ti, "run_id": "manual__1", "reason": "task_failure"})
    assert "Canary web-a: rolled back to ami-old (the approval was rejected or not answered)" in message.body
    assert "What failed: task approval" in message.body and "canary_rollback put the canary's group back" in message.body
