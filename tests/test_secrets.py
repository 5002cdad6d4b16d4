"""No secret leaves the process (issue 13): one secret read through ``{{ env.NAME }}`` into a
component's attributes and into the storage options goes through succeeding and failing
refreshes, loads, history and serve; then every output and every file of the project, the
download cache and the storage (S3 objects) is searched for it: 0 occurrences."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

from conftest import ProjectFactory, run_cli
from defstate import load_defs
from defstate.errors import ProjectConfigError
from defstate.loader.project import load_project_config
from defstate.redaction import (
    MASK,
    PUBLIC_VALUES,
    RedactingFilter,
    forget_secrets,
    redact,
    redact_data,
    register_secret,
)
from defstate.state_storage.management import ManagementType

SECRET = "Zq9-very-SECRET-e2e-4711"
# the storage credential is only in the storage options (moto accepts any secret key)
STORAGE_SECRET = "Sk-storage-only-8812"

COMPONENTS = """
import json
import logging
from pathlib import Path

import attrs

from defstate import AssetSpec, ComponentLoadContext, Definitions, StateBackedComponent

log = logging.getLogger("secretpkg")


@attrs.define(kw_only=True)
class TokenComponent(StateBackedComponent):
    token: str
    name: str
    switch: str

    def get_defs_state_key(self) -> str:
        return f"Token[{self.name}]"

    def write_state_to_path(self, state_path: Path) -> None:
        log.warning("refreshing with token %s", self.token)
        print(f"connecting with {self.token}")
        if Path(self.switch, "fail-refresh").exists():
            raise RuntimeError(f"authentication failed for token {self.token!r}")
        state_path.write_text(json.dumps([f"{self.name}_table"]))

    def build_defs_from_state(
        self, context: ComponentLoadContext, state_path: Path | None
    ) -> Definitions:
        if Path(self.switch, "fail-build").exists():
            raise ValueError(f"cannot build with {self.token}")
        if state_path is None:
            return Definitions()
        names = json.loads(state_path.read_text())
        return Definitions([AssetSpec(key=n, metadata={"token": self.token}) for n in names])
"""


def _entry(name: str, switch: Path, management: str, executor: str) -> str:
    return (
        "type: secretpkg.components.TokenComponent\n"
        "attributes:\n"
        '  token: "{{ env.E2E_SECRET }}"\n'
        f"  name: {name}\n"
        f"  switch: {switch}\n"
        f"  defs_state:\n    management_type: {management}\n    executor: {executor}\n"
    )


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and any(n in path.read_bytes() for n in needles):
            found.append(str(path))
    return found


def _needles(secret: str) -> list[str]:
    return [secret, json.dumps(secret)[1:-1]]


@pytest.mark.slow  # about 20 CLI processes, serve and dev
def test_one_secret_through_every_output_and_stored_file(
    make_project: ProjectFactory,
    s3_bucket: str,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_server import Server

    switch = tmp_path / "switch"
    switch.mkdir()
    root = make_project(
        {
            "secretpkg/__init__.py": "",
            "secretpkg/components.py": COMPONENTS,
            "defs/local/defs.yaml": _entry("local", switch, "LOCAL_FILESYSTEM", "thread"),
            "defs/remote/defs.yaml": _entry("remote", switch, "VERSIONED_STATE_STORAGE", "process"),
        },
        pyproject_extra=(
            "[tool.defstate.state_storage]\n"
            f'url = "s3://{s3_bucket}/state"\n'
            "[tool.defstate.state_storage.storage_options]\n"
            f'endpoint_url = "{s3_endpoint}"\n'
            'key = "AKIDE2E"\n'
            'secret = "{{ env.E2E_STORAGE_SECRET }}"\n'
            'client_kwargs = {region_name = "us-east-1"}\n'
        ),
    )
    cache = tmp_path / "cache"
    env = {
        "E2E_SECRET": SECRET,
        "E2E_STORAGE_SECRET": STORAGE_SECRET,
        "DEFSTATE_CACHE_DIR": str(cache),
    }
    outputs: list[tuple[str, str]] = []

    def run(*args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = run_cli(*args, cwd=root, env=env)
        outputs.append((" ".join(args), done.stdout + done.stderr))
        if code is not None:
            assert done.returncode == code, (args, done.stdout, done.stderr)
        return done

    # succeeding refreshes and loads
    run("state", "refresh")
    run("state", "refresh", "--json")
    listed = run("list", "defs", "--json")
    assets = json.loads(listed.stdout)["assets"]
    assert sorted(a["key"] for a in assets) == ["local_table", "remote_table"]
    assert {a["metadata"]["token"] for a in assets} == {MASK}
    run("list", "defs")
    run("list", "components", code=None)
    # failing refreshes, with and without --debug
    (switch / "fail-refresh").touch()
    failed = run("state", "refresh", code=1)
    assert "authentication failed for token '***'" in failed.stderr
    assert "(raised at secretpkg/components.py:" in failed.stderr
    run("state", "refresh", "--json", code=1)
    debug = run("state", "refresh", "--debug", code=1)
    assert "Traceback" in debug.stderr
    run("--debug", "list", "defs", "--json", "--refresh", code=None)
    # failing loads
    (switch / "fail-build").touch()
    broken = run("list", "defs", "--json", code=1)
    assert "cannot build with ***" in broken.stdout
    run("--debug", "list", "defs", code=1)
    (switch / "fail-build").unlink()
    # history of both keys
    for key in ("Token[local]", "Token[remote]"):
        history = run("state", "history", key, "--json")
        records = json.loads(history.stdout)["records"]
        assert any(r["error"] and "'***'" in r["error"] for r in records), records
        run("state", "history", key)
    # serve and dev: every endpoint, and the log
    for command in ("serve", "dev"):
        server = Server([command], cwd=root, env=env)
        try:
            for path in ("/health", "/defs", "/components", "/state", "/worker/defs"):
                outputs.append((f"{command} {path}", json.dumps(server.get(path))))
            outputs.append((f"{command} reload", json.dumps(server.post("/reload?wait=1"))))
        finally:
            server.stop()
            assert server.process.stdout is not None
            outputs.append(
                (f"{command} log", "\n".join(server.seen) + server.process.stdout.read())
            )
    # the Python API's errors too
    (switch / "fail-build").touch()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    errors = load_defs(root).errors
    assert errors and all(SECRET not in str(e) for e in errors)
    outputs.append(("load_defs", "\n".join(str(e) for e in errors)))

    for secret in (SECRET, STORAGE_SECRET):
        leaks = [name for name, text in outputs if any(n in text for n in _needles(secret))]
        assert leaks == [], leaks
        needles = [n.encode() for n in _needles(secret)]
        assert _files_containing(root, needles) == []
        assert _files_containing(cache, needles) == []
    assert list(cache.rglob("*")), "the download cache was used"
    _assert_no_secret_in_bucket(s3_endpoint, s3_bucket)


def _assert_no_secret_in_bucket(endpoint: str, bucket: str) -> None:
    import fsspec

    from storage_servers import s3_storage_options

    fs = fsspec.filesystem("s3", **s3_storage_options(endpoint))
    objects = fs.find(bucket)
    assert any(o.endswith("manifest.json") for o in objects)
    assert any("records" in o for o in objects), objects
    for name in objects:
        data = fs.cat_file(name)
        assert SECRET.encode() not in data and STORAGE_SECRET.encode() not in data, name


def test_userinfo_in_a_storage_url_is_rejected_without_showing_it(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_OPT", "pw-in-url-9911")
    root = make_project(
        {},
        pyproject_extra='[tool.defstate.state_storage]\nurl = "file://u:{{ env.SECRET_OPT }}@/srv/state"\n',
    )
    with pytest.raises(ProjectConfigError, match="must not contain user:password@") as info:
        load_project_config(root)
    assert "pw-in-url-9911" not in str(info.value)
    done = run_cli("list", "defs", cwd=root, env={"SECRET_OPT": "pw-in-url-9911"})
    assert done.returncode == 1 and "user:password@" in done.stderr
    assert "pw-in-url-9911" not in done.stdout + done.stderr
    assert not (root / "u:pw-in-url-9911@").exists()


def test_redaction_finds_every_form_of_a_secret() -> None:
    forget_secrets()
    assert redact("nothing registered") == "nothing registered"
    register_secret("ab")  # too short to be a secret: never masked
    register_secret('p@ss"wörd/1')
    assert redact('x p@ss"wörd/1 y') == f"x {MASK} y"
    assert redact(json.dumps({"v": 'p@ss"wörd/1'})) == json.dumps({"v": MASK})
    assert redact(repr('p@ss"wörd/1')) == f"'{MASK}'"
    assert redact("https://h/?t=p%40ss%22w%C3%B6rd%2F1") == f"https://h/?t={MASK}"
    assert redact("ab") == "ab"
    assert redact_data({'p@ss"wörd/1': ['p@ss"wörd/1', 1, None]}) == {MASK: [MASK, 1, None]}
    for word in (*(m.value for m in ManagementType), "true"):  # defstate's own words
        register_secret(word)
        assert redact(word) == word
    assert {m.value for m in ManagementType} <= PUBLIC_VALUES
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s", ('p@ss"wörd/1',), None)
    assert RedactingFilter().filter(record) and record.getMessage() == f"token {MASK}"
