// inkwire relay client for browsers: a dependency-free ES module.
//
//   import { RelayClient } from './relay-client.js'
//   const client = new RelayClient('ws://127.0.0.1:8693/', { batch: true })
//   await client.connect()
//   client.on('event', (message) => console.log(message.event, message.data))
//   client.on('gap', ({ channel }) => refetchStateOf(channel))
//   await client.subscribe('adapter:a1')
//   const status = await client.request('get_adapter_status', { adapter_id: 'a1' })
//
// The relay protocol it speaks is described in docs/relay-protocol.md of the inkwire repository.
// Nothing here imports anything: it runs as is in a browser, and in Node when
// given a WebSocket constructor (the `ws` package) through the `WebSocket` option.

/** The subprotocol that asks the relay for several newline-delimited messages per frame. */
export const BATCH_SUBPROTOCOL = 'inkwire.batch'

/** The first message of every connection (an event, but not a channel's). */
export const WELCOME_EVENT = 'session.created'

/**
 * Close codes after which reconnecting cannot help: retrying with the same
 * token would only be refused again, so the client stops and reports it.
 */
const FATAL_CLOSE_CODES = new Set([4001])

const DEFAULT_BACKOFF = Object.freeze({
  initial: 250, // ms before the first retry
  max: 10000, // ms, the ceiling of the exponential growth
  factor: 2,
  // fraction of each delay that is randomised, so that many clients dropped by
  // one restart do not all come back in the same millisecond
  jitter: 0.5,
  retries: Infinity, // consecutive failed attempts before giving up
  // ms a connection must last before the delays start over: a relay that
  // welcomes and then drops every connection at once is not hammered
  stable: 5000
})

const OPEN = 1 // WebSocket.OPEN, spelled out so an injected constructor needs no statics

/** An Error with the relay's `error_code` (or one of ours: TIMEOUT, DISCONNECTED, CLOSED). */
export class RelayError extends Error {
  constructor (code, message, details = {}) {
    super(message)
    this.name = 'RelayError'
    this.code = code
    Object.assign(this, details)
  }
}

/**
 * A relay connection that survives disconnects.
 *
 * Events: `event` (every channel event, the parsed message), `gap` (a
 * resubscription could not replay what was missed: the caller must refetch),
 * `open` (welcome received, also after each reconnect), `close` (the socket
 * closed; `{code, reason, willReconnect}`), `reconnecting` (`{attempt, delay}`),
 * `error` (uncorrelated error messages and undecodable frames), `end` (closed
 * for good: by `close()`, a 4001, or after the last retry).
 */
export class RelayClient {
  /**
   * @param {string} url  ws:// or wss:// URL of the relay (`/` or `/ws`)
   * @param {object} [options]
   * @param {string} [options.token]  sent as `?token=`: browsers cannot set an Authorization header
   * @param {boolean} [options.batch]  opt in to several messages per frame (fewer frames under load)
   * @param {boolean} [options.reconnect=true]  reconnect and resubscribe after an unexpected close
   * @param {object} [options.backoff]  `{initial, max, factor, jitter, retries}`, see DEFAULT_BACKOFF
   * @param {number} [options.timeout=10000]  default request (and connect) timeout, ms
   * @param {Function} [options.WebSocket]  WebSocket constructor; defaults to the global one
   */
  constructor (url, options = {}) {
    this.url = url
    this.token = options.token
    this.batch = Boolean(options.batch)
    this.reconnect = options.reconnect !== false
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) }
    this.timeout = options.timeout ?? 10000
    this.WebSocket = options.WebSocket || globalThis.WebSocket
    if (typeof this.WebSocket !== 'function') {
      throw new TypeError('no WebSocket: pass options.WebSocket (e.g. the `ws` package in Node)')
    }
    /** The welcome's data of the current connection (`connection_id`, `server`, `limits`...). */
    this.welcome = null
    this._ws = null
    this._listeners = new Map()
    this._pending = new Map() // message id -> {resolve, reject, timer, event}
    this._nextId = 0
    // channel -> {offset, epoch} of the last event seen (null until known): what
    // a resubscription asks for with `since`, so a reconnect misses nothing
    this._channels = new Map()
    this._waitingForOpen = [] // subscribe() calls made while reconnecting
    this._attempt = 0 // failures in a row: connections that failed or did not last
    this._retryTimer = null
    this._everConnected = false
    this._closed = false
    this._ended = false
  }

  // --- listeners and iteration ------------------------------------------------

  /** Add a listener; returns a function that removes it. */
  on (type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set())
    this._listeners.get(type).add(fn)
    return () => this.off(type, fn)
  }

  off (type, fn) {
    this._listeners.get(type)?.delete(fn)
  }

  _emit (type, value) {
    for (const fn of [...(this._listeners.get(type) || [])]) {
      try {
        fn(value)
      } catch (err) {
        // one faulty listener must not stop delivery to the others, nor kill the socket handler
        setTimeout(() => { throw err })
      }
    }
  }

  /**
   * `for await (const message of client)`: channel events in arrival order,
   * until `close()`. Events are buffered from the moment iteration starts;
   * an iterator nobody reads from keeps growing, so break out of loops you abandon.
   */
  [Symbol.asyncIterator] () {
    const buffered = []
    let wake = null
    let done = this._closed
    const push = (message) => {
      buffered.push(message)
      if (wake) { wake(); wake = null }
    }
    const offEvent = this.on('event', push)
    const offEnd = this.on('end', () => {
      done = true
      if (wake) { wake(); wake = null }
    })
    const finish = () => {
      offEvent()
      offEnd()
      done = true
      return Promise.resolve({ value: undefined, done: true })
    }
    return {
      next: async () => {
        while (buffered.length === 0 && !done) {
          await new Promise((resolve) => { wake = resolve })
        }
        if (buffered.length > 0) return { value: buffered.shift(), done: false }
        return finish()
      },
      return: finish,
      [Symbol.asyncIterator] () { return this }
    }
  }

  // --- connecting ---------------------------------------------------------------

  /** True while a connection is open and welcomed. */
  get connected () {
    return this._ws !== null && this._ws.readyState === OPEN && this.welcome !== null
  }

  /**
   * Open the connection; resolves with the welcome's data once the relay sent it
   * (the relay's first message), so requests can be made right away. A failure
   * of this first attempt rejects: automatic reconnection only starts once a
   * connection has been established.
   */
  async connect () {
    if (this._closed) throw new RelayError('CLOSED', 'client closed')
    await this._open()
    return this.welcome
  }

  _connectUrl () {
    const url = new URL(this.url)
    if (this.token !== undefined) url.searchParams.set('token', this.token)
    return url.toString()
  }

  /** One connection attempt: resolves after the welcome, rejects if the socket ends first. */
  _open () {
    return new Promise((resolve, reject) => {
      const protocols = this.batch ? [BATCH_SUBPROTOCOL] : []
      let ws
      try {
        ws = new this.WebSocket(this._connectUrl(), protocols)
      } catch (err) {
        reject(err)
        return
      }
      this._ws = ws
      this.welcome = null
      let welcomed = false
      let openedAt = 0
      const timer = setTimeout(() => {
        if (welcomed) return
        reject(new RelayError('TIMEOUT', `no welcome from ${this.url} within ${this.timeout} ms`))
        try { ws.close() } catch {}
      }, this.timeout)

      ws.onmessage = (message) => {
        const text = typeof message.data === 'string' ? message.data : String(message.data)
        for (const parsed of this._decode(text)) {
          if (!welcomed) {
            // the relay's first message is always the welcome; anything else means
            // this is not an inkwire relay, and we would misread everything after
            if (parsed.type !== 'event' || parsed.event !== WELCOME_EVENT) {
              clearTimeout(timer)
              reject(new RelayError('BAD_WELCOME', `${this.url}: the first message is not the relay's welcome`))
              try { ws.close() } catch {}
              return
            }
            welcomed = true
            openedAt = Date.now()
            clearTimeout(timer)
            this.welcome = parsed.data || {}
            this._everConnected = true
            this._emit('open', this.welcome)
            this._resubscribe()
            resolve(this.welcome)
            continue
          }
          this._dispatch(parsed)
        }
      }
      ws.onerror = () => {} // the close that always follows carries what we need
      ws.onclose = (closeEvent) => {
        clearTimeout(timer)
        if (this._ws === ws) this._ws = null
        this.welcome = null
        this._failPending('DISCONNECTED', 'connection closed before the reply arrived')
        const code = closeEvent?.code ?? 1006
        const reason = closeEvent?.reason ?? ''
        const willReconnect = welcomed && this._shouldReconnect(code)
        if (welcomed) this._emit('close', { code, reason, willReconnect })
        if (!welcomed) {
          reject(new RelayError('DISCONNECTED', `connection to ${this.url} closed (code ${code})`, { closeCode: code }))
          return
        }
        if (Date.now() - openedAt >= this.backoff.stable) this._attempt = 0
        if (willReconnect) this._scheduleReconnect()
        else this._end(code, reason)
      }
    })
  }

  _shouldReconnect (code) {
    return this.reconnect && !this._closed && !FATAL_CLOSE_CODES.has(code)
  }

  /** The delay before attempt n (1-based): exponential, capped, with part of it random. */
  _delay (attempt) {
    const { initial, max, factor, jitter } = this.backoff
    const base = Math.min(max, initial * factor ** (attempt - 1))
    return base * (1 - jitter) + base * jitter * Math.random()
  }

  _scheduleReconnect () {
    if (this._closed) return
    this._attempt += 1
    if (this._attempt > this.backoff.retries) {
      this._end(1006, 'gave up reconnecting')
      return
    }
    const delay = this._delay(this._attempt)
    this._emit('reconnecting', { attempt: this._attempt, delay })
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null
      if (this._closed) return
      // a failed attempt (refused, or closed before the welcome) just schedules the next;
      // an established one re-enters this path from its own close handler
      this._open().catch((err) => {
        if (FATAL_CLOSE_CODES.has(err.closeCode)) this._end(err.closeCode, err.message)
        else this._scheduleReconnect()
      })
    }, delay)
  }

  /** Resubscribe every channel after a (re)connect, asking for what was missed. */
  _resubscribe () {
    for (const channel of this._channels.keys()) {
      this._subscribeNow(channel).then(
        (data) => this._resolveWaiters(channel, data, null),
        (err) => this._resolveWaiters(channel, null, err)
      )
    }
  }

  _resolveWaiters (channel, data, err) {
    const still = []
    for (const waiter of this._waitingForOpen) {
      if (waiter.channel !== channel) still.push(waiter)
      else if (err) waiter.reject(err)
      else waiter.resolve(data)
    }
    this._waitingForOpen = still
  }

  // --- receiving ------------------------------------------------------------------

  /** The messages of one frame: one, or several newline-delimited ones when batching. */
  _decode (text) {
    const lines = this.batch ? text.split('\n') : [text]
    const out = []
    for (const line of lines) {
      if (!line.trim()) continue
      try {
        out.push(JSON.parse(line))
      } catch {
        this._emit('error', new RelayError('BAD_FRAME', 'undecodable message from the relay'))
      }
    }
    return out
  }

  _dispatch (message) {
    switch (message.type) {
      case 'event':
        this._onEvent(message)
        break
      case 'response':
      case 'pong':
      case 'error': {
        const pending = this._pending.get(message.correlation_id)
        if (!pending) {
          if (message.type === 'error') {
            this._emit('error', new RelayError(message.error_code, message.error_message, { reply: message }))
          }
          break
        }
        this._pending.delete(message.correlation_id)
        clearTimeout(pending.timer)
        if (message.type === 'error') {
          pending.reject(new RelayError(message.error_code || 'INTERNAL_ERROR', message.error_message || 'request failed', { event: message.event }))
        } else {
          pending.resolve(message.data || {})
        }
        break
      }
      case 'ping':
        // the relay checking we are alive: answer as the protocol says
        this._send({ type: 'pong', correlation_id: message.id, id: this._newId('pong') })
        break
      default:
        break
    }
  }

  _onEvent (message) {
    const position = this._channels.get(message.room)
    if (position && Number.isInteger(message.offset)) {
      // A resubscription's replay can overlap what already arrived (e.g. the
      // socket dropped after the relay sent an event but before we saw our
      // subscribe answered); never hand the same offset to listeners twice.
      if (position.epoch === message.epoch && message.offset <= position.offset) return
      this._channels.set(message.room, { offset: message.offset, epoch: message.epoch })
    }
    this._emit('event', message)
  }

  // --- requests -------------------------------------------------------------------

  _newId (prefix) {
    this._nextId += 1
    return `${prefix}_${this._nextId}`
  }

  _send (message) {
    if (!this.connected) return false
    this._ws.send(JSON.stringify(message))
    return true
  }

  /**
   * Send a request; resolves with the response's `data`, rejects with a
   * RelayError whose `code` is the relay's `error_code` (or TIMEOUT /
   * DISCONNECTED: a request in flight when the socket drops is not resent,
   * since we cannot know whether the relay acted on it).
   */
  request (event, data = {}, { timeout } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        reject(new RelayError('DISCONNECTED', `not connected: cannot send ${event}`))
        return
      }
      const id = this._newId(event)
      const ms = timeout ?? this.timeout
      const timer = setTimeout(() => {
        this._pending.delete(id)
        reject(new RelayError('TIMEOUT', `${event}: no reply within ${ms} ms`))
      }, ms)
      this._pending.set(id, { resolve, reject, timer, event })
      this._send({ type: 'request', event, data, id })
    })
  }

  /** Round trip to the relay (its pong); resolves with the elapsed milliseconds. */
  async ping ({ timeout } = {}) {
    if (!this.connected) throw new RelayError('DISCONNECTED', 'not connected')
    const id = this._newId('ping')
    const started = Date.now()
    await new Promise((resolve, reject) => {
      const ms = timeout ?? this.timeout
      const timer = setTimeout(() => {
        this._pending.delete(id)
        reject(new RelayError('TIMEOUT', `no pong within ${ms} ms`))
      }, ms)
      this._pending.set(id, { resolve, reject, timer, event: 'ping' })
      this._send({ type: 'ping', id })
    })
    return Date.now() - started
  }

  _failPending (code, message) {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer)
      pending.reject(new RelayError(code, `${pending.event}: ${message}`))
      this._pending.delete(id)
    }
  }

  // --- subscriptions --------------------------------------------------------------

  /**
   * Follow a channel. The subscription is remembered and renewed after every
   * reconnect. Resolves with the relay's answer (`{channel, epoch, offset, ...}`);
   * called while reconnecting, it resolves once the subscription is renewed.
   */
  subscribe (channel) {
    const known = this._channels.has(channel)
    if (!known) this._channels.set(channel, null)
    if (!this.connected) {
      if (this._closed || !this._everConnected) {
        if (!known) this._channels.delete(channel)
        return Promise.reject(new RelayError('DISCONNECTED', 'not connected: call connect() first'))
      }
      return new Promise((resolve, reject) => this._waitingForOpen.push({ channel, resolve, reject }))
    }
    return this._subscribeNow(channel).catch((err) => {
      // a refused channel (INVALID_CHANNEL, FORBIDDEN...) must not be retried on reconnect
      if (!known && err.code !== 'DISCONNECTED' && err.code !== 'TIMEOUT') this._channels.delete(channel)
      throw err
    })
  }

  /**
   * Send one subscribe; with a known position, ask for the missed events
   * (`since`). The relay answers `recovered: false` when it no longer has them
   * all (history trimmed, relay restarted without its history): we then emit
   * `gap` and continue from the relay's current position.
   */
  async _subscribeNow (channel) {
    const position = this._channels.get(channel)
    const data = { channel }
    if (position) data.since = { offset: position.offset, epoch: position.epoch }
    const answer = await this.request('subscribe', data)
    if (!this._channels.has(channel)) return answer // unsubscribed meanwhile
    if (position && answer.recovered === false) {
      this._channels.set(channel, { offset: answer.offset, epoch: answer.epoch })
      this._emit('gap', { channel, since: position, offset: answer.offset, epoch: answer.epoch })
    } else if (!position && this._channels.get(channel) === null) {
      // first subscription: we are live from the relay's current offset. With
      // `recovered: true`, replayed events follow this answer and move the
      // position themselves, so the answer's (newer) offset must not be taken.
      this._channels.set(channel, { offset: answer.offset, epoch: answer.epoch })
    }
    return answer
  }

  /** Stop following a channel (and forget it for reconnects). */
  async unsubscribe (channel) {
    this._channels.delete(channel)
    if (!this.connected) return { channel, subscribed: false }
    return this.request('unsubscribe', { channel })
  }

  /** The channels followed, with the last position seen on each (`{offset, epoch}` or null). */
  get subscriptions () {
    return new Map(this._channels)
  }

  // --- closing ---------------------------------------------------------------------

  /** Close for good: no reconnect, pending requests rejected, iterators end. */
  close (code = 1000, reason = '') {
    if (this._closed) return
    this._closed = true
    if (this._retryTimer !== null) clearTimeout(this._retryTimer)
    this._retryTimer = null
    const ws = this._ws
    this._failPending('CLOSED', 'client closed')
    if (ws && ws.readyState <= OPEN) ws.close(code, reason)
    this._end(code, reason)
  }

  _end (code, reason) {
    this._closed = true
    if (this._ended) return
    this._ended = true
    for (const waiter of this._waitingForOpen) waiter.reject(new RelayError('CLOSED', 'client closed'))
    this._waitingForOpen = []
    this._emit('end', { code, reason })
  }
}
