/*! sse_kit.js: a small browser helper for sse_kit streams. No dependencies, no build step
 * (ES2017). Load it with <script src="/events/sse_kit.js"></script>; it defines the
 * global `SSEKit` (or module.exports under CommonJS). API: docs/browser.md.
 *
 *   const stream = SSEKit.connect("/events/");
 *   stream.on("job", (data, ev) => render(data));     // JSON data parsed, raw fallback
 *   stream.onReset((info) => refetchEverything());    // history could not cover a gap
 *   stream.onState((state) => badge.textContent = state);
 *   stream.close();
 *
 *   // Stream tickets: a fresh one from your API before every (re)connect.
 *   SSEKit.connect("/events/", {ticket: () => fetch("/events/ticket")
 *     .then((r) => r.ok ? r.json() : Promise.reject(r)).then((t) => t.ticket)});
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.SSEKit = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // Connection states, in the order a stream usually goes through them.
  const CONNECTING = "connecting"; // the first connection is being made
  const OPEN = "open"; // the stream is receiving events
  const RECONNECTING = "reconnecting"; // lost; the browser (or this helper) is reconnecting
  const CLOSED = "closed"; // close() was called, or the server refused and retrying is off

  // Event types sse_kit's server sends itself (see sse_kit.EVENT_TYPE_*).
  const CONNECTED = "connected";
  const RESET = "reset";

  /** Parse `data` as JSON when it is JSON; otherwise return the text as it is. */
  function parseData(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  }

  /** `url` with `last_event_id` (a new EventSource cannot send the header) and,
   * when given, `ticket` set in its query string. */
  function streamUrl(url, lastEventId, ticket) {
    const u = new URL(url, typeof location !== "undefined" ? location.href : undefined);
    if (lastEventId) {
      u.searchParams.set("last_event_id", lastEventId);
    } else {
      u.searchParams.delete("last_event_id");
    }
    if (ticket) u.searchParams.set("ticket", ticket);
    return u.toString();
  }

  /**
   * One logical stream: an EventSource plus the listeners apps always rewrite.
   *
   * Options:
   *   json (true): pass JSON data to handlers parsed; false passes the raw text.
   *   withCredentials (false): EventSource's withCredentials.
   *   retryOnFailure (true): when the server refuses a connection (e.g. 503
   *     because the hub is full) the browser gives up for good; this helper then
   *     opens a new EventSource after a back-off, resuming with last_event_id.
   *   minRetryDelay (1000) / maxRetryDelay (30000): that back-off, in ms.
   *   lastEventId (""): resume from this event ID (e.g. one kept from an earlier
   *     stream); sent as the last_event_id query parameter.
   *   ticket (null): a function returning a stream ticket (or a promise of one),
   *     called before every connect and reconnect: each EventSource is opened with
   *     ?ticket=<fresh>&last_event_id=<newest seen>, so resuming keeps working
   *     with single-use tickets. Resolving to null/"" closes the stream (e.g. the
   *     user logged out); a rejection is retried after the back-off.
   *   EventSource (globalThis.EventSource): the class to use (for tests).
   */
  class Stream {
    constructor(url, options) {
      const opts = Object.assign(
        {
          json: true,
          withCredentials: false,
          retryOnFailure: true,
          minRetryDelay: 1000,
          maxRetryDelay: 30000,
          ticket: null,
          EventSource: typeof EventSource !== "undefined" ? EventSource : undefined,
        },
        options || {}
      );
      if (typeof opts.EventSource !== "function") {
        throw new TypeError("SSEKit: this environment has no EventSource");
      }
      if (opts.ticket !== null && typeof opts.ticket !== "function") {
        throw new TypeError("SSEKit: ticket must be a function returning a ticket");
      }
      this.url = url;
      this.options = opts;
      this.state = CONNECTING;
      this.clientId = null; // from the `connected` event
      this.lastEventId = opts.lastEventId || ""; // the newest event ID seen, sent when resuming
      this._handlers = new Map(); // type -> Set of functions
      this._stateHandlers = new Set();
      this._source = null;
      this._retryTimer = null;
      this._failures = 0; // refusals in a row, for the back-off
      this.on(CONNECTED, (data) => {
        this.clientId = data && typeof data === "object" ? data.client_id || null : null;
      });
      if (opts.ticket) {
        this._connectWithTicket();
      } else {
        this._open(this.lastEventId ? streamUrl(url, this.lastEventId) : url);
      }
    }

    /** Call fn(data, event) for every event of `type` ("message" for untyped ones). */
    on(type, fn) {
      if (typeof type !== "string" || !type) throw new TypeError("SSEKit: type must be a string");
      if (typeof fn !== "function") throw new TypeError("SSEKit: handler must be a function");
      let set = this._handlers.get(type);
      if (!set) {
        set = new Set();
        this._handlers.set(type, set);
        if (this._source) this._listen(this._source, type);
      }
      set.add(fn);
      return this;
    }

    /** Remove a handler added with on(). */
    off(type, fn) {
      const set = this._handlers.get(type);
      if (set) set.delete(fn);
      return this;
    }

    /** Call fn(info, event) when the server sends `reset`: the stream could not
     * resume (info.reason: "expired", "unknown" or "malformed"), so events may
     * have been missed and the app must refetch its state. */
    onReset(fn) {
      return this.on(RESET, fn);
    }

    /** Call fn(state, previousState) on every change of `state`. */
    onState(fn) {
      if (typeof fn !== "function") throw new TypeError("SSEKit: handler must be a function");
      this._stateHandlers.add(fn);
      return this;
    }

    /** Close the stream for good; no reconnect follows. */
    close() {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      if (this._source) this._source.close();
      this._source = null;
      this._setState(CLOSED);
    }

    _open(url) {
      const source = new this.options.EventSource(url, {
        withCredentials: this.options.withCredentials,
      });
      this._source = source;
      for (const type of this._handlers.keys()) this._listen(source, type);
      source.onopen = () => {
        if (source !== this._source) return;
        this._failures = 0;
        this._setState(OPEN);
      };
      source.onerror = () => {
        if (source !== this._source) return;
        if (this.options.ticket) {
          // The browser would come back with the spent ticket: come back with a fresh one
          // (always after an open stream ends, as the browser would; after a refusal
          // only with retryOnFailure).
          const dropped = this.state === OPEN;
          source.close();
          this._source = null;
          this._retryLater(dropped);
        } else if (source.readyState === 2 /* CLOSED: the browser gave up */) {
          this._source = null;
          this._retryLater();
        } else {
          this._setState(RECONNECTING); // the browser retries after the retry: delay
        }
      };
    }

    _listen(source, type) {
      source.addEventListener(type, (ev) => {
        // Only server events: EventSource also fires a data-less "error" on a lost connection.
        if (source !== this._source || typeof ev.data !== "string") return;
        if (ev.lastEventId) this.lastEventId = ev.lastEventId;
        const data = this.options.json ? parseData(ev.data) : ev.data;
        for (const fn of Array.from(this._handlers.get(type) || [])) {
          try {
            fn(data, ev);
          } catch (err) {
            // One failing handler must not starve the others of the event.
            console.error("SSEKit: a handler for '" + type + "' threw", err);
          }
        }
      });
    }

    _retryLater(dropped) {
      if (!dropped && !this.options.retryOnFailure) {
        this._setState(CLOSED);
        return;
      }
      this._setState(RECONNECTING);
      const delay = Math.min(
        this.options.maxRetryDelay,
        this.options.minRetryDelay * Math.pow(2, this._failures)
      );
      this._failures += 1;
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        if (this.options.ticket) {
          this._connectWithTicket();
        } else {
          this._open(streamUrl(this.url, this.lastEventId));
        }
      }, delay);
    }

    /** Ask the ticket callback for a fresh ticket, then open the stream with it. */
    _connectWithTicket() {
      let pending;
      try {
        pending = Promise.resolve(this.options.ticket());
      } catch (err) {
        pending = Promise.reject(err);
      }
      pending.then(
        (ticket) => {
          if (this.state === CLOSED) return; // close() was called meanwhile
          if (!ticket) {
            this.close();
            return;
          }
          this._open(streamUrl(this.url, this.lastEventId, String(ticket)));
        },
        (err) => {
          if (this.state === CLOSED) return;
          console.warn("SSEKit: the ticket callback failed; retrying", err);
          this._retryLater();
        }
      );
    }

    _setState(state) {
      const previous = this.state;
      if (state === previous) return;
      this.state = state;
      for (const fn of Array.from(this._stateHandlers)) {
        try {
          fn(state, previous);
        } catch (err) {
          console.error("SSEKit: a state handler threw", err);
        }
      }
    }
  }

  /** Open a stream: `SSEKit.connect(url, options)`; see Stream. */
  function connect(url, options) {
    return new Stream(url, options);
  }

  return {
    CLOSED: CLOSED,
    CONNECTING: CONNECTING,
    OPEN: OPEN,
    RECONNECTING: RECONNECTING,
    Stream: Stream,
    connect: connect,
    parseData: parseData,
    version: "0.1.0",
  };
});
