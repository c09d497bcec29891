// Our browser relay client (clients/js/relay-client.js) in Node, scripted over
// stdin/stdout so that Python tests can drive it (see tests/test_relay_js.py).
//
// Protocol: one JSON command per input line, one JSON reply per output line.
// Every reply echoes the command's "id"; a failed command replies {"id", "error"}.
// A relay error reply is not a failure of the command: it answers
// {"ok": false, "code", "message"}. Commands run concurrently; every wait is bounded.
//
//   {"cmd":"connect","url":"ws://h:p/","batch":false,"backoff":{...},"timeout_ms":5000}
//        -> {"ok":true,"welcome":{...},"protocol":"inkwire.batch"|""}
//           | {"ok":false,"code":"DISCONNECTED","closeCode":4001,"message":"..."}
//   {"cmd":"request","event":"get_adapter_status","data":{...},"timeout_ms":5000}
//        -> {"ok":true,"data":{...}} | {"ok":false,"code":"NOT_FOUND","message":"..."}
//   {"cmd":"subscribe","channel":"adapter:a1"} / {"cmd":"unsubscribe","channel":"..."}
//        -> {"ok":true,"data":{...}} | {"ok":false,"code",...}
//   {"cmd":"wait_events","count":3,"timeout_ms":5000}
//        -> {"ok":true,"events":[...]} every event received so far, once there are `count`
//   {"cmd":"iterate","count":3,"timeout_ms":5000}
//        -> {"ok":true,"events":[...]} the next `count` events read with `for await`
//   {"cmd":"wait_opens","count":2,"timeout_ms":5000}
//        -> {"ok":true} once the client has been welcomed `count` times (1 + reconnects)
//   {"cmd":"state"} -> {"events","gaps","opens","closes","reconnecting","frames","batchedFrames","protocol"}
//   {"cmd":"close"} -> {"ok":true}, then the process exits (it also exits when stdin closes)

import readline from 'node:readline'
import WebSocket from 'ws'
import { RelayClient } from '../../clients/js/relay-client.js'

const DEFAULT_TIMEOUT_MS = 5000
const MAX_TIMEOUT_MS = 60000

let client = null
const events = []
const gaps = []
const closes = []
const reconnecting = []
let opens = 0
let frames = 0
let batchedFrames = 0
let changed = () => {}

const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const timeoutOf = (msg) => {
  const t = Number(msg.timeout_ms ?? DEFAULT_TIMEOUT_MS)
  return Math.max(0, Math.min(Number.isFinite(t) ? t : DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS))
}

// The `ws` constructor, counting frames as they arrive, so tests can see that
// batching really put several messages in one frame.
class CountingWebSocket extends WebSocket {
  constructor (...args) {
    super(...args)
    this.addEventListener('message', (message) => {
      frames += 1
      if (String(message.data).includes('\n')) batchedFrames += 1
    })
  }
}

// Resolves once predicate() holds (re-checked whenever the client reports something).
const until = (predicate, ms, what) => new Promise((resolve, reject) => {
  if (predicate()) return resolve()
  const previous = changed
  const timer = setTimeout(() => {
    reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
  }, ms)
  const check = () => {
    if (predicate()) {
      clearTimeout(timer)
      resolve()
    }
  }
  changed = () => { previous(); check() }
})

const notify = () => changed()

// Relay errors are answers, not failures of the command.
const answer = async (promise) => {
  try {
    return { ok: true, data: await promise }
  } catch (err) {
    if (err.code) return { ok: false, code: err.code, message: err.message }
    throw err
  }
}

const commands = {
  async connect (msg) {
    client = new RelayClient(msg.url, {
      WebSocket: CountingWebSocket,
      batch: Boolean(msg.batch),
      backoff: msg.backoff,
      token: msg.token,
      timeout: timeoutOf(msg)
    })
    client.on('event', (e) => { events.push(e); notify() })
    client.on('gap', (g) => { gaps.push(g); notify() })
    client.on('open', () => { opens += 1; notify() })
    client.on('close', (c) => { closes.push(c); notify() })
    client.on('reconnecting', (r) => { reconnecting.push(r); notify() })
    try {
      const welcome = await client.connect()
      return { ok: true, welcome, protocol: client._ws?.protocol ?? '' }
    } catch (err) {
      if (!err.code) throw err
      return { ok: false, code: err.code, closeCode: err.closeCode ?? null, message: err.message }
    }
  },
  async request (msg) {
    return answer(client.request(msg.event, msg.data ?? {}, { timeout: msg.timeout_ms }))
  },
  async subscribe (msg) {
    return answer(client.subscribe(msg.channel))
  },
  async unsubscribe (msg) {
    return answer(client.unsubscribe(msg.channel))
  },
  async wait_events (msg) {
    await until(() => events.length >= msg.count, timeoutOf(msg), `${msg.count} events (have ${events.length})`)
    return { ok: true, events }
  },
  async iterate (msg) {
    const got = []
    const loop = (async () => {
      for await (const e of client) {
        got.push(e)
        if (got.length >= msg.count) break
      }
    })()
    let timer
    const limit = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`iterate: ${got.length}/${msg.count} events`)), timeoutOf(msg))
    })
    try {
      await Promise.race([loop, limit])
    } finally {
      clearTimeout(timer)
    }
    return { ok: true, events: got }
  },
  async wait_opens (msg) {
    await until(() => opens >= msg.count, timeoutOf(msg), `${msg.count} opens (have ${opens})`)
    return { ok: true }
  },
  async state () {
    return {
      events, gaps, opens, closes, reconnecting, frames, batchedFrames,
      connected: client?.connected ?? false,
      protocol: client?._ws?.protocol ?? ''
    }
  },
  async close () {
    client?.close()
    return { ok: true }
  }
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    reply({ id: null, error: `not JSON: ${line}` })
    return
  }
  const handler = commands[msg.cmd]
  try {
    if (!handler) throw new Error(`unknown command ${msg.cmd}`)
    if (msg.cmd !== 'connect' && msg.cmd !== 'state' && !client) throw new Error('connect first')
    reply({ id: msg.id, ...(await handler(msg)) })
  } catch (err) {
    reply({ id: msg.id, error: String(err?.stack || err) })
  }
  if (msg.cmd === 'close') setTimeout(() => process.exit(0), 50)
})
rl.on('close', () => {
  client?.close()
  setTimeout(() => process.exit(0), 50)
})
