// Loads the broker's dashboard in Debian's headless Chromium, waits until it shows the view and
// holds its live stream, sends one event with the command given, and reports how long the page
// took to show it, then waits for the builder.broken those events cause in the derived feed and
// reads the flaky list. Prints one JSON object on stdout; exits non-zero when a step fails.
//
//   node check.mjs URL SCREENSHOT.png EVENT_ID EMIT_COMMAND_JSON
import { chromium } from "playwright-core";
import { spawnSync } from "node:child_process";

const [url, shot, eventId, emitJson] = process.argv.slice(2);
const out = { errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let page;
try {
  page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") out.errors.push(m.text()); });
  await page.goto(url, { waitUntil: "load", timeout: 20000 });
  await page.waitForSelector("#ready.ok", { state: "attached", timeout: 20000 });
  await page.waitForSelector('#feed[data-live="1"]', { state: "attached", timeout: 20000 });
  await page.waitForFunction(() => document.querySelectorAll("#running tbody td.num").length > 0 &&
    document.querySelectorAll("#matrix .cell").length > 0 &&
    document.querySelectorAll("#chart-steps rect").length > 0 &&
    document.querySelectorAll("#states tbody tr[data-state]").length > 0, null, { timeout: 20000 });
  const emit = JSON.parse(emitJson);
  const r = spawnSync(emit[0], emit.slice(1), { encoding: "utf8", timeout: 60000 });
  if (r.status !== 0) throw new Error("emit failed: " + r.stderr);
  const t0 = performance.now(); // the event is in Kafka now (emit waits for delivery reports)
  await page.waitForSelector(`#feed li[data-id="${eventId}"]`, { timeout: 10000 });
  out.latency_ms = performance.now() - t0;
  out.feed_text = await page.textContent(`#feed li[data-id="${eventId}"]`);
  out.pending_rows = await page.locator("#pending tbody tr").count();
  out.running_rows = await page.locator("#running tbody td.num").count();
  out.matrix_cells = await page.locator("#matrix .cell").count();
  out.step_bars = await page.locator("#chart-steps rect").count();
  out.trend_lines = await page.locator("#chart-trend polyline").count();
  out.lastgreen_rows = await page.locator("#lastgreen tbody tr").count();
  out.n_running = await page.textContent("#n-running");
  // the builder state panel shows the event's builder once the view has applied it (the states
  // read below are then the same the test asks REST for)
  await page.waitForFunction(() => [...document.querySelectorAll("#states tbody td:first-child")]
    .some((td) => td.textContent === "linux-x64-rel"), null, { timeout: 10000 });
  out.state_rows = await page.locator("#states tbody tr[data-state]").count();
  out.state_broken = await page.locator('#states tbody tr[data-state="broken"]').count();
  out.state_note = await page.textContent("#state-note");
  out.state_first = await page.textContent("#states tbody tr[data-state]");
  // the flaky list and the derived feed: the builder.broken the emitted builds caused, live
  await page.waitForSelector('#derived li[data-type="builder.broken"]', { timeout: 20000 });
  out.derived_text = await page.textContent('#derived li[data-type="builder.broken"]');
  out.derived_live = await page.getAttribute("#derived", "data-live");
  await page.waitForSelector("#flaky tbody tr[data-test]", { timeout: 10000 });
  out.flaky_rows = await page.locator("#flaky tbody tr[data-test]").count();
  out.flaky_first = await page.textContent("#flaky tbody tr[data-test] td");
  await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  out.failure = String(e);
  try { out.derived_note = await page.textContent("#derived-note"); } catch (e2) { /* no page */ }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
process.exit(out.failure ? 1 : 0);
