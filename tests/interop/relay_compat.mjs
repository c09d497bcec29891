// A browser-style relay client written the way the existing JS clients of
// these services are (see docs/relay-protocol.md), WITHOUT our library:
// `new WebSocket(uri)`, read the welcome, send a subscribe with an id
// without waiting for its answer, then dispatch on `message.event` whenever
// `message.type === "event"`. Only the WebSocket class comes from `ws`, used
// through its browser-compatible API (onopen / onmessage / event.data).
//
// Usage: node relay_compat.mjs URL CHANNEL COUNT [TIMEOUT_MS]
// Prints one JSON line per step: {"welcome": {...}}, then {"event", "data",
// "room"} for every dispatched event; exits 0 after COUNT events, 1 on timeout
// or if the connection closes first.

import WebSocket from 'ws'

const [url, channel, countArg, timeoutArg] = process.argv.slice(2)
const wanted = Number(countArg || 1)
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

setTimeout(() => {
  process.stderr.write(`relay_compat: timed out waiting for ${wanted} events\n`)
  process.exit(1)
}, Number(timeoutArg || 10000))

const handlers = {
  'adapter.activated': (data, message) => print({ event: message.event, room: message.room, data })
}

let welcomed = false
let received = 0
const ws = new WebSocket(url)

ws.onmessage = (frame) => {
  const message = JSON.parse(frame.data)
  if (!welcomed) {
    // the first message is the welcome; then subscribe, without waiting for the reply
    welcomed = true
    print({ welcome: message })
    ws.send(JSON.stringify({
      type: 'request',
      event: 'subscribe',
      data: { channel },
      id: 'sub_' + channel
    }))
    return
  }
  if (message.type === 'event') {
    const handler = handlers[message.event]
    if (handler) {
      handler(message.data, message)
      received += 1
      if (received >= wanted) {
        ws.close()
        process.exit(0)
      }
    }
  }
}
ws.onclose = () => {
  process.stderr.write('relay_compat: connection closed early\n')
  process.exit(1)
}
