"""Large states stream (docs/reliability.md guarantee 6): a smaller case of
``python -m bench.large_state``, publishing and downloading in fresh processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, subprocess_env

sys.path.insert(0, str(REPO_ROOT))
from bench.large_state import measure

STATE_MB = 96  # larger than the allowance: a state held in memory would exceed it
ALLOWANCE_MB = 64


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_large_states_stream(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Peak RSS above the process's baseline stays within 64 MB while a 96 MiB file state
    (and, on file://, a directory state) is published, downloaded and verified."""
    url = (
        f"file://{tmp_path}/store"
        if backend == "file"
        else f"s3://{request.getfixturevalue('s3_bucket')}/big"
    )
    for name, value in subprocess_env().items():
        monkeypatch.setenv(name, value)
    kinds = ["file", "directory"] if backend == "file" else ["file"]
    for kind in kinds:
        measured = measure(url, kind, STATE_MB, tmp_path)
        assert sorted(measured) == ["download", "publish", "verify"]
        for operation, result in measured.items():
            assert result["delta_mb"] <= ALLOWANCE_MB, (kind, operation, result)
