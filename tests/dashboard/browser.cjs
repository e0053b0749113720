// Drives a real headless Chromium for tests/dashboard/test_browser.py through playwright-core.
// Protocol: one JSON command per stdin line, one JSON answer per stdout line.
//   {"op":"goto","url":...} {"op":"click","selector":...} {"op":"eval","expr":...}
//   {"op":"fill","selector":...,"value":...} {"op":"select","selector":...,"value":...}
//   {"op":"tab"} (press Tab, answer the focused element) {"op":"screenshot","path":...} {"op":"close"}
const readline = require("readline");
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("requestfailed", (r) => consoleErrors.push(`request failed: ${r.url()}`));
  const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
  send({ ok: true, ready: true });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    try {
      let value = null;
      if (cmd.op === "goto") {
        const response = await page.goto(cmd.url, { waitUntil: "load" });
        value = { status: response.status(), url: page.url() };
      } else if (cmd.op === "click") {
        const [response] = await Promise.all([
          page.waitForNavigation({ waitUntil: "load" }),
          page.click(cmd.selector),
        ]);
        value = { status: response ? response.status() : null, url: page.url() };
      } else if (cmd.op === "fill") {
        await page.fill(cmd.selector, cmd.value);
        value = cmd.value;
      } else if (cmd.op === "select") {
        value = await page.selectOption(cmd.selector, cmd.value);
      } else if (cmd.op === "eval") {
        value = await page.evaluate(cmd.expr);
      } else if (cmd.op === "tab") {
        await page.keyboard.press("Tab");
        value = await page.evaluate(() => {
          const el = document.activeElement;
          const style = getComputedStyle(el);
          return { tag: el.tagName, text: el.textContent.trim(), outline: style.outlineStyle + " " + style.outlineWidth };
        });
      } else if (cmd.op === "screenshot") {
        await page.screenshot({ path: cmd.path, fullPage: true });
        value = cmd.path;
      } else if (cmd.op === "errors") {
        value = consoleErrors;
      } else if (cmd.op === "close") {
        send({ ok: true });
        break;
      } else {
        throw new Error(`unknown op ${cmd.op}`);
      }
      send({ ok: true, value });
    } catch (err) {
      send({ ok: false, error: String(err && err.stack || err) });
    }
  }
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

main().catch((err) => { process.stdout.write(JSON.stringify({ ok: false, error: String(err.stack || err) }) + "\n"); process.exit(1); });
