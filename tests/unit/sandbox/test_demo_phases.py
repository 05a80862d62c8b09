"""make demo's clock (sandbox/demo_phases.py): phases timed with their CPU, a background step joined or failing
loudly, a bounded wait that stops when the step it waits on failed."""

from __future__ import annotations

import time

import pytest

from sandbox.demo_phases import Background, Phases, wait_until


def test_phases_report_wall_cpu_background_and_setup() -> None:
    phases = Phases()
    phases.extra_seconds["make setup"] = 7
    with phases("busy"):  # 0.2 s of CPU, however long the loaded box takes to give it
        start = time.process_time()
        while time.process_time() - start < 0.2:
            pass
    with phases("idle"):
        time.sleep(0.3)
    phases.add("terraform network root", 84, background=True)
    busy, idle, network = phases.done
    # os.times() counts in clock ticks (1/100 s): allow a few ticks either way
    assert busy.cpu is not None and busy.cpu >= 0.15 and busy.wall >= busy.cpu - 0.05
    assert idle.wall >= 0.3 and idle.cpu is not None and idle.cpu < 0.1
    report = phases.report()
    assert "make setup" in report and "before the demo started" in report
    assert "terraform network root" in report and "in the background" in report
    assert "total" in report and "load average now:" in report
    # the setup's 7 s plus at least the two phases' wall time (busy's 0.2 s is of process CPU, which other threads
    # of a test process also spend: its wall time may be shorter)
    assert phases.total() >= 7 + busy.wall + idle.wall


def test_background_returns_its_result_or_raises_its_error() -> None:
    assert Background("ok", lambda: 42).join(timeout=5) == 42

    def boom() -> None:
        raise RuntimeError("terraform apply failed")

    failed = Background("network", boom)
    with pytest.raises(RuntimeError, match="terraform apply failed"):
        failed.join(timeout=5)
    # a wait on what the failed step should have made stops at once, naming the step
    with pytest.raises(RuntimeError, match="network failed while waiting for the ALB"):
        wait_until("the ALB", lambda: False, timeout=30, also=failed)
    with pytest.raises(TimeoutError, match="waiting for the ALB"):
        wait_until("the ALB", lambda: False, timeout=0.6)
    assert wait_until("now", lambda: True, timeout=1) < 0.5
