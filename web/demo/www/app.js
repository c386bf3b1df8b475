// The page: draws what the wasm client (portnet) reports and hands it what to send.
import init, { Chat } from './portnet_web_demo.js';

const $ = (id) => document.getElementById(id);

function setState(state) {
  $('state').textContent = state;
  $('state').dataset.state = state;
}

function show(text, note = false) {
  const item = document.createElement('li');
  item.textContent = text;
  if (note) item.className = 'note';
  $('messages').append(item);
  $('messages').scrollTop = $('messages').scrollHeight;
}

async function main() {
  await init();
  // The server tells which port its WebSocket listener got.
  const config = await (await fetch('config.json', { cache: 'no-store' })).json();
  const url = `ws://${location.hostname}:${config.ws_port}/chat`;
  $('server').textContent = url;
  setState('connecting');
  const chat = new Chat(url, (kind, text) => {
    if (kind === 'state') {
      setState(text);
      if (text !== 'connected') show(`(${text})`, true);
    } else {
      show(text, text.startsWith('* '));
    }
  });
  $('name').value = `guest-${Math.floor(Math.random() * 1000)}`;
  $('form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('text').value.trim();
    if (!text) return;
    const problem = chat.send(`${$('name').value.trim() || 'guest'}: ${text}`);
    $('problem').textContent = problem;
    if (!problem) $('text').value = '';
  });
}

main().catch((error) => {
  setState('error');
  $('problem').textContent = String(error);
});
