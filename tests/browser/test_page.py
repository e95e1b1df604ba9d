"""The screen-pop page in a real headless Chromium, against the whole server on the demo PBX.

Each test starts the server (tests/browser/harness.py, a child process) and
borrows a headless Chromium, reset between tests (conftest.py). Screenshots
go to $ASTTAPI_SCREENSHOTS or $TMPDIR/asttapi-browser-screenshots (the path
is printed; pytest -s shows it).
"""

from __future__ import annotations

import json
import time

import pytest

from . import chromium

_missing = chromium.missing()
if _missing:
    pytest.skip(f"browser tests skipped: {_missing}", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

TOKEN = "desk-secret-token"
ALICE = ("07700900100", None)  # no caller name from the trunk: the name comes from the sample CRM


def wait(driver, predicate, timeout: float = 15, what: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), message=what)


def until(predicate, timeout: float = 15, what: str = ""):
    """Poll a plain condition (the harness, not the page)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}")


def text(driver, css: str) -> str:
    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


def cards(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#card-list .card")


def page(driver, key: str):
    """``window.asttapiPage.KEY()``, or None while the page's script has not defined it yet
    (``get()`` may return before it has: asking through it then raised instead of waiting)."""
    return driver.execute_script(f"return window.asttapiPage ? window.asttapiPage.{key}() : null;")


def open_page(driver, server, lines: str = "line_1") -> None:
    driver.get(server.url + (f"#lines={lines}" if lines else ""))
    wait(driver, lambda d: page(d, "connected"), what="page connected")


def line_state(driver, line: str) -> str:
    return driver.execute_script(
        "const b = document.querySelector(`#line-list input[data-line='${arguments[0]}']`);"
        "return b ? b.closest('li').querySelector('.lstate').textContent : '';", line)


def line_open(driver, line: str = "line_1") -> None:
    wait(driver, lambda d: line_state(d, line) == "open", what=f"{line} open")


def shot(driver, shots, name: str) -> None:
    path = shots / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")


def no_console_errors(driver, expected: str | None = None) -> None:
    errors = [e for e in chromium.console_errors(driver) if not (expected and expected in e.get("message", ""))]
    assert errors == [], json.dumps(errors, indent=1)


# -- a newcomer's first run -------------------------------------------------------------


def test_first_run_the_logged_url_pops_a_demo_call_within_15_s(first_run_server, browser, shots):
    [url] = first_run_server.logged_urls
    assert url.endswith("/#lines=line_1,line_2,line_3"), url
    browser.get(url)
    wait(browser, lambda d: d.find_element(By.ID, "pop").is_displayed(), timeout=15, what="a demo call pops")
    pop = browser.find_element(By.ID, "pop").text
    shot(browser, shots, "first-run-desktop")
    wait(browser, lambda d: cards(d) and any(ch.isdigit() for ch in cards(d)[0].find_element(
        By.CSS_SELECTOR, ".number").text), what="caller number on the card")
    # The demo callers are all in the sample CRM or Outlook contacts.
    wait(browser, lambda d: cards(d) and cards(d)[0].find_element(By.CSS_SELECTOR, ".company").text,
         timeout=15, what="the contact's company on the card")
    assert pop
    no_console_errors(browser)


# -- loading, accessibility basics ------------------------------------------------------


def test_page_loads_without_console_errors_and_everything_has_a_label(server, browser, shots):
    open_page(browser, server)
    line_open(browser)
    assert browser.find_element(By.ID, "login").is_displayed() is False
    assert "in service" in browser.find_element(By.ID, "link").text
    # Every control has an accessible name (label, text or aria-label).
    unnamed = browser.execute_script("""
        return Array.from(document.querySelectorAll('input, select, button'))
          .filter(e => e.offsetParent !== null)
          .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.textContent.trim()))
          .map(e => e.outerHTML);""")
    assert unnamed == []
    # Keyboard: Tab from the top reaches the dial box, and the focus ring is visible.
    body = browser.find_element(By.TAG_NAME, "body")
    for _ in range(12):
        body.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("id") == "dial-number":
            break
    assert browser.switch_to.active_element.get_attribute("id") == "dial-number"
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    no_console_errors(browser)


def test_lines_by_keyboard_typed_closed_reopened_and_remembered(server, browser, shots):
    open_page(browser, server)
    line_open(browser)
    field = browser.find_element(By.ID, "line-name")
    field.send_keys("line_2" + Keys.ENTER)
    line_open(browser, "line_2")
    box = browser.find_element(By.CSS_SELECTOR, "#line-list input[data-line='line_2']")
    box.send_keys(Keys.SPACE)                                   # untick: lineClose
    wait(browser, lambda d: line_state(d, "line_2") == "closed", what="line_2 closed")
    assert browser.switch_to.active_element.get_attribute("data-line") == "line_2"  # focus kept
    browser.switch_to.active_element.send_keys(Keys.SPACE)      # tick again: lineOpen
    line_open(browser, "line_2")
    assert browser.switch_to.active_element.get_attribute("data-line") == "line_2"
    browser.get(server.url)                                     # no fragment: remembered
    wait(browser, lambda d: page(d, "connected"), what="page connected")
    line_open(browser, "line_1")
    line_open(browser, "line_2")
    no_console_errors(browser)


# -- login -------------------------------------------------------------------------------------


def test_login_wrong_token_then_right_token(login_server, browser, shots):
    browser.get(login_server.url)
    wait(browser, lambda d: d.find_element(By.ID, "login").is_displayed(), what="login form")
    assert "in service" in browser.find_element(By.ID, "link").text   # from hello, before any login
    browser.find_element(By.ID, "login-user").send_keys("desk")
    browser.find_element(By.ID, "login-token").send_keys("not-the-token" + Keys.ENTER)
    wait(browser, lambda d: "Wrong user name or token" in d.find_element(By.ID, "login-error").text,
         what="login error shown")
    assert browser.find_element(By.ID, "lines").is_displayed() is False
    shot(browser, shots, "login-wrong-token")

    browser.find_element(By.ID, "login-token").send_keys(TOKEN + Keys.ENTER)
    # The user's line names (no wildcards) are offered and opened.
    line_open(browser, "line_1")
    line_open(browser, "line_2")
    assert browser.find_element(By.ID, "login").is_displayed() is False
    assert "desk" in browser.find_element(By.ID, "conn").text
    # The token is in no URL and, without "remember", in no storage.
    assert TOKEN not in browser.current_url
    stored = browser.execute_script("return JSON.stringify([localStorage, sessionStorage])")
    assert TOKEN not in stored
    no_console_errors(browser)


def test_remembered_login_survives_a_reload_of_the_tab(login_server, browser, shots):
    browser.get(login_server.url)
    wait(browser, lambda d: d.find_element(By.ID, "login").is_displayed(), what="login form")
    browser.find_element(By.ID, "login-user").send_keys("desk")
    browser.find_element(By.ID, "login-token").send_keys(TOKEN)
    browser.find_element(By.ID, "login-remember").click()
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    line_open(browser, "line_1")
    browser.refresh()
    line_open(browser, "line_1")
    assert browser.find_element(By.ID, "login").is_displayed() is False
    assert TOKEN not in browser.execute_script("return JSON.stringify(localStorage)")


# -- a call pops -------------------------------------------------------------------------------


def test_demo_call_pops_with_caller_id_and_contact(server, browser, phone, shots):
    for driver in (browser, phone):
        open_page(driver, server)
        line_open(driver)
    server.play("inbound", caller=list(ALICE), ring=30, talk=1)
    for driver, name in ((browser, "desktop"), (phone, "phone-360")):
        wait(driver, lambda d: d.find_element(By.ID, "pop").is_displayed(), what="the pop")
        wait(driver, lambda d: "Alice Archer" in d.find_element(By.ID, "pop").text, what="contact in the pop")
        pop = driver.find_element(By.ID, "pop").text
        assert "07700900100" in pop and "Fabrikam plc" in pop
        [card] = cards(driver)
        assert "ringing" in card.get_attribute("class")
        assert "Alice Archer" in card.text and "07700900100" in card.text and "Fabrikam plc" in card.text
        link = card.find_element(By.CSS_SELECTOR, "a.crm")
        assert link.get_attribute("href") == "https://crm.example/contacts/1002"
        assert link.get_attribute("target") == "_blank"
        timer = card.find_element(By.CSS_SELECTOR, ".timer")
        wait(driver, lambda d: timer.text in ("0:01", "0:02", "0:03"), what="the ring timer runs")
        assert "Alice Archer" in driver.title
        # Nothing wider than the screen (a 360 px phone must not scroll sideways).
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name}: page is {overflow} px wider than the window"
        shot(driver, shots, f"pop-{name}")
        no_console_errors(driver)


def test_a_call_already_ringing_when_the_page_opens_pops_too(server, browser, shots):
    server.play("inbound", caller=list(ALICE), ring=30)
    time.sleep(0.5)
    open_page(browser, server)
    wait(browser, lambda d: d.find_element(By.ID, "pop").is_displayed(), what="the pop")
    assert len(cards(browser)) == 1
    assert page(browser, "pops") == 1


NOTIFICATION_STUB = """
window.__notes = []; window.__asked = 0;
class FakeNotification {
  constructor(title, opts) { this.tag = opts.tag; window.__notes.push({title, body: opts.body, tag: opts.tag}); }
  close() { window.__notes.push({closed: this.tag}); }
}
FakeNotification.permission = "default";
FakeNotification.requestPermission = () => {
  window.__asked += 1; FakeNotification.permission = "granted"; return Promise.resolve("granted");
};
window.Notification = FakeNotification;
"""


def test_the_pop_and_the_title_follow_the_calls_still_ringing(server, browser, shots):
    """Issue 23: once the first call is answered, the banner of the second no longer says "and 1 more
    ringing", and the tab title names the call that rings, not the one that talks."""
    open_page(browser, server, "line_1,line_3")
    line_open(browser, "line_1")
    line_open(browser, "line_3")
    server.play("inbound", caller=["0301234567", "Ext Caller"], ring=2.0, talk=30)
    wait(browser, lambda d: "0301234567" in d.find_element(By.ID, "pop").text, what="the first call pops")
    server.play("device_inbound", caller=["02079460958", None], ring=30, talk=1)
    wait(browser, lambda d: "02079460958" in d.find_element(By.ID, "pop").text
         and "and 1 more ringing" in d.find_element(By.ID, "pop").text, what="the second call pops over it")
    # The first call is answered on bob's phone: one call rings now, and it is the second.
    wait(browser, lambda d: any("talking" in c.text.lower() and "0301234567" in c.text for c in cards(d)),
         timeout=10, what="the first call talking")
    wait(browser, lambda d: "more ringing" not in d.find_element(By.ID, "pop").text, timeout=2,
         what="the banner forgets the answered call")
    pop = browser.find_element(By.ID, "pop").text
    assert "02079460958" in pop and "0301234567" not in pop, pop
    assert "02079460958" in browser.title or "Jane Doe" in browser.title, browser.title
    shot(browser, shots, "pop-after-the-other-call-was-answered")
    no_console_errors(browser)


def test_recent_calls_keep_name_and_number_readable_at_1280_px(server, browser, shots):
    """A long status ("answered elsewhere") must not squeeze the caller into a column one or two
    characters wide (issue 23); the entries are put in this tab's storage as the page keeps them."""
    open_page(browser, server)
    recent = [{"key": f"e:{n}", "handle": n, "epoch": "e", "kind": kind, "number": "0301234567",
               "name": "Ext Caller", "company": "Contoso Ltd", "at": 1_796_000_000_000 + n}
              for n, kind in enumerate(("answered elsewhere", "missed", "answered", "placed"))]
    browser.execute_script("sessionStorage.setItem('asttapi.recent', arguments[0]);", json.dumps(recent))
    browser.refresh()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent-list li")) == 4, what="recent calls")
    assert browser.execute_script("return window.innerWidth") >= 1200
    sizes = browser.execute_script("""
        return Array.from(document.querySelectorAll('#recent-list li')).map(li => {
          const box = (sel) => li.querySelector(sel).getBoundingClientRect();
          const line = parseFloat(getComputedStyle(li.querySelector('.what-name')).lineHeight) || 20;
          return {name: box('.what-name').width, nameHeight: box('.what-name').height,
                  detailHeight: box('.what-detail').height, line: line};
        });""")
    shot(browser, shots, "recent-calls-1280")
    for size in sizes:
        assert size["name"] >= 150, sizes  # "Ext Caller" and "0301234567 · Contoso Ltd" fit on one line
        assert size["nameHeight"] < 1.5 * size["line"] and size["detailHeight"] < 1.5 * size["line"], sizes
    assert "answered elsewhere" in text(browser, "#recent-list")


def test_notifications_asked_on_a_click_only_then_shown_and_esc_dismisses(server, browser, shots):
    # Headless Chromium has no notification centre: a stand-in records what the page does.
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NOTIFICATION_STUB})
    open_page(browser, server, lines="line_1,line_2")
    line_open(browser, "line_1")
    line_open(browser, "line_2")
    assert browser.execute_script("return window.__asked") == 0      # never without a gesture
    button = browser.find_element(By.ID, "notify")
    assert button.is_displayed()
    button.click()
    wait(browser, lambda d: not d.find_element(By.ID, "notify").is_displayed(), what="button gone once granted")
    assert browser.execute_script("return window.__asked") == 1

    server.play("inbound", caller=list(ALICE), ring=30)   # rings line_1 and line_2 (the demo's ring group)
    wait(browser, lambda d: any("Alice Archer" in (n.get("title") or "")
                                for n in d.execute_script("return window.__notes")), what="a notification")
    notes = browser.execute_script("return window.__notes")
    assert {n["tag"] for n in notes} == {notes[0]["tag"]}   # one call, one notification (updated in place)
    assert "07700900100" in notes[-1]["body"] and "Fabrikam plc" in notes[-1]["body"]
    [card] = cards(browser)                                 # one card for the call on both lines
    assert "line_1, line_2" in card.text
    assert page(browser, "pops") == 1

    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(browser, lambda d: not d.find_element(By.ID, "pop").is_displayed(), what="Esc dismisses the pop")
    assert len(cards(browser)) == 1 and "ringing" in cards(browser)[0].get_attribute("class")
    no_console_errors(browser)


# -- click-to-dial, drop, transfer ----------------------------------------------------------------


def test_click_to_dial_reaches_the_pbx_as_an_originate(server, browser, shots):
    open_page(browser, server)
    line_open(browser)
    browser.find_element(By.ID, "dial-number").send_keys("+49 (30) 555-1234" + Keys.ENTER)
    originate = until(lambda: server.actions("Originate"), what="an Originate at the PBX")
    assert len(originate) == 1
    assert originate[0]["Exten"] == "+49305551234"
    assert originate[0]["Channel"] == "Local/bob@phones"  # line_1's phone in the demo
    wait(browser, lambda d: len(cards(d)) == 1, what="a card for the placed call")
    wait(browser, lambda d: cards(d) and "outgoing" in cards(d)[0].text.lower(), what="card says outgoing")
    assert browser.find_element(By.ID, "pop").is_displayed() is False  # our own call does not pop
    shot(browser, shots, "dial-desktop")
    wait(browser, lambda d: len(cards(d)) == 0, timeout=30, what="the call ends")
    wait(browser, lambda d: "placed" in text(d, "#recent-list"), what="placed call in recent list")
    no_console_errors(browser)


def test_drop_hangs_up_a_ringing_call(server, browser, shots):
    open_page(browser, server)
    line_open(browser)
    server.play("inbound", caller=list(ALICE), ring=60)
    wait(browser, lambda d: len(cards(d)) == 1 and "ringing" in cards(d)[0].get_attribute("class"),
         what="ringing card")
    cards(browser)[0].find_element(By.CSS_SELECTOR, "button.drop").click()
    hangups = until(lambda: server.actions("Hangup"), what="a Hangup at the PBX")
    assert len(hangups) == 1
    wait(browser, lambda d: len(cards(d)) == 0, what="card gone")
    assert browser.find_element(By.ID, "pop").is_displayed() is False
    wait(browser, lambda d: "missed" in text(d, "#recent-list") and "Alice Archer" in text(d, "#recent-list"),
         what="missed call in recent list")
    no_console_errors(browser)


def test_blind_transfer_of_a_connected_call_from_the_keyboard(server, browser, shots):
    open_page(browser, server)
    line_open(browser)
    server.play("inbound", caller=list(ALICE), ring=0.3, talk=60)
    wait(browser, lambda d: len(cards(d)) == 1 and cards(d)[0].get_attribute("data-phase") == "talking",
         what="talking card")
    card = cards(browser)[0]
    card.find_element(By.CSS_SELECTOR, "button.xfer-toggle").send_keys(Keys.ENTER)
    field = browser.switch_to.active_element  # focus moved into the transfer box
    assert field.get_attribute("placeholder") == "Transfer to"
    shot(browser, shots, "transfer-desktop")
    field.send_keys("202" + Keys.ENTER)
    redirect = until(lambda: server.actions("Redirect") or server.actions("BlindTransfer"),
                     what="a transfer at the PBX")
    assert redirect[0]["Exten"] == "202"
    wait(browser, lambda d: "answered" in text(d, "#recent-list"), timeout=20, what="answered in recent list")


# -- the PBX link -------------------------------------------------------------------------------------


def test_pbx_link_lost_and_back_and_shown_on_connect(server, browser, phone, shots):
    open_page(browser, server)
    line_open(browser)
    wait(browser, lambda d: "in service" in d.find_element(By.ID, "link").text, what="in service")
    server.command("pbx", up=False)
    wait(browser, lambda d: "OUT OF SERVICE" in d.find_element(By.ID, "link").text, what="out of service")
    # A page opened while the link is down shows it at once, not at the next change.
    open_page(phone, server)
    line_open(phone)
    wait(phone, lambda d: "OUT OF SERVICE" in d.find_element(By.ID, "link").text, timeout=3,
         what="out of service on connect")
    shot(phone, shots, "link-down-phone-360")
    phone.find_element(By.ID, "dial-number").send_keys("201" + Keys.ENTER)
    wait(phone, lambda d: "link is down" in d.find_element(By.ID, "dial-error").text, what="dial refused")
    server.command("pbx", up=True)
    until(lambda: server.command("link"), timeout=40, what="the server reconnects to the PBX")
    for driver in (browser, phone):
        wait(driver, lambda d: "in service" in d.find_element(By.ID, "link").text, what="back in service")
    no_console_errors(browser)


# -- a network blip -----------------------------------------------------------------------------------


def test_dropped_websocket_resumes_without_duplicate_cards_or_pops(server, browser, shots):
    open_page(browser, server)
    line_open(browser)
    server.play("inbound", caller=list(ALICE), ring=60)                  # rings through the blip
    wait(browser, lambda d: len(cards(d)) == 1, what="first call's card")
    assert page(browser, "pops") == 1

    server.command("net", up=False)                                     # the network goes
    wait(browser, lambda d: "Offline" in d.find_element(By.ID, "conn").text, what="page notices")
    server.play("inbound", caller=["0301234567", "Ext Caller"], ring=0.2, talk=0.3,
                until_done=True)                                        # starts and ends meanwhile
    shot(browser, shots, "offline-desktop")
    server.command("net", up=True)                                      # and comes back

    wait(browser, lambda d: page(d, "replays").get("line_1") == "ok", timeout=40, what="resumed with seq/epoch")
    line_open(browser)
    wait(browser, lambda d: "answered" in text(d, "#recent-list"), what="the call from the blip is in recent")
    assert len(cards(browser)) == 1, [c.text for c in cards(browser)]
    assert "Alice Archer" in cards(browser)[0].text
    assert page(browser, "pops") == 1                                   # no re-pop, no pop of the ended call
    assert "Ext Caller" in text(browser, "#recent-list")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#recent-list li")) == 1
    assert browser.find_element(By.ID, "pop").is_displayed()            # the first still rings
    shot(browser, shots, "resumed-desktop")
    no_console_errors(browser, expected="WebSocket connection to")  # the blip itself is logged
