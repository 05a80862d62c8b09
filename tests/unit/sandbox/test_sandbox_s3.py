"""S3 conditional writes in the sandbox, as AWS does them: what Terraform's S3 lock file (``use_lockfile``) needs.

Terraform 1.11 takes the state lock by writing ``<key>.tflock`` with ``If-None-Match: *`` and releases it by deleting
it. AWS decides a conditional write atomically; moto checks, then writes, and two racing writers can both win
(the sandbox serialises conditional writes: ``moto_patches._patch_s3_conditional_writes``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

BUCKET = "phoenix-fleet-tfstate"
KEY = "race/fleet.tfstate.tflock"


@pytest.fixture
def s3(sandbox_clean: Any) -> Any:
    client = sandbox_clean.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def test_if_none_match_refuses_an_existing_key_and_allows_it_again_after_delete(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"second", IfNoneMatch="*")
    assert _code(exc.value) == "PreconditionFailed"
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"first"
    # released (in a versioned bucket the delete leaves a delete marker): the key is free again
    s3.delete_object(Bucket=BUCKET, Key=KEY)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"third", IfNoneMatch="*")
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"third"


def test_two_racing_conditional_writes_have_exactly_one_winner(
    sandbox_clean: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both writers are let in together; moto's own code would let both pass its check before either writes."""
    from moto.s3.models import S3Backend

    # Widen moto's window between the check and the write: each write of the key waits (up to 2 s) for the other
    # writer to reach the same point. Unserialised, both get there after their checks and both write; serialised,
    # the second only gets to its check after the first has written.
    arrived = threading.Barrier(2)
    original = S3Backend.put_object

    def put_object(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        if key_name == KEY:
            try:
                arrived.wait(timeout=2)
            except threading.BrokenBarrierError:
                pass
        return original(self, bucket_name, key_name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", put_object)
    clients = [sandbox_clean.client("s3") for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: dict[int, str] = {}

    def write(i: int) -> None:
        start.wait(timeout=10)
        try:
            clients[i].put_object(Bucket=BUCKET, Key=KEY, Body=f"writer {i}".encode(), IfNoneMatch="*")
            outcomes[i] = "written"
        except ClientError as exc:
            outcomes[i] = _code(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["PreconditionFailed", "written"], outcomes
    winner = next(i for i, o in outcomes.items() if o == "written")
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == f"writer {winner}".encode()
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY).get("Versions", [])
    assert len(versions) == 1, versions  # the loser wrote nothing
