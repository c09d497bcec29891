// A stock y-websocket client (yjs + y-websocket + ws), scripted over stdin/stdout
// so that Python tests can drive it (see tests/test_interop_node.py).
//
// Protocol: one JSON command per input line, one JSON reply per output line.
// Every reply echoes the command's "id"; a failed command replies {"id", "error"}.
// Commands are handled concurrently, so a slow "wait_*" does not block others.
//
//   {"cmd":"connect","url":"ws://h:p/yjs","room":"r","clientName":"a","params":{},"timeout_ms":5000}
//        -> {"ok":"synced","clientID":123}          (after the provider emits "synced")
//   {"cmd":"set","key":"k","value":{...}}            set doc.getMap("elements")[k]
//   {"cmd":"set_many","entries":{"k":{...},...}}     several sets in one transaction
//   {"cmd":"delete","key":"k"}
//   {"cmd":"dump"}                                   -> {"elements":{...}}
//   {"cmd":"wait_key","key":"k","value":{...}?,"timeout_ms":5000}
//        -> {"ok":true,"value":...} once the key exists (and contains "value", if given)
//   {"cmd":"awareness","state":{...}|null}           set the local awareness state
//   {"cmd":"peers"}                                  -> {"peers":{clientID: state}} (others only)
//   {"cmd":"wait_peer","clientID":123,"present":true,"state":{...}?,"timeout_ms":5000}
//        -> {"ok":true,"peers":{...}} once that peer is present (with "state" contained
//           in its awareness state, if given), or absent when "present" is false
//   {"cmd":"disconnect"} / {"cmd":"reconnect","timeout_ms":5000} (reconnect waits for synced)
//   {"cmd":"close"}                                  destroy the provider, reply, exit
//
// The process also exits when stdin closes. Every wait is bounded.

import readline from 'node:readline'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const DEFAULT_TIMEOUT_MS = 5000
const MAX_TIMEOUT_MS = 60000

let doc = null
let provider = null
let name = 'peer'
let exiting = false

const reply = (obj) => {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const log = (...args) => {
  process.stderr.write(`[peer ${name}] ${args.join(' ')}\n`)
}

const timeoutOf = (msg) => {
  const t = Number(msg.timeout_ms ?? DEFAULT_TIMEOUT_MS)
  return Math.max(0, Math.min(Number.isFinite(t) ? t : DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS))
}

// True when `actual` contains everything in `expected` (objects: recursively by key).
const contains = (actual, expected) => {
  if (expected === null || typeof expected !== 'object' || Array.isArray(expected)) {
    return JSON.stringify(actual) === JSON.stringify(expected)
  }
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false
  return Object.entries(expected).every(([k, v]) => contains(actual[k], v))
}

const requireProvider = () => {
  if (provider === null) throw new Error('not connected: send "connect" first')
  return provider
}

const elements = () => doc.getMap('elements')

const otherStates = () => {
  const out = {}
  for (const [clientID, state] of provider.awareness.getStates()) {
    if (clientID !== doc.clientID) out[clientID] = state
  }
  return out
}

// Resolve when check() returns a truthy value, re-checking whenever subscribe's
// callback fires; reject after timeoutMs.
const waitFor = (what, timeoutMs, check, subscribe) =>
  new Promise((resolve, reject) => {
    const first = check()
    if (first) {
      resolve(first)
      return
    }
    let unsubscribe = () => {}
    const timer = setTimeout(() => {
      unsubscribe()
      reject(new Error(`timeout after ${timeoutMs} ms waiting for ${what}`))
    }, timeoutMs)
    unsubscribe = subscribe(() => {
      let result
      try {
        result = check()
      } catch (err) {
        clearTimeout(timer)
        unsubscribe()
        reject(err)
        return
      }
      if (result) {
        clearTimeout(timer)
        unsubscribe()
        resolve(result)
      }
    })
  })

// Wait until the provider is synced; fail at once on a terminal close (a 44xx
// code: the server refused us and y-websocket will not retry).
const connectSynced = async (p, timeoutMs) => {
  let refused = null
  await waitFor('"synced"', timeoutMs, () => {
    if (refused) throw refused
    return p.synced
  }, (cb) => {
    const onClosed = (event) => {
      refused = new Error(`server closed the connection: ${event.code} ${event.reason}`)
      cb()
    }
    p.on('sync', cb)
    p.on('closed', onClosed)
    return () => {
      p.off('sync', cb)
      p.off('closed', onClosed)
    }
  })
}

const handlers = {
  async connect (msg) {
    if (provider !== null) throw new Error('already connected')
    if (typeof msg.url !== 'string' || typeof msg.room !== 'string') {
      throw new Error('connect needs "url" and "room" strings')
    }
    name = String(msg.clientName ?? msg.room)
    doc = new Y.Doc()
    provider = new WebsocketProvider(msg.url, msg.room, doc, {
      WebSocketPolyfill: WebSocket,
      disableBc: true,
      params: msg.params ?? {},
      maxBackoffTime: 1000
    })
    provider.on('connection-error', () => log('connection error'))
    provider.on('connection-close', (event) => {
      if (event) log(`connection closed by server: ${event.code} ${event.reason}`)
    })
    await connectSynced(provider, timeoutOf(msg))
    return { ok: 'synced', clientID: doc.clientID }
  },

  async set (msg) {
    requireProvider()
    elements().set(String(msg.key), msg.value)
    return { ok: true }
  },

  async set_many (msg) {
    requireProvider()
    doc.transact(() => {
      for (const [k, v] of Object.entries(msg.entries ?? {})) elements().set(k, v)
    })
    return { ok: true }
  },

  async delete (msg) {
    requireProvider()
    elements().delete(String(msg.key))
    return { ok: true }
  },

  async dump () {
    requireProvider()
    return { elements: elements().toJSON() }
  },

  async wait_key (msg) {
    requireProvider()
    const key = String(msg.key)
    const map = elements()
    const check = () => {
      if (!map.has(key)) return false
      const value = map.get(key)
      if (msg.value !== undefined && !contains(value, msg.value)) return false
      return { value }
    }
    const { value } = await waitFor(`key ${JSON.stringify(key)}`, timeoutOf(msg), check, (cb) => {
      map.observe(cb)
      return () => map.unobserve(cb)
    })
    return { ok: true, value }
  },

  async awareness (msg) {
    const p = requireProvider()
    p.awareness.setLocalState(msg.state ?? null)
    return { ok: true }
  },

  async peers () {
    requireProvider()
    return { peers: otherStates() }
  },

  async wait_peer (msg) {
    const p = requireProvider()
    const clientID = Number(msg.clientID)
    const present = msg.present ?? true
    const check = () => {
      const state = p.awareness.getStates().get(clientID)
      if (!present) return state === undefined
      if (state === undefined) return false
      return msg.state === undefined || contains(state, msg.state)
    }
    const started = Date.now()
    await waitFor(`peer ${clientID} ${present ? 'present' : 'absent'}`, timeoutOf(msg), check,
      (cb) => {
        p.awareness.on('update', cb)
        return () => p.awareness.off('update', cb)
      })
    return { ok: true, peers: otherStates(), waited_ms: Date.now() - started }
  },

  async disconnect () {
    requireProvider().disconnect()
    return { ok: true }
  },

  async reconnect (msg) {
    const p = requireProvider()
    p.connect()
    await connectSynced(p, timeoutOf(msg))
    return { ok: 'synced' }
  },

  async close () {
    await shutdown()
    return { ok: 'closed' }
  }
}

// Destroy the provider (which tells the others our awareness state is gone) and
// give the socket a bounded moment to finish its closing handshake.
const shutdown = async () => {
  if (provider === null) return
  const ws = provider.ws
  const p = provider
  provider = null
  p.destroy()
  if (ws && ws.readyState !== WebSocket.CLOSED) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 1000)
      ws.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}

const exit = async (code) => {
  if (exiting) return
  exiting = true
  try {
    await shutdown()
  } catch (err) {
    log('error while shutting down:', err?.stack ?? err)
  }
  process.exit(code)
}

const handle = async (line) => {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    reply({ id: null, error: `bad JSON: ${err.message}` })
    return
  }
  const id = msg?.id ?? null
  const handler = Object.hasOwn(handlers, msg?.cmd) ? handlers[msg.cmd] : undefined
  if (!handler) {
    reply({ id, error: `unknown cmd: ${JSON.stringify(msg?.cmd)}` })
    return
  }
  try {
    const result = await handler(msg)
    reply({ id, ...result })
    if (msg.cmd === 'close') await exit(0)
  } catch (err) {
    reply({ id, error: String(err?.message ?? err) })
  }
}

process.on('uncaughtException', (err) => {
  log('uncaught exception:', err?.stack ?? err)
})
process.on('unhandledRejection', (err) => {
  log('unhandled rejection:', err?.stack ?? err)
})
process.on('SIGTERM', () => exit(0))
process.on('SIGINT', () => exit(0))
process.stdout.on('error', () => exit(1))

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  if (line.trim() !== '') handle(line)
})
rl.on('close', () => exit(0))
