"""The operator's surface of a real Airflow (issue 14): the trigger forms in headless Chromium, and hostile conf
through the REST API. Used by tests/e2e/test_real_airflow.py, inside its one real Airflow.

**Forms.** Debian's ``chromium`` driven by Playwright (``executable_path``: Playwright never downloads a browser
here), headless, no sandbox, no network of its own, a fresh profile. For each DAG it opens the DAG's page, clicks
Trigger, opens each section of the form and looks for what stops a person: a required-field ``*``, a field marked
invalid or an error text, a section title with the error icon, a disabled Trigger button. It keeps one screenshot
per form (the dialog with its first section open, then each other section: the whole form in one PNG) under
``.sandbox/forms/<dag_id>.png``. Then it unticks "Unpause <dag> on trigger" (the run would otherwise execute in
the shared sandbox) and clicks Trigger once: the answer must be 200 and the run must exist, queued, with the conf
the form sent, which the DAG's Param schemas and the release/rollout plan's own checks accept. Last, it opens the
form again, types into each text field and empties it (the issue's "Empty: all" field that then said "This field
is required"), and checks the form is still free of marks with Trigger enabled.

**Hostile conf.** For every field of every DAG (read from the live DAG's Params through the REST API, so a new
field is covered by itself): shell text, a path traversal, Jinja, a 100 kB string and a wrong type, each POSTed as
that field's value, plus unknown keys per DAG. Each must be refused: HTTP 400 whose short answer names the field and
the fix, or a run whose first task fails once (no retry) naming the field. Two kinds of value are valid on
purpose and checked as such: a base AMI name made only of characters EC2 allows (``../../etc/passwd``) passes the
schema and fails ``plan`` (no such AMI); shell text and a path in the release notes are notes, kept verbatim as
text (checked with a dry run: the plan carries them, nothing runs them).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: the task of each DAG that checks the conf before anything changes
FIRST_TASK = {
    "ami_release": "plan", "fleet_rollout": "plan", "fleet_inventory": "regions", "fleet_max_age": "select",
    "ami_retention": "roles", "fleet_config_check": "validate",
}

SHELL = "$(reboot); rm -rf / `id` | nc 127.0.0.1 4444 && echo pwned"
TRAVERSAL = "../../../../etc/passwd"
JINJA = "{{ conf.get('database', 'sql_alchemy_conn') }}{% for x in range(99999999) %}{% endfor %}"
BIG = "A" * 100_000
UNKNOWN = {"evil": "x", "__class__": {"__init__": {"__globals__": "os.system"}}}


def first_task(dag_id: str) -> str:
    return next(task for prefix, task in FIRST_TASK.items() if dag_id.startswith(prefix))


# ============================================================================================== the forms
@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright browser context on Debian's chromium, with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="phoenix-chromium-") as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 900, "height": 1400},
        )
        try:
            yield context
        finally:
            context.close()


def _marks(dialog: Any) -> list[str]:
    """What on the open form tells a person it cannot be submitted."""
    found = []
    labels = dialog.locator("[data-scope=field][data-part=label]")
    for i in range(labels.count()):
        text = " ".join(labels.nth(i).inner_text().split())
        if text.endswith("*"):
            found.append(f"field {text.rstrip(' *')!r} is marked required (*)")
        if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+( \*)?", text):
            found.append(f"field {text.rstrip(' *')!r} is labelled with its raw Param name")
    invalid = dialog.locator("[data-scope=field][data-part=root][data-invalid]")
    for i in range(invalid.count()):
        found.append(f"field marked invalid: {invalid.nth(i).inner_text()[:200]!r}")
    errors = dialog.locator("[data-part=error-text]")
    for i in range(errors.count()):
        found.append(f"error text: {errors.nth(i).inner_text()[:200]!r}")
    triggers = dialog.locator("[data-scope=accordion][data-part=item-trigger]")
    for i in range(triggers.count()):
        trigger = triggers.nth(i)
        icons = trigger.locator("svg").count() - trigger.locator("[data-part=item-indicator] svg").count()
        if icons:
            found.append(f"section {trigger.inner_text().strip()!r} shows an error icon")
    return found


def check_form(
    context: Any, base_url: str, dag_id: str, shots: Path, refuse: tuple[str, str] | None = None, edit: bool = True
) -> dict[str, Any]:
    """Open the DAG's trigger form untouched, look at every section and keep a screenshot; type into each text
    field and empty it again (the form must stay submittable); with ``refuse=(field, value)``, send that bad value
    (``result["refused"]``: what came back and what the dialog shows); last, open the form again untouched and
    click Trigger once. ``edit=False`` skips the typing (a form with the same Params as one already typed into).

    Returns ``{"problems": [...], "sections": [...], "screenshot": path, "status": int, "sent": conf, "run": {...}}``
    (``status`` None: Trigger was disabled, nothing was sent).
    """
    page = context.new_page()
    try:
        page.goto(f"{base_url}/dags/{dag_id}", wait_until="load")
        dialog = _open(page)
        problems, sections, images = _marks(dialog), [], []
        for item, name in _sections(dialog):
            sections.append(name)
            _expand(page, item)
            problems += _marks(dialog)
            images.append(dialog.screenshot() if not images else item.screenshot())
        shots.mkdir(parents=True, exist_ok=True)
        screenshot = shots / f"{dag_id}.png"
        _stitch(context, images, screenshot)
        result: dict[str, Any] = {
            "problems": sorted(set(problems)), "sections": sections, "screenshot": screenshot, "status": None,
            "sent": None, "run": None,
        }
        if not dialog.get_by_role("button", name="Trigger").is_enabled():
            result["problems"].append("the Trigger button is disabled: the form cannot be submitted as it opens")
            return result
        if edit or refuse:
            if edit:
                result["problems"] += _typed_and_cleared(page, dialog)
                _close(page, dialog)
                dialog = _open(page)
            if refuse:
                result["refused"] = _refused(page, dialog, dag_id, *refuse, shots / f"{dag_id}-refused.png")
                _close(page, dialog)
                dialog = _open(page)
            # untouched again: the form starts from the DAG's Params each time it opens
        _keep_paused(dialog, dag_id)
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith(f"/api/v2/dags/{dag_id}/dagRuns"), timeout=30_000
        ) as answer:
            dialog.get_by_role("button", name="Trigger").click()
        response = answer.value
        result.update(
            status=response.status,
            sent=json.loads(response.request.post_data or "{}").get("conf"),
            run=response.json() if response.status == 200 else response.text(),
        )
        return result
    finally:
        page.close()


def _open(page: Any) -> Any:
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.locator("[data-scope=accordion][data-part=item]").first.wait_for()
    page.wait_for_timeout(300)  # the form validates its fields right after it renders
    return dialog


def _close(page: Any, dialog: Any) -> None:
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")


def _sections(dialog: Any) -> Iterator[tuple[Any, str]]:
    """(item, name) of each section of our Params (not Airflow's own "Advanced Options": conf JSON, run id)."""
    items = dialog.locator("[data-scope=accordion][data-part=item]")
    for i in range(items.count()):
        item = items.nth(i)
        name = item.locator("[data-part=item-trigger]").inner_text().strip()
        if name != "Advanced Options":
            yield item, name


def _expand(page: Any, item: Any) -> None:
    trigger = item.locator("[data-part=item-trigger]")
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    item.locator("[data-part=item-content]").first.wait_for(state="visible")
    page.wait_for_timeout(300)  # the opening animation


def _keep_paused(dialog: Any, dag_id: str) -> None:
    """Untick "Unpause <dag> on trigger": the run must not execute in the shared sandbox."""
    unpause = dialog.get_by_text(f"Unpause {dag_id} on trigger")
    if unpause.count():
        unpause.click()


def _typed_and_cleared(page: Any, dialog: Any) -> list[str]:
    """Each text field typed into and emptied: empty must still be fine ("Empty: all") and Trigger enabled."""
    problems = []
    for item, name in _sections(dialog):
        _expand(page, item)
        fields = item.locator("input[id^=element_]:not([type=checkbox]), textarea[id^=element_]")
        for j in range(fields.count()):
            field = fields.nth(j)
            field.fill("2")  # a valid number too
            field.fill("")
            field.blur()
        page.wait_for_timeout(300)
        problems += [f"after typing into and emptying the fields of {name!r}: {m}" for m in _marks(dialog)]
    if not dialog.get_by_role("button", name="Trigger").is_enabled():
        problems.append("after typing into and emptying the text fields, the Trigger button is disabled")
    return problems


def _refused(page: Any, dialog: Any, dag_id: str, field: str, value: str, screenshot: Path) -> dict[str, Any]:
    """``value`` typed into ``field`` and Trigger clicked: what the api-server answered and what the person reads
    in the dialog (a screenshot of it is kept)."""
    for item, _ in _sections(dialog):  # open the field's section (one section is open at a time)
        _expand(page, item)
        if dialog.locator(f"#element_{field}").is_visible():
            break
    dialog.locator(f"#element_{field}").fill(value)
    _keep_paused(dialog, dag_id)
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(f"/api/v2/dags/{dag_id}/dagRuns"), timeout=30_000
    ) as answer:
        dialog.get_by_role("button", name="Trigger").click()
    response = answer.value
    shown = dialog.get_by_text("Fix:", exact=False).first
    shown.wait_for(timeout=10_000)
    dialog.screenshot(path=str(screenshot))
    return {"status": response.status, "body": response.text(), "shown": shown.inner_text()}


def _stitch(context: Any, images: list[bytes], path: Path) -> None:
    """One PNG of the whole form: the screenshots one under the other (rendered by the same browser)."""
    page = context.new_page()
    try:
        page.set_viewport_size({"width": 860, "height": 200})
        page.set_content(
            "<body style='margin:0;background:#fff'>"
            + "".join(
                f"<img style='display:block;border-bottom:3px solid #999' src='data:image/png;base64,"
                f"{base64.b64encode(png).decode()}'>"
                for png in images
            )
            + "</body>"
        )
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.close()


# ========================================================================================= hostile conf
def hostile_values(schema: dict[str, Any]) -> dict[str, Any]:
    """The five hostile cases for one field, shaped for its type (a list field gets them as an item)."""
    types = [schema["type"]] if isinstance(schema.get("type"), str) else list(schema.get("type") or [])
    wrong = {"string": 12345, "array": "us-east-1,eu-west-1", "boolean": "yes", "integer": "12", "number": "1.5"}
    kind = next((t for t in types if t != "null"), "string")
    if kind == "array":
        cases = {"shell": [SHELL], "traversal": [TRAVERSAL], "jinja": [JINJA], "100kB": [BIG]}
    else:
        cases = {"shell": SHELL, "traversal": TRAVERSAL, "jinja": JINJA, "100kB": BIG}
    return {**cases, "wrong type": wrong[kind]}


def expected_outcome(dag_id: str, field: str, case: str) -> tuple[str, dict[str, Any]]:
    """("400" | "plan fails" | "text, dry run", extra conf) for one case: 400 unless listed here."""
    if dag_id.startswith("ami_release_") and field == "base_ami_name" and case == "traversal":
        return "plan fails", {"base_ami_owners": ["self"]}  # EC2's characters: only AWS can say no
    if dag_id.startswith("ami_release_") and field == "release_notes" and case in ("shell", "traversal"):
        return "text, dry run", {"dry_run": True}
    return "400", {}


def sandbox_state(handle: Any, regions: list[str]) -> dict[str, Any]:
    """What a refused conf must not change: AMIs, launch-template versions, instances, ASGs, SSM parameters, S3."""
    state: dict[str, Any] = {}
    for region in regions:
        ec2, asg, ssm = (handle.client(s, region_name=region) for s in ("ec2", "autoscaling", "ssm"))
        images = ec2.describe_images(Owners=["self"])["Images"]
        state[f"{region} amis"] = sorted(
            (i["ImageId"], i.get("State"), json.dumps(sorted((t["Key"], t["Value"]) for t in i.get("Tags", []))))
            for i in images
        )
        state[f"{region} launch templates"] = sorted(
            (v["LaunchTemplateId"], v["VersionNumber"], v["LaunchTemplateData"].get("ImageId"), v.get("DefaultVersion"))
            for lt in ec2.describe_launch_templates()["LaunchTemplates"]
            for v in ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
                "LaunchTemplateVersions"]
        )
        state[f"{region} instances"] = sorted(
            (i["InstanceId"], i["State"]["Name"], i.get("ImageId"))
            for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
        )
        state[f"{region} asgs"] = sorted(
            (g["AutoScalingGroupName"], g["DesiredCapacity"], json.dumps(g.get("LaunchTemplate"), sort_keys=True))
            for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
        )
        names = [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate() for p in page["Parameters"]]
        state[f"{region} ssm"] = sorted(
            (p["Name"], p["Version"], p["Value"])
            for i in range(0, len(names), 10)
            for p in ssm.get_parameters(Names=names[i:i + 10])["Parameters"]
        )
    s3 = handle.client("s3")
    state["s3"] = sorted(
        (b["Name"], o["Key"], o["ETag"])
        for b in s3.list_buckets()["Buckets"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b["Name"])
        for o in page.get("Contents", [])
    )
    return state


def said_about(log: str, field: str) -> str | None:
    """The line of a failed task's log that names ``params.<field>`` (out of the JSON log's error_detail)."""
    found = re.search(rf"params\.{re.escape(field)}: .*?(?=\\\\n|\\n|', '|\"|$)", log, re.M)
    return found.group(0) if found else None


def wait_quiet(af: Any, dag_ids: list[str], timeout: float = 240) -> None:
    """Until no run of these DAGs is queued or running (e.g. the run Airflow starts when a scheduled DAG is
    unpaused, and what its Asset event starts)."""

    def quiet() -> bool:
        time.sleep(2)  # a run the scheduler is about to create
        return all(r["state"] in ("success", "failed") for d in dag_ids for r in af.runs(d))

    af.wait(f"no queued or running runs of {dag_ids}", quiet, timeout)
