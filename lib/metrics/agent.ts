/**
 * The metrics every agent has: connections, HELLOs, frames, messages,
 * handler errors, timeouts and durations, disconnects, bytes. Sessions count
 * into them on the hot path through fixed slots of the thread's registry
 * (one `values[slot]++` per event, no lookup, no allocation).
 *
 * @module
 */

import { type Counter, type Histogram, MetricsRegistry, slotOf } from "./registry.ts";

/** Frame types by number, as labels. */
const FRAME_TYPES: Record<number, string> = {
  0: "UNSET",
  1: "HAPROXY-HELLO",
  2: "HAPROXY-DISCONNECT",
  3: "NOTIFY",
  101: "AGENT-HELLO",
  102: "AGENT-DISCONNECT",
  103: "ACK",
};
/** SPOP status codes 0..13 have names in the protocol; others are counted as "other". */
const KNOWN_STATUSES = 14;

/** Upper bounds of the handler-duration buckets, in seconds (10 µs to 1 s). */
export const HANDLER_DURATION_BUCKETS: readonly number[] = [
  0.00001,
  0.000025,
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  1,
];

/**
 * One call in this many of a plain (synchronous) handler is timed, and
 * counts for as many in the histogram: two clock reads (about 100 ns each
 * on Deno) per NOTIFY would cost more than the rest of a fast handler's
 * metrics. The count is shared by every connection of the thread. Async handlers are always
 * timed.
 */
export const PLAIN_SAMPLE = 64;

/** The message label of messages that no handler is registered for. */
export const NO_HANDLER = "(no handler)";

/** The slots of one message name. */
export interface MessageSlots {
  /** `spoa_messages_total{message}`. */
  readonly count: number;
  /** `spoa_handler_errors_total{message}`. */
  readonly errors: Counter;
  /** `spoa_handler_timeouts_total{message}`. */
  readonly timeouts: Counter;
  /** `spoa_handler_duration_seconds{message}` (with `observeMany`, see {@linkcode PLAIN_SAMPLE}). */
  readonly duration: Histogram & { observeMany(value: number, count: number): void };
}

/** The built-in metrics of one thread. */
export class AgentMetrics {
  /** The registry's values: sessions add to them by slot. */
  readonly values: Float64Array;
  /** `spoa_frames_received_total` by frame type (any byte). */
  readonly framesIn: Uint32Array = new Uint32Array(256);
  /** `spoa_frames_sent_total{type="ACK"}`. */
  readonly acks: number;
  /** `spoa_frames_sent_total{type="AGENT-HELLO"}`. */
  readonly agentHellos: number;
  /** `spoa_received_bytes_total`. */
  readonly bytesIn: number;
  /** `spoa_sent_bytes_total`. */
  readonly bytesOut: number;
  /** `spoa_notifies_in_flight`. */
  readonly inFlight: number;
  /** `spoa_connections_open`. */
  readonly open: number;
  /** `spoa_connections_accepted_total`. */
  readonly accepted: number;
  /** `spoa_connections_refused_total`. */
  readonly refused: number;
  /** Whether handler durations are measured (two clock reads per NOTIFY). */
  readonly timing: boolean;
  readonly #registry: MetricsRegistry;
  readonly #agentDisconnects: number[] = [];
  readonly #haproxyDisconnects: number[] = [];
  readonly #hellos: Counter;
  readonly #framesOut: Counter;
  readonly #messages: Counter;
  readonly #errors: Counter;
  readonly #timeouts: Counter;
  readonly #durations: Histogram;
  readonly #byMessage = new Map<string, MessageSlots>();

  /**
   * @param registry The thread's registry (a private one when metrics are off).
   * @param timing Measure handler durations.
   */
  constructor(registry: MetricsRegistry = new MetricsRegistry({ capacity: 4096 }), timing = false) {
    this.#registry = registry;
    this.timing = timing;
    this.values = registry.values;
    const r = registry;
    // The families of one series, by their slot.
    const gauge = (name: string, help: string) => slotOf(r.gauge({ name, help }));
    const counter = (name: string, help: string) => slotOf(r.counter({ name, help }));
    this.open = gauge("spoa_connections_open", "SPOP connections open.");
    this.accepted = counter("spoa_connections_accepted_total", "SPOP connections accepted.");
    this.refused = counter(
      "spoa_connections_refused_total",
      "SPOP connections closed on arrival because --max-connections were open.",
    );
    this.#hellos = r.counter({
      name: "spoa_hellos_total",
      help:
        "HAPROXY-HELLO frames answered, by kind (normal or healthcheck) and negotiated capabilities.",
      labelNames: ["kind", "capabilities"],
    });
    const framesIn = r.counter({
      name: "spoa_frames_received_total",
      help: "Frames received, by type (fragments after the first are UNSET).",
      labelNames: ["type"],
    });
    const other = slotOf(framesIn.with({ type: "unknown" }));
    this.framesIn.fill(other);
    for (const type of [1, 2, 3, 0]) {
      this.framesIn[type] = slotOf(framesIn.with({ type: FRAME_TYPES[type]! }));
    }
    this.#framesOut = r.counter({
      name: "spoa_frames_sent_total",
      help: "Frames sent, by type.",
      labelNames: ["type"],
    });
    this.agentHellos = slotOf(this.#framesOut.with({ type: FRAME_TYPES[101]! }));
    this.acks = slotOf(this.#framesOut.with({ type: FRAME_TYPES[103]! }));
    this.#framesOut.with({ type: FRAME_TYPES[102]! });
    const byMessage = (name: string, help: string) =>
      r.counter({ name, help, labelNames: ["message"] });
    this.#messages = byMessage(
      "spoa_messages_total",
      "Messages received in NOTIFY frames, by name.",
    );
    this.#errors = byMessage(
      "spoa_handler_errors_total",
      "Handlers that threw or rejected, by message.",
    );
    this.#timeouts = byMessage(
      "spoa_handler_timeouts_total",
      "Handlers still running at the deadline (their NOTIFY was acknowledged without them).",
    );
    this.#durations = r.histogram({
      name: "spoa_handler_duration_seconds",
      help: "Time from a handler's call until it returned or settled, by message.",
      labelNames: ["message"],
      buckets: HANDLER_DURATION_BUCKETS,
    });
    const byStatus = (name: string, help: string) =>
      r.counter({ name, help, labelNames: ["status"] });
    const agentDisconnects = byStatus(
      "spoa_agent_disconnects_total",
      "AGENT-DISCONNECT frames sent, by SPOP status code.",
    );
    const haproxyDisconnects = byStatus(
      "spoa_haproxy_disconnects_total",
      "HAPROXY-DISCONNECT frames received, by SPOP status code.",
    );
    for (let s = 0; s <= KNOWN_STATUSES; s++) {
      const label = s < KNOWN_STATUSES ? String(s) : "other";
      // Status 0 is made up front, the others on first use.
      this.#agentDisconnects.push(
        s === 0 ? slotOf(agentDisconnects.with({ status: label })) : -1,
      );
      this.#haproxyDisconnects.push(
        s === 0 ? slotOf(haproxyDisconnects.with({ status: label })) : -1,
      );
    }
    this.#statusFamilies = [agentDisconnects, haproxyDisconnects];
    this.inFlight = gauge(
      "spoa_notifies_in_flight",
      "NOTIFY frames received and not yet acknowledged.",
    );
    this.bytesIn = counter("spoa_received_bytes_total", "Bytes read from SPOP connections.");
    this.bytesOut = counter("spoa_sent_bytes_total", "Bytes written to SPOP connections.");
  }

  readonly #statusFamilies: [Counter, Counter];

  /** The registry the metrics live in. */
  get registry(): MetricsRegistry {
    return this.#registry;
  }

  /**
   * Counts a HELLO answered.
   *
   * @param healthcheck A health-check HELLO.
   * @param capabilities The capabilities negotiated, e.g. `"pipelining"`.
   */
  hello(healthcheck: boolean, capabilities: string): void {
    this.#hellos.with({ kind: healthcheck ? "healthcheck" : "normal", capabilities }).inc();
    this.values[this.agentHellos]!++;
  }

  /** Counts an AGENT-DISCONNECT sent with this status. */
  agentDisconnect(status: number): void {
    this.values[this.#statusSlot(0, this.#agentDisconnects, status)]!++;
  }

  /** Counts a HAPROXY-DISCONNECT received with this status. */
  haproxyDisconnect(status: number): void {
    this.values[this.#statusSlot(1, this.#haproxyDisconnects, status)]!++;
  }

  #statusSlot(which: 0 | 1, slots: number[], status: number): number {
    const i = Number.isInteger(status) && status >= 0 && status < KNOWN_STATUSES
      ? status
      : KNOWN_STATUSES;
    let at = slots[i]!;
    if (at < 0) {
      const label = i < KNOWN_STATUSES ? String(i) : "other";
      at = slots[i] = slotOf(this.#statusFamilies[which].with({ status: label }));
    }
    return at;
  }

  /**
   * The slots of a message name, made on first use. Names come from
   * handlers (a fixed set) or {@linkcode NO_HANDLER}, never from the wire.
   *
   * @param name The message name.
   * @returns Its slots.
   */
  message(name: string): MessageSlots {
    let slots = this.#byMessage.get(name);
    if (slots === undefined) {
      const labels = { message: name };
      slots = {
        count: slotOf(this.#messages.with(labels)),
        errors: this.#errors.with(labels),
        timeouts: this.#timeouts.with(labels),
        duration: this.#durations.with(labels) as MessageSlots["duration"],
      };
      this.#byMessage.set(name, slots);
    }
    return slots;
  }
}
