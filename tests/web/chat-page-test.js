#!/usr/bin/env node
// Headless Chromium test of ember-server's chat page (apps/server/web/index.html), driven by playwright-core.
// Starts a real ember-server on a free loopback port and runs one case against it:
//   chat      send with Enter, watch the answer stream in, stop it, regenerate, Shift+Enter, reload, reopen
//   markdown  markdown in model output becomes headings, lists, code blocks, tables and safe links
//   escape    HTML in model output, user text and stored conversations stays text; the served page has no HTML sinks
//   api-key   a server started with --api-key: 401 shown, then the key from Settings is sent and works
// Usage: node chat-page-test.js --server BIN --model GGUF --page HTML --out DIR CASE
// Exits 77 (ctest: skipped) when Chromium or playwright-core is missing.
"use strict";
const child_process = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");

const SKIP = 77;
const CHROMIUM = process.env.EMBER_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

function parse_args(argv) {
  const opts = { cases: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (["--server", "--model", "--page", "--out"].includes(a)) opts[a.slice(2)] = argv[++i];
    else opts.cases.push(a);
  }
  for (const k of ["server", "model", "page", "out"]) {
    if (!opts[k]) throw new Error("chat-page-test: missing --" + k);
  }
  if (opts.cases.length !== 1) throw new Error("chat-page-test: expected one case, found " + opts.cases.length);
  return opts;
}

let checks = 0;
function check(cond, what, found) {
  if (!cond) throw new Error("FAILED: " + what + (found !== undefined ? " (found: " + JSON.stringify(found) + ")" : ""));
  checks++;
  console.log("ok - " + what);
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

function free_port() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

// Starts ember-server and waits for GET /health; its output goes to <out>/<case>-server.log.
async function start_server(opts, name, extra_args) {
  const port = await free_port();
  const log_path = path.join(opts.out, name + "-server.log");
  const log = fs.openSync(log_path, "w");
  const args = ["-m", opts.model, "--host", "127.0.0.1", "--port", String(port)].concat(extra_args || []);
  console.log("starting: " + opts.server + " " + args.join(" "));
  const proc = child_process.spawn(opts.server, args, { stdio: ["ignore", log, log] });
  let exited = null;
  proc.on("exit", (code, signal) => { exited = { code, signal }; });
  const base = "http://127.0.0.1:" + port;
  const tail = () => fs.readFileSync(log_path, "utf8").slice(-2000);
  for (const t0 = Date.now(); Date.now() - t0 < 60000; await sleep(100)) {
    if (exited) throw new Error("ember-server exited (" + JSON.stringify(exited) + ") before it answered /health:\n" + tail());
    try {
      const res = await fetch(base + "/health");
      if (res.ok) return { proc, base, tail };
    } catch (e) {
      // not listening yet
    }
  }
  proc.kill("SIGKILL");
  throw new Error("ember-server did not answer GET /health within 60 s:\n" + tail());
}

async function stop_server(server) {
  if (server.proc.exitCode !== null || server.proc.signalCode !== null) return;
  const gone = new Promise(r => server.proc.on("exit", r));
  server.proc.kill("SIGTERM");
  const timer = setTimeout(() => server.proc.kill("SIGKILL"), 5000);
  await gone;
  clearTimeout(timer);
}

// A page in a fresh Chromium profile that records every request and every console error.
async function open_browser(chromium, opts, name) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ember-web-" + name + "-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 800 },
  });
  const page = context.pages()[0] || await context.newPage();
  const log = { requests: [], completions: [], errors: [] };
  page.on("request", r => {
    log.requests.push(r.url());
    if (r.url().endsWith("/v1/chat/completions")) log.completions.push({ body: r.postDataJSON(), headers: r.headers() });
  });
  page.on("console", m => { if (m.type() === "error") log.errors.push(m.text()); });
  page.on("pageerror", e => log.errors.push("page error: " + e.message));
  page.on("dialog", d => d.accept());
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, log, close };
}

// Polls fn in the page until it returns a truthy value.
async function wait_for(page, what, fn, arg, timeout_ms) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: timeout_ms || 30000, polling: 50 });
  } catch (e) {
    throw new Error("FAILED: timed out waiting for " + what);
  }
}

const assistant_texts = page => page.$$eval("#message-list .message.assistant .message-body", ns => ns.map(n => n.textContent));
const streaming = page => page.evaluate(() => !document.getElementById("stop").hidden);

async function set_field(page, selector, value) {
  await page.fill(selector, String(value));
  await page.dispatchEvent(selector, "change");
}

// ---- cases ----------------------------------------------------------------------------------------------------

async function case_chat(chromium, opts) {
  const server = await start_server(opts, "chat");
  const b = await open_browser(chromium, opts, "chat");
  const { page, log } = b;
  try {
    await page.goto(server.base + "/");
    check((await page.title()) === "ember chat", "GET / serves the chat page");
    await wait_for(page, "the server status", () => document.getElementById("server-status").className === "ok");
    await wait_for(page, "the model name from /v1/models", () => document.getElementById("model-name").textContent.trim() !== "");
    check(await page.isVisible("#empty-state"), "a new page shows the empty state");

    await set_field(page, "#system-prompt", "You are a storyteller.");
    await set_field(page, "#temperature", 0);
    await set_field(page, "#top-p", 0.9);
    await set_field(page, "#max-tokens", 200);
    await set_field(page, "#seed", 42);

    // Slow the network down so the answer arrives over seconds: the stream can be watched and stopped.
    const cdp = await b.context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions",
      { offline: false, latency: 0, downloadThroughput: 2500, uploadThroughput: -1 });

    await page.click("#prompt");
    await page.keyboard.type("Once upon a time");
    await page.keyboard.press("Enter");
    await wait_for(page, "the user message", () => document.querySelectorAll("#message-list .message.user").length === 1);
    check((await page.inputValue("#prompt")) === "", "Enter sends and clears the input");

    // Watch the answer grow while the stop button is showing.
    const lengths = new Set();
    for (const t0 = Date.now(); Date.now() - t0 < 30000 && lengths.size < 3; await sleep(50)) {
      const texts = await assistant_texts(page);
      if (!(await streaming(page))) break;
      if (texts.length === 1 && texts[0].length > 0) lengths.add(texts[0].length);
    }
    check(lengths.size >= 3, "the answer appears piece by piece while streaming", [...lengths]);
    check(await page.isVisible("#stop"), "the stop button shows while streaming");
    check(!(await page.isVisible("#regenerate")), "regenerate is hidden while streaming");
    await page.screenshot({ path: path.join(opts.out, "chat-streaming.png") });

    await page.click("#stop");
    await wait_for(page, "the stop button to go", () => document.getElementById("stop").hidden);
    const stopped_text = (await assistant_texts(page))[0];
    const meta = await page.textContent("#message-list .message.assistant .message-meta");
    check(/stopped/.test(meta), "a stopped answer says so", meta);
    check(/tok\/s/.test(meta), "a stopped answer shows tokens/s", meta);
    await sleep(700);
    check((await assistant_texts(page))[0] === stopped_text, "the answer stops growing after stop");
    check(stopped_text.length > 0, "the partial answer is kept");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

    const first = log.completions[0];
    check(first && first.body.stream === true, "the request asks for a stream");
    check(JSON.stringify(first.body.messages) === JSON.stringify([
      { role: "system", content: "You are a storyteller." }, { role: "user", content: "Once upon a time" }]),
      "the request carries the system prompt and the message", first.body.messages);
    check(first.body.temperature === 0 && first.body.top_p === 0.9 && first.body.max_tokens === 200 && first.body.seed === 42,
      "the request carries temperature, top_p, max_tokens and seed", first.body);
    check(!first.headers.authorization, "no Authorization header without an API key");
    const health = await fetch(server.base + "/health");
    check(health.ok, "the server is healthy after the client went away");

    // Regenerate at full speed: the answer is replaced and runs to its end.
    await set_field(page, "#max-tokens", 40);
    await page.click("#regenerate");
    await wait_for(page, "the regenerated answer to finish", () => {
      const m = document.querySelectorAll("#message-list .message.assistant");
      return document.getElementById("stop").hidden && m.length === 1 && !m[0].classList.contains("streaming");
    }, undefined, 60000);
    check(log.completions.length === 2, "regenerate sends one request", log.completions.length);
    check(JSON.stringify(log.completions[1].body.messages) === JSON.stringify(first.body.messages),
      "regenerate resends the same conversation without the old answer", log.completions[1].body.messages);
    const texts = await assistant_texts(page);
    check(texts.length === 1 && texts[0].length > 0, "regenerate replaces the answer", texts.length);
    const meta2 = await page.textContent("#message-list .message.assistant .message-meta");
    check(/\d+ tokens? · [\d.]+ tok\/s/.test(meta2) && !/stopped/.test(meta2), "a finished answer shows tokens and tok/s", meta2);
    check((await page.$$("#message-list .message.error")).length === 0, "no error message", await page.textContent("#message-list"));

    // Shift+Enter is a newline, Enter sends.
    await page.click("#prompt");
    await page.keyboard.type("The end");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("or is it?");
    check((await page.inputValue("#prompt")) === "The end\nor is it?", "Shift+Enter adds a newline without sending");
    check(log.completions.length === 2, "Shift+Enter sent nothing");
    await page.keyboard.press("Enter");
    await wait_for(page, "the second answer", () => document.querySelectorAll("#message-list .message.assistant").length === 2 &&
      document.getElementById("stop").hidden, undefined, 60000);
    const second = log.completions[2].body.messages;
    check(second.length === 4 && second[2].role === "assistant" && second[2].content === texts[0] &&
      second[3].content === "The end\nor is it?", "the next turn sends the history and the two-line message", second);
    const other = log.requests.filter(u => !u.startsWith(server.base + "/") && !u.startsWith("data:"));
    check(other.length === 0, "the page fetches nothing but the server's own URLs", other);
    await page.screenshot({ path: path.join(opts.out, "chat-done.png") });

    // Reload: the conversation is in the list and opens with its messages.
    await page.reload();
    await wait_for(page, "the conversation list", () => document.querySelectorAll("#conversation-list li").length === 1);
    const title = await page.textContent("#conversation-list li .conv-title");
    check(title === "Once upon a time", "after reload the conversation is listed by its first message", title);
    await page.click("#new-chat");
    check(await page.isVisible("#empty-state"), "New chat shows an empty conversation");
    await page.click("#conversation-list li .conv-open");
    const roles = await page.$$eval("#message-list .message", ns => ns.map(n => n.classList[1]));
    check(JSON.stringify(roles) === JSON.stringify(["user", "assistant", "user", "assistant"]),
      "the stored conversation opens with all its messages", roles);
    check((await assistant_texts(page))[0] === texts[0], "the stored answer text is the same");
    check(/tok\/s/.test(await page.textContent("#message-list .message.assistant .message-meta")),
      "the stored answer keeps its tokens/s");
    check((await page.inputValue("#seed")) === "42" && (await page.inputValue("#system-prompt")) === "You are a storyteller.",
      "settings survive the reload");
    await page.screenshot({ path: path.join(opts.out, "chat-reloaded.png") });

    await page.click("#conversation-list li .conv-delete");
    await wait_for(page, "the deletion", () => document.querySelectorAll("#conversation-list li").length === 0);
    check(await page.isVisible("#empty-state"), "deleting the open conversation leaves an empty one");
    check(log.errors.length === 0, "no console errors", log.errors);
  } finally {
    await b.close();
    await stop_server(server);
  }
}

// Serves text as the model's streamed answer, a few characters per event, without asking the model.
async function answer_with(page, text, timings) {
  await page.route("**/v1/chat/completions", route => {
    let body = "";
    for (let i = 0; i < text.length; i += 7) {
      const chunk = { id: "test", object: "chat.completion.chunk", created: 0, model: "test",
        choices: [{ index: 0, delta: { content: text.slice(i, i + 7) }, finish_reason: null }] };
      body += "data: " + JSON.stringify(chunk) + "\n\n";
    }
    body += "data: " + JSON.stringify({ id: "test", object: "chat.completion.chunk", created: 0, model: "test",
      choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: { prompt_tokens: 5, completion_tokens: 9 },
      timings }) + "\n\n";
    body += "data: [DONE]\n\n";
    route.fulfill({ status: 200, headers: { "Content-Type": "text/event-stream" }, body });
  });
}

async function send_message(page, text) {
  await page.fill("#prompt", text);
  await page.press("#prompt", "Enter");
  await wait_for(page, "the answer", () => document.querySelectorAll("#message-list .message.assistant").length > 0 &&
    document.getElementById("stop").hidden);
}

const MARKDOWN = [
  "# Title", "Some *emphasis*, **strong**, ~~gone~~ and `a < b` code.", "Second line of the same paragraph.",
  "", "- one", "- two", "  - nested", "", "3. three", "4. four", "", "> quoted **text**", "",
  "```python", "def f(x):", "    return x * 2  # *not emphasis*", "```", "",
  "| name | value |", "|------|------:|", "| a | `1` |", "", "---",
  "Read [the docs](https://example.com/docs?a=1&b=2) or https://example.org/x. Escaped \\*star\\*.",
].join("\n");

async function case_markdown(chromium, opts) {
  const server = await start_server(opts, "markdown");
  const b = await open_browser(chromium, opts, "markdown");
  const { page, log } = b;
  try {
    await page.goto(server.base + "/");
    await answer_with(page, MARKDOWN, { predicted_n: 9, predicted_ms: 72.9, predicted_per_second: 123.45 });
    await send_message(page, "Show me markdown");
    const got = await page.evaluate(() => {
      const body = document.querySelector("#message-list .message.assistant .message-body");
      const q = s => [...body.querySelectorAll(s)].map(n => n.textContent);
      return {
        h1: q("h1"), em: q("p em"), strong: q("strong"), del: q("del"), code: q("p > code"),
        p_br: body.querySelector("p").querySelectorAll("br").length,
        ul: q(":scope > ul > li").length, nested: q("ul ul > li"), ol: q("ol > li"),
        ol_start: body.querySelector("ol") && body.querySelector("ol").start, quote: q("blockquote strong"),
        pre: q("pre code"), lang: q(".code-lang"), pre_class: body.querySelector("pre code") && body.querySelector("pre code").className,
        th: q("th"), td: q("td"), td_code: q("td code"), hr: q("hr").length,
        align: [...body.querySelectorAll("td")].map(n => n.style.textAlign),
        links: [...body.querySelectorAll("a")].map(a => [a.textContent, a.getAttribute("href"), a.rel, a.target]),
        text: body.textContent,
      };
    });
    check(JSON.stringify(got.h1) === '["Title"]', "# makes a heading", got.h1);
    check(got.em.includes("emphasis") && got.strong.includes("strong") && JSON.stringify(got.del) === '["gone"]',
      "emphasis, strong and strikethrough", [got.em, got.strong, got.del]);
    check(JSON.stringify(got.code) === '["a < b"]', "inline code keeps its text", got.code);
    check(got.p_br === 1, "a newline inside a paragraph is a line break", got.p_br);
    check(got.ul === 2 && JSON.stringify(got.nested) === '["nested"]', "bullet list with a nested list", [got.ul, got.nested]);
    check(JSON.stringify(got.ol) === '["three","four"]' && got.ol_start === 3, "numbered list keeps its start", [got.ol, got.ol_start]);
    check(JSON.stringify(got.quote) === '["text"]', "block quote with inline markdown", got.quote);
    check(got.pre.length === 1 && got.pre[0] === "def f(x):\n    return x * 2  # *not emphasis*",
      "fenced code is shown verbatim", got.pre);
    check(JSON.stringify(got.lang) === '["python"]' && got.pre_class === "language-python", "code block names its language");
    check(JSON.stringify(got.th) === '["name","value"]' && JSON.stringify(got.td_code) === '["1"]', "table", [got.th, got.td]);
    check(JSON.stringify(got.align) === '["","right"]', "table columns keep their alignment", got.align);
    check(got.hr === 1, "--- is a rule");
    check(JSON.stringify(got.links) === JSON.stringify([
      ["the docs", "https://example.com/docs?a=1&b=2", "noopener noreferrer nofollow", "_blank"],
      ["https://example.org/x", "https://example.org/x", "noopener noreferrer nofollow", "_blank"]]),
      "links and bare URLs open in a new tab without an opener", got.links);
    check(got.text.includes("Escaped *star*."), "backslash escapes", got.text.slice(-40));
    const meta = await page.textContent("#message-list .message.assistant .message-meta");
    check(meta === "9 tokens \u00b7 123.5 tok/s \u00b7 " + meta.split(" \u00b7 ")[2] + " \u00b7 5 prompt tokens",
      "tokens from usage, tok/s from the server's timings", meta);
    await page.screenshot({ path: path.join(opts.out, "markdown.png"), fullPage: true });
    check(log.errors.length === 0, "no console errors", log.errors);
  } finally {
    await b.close();
    await stop_server(server);
  }
}

const EVIL = [
  'Hi <img src=x onerror="window.__pwned=1"> there',
  "<script>window.__pwned=2</script>",
  '<svg onload="window.__pwned=3"></svg><iframe src="javascript:window.__pwned=4"></iframe>',
  "[click me](javascript:window.__pwned=5) [data](data:text/html,<b>x</b>) <a href=\"javascript:1\">raw link</a>",
  "**<b>bold tag</b>** and `<img src=x onerror=window.__pwned=6>`",
  "```html", '<img src=x onerror="window.__pwned=7">', "```",
  "| <i>cell</i> | b |", "|---|---|", '| <img src=x onerror="window.__pwned=8"> | c |',
].join("\n");
const EVIL_USER = '<img src=x onerror="window.__pwned=9">look';

// Everything an attacker-controlled string could create, counted in the whole document.
function injected_elements() {
  const all = [...document.querySelectorAll("img, script, svg, iframe, object, embed, b, i, a[href^='javascript:'], a[href^='data:']")];
  const handlers = [...document.querySelectorAll("*")].filter(n => [...n.attributes].some(a => a.name.startsWith("on")));
  return { elements: all.filter(n => !(n.tagName === "SCRIPT" && n.parentNode === document.body)).map(n => n.outerHTML),
           scripts: document.scripts.length, handlers: handlers.length, pwned: window.__pwned };
}

async function check_escaped(page, when) {
  await sleep(300);  // an injected <img> would fire onerror by now
  const got = await page.evaluate(injected_elements);
  check(got.elements.length === 0 && got.handlers === 0 && got.scripts === 1,
    when + ": no element or handler was created from model or user text", got);
  check(got.pwned === undefined, when + ": no injected script ran", got.pwned);
  const text = await page.textContent("#message-list .message.assistant .message-body");
  for (const s of ['Hi <img src=x onerror="window.__pwned=1"> there', "<script>window.__pwned=2</script>",
    '<iframe src="javascript:window.__pwned=4">', "[click me](javascript:window.__pwned=5)", '<a href="javascript:1">raw link</a>',
    "<b>bold tag</b>", "<img src=x onerror=window.__pwned=6>", '<img src=x onerror="window.__pwned=7">', "<i>cell</i>"]) {
    check(text.includes(s), when + ": shown as text: " + s);
  }
  check((await page.textContent("#message-list .message.user .message-body")) === EVIL_USER, when + ": user text shown as text");
  check((await page.textContent("#conversation-list .conv-title")) === EVIL_USER, when + ": title shown as text");
  check((await page.textContent("#message-list .message.assistant strong")) === "<b>bold tag</b>",
    when + ": markdown around HTML still renders, the HTML stays text");
}

async function case_escape(chromium, opts) {
  const server = await start_server(opts, "escape");
  let b = null;
  try {
    // The served page is the file in the tree, with no HTML sinks, and its CSP admits exactly its script.
    const served = await (await fetch(server.base + "/")).text();
    const source = fs.readFileSync(opts.page, "utf8");
    check(served === source, "GET / serves " + opts.page + " unchanged");
    for (const sink of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
      "createContextualFragment", "DOMParser", "srcdoc", "setAttribute(\"on"]) {
      check(!source.includes(sink), "the page does not use " + sink);
    }
    const script = /<script>([\s\S]*?)<\/script>/.exec(source)[1];
    const hash = crypto.createHash("sha256").update(script, "utf8").digest("base64");
    check(source.includes("script-src 'sha256-" + hash + "'"),
      "the CSP names the script's hash (after editing the script, set it to 'sha256-" + hash + "')");

    b = await open_browser(chromium, opts, "escape");
    const { page, log } = b;
    await page.goto(server.base + "/");
    await answer_with(page, EVIL);
    await send_message(page, EVIL_USER);
    await check_escaped(page, "streamed");
    await page.screenshot({ path: path.join(opts.out, "escape.png"), fullPage: true });
    await page.reload();
    await wait_for(page, "the stored conversation", () => document.querySelectorAll("#message-list .message").length === 2);
    await check_escaped(page, "reloaded from storage");

    // Inline handlers are refused by the page's CSP even if some future code put markup in the page.
    await page.evaluate(() => {
      const d = document.createElement("div");
      d.setAttribute("onclick", "window.__pwned=10");
      document.body.appendChild(d);
      d.click();
    });
    check((await page.evaluate(() => window.__pwned)) === undefined, "the CSP blocks inline event handlers");
    check(log.errors.every(e => /Content Security Policy/.test(e)) && log.errors.length === 1,
      "the only console error is that blocked handler", log.errors);
  } finally {
    if (b) await b.close();
    await stop_server(server);
  }
}

async function case_api_key(chromium, opts) {
  const key = "test-key-" + crypto.randomBytes(6).toString("hex");
  const server = await start_server(opts, "api-key", ["--api-key", key]);
  const b = await open_browser(chromium, opts, "api-key");
  const { page, log } = b;
  try {
    const res = await fetch(server.base + "/v1/models");
    check(res.status === 401, "the server refuses /v1/models without the key", res.status);
    await page.goto(server.base + "/");
    check((await page.title()) === "ember chat", "the page loads without the key");
    await wait_for(page, "the key prompt", () => /API key/.test(document.getElementById("server-status").textContent));
    await set_field(page, "#max-tokens", 16);
    await page.fill("#prompt", "Hello");
    await page.press("#prompt", "Enter");
    await wait_for(page, "the error message", () => document.querySelectorAll("#message-list .message.error").length === 1);
    const err = await page.textContent("#message-list .message.error .message-body");
    check(/401/.test(err) && /API key/.test(err), "a 401 is shown with a hint about the key", err);
    check((await page.$$("#message-list .message.assistant")).length === 0, "no empty answer is left behind");

    await page.fill("#api-key", key);
    await page.dispatchEvent("#api-key", "change");
    await wait_for(page, "the model name", () => document.getElementById("model-name").textContent.trim() !== "");
    check((await page.textContent("#server-status")) === "server ready", "with the key the server is ready");
    await page.click("#regenerate");
    await wait_for(page, "the answer", () => document.querySelectorAll("#message-list .message.assistant").length === 1 &&
      document.getElementById("stop").hidden, undefined, 60000);
    check((await page.$$("#message-list .message.error")).length === 0, "regenerate drops the error and succeeds");
    const last = log.completions[log.completions.length - 1];
    check(last.headers.authorization === "Bearer " + key, "the key is sent as a bearer token");
    check(JSON.stringify(last.body.messages) === '[{"role":"user","content":"Hello"}]', "the error is not sent to the model",
      last.body.messages);
    await page.reload();
    check((await page.inputValue("#api-key")) === key, "the key is remembered");
    await page.screenshot({ path: path.join(opts.out, "api-key.png") });
    const unexpected = log.errors.filter(e => !/status of 401/.test(e));
    check(unexpected.length === 0, "no console errors besides the refused requests", unexpected);
  } finally {
    await b.close();
    await stop_server(server);
  }
}

const CASES = { chat: case_chat, markdown: case_markdown, escape: case_escape, "api-key": case_api_key };

async function main() {
  const opts = parse_args(process.argv.slice(2));
  const run = CASES[opts.cases[0]];
  if (!run) throw new Error("chat-page-test: unknown case " + opts.cases[0] + ", expected one of " + Object.keys(CASES).join(", "));
  if (!fs.existsSync(CHROMIUM)) {
    console.log("SKIP: " + CHROMIUM + " not found (apt-get install chromium, or set EMBER_CHROMIUM)");
    return SKIP;
  }
  let chromium;
  try {
    ({ chromium } = require("playwright-core"));
  } catch (e) {
    console.log("SKIP: playwright-core not installed (run npm ci in " + __dirname + ")");
    return SKIP;
  }
  fs.mkdirSync(opts.out, { recursive: true });
  await run(chromium, opts);
  console.log(checks + " passed, 0 failed");
  return 0;
}

main().then(code => { process.exitCode = code; }, e => {
  console.error(e.stack || String(e));
  console.log(checks + " passed, 1 failed");
  process.exit(1);
});
