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
