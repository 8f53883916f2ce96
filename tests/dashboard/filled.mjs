// Loads the broker's dashboard in Debian's headless Chromium and waits, up to WAIT_MS from the
// start of the page load, until every panel that history fills shows data: the 24 h cards hold
// numbers, a branch has a last green revision, the revisions x builders grid has cells and both
// charts have data points. Prints one JSON object on stdout (what each panel showed, and how long
// the page took to show it all); exits non-zero when a panel stayed empty or the page failed.
// Then, up to LIVE_MS more, until the panels live traffic fills show data too: the flaky list (the
// demo's test results are live only) and the derived events feed.
//
//   node filled.mjs URL WAIT_MS [SCREENSHOT.png] [LIVE_MS]
import { chromium } from "playwright-core";

const [url, waitArg, shot, liveArg] = process.argv.slice(2);
const waitMs = Number(waitArg);
const liveMs = Number(liveArg || 0);
const out = { errors: [] };

// Runs in the page: what each panel shows now, and which are still empty.
function panels() {
  const text = (id) => (document.getElementById(id)?.textContent || "").trim();
  const count = (sel) => document.querySelectorAll(sel).length;
  const p = {
    builds_24h: text("n-builds"),
    failure_rate: text("n-failrate"),
    queue_wait: text("n-wait"),
    pending: text("n-pending"),
    running: text("n-running"),
    last_green: [...document.querySelectorAll("#lastgreen tbody td.r0")].map((td) => td.textContent),
    lastgreen_rows: count("#lastgreen tbody tr"),
    matrix_cells: count("#matrix .cell"),
    trend_lines: count("#chart-trend polyline"),
    trend_points: count("#chart-trend circle"),
    step_bars: count("#chart-steps rect"),
    state_rows: count("#states tbody tr[data-state]"),
    flaky_rows: count("#flaky tbody tr[data-test]"),
    derived_items: count("#derived li[data-type]"),
    derived_types: [...new Set([...document.querySelectorAll("#derived li[data-type]")].map((li) => li.dataset.type))],
  };
  const empty = [];
  if (!(/^\d+$/.test(p.builds_24h) && Number(p.builds_24h) > 0)) empty.push("builds_24h");
  if (!/^\d+ %$/.test(p.failure_rate)) empty.push("failure_rate");
  if (!/^\d+(\.\d)? (s|min|h)$/.test(p.queue_wait)) empty.push("queue_wait");
  if (!p.last_green.length || p.last_green.some((r) => !/^[0-9a-f]{10}$/.test(r))) empty.push("last_green");
  if (!p.matrix_cells) empty.push("matrix");
  if (p.trend_lines < 2 || p.trend_points < 4) empty.push("trend_chart"); // both lines, several hours
  if (!p.step_bars) empty.push("steps_chart");
  if (!p.state_rows) empty.push("builder_state");
  p.empty = empty;
  return p;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") out.errors.push(m.text()); });
  const t0 = performance.now();
  await page.goto(url, { waitUntil: "load", timeout: waitMs });
  try {
    await page.waitForFunction(`(${panels})().empty.length === 0`, null,
      { timeout: Math.max(1, waitMs - (performance.now() - t0)), polling: 100 });
    out.filled_ms = Math.round(performance.now() - t0);
  } catch (e) {
    out.failure = "panels still empty after " + waitMs + " ms";
  }
  if (liveMs && !out.failure) {
    const t1 = performance.now();
    try {
      await page.waitForFunction(() => document.querySelectorAll("#flaky tbody tr[data-test]").length > 0 &&
        document.querySelectorAll("#derived li[data-type]").length > 0, null, { timeout: liveMs, polling: 250 });
      out.live_ms = Math.round(performance.now() - t1);
    } catch (e) {
      out.failure = "flaky list or derived feed still empty after " + liveMs + " ms more";
    }
  }
  out.panels = await page.evaluate(`(${panels})()`);
  if (shot) {
    // Every panel down to the charts, and the top of the live feed (which grows by the second).
    const bottom = await page.evaluate(() => {
      const feed = document.getElementById("feed").getBoundingClientRect();
      return Math.ceil(feed.top + window.scrollY + 160);
    });
    await page.screenshot({ path: shot, fullPage: true, clip: { x: 0, y: 0, width: 1400, height: bottom } });
  }
} catch (e) {
  out.failure = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
process.exit(out.failure ? 1 : 0);
