"""The parse cache of defs.yaml files (defstate.loader.yaml_cache): keyed by content, equal to
a fresh parse, never trusted when damaged, stale or turned off, safe with two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ProjectFactory, subprocess_env
from defstate.loader import yaml_cache
from defstate.loader.discovery import discover_components
from defstate.loader.project import load_project_config
from defstate.loader.yaml_cache import CACHE_ENV, YamlParseCache, cache_file
from defstate.loader.yaml_source import YamlFile, read_yaml_file

PLAIN = "fixture_components.PlainComponent"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(folder))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    return folder


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files parsed with YAML (not taken from the cache), in order."""
    seen: list[Path] = []
    real = yaml_cache.parse_yaml_bytes

    def counting(path: Path, data: bytes) -> YamlFile:
        seen.append(path)
        return real(path, data)

    monkeypatch.setattr(yaml_cache, "parse_yaml_bytes", counting)
    return seen


def _read(defs_dir: Path, *paths: Path) -> list[YamlFile]:
    """One discovery's reads through the cache (and its save)."""
    cache = YamlParseCache.for_defs_dir(defs_dir)
    files = [cache.read(path) for path in paths]
    cache.save()
    return files


def _same(cached: YamlFile, fresh: YamlFile) -> None:
    # repr: tells 1 from 1.0 and True, and keeps the order of keys and lines
    assert repr(cached.documents) == repr(fresh.documents)
    assert [str(e) for e in cached.errors] == [str(e) for e in fresh.errors]  # file:line: ...


ENTRY = f"""\
type: {PLAIN}
attributes:
  assets: [a, b]
  group: g
  deps:
    a: [b]
"""


def test_a_second_discovery_parses_no_unchanged_file(
    make_project: ProjectFactory, parsed: list[Path]
) -> None:
    root = make_project(
        {
            "defs/one/defs.yaml": ENTRY,
            "defs/two/defs.yaml": ENTRY.replace("group: g", "group: h") + "---\n" + ENTRY,
        }
    )
    config = load_project_config(root)
    first = discover_components(config)
    assert len(parsed) == 2
    second = discover_components(config)
    assert len(parsed) == 2  # nothing parsed again
    assert first == second
    assert [i.location.line for i in second.instances] == [1, 1, 8]
    assert cache_file(config.defs_dir).is_file()


def test_a_changed_file_is_parsed_again_even_with_its_old_mtime(
    tmp_path: Path, parsed: list[Path]
) -> None:
    path = tmp_path / "defs" / "defs.yaml"
    path.parent.mkdir()
    path.write_text("value: aaa\n")
    before = path.stat()
    (first,) = _read(path.parent, path)
    path.write_text("value: bbb\n")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    (second,) = _read(path.parent, path)
    assert [d.value for d in first.documents] == [{"value": "aaa"}]
    assert [d.value for d in second.documents] == [{"value": "bbb"}]
    assert parsed == [path, path]


CACHED_TEXTS = [
    ENTRY,
    "a: &x {b: 1, c: [1, 2.5, -0.0, .nan, .inf, -.inf]}\nd:\n  <<: *x\n  b: 2\n",
    "big: " + "9" * 999 + "\nneg: -0x1F\noct: 0o17\nf: 1e3\n",
    'text: "tab\\there \\u00e9 \\U0001F600 {{ env.X }}"\nq: "1"\nn: ~\nt: yes\nempty: ""\n',
    "- a\n- - b\n  - {c: d}\n- null\n",
    "--- 1\n--- []\n---\n--- {}\n",
    "# only a comment\n",
    "",
    "\ufeffünïcode: ✓\nx: 1\n",  # a byte order mark first
]


@pytest.mark.parametrize("text", CACHED_TEXTS)
def test_cached_documents_equal_a_fresh_parse(
    tmp_path: Path, text: str, parsed: list[Path]
) -> None:
    path = tmp_path / "defs.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _read(tmp_path, path)
    (cached,) = _read(tmp_path, path)
    assert parsed == [path]  # the second read came from the cache
    _same(cached, read_yaml_file(path))


@pytest.mark.parametrize(
    "text",
    [
        "when: 2024-01-02\n",  # a date: JSON has none
        "1: one\n",  # a key that is not a string
        "a:\n  null: x\n",
        "a: 1\nb: !!int x\n",  # an error (below)
        "a: [1\n",
        'a: "\\ud800"\n',  # a lone surrogate: an error
        "a: 0x" + "f" * 5000 + "\n",  # 6000 decimal digits: an error, not json's ValueError
    ],
)
def test_files_json_cannot_represent_or_with_errors_are_parsed_every_time(
    tmp_path: Path, text: str, parsed: list[Path]
) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text(text)
    _read(tmp_path, path)
    (second,) = _read(tmp_path, path)
    assert parsed == [path, path]
    _same(second, read_yaml_file(path))
    for error in second.errors:  # errors keep their file and line
        assert error.location is not None and error.location.path == path
        assert error.location.line == 2 if "!!int" in text else error.location.line >= 1


def test_an_entry_error_from_a_cached_file_keeps_its_file_and_line(
    make_project: ProjectFactory, parsed: list[Path]
) -> None:
    root = make_project({"defs/x/defs.yaml": ENTRY + "  colour: red\n"})
    config = load_project_config(root)
    first = discover_components(config)
    second = discover_components(config)
    assert len(parsed) == 1
    (problem,) = second.errors
    assert problem == first.errors[0]
    assert problem.location is not None
    assert (problem.location.path.name, problem.location.line) == ("defs.yaml", 7)
    assert "unknown attribute 'colour'" in problem.message


def _damage(file: Path, how: str) -> None:
    data = file.read_bytes()
    header, _, payload = data.partition(b"\n")
    if how == "truncated":
        file.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        flipped = payload.replace(b"aaa", b"zzz")
        assert flipped != payload
        file.write_bytes(header + b"\n" + flipped)
    elif how == "garbage":
        file.write_bytes(os.urandom(300))
    elif how == "empty":
        file.write_bytes(b"")
    elif how == "other stamp":
        stamp = json.loads(header)
        stamp["stamp"] = "0" * len(stamp["stamp"])
        file.write_bytes(json.dumps(stamp).encode() + b"\n" + payload)
    elif how == "not a mapping":
        payload = b'["aaa"]'
        digest = yaml_cache._digest(payload)
        stamp = json.loads(header)
        file.write_bytes(json.dumps({**stamp, "digest": digest}).encode() + b"\n" + payload)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["truncated", "flipped", "garbage", "empty", "other stamp", "not a mapping"]
)
def test_a_damaged_or_stale_cache_file_is_ignored_and_replaced(
    tmp_path: Path, how: str, parsed: list[Path]
) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text("value: aaa\n")
    _read(tmp_path, path)
    _damage(cache_file(tmp_path), how)
    (loaded,) = _read(tmp_path, path)
    assert [d.value for d in loaded.documents] == [{"value": "aaa"}]
    assert parsed == [path, path]  # parsed again, then cached again
    _read(tmp_path, path)
    assert parsed == [path, path]


def test_turned_off_it_parses_every_time_and_writes_nothing(
    tmp_path: Path, cache_dir: Path, parsed: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, "0")
    path = tmp_path / "defs.yaml"
    path.write_text("value: aaa\n")
    _read(tmp_path, path)
    _read(tmp_path, path)
    assert parsed == [path, path]
    assert not cache_dir.exists()


def test_a_cache_folder_that_cannot_be_written_leaves_loads_uncached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parsed: list[Path]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("DEFSTATE_CACHE_DIR", str(blocker))
    path = tmp_path / "defs.yaml"
    path.write_text("value: aaa\n")
    for _ in range(2):
        (loaded,) = _read(tmp_path, path)
        assert [d.value for d in loaded.documents] == [{"value": "aaa"}]
    assert parsed == [path, path]


def test_without_a_home_directory_loads_are_uncached_not_failed(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, parsed: list[Path]
) -> None:
    # a container running as a uid without a passwd entry and without $HOME (e.g. OpenShift)
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    for name in ("DEFSTATE_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    root = make_project({"defs/one/defs.yaml": ENTRY})
    config = load_project_config(root)
    for _ in range(2):
        assert len(discover_components(config).instances) == 1
    assert len(parsed) == 2


def test_identical_files_share_an_entry_but_not_their_values(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    for path in (first, second):
        path.write_text("items: [1, 2]\n")
    for _ in range(2):  # a miss, then a hit
        loaded = _read(tmp_path, first, second)
        loaded[0].documents[0].value["items"].append(3)  # a component changing its input
        assert loaded[1].documents[0].value == {"items": [1, 2]}
        assert [f.path for f in loaded] == [first, second]
        assert loaded[1].documents[0].location(("items", 0)).path == second
    assert len(json.loads(cache_file(tmp_path).read_bytes().partition(b"\n")[2])) == 1


def test_cache_files_are_private_to_the_user_whatever_the_umask(
    tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text("value: a\n")
    previous = os.umask(0o022)
    try:
        _read(tmp_path, path)
    finally:
        os.umask(previous)
    assert cache_file(tmp_path).stat().st_mode & 0o777 == 0o600
    assert (cache_dir / yaml_cache.CACHE_FOLDER).stat().st_mode & 0o777 == 0o700


def test_the_cache_holds_only_the_last_discoverys_files(tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    for value in ("aaa", "bbb", "ccc"):
        path.write_text(f"value: {value}\n")
        _read(tmp_path, path)
    entries = json.loads(cache_file(tmp_path).read_bytes().partition(b"\n")[2])
    assert [json.loads(e)[0][0] for e in entries.values()] == [{"value": "ccc"}]


def test_cache_files_unused_for_a_month_are_removed_when_one_is_written(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = cache_dir / yaml_cache.CACHE_FOLDER
    folder.mkdir(parents=True)
    old, recent, abandoned = folder / "old.json", folder / "recent.json", folder / ".tmp-1-x"
    for file in (old, recent, abandoned):
        file.write_text("{}")
    month_ago = time.time() - (yaml_cache.UNUSED_DAYS + 1) * 86400
    os.utime(old, (month_ago, month_ago))
    os.utime(abandoned, (month_ago, month_ago))
    path = tmp_path / "defs.yaml"
    path.write_text("value: aaa\n")
    _read(tmp_path, path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [recent.name, cache_file(tmp_path).name]
    )


_RACER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from defstate.loader.yaml_cache import YamlParseCache

    defs, own, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    files = sorted(defs.glob("*/defs.yaml"))
    for index in range(rounds):
        (defs / own / "defs.yaml").write_text(f"owner: {own}\\nround: {index}\\n")
        cache = YamlParseCache.for_defs_dir(defs)
        if index:  # written by this process or the other one, never damaged
            assert cache.known, "the cache file was missing or damaged"
        for path in files:
            loaded = cache.read(path)
            if path.parent.name == own:
                assert [d.value for d in loaded.documents] == [{"owner": own, "round": index}]
        cache.save()
    """
)


def test_two_processes_writing_the_cache_at_once_never_see_a_damaged_file(
    tmp_path: Path, cache_dir: Path
) -> None:
    defs = tmp_path / "defs"
    for own in ("a", "b"):
        (defs / own).mkdir(parents=True)
        (defs / own / "defs.yaml").write_text(f"owner: {own}\nround: -1\n")
    env = subprocess_env({"DEFSTATE_CACHE_DIR": str(cache_dir)})
    env.pop(CACHE_ENV, None)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(defs), own, "60"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for own in ("a", "b")
    ]
    for racer in racers:
        _, stderr = racer.communicate(timeout=120)
        assert racer.returncode == 0, stderr
    assert YamlParseCache.for_defs_dir(defs).known  # the last complete write stayed


_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=10),
        st.dates(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)


@settings(
    deadline=2000,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(_VALUES, min_size=1, max_size=3), flow=st.booleans())
def test_any_document_reads_the_same_from_the_cache(
    tmp_path: Path, values: list[object], flow: bool
) -> None:
    path = tmp_path / "prop.yaml"
    path.write_text(yaml.safe_dump_all(values, default_flow_style=flow, allow_unicode=True))
    fresh = read_yaml_file(path)
    _read(tmp_path, path)
    (cached,) = _read(tmp_path, path)
    _same(cached, fresh)


def test_a_defs_yaml_that_cannot_be_read_is_an_error_naming_it(
    make_project: ProjectFactory,
) -> None:
    root = make_project({"defs/good/defs.yaml": ENTRY})
    (root / "defs" / "gone").mkdir()
    (root / "defs" / "gone" / "defs.yaml").symlink_to(root / "nowhere.yaml")
    for _ in range(2):  # uncached, then with the good file cached
        result = discover_components(load_project_config(root))
        assert len(result.instances) == 1
        (problem,) = result.errors
        assert problem.location is not None
        assert problem.location.path == root / "defs" / "gone" / "defs.yaml"
        assert problem.message == "cannot read: No such file or directory"


def test_a_large_file_is_read_whole(tmp_path: Path, parsed: list[Path]) -> None:
    path = tmp_path / "defs.yaml"
    names = [f"table_{index:06d}" for index in range(20_000)]  # ~400 KB: many reads
    path.write_text(yaml.safe_dump({"tables": names}))
    assert path.stat().st_size > 4 * (1 << 16)
    for _ in range(2):
        (loaded,) = _read(tmp_path, path)
        assert loaded.documents[0].value == {"tables": names}
    assert parsed == [path]


_REPORT_IMPORTS = textwrap.dedent(
    """
    import json, sys
    from defstate.loader.discovery import discover_components
    from defstate.loader.project import load_project_config
    result = discover_components(load_project_config(sys.argv[1]))
    assert len(result.instances) == 2 and not result.errors, result
    print(json.dumps("yaml" in sys.modules))
    """
)


def test_a_discovery_whose_files_are_all_cached_does_not_import_pyyaml(
    make_project: ProjectFactory, cache_dir: Path
) -> None:
    root = make_project({"defs/a/defs.yaml": ENTRY, "defs/b/defs.yaml": ENTRY})
    env = subprocess_env({"DEFSTATE_CACHE_DIR": str(cache_dir)})
    env.pop(CACHE_ENV, None)

    def imports_yaml() -> bool:
        done = subprocess.run(
            [sys.executable, "-c", _REPORT_IMPORTS, str(root)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return bool(json.loads(done.stdout.splitlines()[-1]))

    assert imports_yaml()  # the first discovery parses
    assert not imports_yaml()
    (root / "defs" / "b" / "defs.yaml").write_text(ENTRY.replace("group: g", "group: x"))
    assert imports_yaml()  # a changed file is parsed


def test_the_stamp_follows_pyyamls_version_and_libyaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.machinery

    def fake_yaml(name: str, version: str, *extra: str) -> importlib.machinery.ModuleSpec:
        folder = tmp_path / name / "yaml"
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text(f"__version__ = {version!r}\n")
        for file in extra:
            (folder / file).write_text("")
        spec = importlib.machinery.ModuleSpec("yaml", None, origin=str(folder / "__init__.py"))
        spec.submodule_search_locations = [str(folder)]
        return spec

    specs = [
        fake_yaml("a", "6.0.1", "_yaml.cpython-311-x86_64-linux-gnu.so"),
        fake_yaml("b", "6.0.2", "_yaml.cpython-311-x86_64-linux-gnu.so"),
        fake_yaml("c", "6.0.2"),  # no libyaml
    ]
    stamps = []
    for spec in specs:
        monkeypatch.setattr(yaml_cache.importlib.util, "find_spec", lambda name, s=spec: s)
        stamps.append(yaml_cache._stamp.__wrapped__())
    assert None not in stamps and len(set(stamps)) == 3
    monkeypatch.setattr(yaml_cache.importlib.util, "find_spec", lambda name: specs[0])
    assert yaml_cache._stamp.__wrapped__() == stamps[0]  # the same PyYAML: the same stamp


def test_the_cache_holds_the_files_before_templates_never_a_variables_value(
    make_project: ProjectFactory, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_TEST_SECRET", "s3cr3t-value")
    root = make_project(
        {"defs/x/defs.yaml": ENTRY.replace("group: g", "group: '{{ env.CACHE_TEST_SECRET }}'")}
    )
    config = load_project_config(root)
    for _ in range(2):  # written, then read from the cache
        (instance,) = discover_components(config).instances
        assert instance.attributes["group"] == "s3cr3t-value"
    stored = cache_file(config.defs_dir).read_text()
    assert "{{ env.CACHE_TEST_SECRET }}" in stored and "s3cr3t-value" not in stored
