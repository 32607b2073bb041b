// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// stream is read with a ReadableStream and parsed here (the WHATWG event-stream format). On a
// drop it reconnects after the server's `retry:` delay, sending Last-Event-ID so the server
// replays what was missed; a 401 refreshes the token first.

import { freshToken, loggedIn, refresh } from "./api.js";

/** Turns chunks of text into events: {type, data, id}. Keeps partial lines between chunks. */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.reset();
    this.lastId = null;
    this.retryMs = null;
  }

  reset() {
    this.type = "";
    this.data = [];
    this.idSeen = false;
  }

  push(text) {
    this.buffer += text;
    const events = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone \r at the very end may be the first half of \r\n: wait for the next chunk.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  line(line) {
    if (line === "") {
      const hasData = this.data.length > 0;
      const event = { type: this.type || "message", data: this.data.join("\n"), id: this.lastId };
      this.reset();
      return hasData ? event : null;
    }
    if (line.startsWith(":")) return null; // a comment: the server's keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow the feed at `path` until close(). `onEvent({type, data, id})` for each event,
 * `onState("connecting" | "live" | "reconnecting")` as the connection changes.
 */
export function followFeed(path, { onEvent, onState = () => {} }) {
  const parser = new SseParser();
  let controller = null;
  let stopped = false;

  async function connect() {
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${await freshToken()}` };
    if (parser.lastId !== null) headers["Last-Event-ID"] = parser.lastId;
    controller = new AbortController();
    const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
    if (response.status === 401) {
      await refresh();
      return;
    }
    if (!response.ok || !response.body) throw new Error(`feed answered ${response.status}`);
    onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const event of parser.push(value)) {
        let data = event.data;
        try {
          data = JSON.parse(event.data);
        } catch {
          // not JSON: passed on as text
        }
        onEvent({ type: event.type, id: event.id, data });
      }
    }
  }

  (async () => {
    onState("connecting");
    while (!stopped && loggedIn()) {
      try {
        await connect();
      } catch {
        // dropped, refused or aborted: try again below unless closed
      }
      if (stopped || !loggedIn()) break;
      onState("reconnecting");
      parser.buffer = "";
      parser.reset();
      await sleep(parser.retryMs ?? 2000);
    }
  })();

  return {
    close() {
      stopped = true;
      controller?.abort();
    },
  };
}
