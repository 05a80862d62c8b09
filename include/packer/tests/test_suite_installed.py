"""The suite itself is on the image, so the verify stage can run it through SSM."""

from __future__ import annotations


def test_runner_installed(host):
    runner = host.file("/usr/local/bin/phoenix-image-test")
    assert runner.exists, "/usr/local/bin/phoenix-image-test is missing (provisioners/50-install-tests.sh)"
    assert runner.user == "root"
    assert runner.mode & 0o111 and not runner.mode & 0o022, oct(runner.mode)


def test_suite_installed(host):
    suite = host.file("/opt/phoenix/image-tests")
    assert suite.is_directory
    assert suite.user == "root"
    assert host.file("/opt/phoenix/image-tests/conftest.py").exists
    writable = host.run("find /opt/phoenix/image-tests -perm /022 -print").stdout.split()
    assert not writable, f"group/world writable files in the suite: {writable}"
