// ember-server driven by the official openai npm package: models.list, a chat completion, the same one streamed,
// a completion checked against llama.cpp's greedy text for stories260K, and a wrong API key.
// Usage: node openai-client.test.mjs SERVER_BIN MODEL.gguf (run.sh; the reference JSON sits beside the model).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';

const [serverBin, modelPath] = process.argv.slice(2);
if (!serverBin || !modelPath) {
  console.error('usage: node openai-client.test.mjs SERVER_BIN MODEL.gguf');
  process.exit(2);
}
const apiKey = 'node-test-key';
const reference = JSON.parse(
  readFileSync(join(dirname(modelPath), 'reference', 'stories260K.llama-cpp.json'), 'utf8'));

let server;
let client;
let modelId;

// Starts ember-server on a free loopback port and resolves with the port once the log says it is ready.
function startServer() {
  return new Promise((resolve, reject) => {
    server = spawn(serverBin, ['-m', modelPath, '--host', '127.0.0.1', '--port', '0', '-np', '2', '-c', '2048',
      '-t', '1', '--api-key', apiKey], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    let port = 0;
    const timer = setTimeout(() => reject(new Error(`ember-server not ready after 30 s:\n${log}`)), 30000);
    server.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) port = Number(m[1]);
      if (port && log.includes('; ready')) {
        clearTimeout(timer);
        resolve(port);
      }
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ember-server exited with ${code}:\n${log}`));
    });
  });
}

before(async () => {
  const port = await startServer();
  client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey, maxRetries: 0 });
});

after(() => {
  if (server) server.kill('SIGTERM');
});

const chatRequest = () => ({
  model: modelId,
  messages: [{ role: 'system', content: 'You tell short stories.' },
    { role: 'user', content: 'Tell me about a cat.' }],
  max_tokens: 24,
  temperature: 0,
  seed: 7,
});

test('models.list names the model', async () => {
  const list = await client.models.list();
  assert.equal(list.data.length, 1);
  modelId = list.data[0].id;
  assert.equal(modelId, 'stories260K.gguf');
  assert.equal(list.data[0].object, 'model');
});

let chatText;

test('chat completion', async () => {
  const r = await client.chat.completions.create(chatRequest());
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  chatText = r.choices[0].message.content;
  assert.equal(typeof chatText, 'string');
  assert.ok(chatText.length > 0);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 10);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 24);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('streamed chat completion gives the same text', async () => {
  const stream = await client.chat.completions.create({ ...chatRequest(), stream: true });
  let text = '';
  let finish = null;
  let chunks = 0;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    chunks++;
    const c = chunk.choices[0];
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.ok(chunks > 2);
  assert.equal(text, chatText);
  assert.ok(['stop', 'length'].includes(finish));
});

test('completion equals llama.cpp greedy text', async () => {
  const c = reference.cases[0];
  const r = await client.completions.create({ model: modelId, prompt: c.prompt, max_tokens: 64, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, c.greedy_text);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 64);
});

test('a wrong API key is an AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL: client.baseURL, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});
