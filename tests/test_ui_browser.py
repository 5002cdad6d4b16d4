"""The web UI in a real headless Chromium (Debian's package, driven by Playwright).

The example project (examples/quickstart, its state moved to versioned storage on file:// so
refreshes make new versions) is served by ``defstate serve``; the tests search its assets,
open a lineage, refresh a key and watch the new version appear, diff two versions and see the
Health view update live on reload. Screenshots are kept under ``test-artifacts/screenshots``
(git-ignored; the path is printed at the end of the run).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, run_cli
from test_server import Server

# a machine without chromium installs it in the first test's setup (apt-get, a minute or two)
pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
KEY = "Catalog[warehouse]"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright", reason="playwright is not installed (dev extra)")
    from bench.browser import find_chromium

    path, why = find_chromium(install=True)
    if path is None:
        pytest.skip(f"no headless browser: {why}")
    return path


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the quickstart example with versioned state, a schedule and one broken entry."""
    base = tmp_path_factory.mktemp("ui")
    root = base / "quickstart"
    shutil.copytree(REPO_ROOT / "examples" / "quickstart", root)
    defs = root / "quickstart/defs/warehouse/defs.yaml"
    defs.write_text(defs.read_text().replace("LOCAL_FILESYSTEM", "VERSIONED_STATE_STORAGE"))
    with (root / "pyproject.toml").open("a") as pyproject:
        pyproject.write(
            f'\n[tool.defstate.state_storage]\nurl = "file://{base}/store"\n'
            '\n[tool.defstate.schedules.nightly]\ncron = "0 3 * * *"\n'
            f'keys = ["{KEY}"]\n'
        )
    env = {"DEFSTATE_CACHE_DIR": str(base / "cache")}
    refreshed = run_cli("state", "refresh", cwd=root, env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    broken = root / "quickstart/defs/broken/defs.yaml"
    broken.parent.mkdir()
    broken.write_text(
        "type: quickstart.components.CatalogComponent\nattributes:\n"
        "  catalog_path: missing.json\n  group_nam: typo\n"
    )
    yield root, env


@pytest.fixture(scope="module")
def served(example: tuple[Path, dict[str, str]]) -> Iterator[Server]:
    root, env = example
    server = Server(["serve"], cwd=root, env=env)
    yield server
    if server.stop() != 0:  # pragma: no cover - reported by the assertion below
        raise AssertionError(f"serve did not stop cleanly: {server.seen}")


@pytest.fixture(scope="module")
def browser(
    chromium: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Any]:
    from bench.browser import browser_context

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with browser_context(chromium, tmp_path_factory.mktemp("chromium-profile")) as context:
        context.set_default_timeout(TIMEOUT_MS)
        yield context
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"browser screenshots: {SCREENSHOTS}")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _keys(page: Any) -> list[str]:
    keys: list[str] = page.eval_on_selector_all(".asset", "nodes => nodes.map(n => n.dataset.key)")
    return keys


def test_assets_search_and_lineage(served: Server, page: Any) -> None:
    page.goto(served.url + "/#/assets")
    page.wait_for_selector("#summary")
    assert page.text_content("#summary").startswith("5 of 5 assets")
    assert "warehouse" in page.text_content(".section .group")
    assert "quickstart/defs/warehouse/defs.yaml" in page.text_content(".section .component")
    assert _keys(page)[0] == "marts/revenue_by_customer"
    _shot(page, "assets")

    page.fill("#search", "staging")
    page.wait_for_function("document.querySelector('#summary')?.textContent.includes('staging')")
    assert _keys(page) == ["staging/customers", "staging/orders"]
    assert page.text_content("#summary").startswith("2 of 5 assets")

    page.fill("#search", "+key:staging/orders and owner:team:ingest")  # the selection syntax
    page.wait_for_function("document.querySelector('#summary')?.textContent.includes('selected')")
    assert _keys(page) == ["raw/orders"]
    page.fill("#search", "key:staging/orders and")
    page.wait_for_selector("#error")
    assert "invalid selection at column" in page.text_content("#error")

    page.fill("#search", "orders")
    page.wait_for_function("document.querySelector('#summary')?.textContent.includes('orders')")
    page.click('.asset[data-key="staging/orders"] button.key')  # details: deps, metadata
    assert "raw/orders" in page.text_content('.asset[data-key="staging/orders"] .detail')
    _shot(page, "assets-search")

    page.click('.asset[data-key="staging/orders"] .lineage-link')
    page.wait_for_selector('svg.dag g.node.focus[data-key="staging/orders"]')
    nodes = page.eval_on_selector_all(
        "svg.dag g.node", "nodes => nodes.map(n => n.dataset.key).sort()"
    )
    assert nodes == ["marts/revenue_by_customer", "raw/orders", "staging/orders"]
    assert page.locator("svg.dag path.edge").count() == 2
    _shot(page, "lineage")
    # a click on a node centres the view on it
    page.click('svg.dag g.node[data-key="marts/revenue_by_customer"]')
    page.wait_for_selector('svg.dag g.node.focus[data-key="marts/revenue_by_customer"]')
    assert page.locator("svg.dag g.node").count() == 5


def test_refresh_a_key_shows_the_new_version_and_its_diff(
    served: Server, example: tuple[Path, dict[str, str]], page: Any
) -> None:
    root, _ = example
    page.goto(served.url + "/#/state")
    row = f'#state-table tr[data-key="{KEY}"]'
    page.wait_for_selector(row)
    before = page.text_content(f"{row} .in-use")
    assert before == page.text_content(f"{row} .latest") and "current" in page.text_content(row)

    catalog = root / "external/catalog.json"
    tables = json.loads(catalog.read_text())
    tables["tables"].append({"schema": "marts", "name": "orders_daily", "owner": "team:bi"})
    catalog.write_text(json.dumps(tables))
    page.click(f"{row} button.action")
    page.wait_for_function(
        f"(before) => (document.querySelector('{row} .in-use')?.textContent ?? before) !== before",
        arg=before,
        timeout=60_000,
    )
    after = page.text_content(f"{row} .in-use")
    assert after == page.text_content(f"{row} .latest") and after != before
    notice = page.text_content("#notice")  # the action's answer, or the reload it caused
    assert "done" in notice or "reloaded" in notice, notice
    _shot(page, "state")

    page.click(f"{row} button.link")  # the key: its history
    page.wait_for_selector("#versions tbody tr:nth-child(2)")
    assert page.locator("#versions tbody tr").count() == 2
    assert page.locator("#records tbody tr").first.text_content().count("ui") >= 1
    page.click("#diff-button")
    page.wait_for_selector("#diff li.added")
    assert page.text_content("#diff li.added") == "+ marts/orders_daily"
    _shot(page, "state-history-diff")
    assert "marts/orders_daily" in [a["key"] for a in served.get("/defs")["assets"]]


def test_health_shows_problems_schedules_and_updates_live(served: Server, page: Any) -> None:
    page.goto(served.url + "/#/health")
    page.wait_for_selector("#problems li")
    problem = page.text_content("#problems")
    assert problem.startswith("quickstart/defs/broken/defs.yaml:4")  # relative to the project
    assert "group_nam" in problem
    assert "nightly" in page.text_content("#schedules")
    assert "0 3 * * *" in page.text_content("#schedules")
    page.wait_for_selector(".live.on")
    generation = int(page.evaluate("document.body.dataset.generation"))
    # a reload by someone else (a deploy hook, say): the open page hears of it
    request = urllib.request.Request(served.url + "/reload?wait=1", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
    page.wait_for_function(
        f"document.body.dataset.generation === '{generation + 1}'", timeout=TIMEOUT_MS
    )
    page.wait_for_function(
        f"document.querySelector('#health-table')?.textContent.includes('{generation + 1}')"
    )
    _shot(page, "health")
