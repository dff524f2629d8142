"""What a person does in the browser: run a lab and watch it, cancel one, review a card, use the calculator."""
import json
import re

from tests.browser.conftest import assert_no_exception, wait_idle


def _plot_data(page) -> str:
    return page.evaluate("""() => JSON.stringify(Array.from(document.querySelectorAll('.js-plotly-plot'))
                                   .map(p => (p.data || []).map(d => [d.x, d.y])))""")


def test_calculator_inputs_update_the_chart(server, page):
    page.goto(f"{server['url']}/calculator")
    wait_idle(page)
    page.wait_for_selector(".js-plotly-plot")
    before = _plot_data(page)
    rank = page.locator('[data-testid="stSidebar"] [data-testid="stNumberInput"] input').first
    rank.fill("64")
    rank.press("Enter")
    wait_idle(page)
    page.wait_for_function("prev => JSON.stringify(Array.from(document.querySelectorAll('.js-plotly-plot'))"
                           ".map(p => (p.data || []).map(d => [d.x, d.y]))) !== prev", arg=before, timeout=30_000)
    assert _plot_data(page) != before
    assert_no_exception(page, "calculator after input")


def _due_and_new(page) -> int:
    values = page.locator('[data-testid="stMetricValue"]')
    return int(values.nth(0).inner_text()) + int(values.nth(1).inner_text())


def test_flashcard_review_persists_after_reload(server, page):
    """Reviewing one card 'Good' takes it out of what is to study now. It may be a new card or a due one
    (a failed drill earlier in the session makes its cards due), so count both."""
    page.goto(f"{server['url']}/flashcards")
    wait_idle(page)
    before = _due_and_new(page)
    page.get_by_role("button", name="Show answer").click()
    wait_idle(page)
    page.get_by_role("button", name=re.compile(r"^Good")).click()
    wait_idle(page)
    assert page.get_by_text(re.compile(r"Saved [a-z0-9-]+-\d{3}")).count() == 1
    page.reload()
    wait_idle(page)
    after = _due_and_new(page)
    assert after == before - 1, (before, after)


def _start_lab(page, server, url: str) -> None:
    page.goto(f"{server['url']}/{url}")
    wait_idle(page)
    page.get_by_role("button", name="Run the lab").first.click()
    # the live panel appears: queued, or a progress bar
    page.wait_for_selector('[data-testid="stProgress"], [data-testid="stAlertContentInfo"]', timeout=120_000)


def test_a_quick_lab_runs_end_to_end_with_a_live_chart(server, page):
    _start_lab(page, server, "nf4")
    page.wait_for_selector('[data-testid="stProgress"]', timeout=180_000)
    page.wait_for_selector(".js-plotly-plot", timeout=180_000)           # curves drawn while it runs
    page.get_by_text(re.compile(r"Run #\d+ finished in")).wait_for(timeout=600_000)
    assert_no_exception(page, "nf4 lab finished")
    from labs import jobs  # the page's result is the database's
    import os
    os.environ["PEFTLAB_DATA_DIR"] = str(server["data"])
    runs = jobs.list_runs("nf4", limit=1)
    assert runs and runs[0].status == "done", runs and runs[0].error
    assert json.dumps(runs[0].result)


def test_cancel_a_running_lab(server, page):
    _start_lab(page, server, "lora")
    page.wait_for_selector('[data-testid="stProgress"]', timeout=300_000)
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text(re.compile(r"Run #\d+ was cancelled")).wait_for(timeout=60_000)
    assert_no_exception(page, "lora lab cancelled")


def test_killed_worker_is_shown_failed_and_the_app_keeps_serving(server, page):
    import os
    import signal

    from labs import jobs

    os.environ["PEFTLAB_DATA_DIR"] = str(server["data"])
    _start_lab(page, server, "qlora")
    page.wait_for_selector('[data-testid="stProgress"]', timeout=300_000)
    run = jobs.list_runs("qlora", limit=1)[0]
    with jobs.connect() as con:
        pid = con.execute("SELECT worker_pid FROM runs WHERE id=?", (run.id,)).fetchone()[0]
    os.kill(pid, signal.SIGKILL)
    page.get_by_text(re.compile(rf"Run #{run.id} failed: .*SIGKILL")).wait_for(timeout=60_000)
    assert_no_exception(page, "qlora after the worker was killed")
    page.goto(f"{server['url']}/")
    wait_idle(page)
    assert_no_exception(page, "home after a killed worker")
