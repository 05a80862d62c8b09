"""Record each group's launch-template version before apply moves it; put back the groups a failed run never rolled.

``apply`` (Terraform or native) calls :func:`pins_of` right before it changes anything and pushes the result as its
``pins_before`` XCom (``{region: {asg: Pin}}``). The rollout DAG's ``restore_launch_templates`` teardown calls
:func:`restore_unrolled_groups` when the run ends, whatever its outcome: a group that launches the release's image
while none of its instances runs it goes back to its recorded version (:func:`phoenix_fleet.rollout.template_pins.
decide` says which, and why the others are left). After a run that rolled everything forward it changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from phoenix_fleet.rollout.template_pins import GroupNow, Pin, decide

ROLLOUT_ID_TAG = "phoenix:rollout:id"
#: the group's own template reference (template_refs' ``where``), not a mixed-instances override
MAIN_REFERENCES = ("LaunchTemplate", "MixedInstancesPolicy")


def pins_of(hook: Any, asgs: Sequence[Mapping[str, Any]], region: str) -> dict[str, dict[str, Any]]:
    """``{asg: Pin json}`` of each group with a launch template: its own reference (plain, or its
    MixedInstancesPolicy's; not the overrides) as ImageHook.resolve_asg_images resolves it, ``$Default``/``$Latest``
    included, with the image that version launches."""
    resolved, _ = hook.resolve_asg_images(asgs, region)  # a group without a template has no reference: no pin
    return {
        ref.asg_name: Pin(str(ref.template_id), int(ref.resolved_version), ref.image_id).to_json()
        for ref in resolved
        if ref.where in MAIN_REFERENCES and ref.resolved_version is not None
    }


def restore_unrolled_groups(
    targets: Sequence[Mapping[str, Any]],
    pins_before: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
    *,
    aws_conn_id: str | None,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """For each target (``asg_name``, ``region_name``, ``target_image_id``): look at the group, decide, and point it
    back when :func:`decide` says so. Returns ``{"restored": [...], "left": [...]}`` (each ``{asg, region, reason}``,
    restored ones with ``version``)."""
    from phoenix_fleet.hooks.asg_hook import AsgHook, AsgNotFoundError, LaunchTemplateRef
    from phoenix_fleet.rollout import Policy

    hooks: dict[str, Any] = {}
    restored: list[dict[str, Any]] = []
    left: list[dict[str, Any]] = []
    for target in targets:
        asg, region, release = str(target["asg_name"]), str(target["region_name"]), str(target["target_image_id"])
        hook = hooks.get(region)
        if hook is None:
            hook = hooks[region] = AsgHook(aws_conn_id=aws_conn_id, region_name=region)
        recorded = ((pins_before or {}).get(region) or {}).get(asg)
        try:
            obs = hook.observe(asg, Policy(), resolve_launch_template=True)
        except AsgNotFoundError:  # deleted while the run went on: nothing launches from it any more
            reason = "the group no longer exists: nothing to put back"
            log(f"{asg} ({region}): left as it is: {reason}")
            left.append({"asg": asg, "region": region, "reason": reason})
            continue
        ref = obs.launch_template
        now: Pin | None = None
        if ref is not None and ref.number is not None:
            template_id = ref.template_id or hook.ec2.describe_launch_templates(
                LaunchTemplateNames=[ref.template_name])["LaunchTemplates"][0]["LaunchTemplateId"]
            now = Pin(str(template_id), int(ref.number), ref.image_id)
        locked = obs.record.rollout_id if obs.record is not None else None
        if obs.record_error or (locked is None and obs.tags.get(ROLLOUT_ID_TAG)):
            locked = obs.tags.get(ROLLOUT_ID_TAG) or "a malformed rollout record"
        live = Counter(i.image_id for i in obs.state.live if i.image_id)
        decision = decide(GroupNow(asg, region, locked, now, live), Pin.from_json(recorded) if recorded else None,
                          release)
        entry: dict[str, Any] = {"asg": asg, "region": region, "reason": decision.reason}
        if decision.restore_to is None or ref is None:
            log(f"{asg} ({region}): left as it is: {decision.reason}")
            left.append(entry)
            continue
        back = decision.restore_to
        if dry_run:
            log(f"{asg} ({region}): dry run: would point it back: {decision.reason}")
        else:
            hook.set_launch_template(
                asg, LaunchTemplateRef(template_id=back.template, template_name=None, version=str(back.number),
                                       mixed=ref.mixed),
                back.number,
            )
            log(f"{asg} ({region}): pointed back: {decision.reason}")
        restored.append({**entry, "version": back.number, "template": back.template, "image_id": back.image_id})
    return {"restored": restored, "left": left, "dry_run": dry_run}
