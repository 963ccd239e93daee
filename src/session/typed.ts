import { CloseCode } from "../protocol/index.js";
import { SessionError } from "./errors.js";
import type { MessageFrame } from "./frames.js";
import type { IncomingQueue } from "./incoming-queue.js";
import type { Sendable } from "./session-types.js";

/**
 * Typed messages (Ktor's `sendSerialized` / `receiveDeserialized`): values go out through a converter
 * (JSON by default) and come in through a converter and a Standard Schema (Zod 4, Valibot 1, ArkType...).
 * Works on any session whose `incoming` yields whole messages: server or client side.
 */

// ---- Standard Schema v1 (https://standardschema.dev), declared here: no runtime dependency ---------

/** A Standard Schema v1: what Zod 4, Valibot 1 and others implement (`schema["~standard"]`). */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly "~standard": StandardSchemaV1.Props<Input, Output>;
}

export declare namespace StandardSchemaV1 {
  export interface Props<Input = unknown, Output = Input> {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => Result<Output> | Promise<Result<Output>>;
    readonly types?: Types<Input, Output> | undefined;
  }
  export type Result<Output> = SuccessResult<Output> | FailureResult;
  export interface SuccessResult<Output> {
    readonly value: Output;
    readonly issues?: undefined;
  }
  export interface FailureResult {
    readonly issues: ReadonlyArray<Issue>;
  }
  export interface Issue {
    readonly message: string;
    readonly path?: ReadonlyArray<PropertyKey | PathSegment> | undefined;
  }
  export interface PathSegment {
    readonly key: PropertyKey;
  }
  export interface Types<Input = unknown, Output = Input> {
    readonly input: Input;
    readonly output: Output;
  }
  export type InferInput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["input"];
  export type InferOutput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["output"];
}

/** Whether `value` has the Standard Schema v1 shape (checked structurally). */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  const props = (value as { "~standard"?: unknown })["~standard"];
  return (
    typeof props === "object" &&
    props !== null &&
    (props as { version?: unknown }).version === 1 &&
    typeof (props as { validate?: unknown }).validate === "function"
  );
}

// ---- errors ------------------------------------------------------------------------------------

/**
 * - MALFORMED: the converter could not read the message (not JSON), or could not write the value.
 * - INVALID: the schema refused the value (`issues` says why).
 * - UNSUPPORTED: a frame of the type the converter does not read (binary where text is expected).
 */
export type MessageErrorCode = "MALFORMED" | "INVALID" | "UNSUPPORTED";

export interface MessageErrorDetails {
  /** "incoming": the peer sent it; "outgoing": the application tried to send it (a bug in the app). */
  direction: "incoming" | "outgoing";
  /** The frame received (incoming only). */
  frame?: MessageFrame | undefined;
  /** What the converter threw. */
  cause?: unknown;
  /** What the schema reported (INVALID only). */
  issues?: ReadonlyArray<StandardSchemaV1.Issue> | undefined;
  /** The value that failed validation (INVALID) or serialization (outgoing MALFORMED). */
  value?: unknown;
}

/** The one error for a message that cannot be read, is not allowed by its schema, or cannot be sent. */
export class MessageError extends Error {
  override readonly name = "MessageError";
  readonly direction: "incoming" | "outgoing";
  readonly frame: MessageFrame | undefined;
  readonly issues: ReadonlyArray<StandardSchemaV1.Issue>;
  readonly value: unknown;

  constructor(
    readonly code: MessageErrorCode,
    message: string,
    details: MessageErrorDetails,
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.direction = details.direction;
    this.frame = details.frame;
    this.issues = details.issues ?? [];
    this.value = details.value;
  }

  /** The close code for this failure: 1003 (UNSUPPORTED) or 1007 (MALFORMED, INVALID). */
  get closeCode(): number {
    return this.code === "UNSUPPORTED" ? CloseCode.UnsupportedData : CloseCode.InvalidPayload;
  }
}

// ---- converters --------------------------------------------------------------------------------

/** Turns values into message payloads and back (Ktor's `WebsocketContentConverter`). */
export interface MessageConverter {
  /** Frames this converter reads; the other type is UNSUPPORTED (1003) without being read. Omitted: both. */
  readonly frameType?: "text" | "binary" | undefined;
  /** A string goes out as a Text message, bytes as a Binary message. */
  serialize(value: unknown): string | Uint8Array;
  /** Reads one message; throwing makes it MALFORMED (a thrown MessageError is kept as it is). */
  deserialize(frame: MessageFrame): unknown;
}

/** JSON in Text messages: the default. */
export const jsonConverter: MessageConverter = {
  frameType: "text",
  serialize: (value) => JSON.stringify(value),
  deserialize: (frame) => JSON.parse(frame.type === "text" ? frame.text : frame.data.toString("utf8")),
};

// ---- sending and receiving ---------------------------------------------------------------------

/** What the functions here need of a session: any session whose `incoming` yields whole messages. */
export interface MessageSession {
  readonly incoming: IncomingQueue<MessageFrame>;
  send(data: Sendable): Promise<void>;
  close(code?: number, reason?: string): Promise<void>;
}

export interface SerializeOptions<S extends StandardSchemaV1 | undefined = undefined> {
  /** Validated before sending; a failure rejects with MessageError INVALID and sends nothing. */
  schema?: S;
  converter?: MessageConverter;
}

export interface DeserializeOptions {
  converter?: MessageConverter;
}

type OutgoingValue<S> = S extends StandardSchemaV1 ? StandardSchemaV1.InferInput<S> : unknown;

/** Per session: settles once the latest typed send still validating has been handed to `send`. */
const sendTails = new WeakMap<object, Promise<void>>();

/**
 * Serializes `value` (JSON by default) and sends it, after validating it against `schema` if given
 * (the schema's output is what is sent). Typed sends on one session go out in the order they were
 * called even when an async schema finishes a later one first. Rejects with MessageError (INVALID,
 * MALFORMED: direction "outgoing") without sending or closing anything; otherwise as `session.send`.
 */
export function sendSerialized<S extends StandardSchemaV1 | undefined = undefined>(
  session: MessageSession,
  value: OutgoingValue<S>,
  options: SerializeOptions<S> = {},
): Promise<void> {
  const converter = options.converter ?? jsonConverter;
  const tail = sendTails.get(session);
  let checked: unknown;
  try {
    checked = options.schema === undefined ? value : validateOutgoing(options.schema, value);
  } catch (error) {
    if (tail === undefined) return Promise.reject(error);
    checked = Promise.reject(error);
  }
  if (tail === undefined && !(checked instanceof Promise)) {
    try {
      return session.send(serialize(converter, checked));
    } catch (error) {
      return Promise.reject(error);
    }
  }
  let handed!: () => void;
  const mine = new Promise<void>((resolve) => {
    handed = resolve;
  });
  sendTails.set(session, mine);
  const run = async (): Promise<void> => {
    try {
      let out: unknown;
      let failure: { error: unknown } | undefined;
      try {
        out = await checked;
      } catch (error) {
        failure = { error };
      }
      if (tail !== undefined) await tail; // the typed sends called before this one go first
      if (failure !== undefined) throw failure.error;
      return session.send(serialize(converter, out));
    } finally {
      handed();
      if (sendTails.get(session) === mine) sendTails.delete(session);
    }
  };
  return run();
}

/** The schema's output for an outgoing value (or a promise of it); throws MessageError INVALID. */
function validateOutgoing(schema: StandardSchemaV1, value: unknown): unknown {
  const refused = (result: StandardSchemaV1.Result<unknown>): unknown => {
    if (result.issues === undefined) return result.value;
    throw new MessageError("INVALID", `outgoing message refused by its schema: ${summary(result.issues)}`, {
      direction: "outgoing",
      issues: result.issues,
      value,
    });
  };
  const threw = (cause: unknown): never => {
    throw new MessageError("INVALID", `the outgoing schema threw: ${String(cause)}`, {
      direction: "outgoing",
      cause,
      value,
    });
  };
  let result: StandardSchemaV1.Result<unknown> | Promise<StandardSchemaV1.Result<unknown>>;
  try {
    result = schema["~standard"].validate(value);
  } catch (cause) {
    return threw(cause);
  }
  return result instanceof Promise ? result.then(refused, threw) : refused(result);
}

function serialize(converter: MessageConverter, value: unknown): string | Uint8Array {
  let data: unknown;
  try {
    data = converter.serialize(value);
  } catch (cause) {
    throw new MessageError("MALFORMED", `outgoing message cannot be serialized: ${String(cause)}`, {
      direction: "outgoing",
      cause,
      value,
    });
  }
  if (typeof data !== "string" && !(data instanceof Uint8Array)) {
    throw new MessageError(
      "MALFORMED",
      `the converter made ${typeof data} of a value, not a string or bytes`,
      {
        direction: "outgoing",
        value,
      },
    );
  }
  return data;
}

/**
 * The next message, read by the converter and validated by `schema`. Rejects with MessageError
 * (UNSUPPORTED, MALFORMED, INVALID: direction "incoming") for that message (the next call reads the
 * one after it), or with SessionError SESSION_CLOSED once `incoming` has ended.
 */
export async function receiveDeserialized<S extends StandardSchemaV1>(
  session: MessageSession,
  schema: S,
  options: DeserializeOptions = {},
): Promise<StandardSchemaV1.InferOutput<S>> {
  const frame = await session.incoming.receive();
  if (frame === undefined)
    throw new SessionError("SESSION_CLOSED", "the session ended before a message arrived");
  const outcome = await decode(frame, schema, options.converter ?? jsonConverter);
  if (outcome instanceof MessageError) throw outcome;
  return outcome.value as StandardSchemaV1.InferOutput<S>;
}

type Decoded = { value: unknown } | MessageError;

/** Reads and validates one frame: the result, or a promise of it when the schema is async. */
function decode(
  frame: MessageFrame,
  schema: StandardSchemaV1,
  converter: MessageConverter,
): Decoded | Promise<Decoded> {
  if (converter.frameType !== undefined && frame.type !== converter.frameType) {
    return new MessageError("UNSUPPORTED", `expected a ${converter.frameType} message, got ${frame.type}`, {
      direction: "incoming",
      frame,
    });
  }
  let value: unknown;
  try {
    value = converter.deserialize(frame);
  } catch (cause) {
    if (cause instanceof MessageError) return cause;
    return new MessageError("MALFORMED", `incoming message cannot be read: ${String(cause)}`, {
      direction: "incoming",
      frame,
      cause,
    });
  }
  const checked = (result: StandardSchemaV1.Result<unknown>): Decoded =>
    result.issues !== undefined
      ? new MessageError("INVALID", `incoming message refused by its schema: ${summary(result.issues)}`, {
          direction: "incoming",
          frame,
          issues: result.issues,
          value,
        })
      : { value: result.value };
  let result: StandardSchemaV1.Result<unknown> | Promise<StandardSchemaV1.Result<unknown>>;
  try {
    result = schema["~standard"].validate(value);
  } catch (cause) {
    return invalidThrown(frame, value, cause);
  }
  return result instanceof Promise
    ? result.then(checked, (cause: unknown) => invalidThrown(frame, value, cause))
    : checked(result);
}

const invalidThrown = (frame: MessageFrame, value: unknown, cause: unknown): MessageError =>
  new MessageError("INVALID", `the schema threw: ${String(cause)}`, {
    direction: "incoming",
    frame,
    cause,
    value,
  });

function summary(issues: ReadonlyArray<StandardSchemaV1.Issue>): string {
  const first = issues[0];
  if (first === undefined) return "no issues reported";
  const path = first.path?.map((p) => String(typeof p === "object" ? p.key : p)).join(".");
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : "";
  return `${path ? `${path}: ` : ""}${first.message}${more}`;
}

// ---- typed message streams ---------------------------------------------------------------------

/** What to do with a message that fails: close the session (its `closeCode`: 1003 or 1007), or skip it. */
export type InvalidMessagePolicy = "close" | "skip" | ((error: MessageError) => "close" | "skip");

export interface MessagesOptions extends DeserializeOptions {
  /** Default "close": 1007 for MALFORMED and INVALID, 1003 for UNSUPPORTED. */
  onInvalidMessage?: InvalidMessagePolicy;
}

/** Messages already received that are read and validated at once while the first one is validated. */
export const VALIDATION_WINDOW = 16;

const CLOSE_REASONS: Record<MessageErrorCode, string> = {
  MALFORMED: "Malformed message",
  INVALID: "Invalid message",
  UNSUPPORTED: "Unsupported data",
};

/**
 * Every message from `incoming`, read and validated, in the order received. Validations run
 * concurrently for up to VALIDATION_WINDOW messages already received, but values are yielded in order.
 * A message that fails follows `onInvalidMessage`: skipped, or the session is closed with the error's
 * close code and the iteration ends. Iterate once.
 */
export async function* deserializedMessages<S extends StandardSchemaV1>(
  session: MessageSession,
  schema: S,
  options: MessagesOptions = {},
): AsyncGenerator<StandardSchemaV1.InferOutput<S>, void, undefined> {
  const converter = options.converter ?? jsonConverter;
  const policy = options.onInvalidMessage ?? "close";
  const incoming = session.incoming;
  const pending: (Decoded | Promise<Decoded>)[] = [];
  for (;;) {
    if (pending.length === 0) {
      const first = await incoming.receive();
      if (first === undefined) return;
      pending.push(decode(first, schema, converter));
    }
    // Start on what has already arrived, without waiting for more.
    while (pending.length < VALIDATION_WINDOW && incoming.length > 0) {
      const frame = await incoming.receive();
      if (frame === undefined) break;
      pending.push(decode(frame, schema, converter));
    }
    let outcome = pending.shift()!;
    if (outcome instanceof Promise) outcome = await outcome;
    if (outcome instanceof MessageError) {
      const action = typeof policy === "function" ? policy(outcome) : policy;
      if (action === "skip") continue;
      pending.length = 0;
      await session.close(outcome.closeCode, CLOSE_REASONS[outcome.code]).catch(() => {});
      return;
    }
    yield outcome.value as StandardSchemaV1.InferOutput<S>;
  }
}

// ---- typed routes ------------------------------------------------------------------------------

/** A route's message schemas (`r.webSocket(path, { incoming, outgoing }, handler)`). */
export interface TypedMessageOptions<
  In extends StandardSchemaV1 = StandardSchemaV1,
  Out extends StandardSchemaV1 | undefined = undefined,
> extends MessagesOptions {
  /** Every incoming message is read by the converter and validated by this schema. */
  incoming: In;
  /** Every value given to `sendTyped` is validated by this schema first. Omitted: not validated. */
  outgoing?: Out;
}

/** What a typed route adds to its session. */
export interface TypedMessages<In extends StandardSchemaV1, Out extends StandardSchemaV1 | undefined> {
  /** The incoming messages, read and validated, in order (see `deserializedMessages`). Iterate once. */
  readonly messages: AsyncIterable<StandardSchemaV1.InferOutput<In>>;
  /** Validates against `outgoing`, serializes and sends; rejects with MessageError, never closes. */
  sendTyped(value: OutgoingValue<Out>): Promise<void>;
}

/** Adds `messages` and `sendTyped` to a session: what typed routes do; also for a client's session. */
export function attachTypedMessages<T extends MessageSession>(
  session: T,
  options: TypedMessageOptions<StandardSchemaV1, StandardSchemaV1 | undefined>,
): T & TypedMessages<StandardSchemaV1, StandardSchemaV1 | undefined> {
  const { incoming, outgoing, ...rest } = options;
  const send: SerializeOptions<StandardSchemaV1 | undefined> = {};
  if (outgoing !== undefined) send.schema = outgoing;
  if (rest.converter !== undefined) send.converter = rest.converter;
  let messages: AsyncIterable<unknown> | undefined;
  Object.defineProperties(session, {
    messages: {
      get: () => {
        messages ??= deserializedMessages(session, incoming, rest);
        return messages;
      },
    },
    sendTyped: { value: (value: unknown) => sendSerialized(session, value, send) },
  });
  return session as T & TypedMessages<StandardSchemaV1, StandardSchemaV1 | undefined>;
}
