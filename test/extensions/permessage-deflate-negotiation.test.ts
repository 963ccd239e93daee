/**
 * permessage-deflate negotiation (RFC 7692 §5, §7.1): a Sec-WebSocket-Extensions offer goes through
 * parseExtensions → permessageDeflate(options).negotiate, and the response parameters (or a decline) and the
 * codec's settings are checked exactly. Then option validation and invariants (property). negotiateExtensions
 * is in negotiate.test.ts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeflateCodec, type DeflateCodecOptions } from "../../src/extensions/deflate-codec.js";
import type { AcceptedExtension, MessageCodec } from "../../src/extensions/extension.js";
import { type PermessageDeflateOptions, permessageDeflate } from "../../src/extensions/permessage-deflate.js";
import { type ExtensionOffer, parseExtensions } from "../../src/protocol/index.js";

/** Formats a response the way RFC 6455 §9.1 writes it, independently of sockway's formatter. */
function show(offer: ExtensionOffer): string {
  return [offer.name, ...offer.params.map(([k, v]) => (v === true ? k : `${k}=${v}`))].join("; ");
}

function offersOf(header: string): ExtensionOffer[] {
  const offers = parseExtensions(header);
  if (!offers) throw new Error(`test header does not parse: ${header}`);
  return offers;
}

function negotiate(header: string, options: PermessageDeflateOptions = {}): AcceptedExtension | undefined {
  return permessageDeflate(options).negotiate(offersOf(header));
}

type CodecSettings = Pick<
  DeflateCodecOptions,
  "deflateWindowBits" | "inflateWindowBits" | "deflateNoContextTakeover" | "inflateNoContextTakeover"
>;

/** The settings the negotiated codec was built with (a private field: there is no public view of them). */
function settingsOf(
  codec: MessageCodec,
): CodecSettings & { threshold: number; level: number; memLevel: number } {
  expect(codec).toBeInstanceOf(DeflateCodec);
  const o = (codec as unknown as { options: DeflateCodecOptions }).options;
  return {
    deflateWindowBits: o.deflateWindowBits,
    inflateWindowBits: o.inflateWindowBits,
    deflateNoContextTakeover: o.deflateNoContextTakeover,
    inflateNoContextTakeover: o.inflateNoContextTakeover,
    threshold: o.threshold,
    level: o.level,
    memLevel: o.memLevel,
  };
}

const DEFAULT_CODEC: CodecSettings = {
  deflateWindowBits: 15,
  inflateWindowBits: 15,
  deflateNoContextTakeover: false,
  inflateNoContextTakeover: false,
};

interface Row {
  header: string;
  options?: PermessageDeflateOptions;
  /** The response header value, or null when every offer is declined. */
  response: string | null;
  /** Codec settings that differ from DEFAULT_CODEC. */
  codec?: Partial<CodecSettings>;
}

function check(row: Row): void {
  const accepted = negotiate(row.header, row.options);
  if (row.response === null) {
    expect(accepted).toBeUndefined();
    return;
  }
  expect(accepted).toBeDefined();
  expect(show(accepted!.response)).toBe(row.response);
  expect(accepted!.response.name).toBe("permessage-deflate");
  const settings = settingsOf(accepted!.createCodec());
  expect({
    deflateWindowBits: settings.deflateWindowBits,
    inflateWindowBits: settings.inflateWindowBits,
    deflateNoContextTakeover: settings.deflateNoContextTakeover,
    inflateNoContextTakeover: settings.inflateNoContextTakeover,
  }).toEqual({ ...DEFAULT_CODEC, ...row.codec });
}

const PMD = "permessage-deflate";

describe("permessage-deflate negotiation: context takeover parameters (RFC 7692 §7.1.1)", () => {
  const rows: Row[] = [
    { header: PMD, response: PMD },
    {
      header: `${PMD}; server_no_context_takeover`,
      response: `${PMD}; server_no_context_takeover`,
      codec: { deflateNoContextTakeover: true },
    },
    {
      header: `${PMD}; client_no_context_takeover`,
      response: `${PMD}; client_no_context_takeover`,
      codec: { inflateNoContextTakeover: true },
    },
    {
      header: `${PMD}; client_no_context_takeover; server_no_context_takeover`,
      response: `${PMD}; server_no_context_takeover; client_no_context_takeover`,
      codec: { deflateNoContextTakeover: true, inflateNoContextTakeover: true },
    },
    {
      header: PMD,
      options: { serverNoContextTakeover: true },
      response: `${PMD}; server_no_context_takeover`,
      codec: { deflateNoContextTakeover: true },
    },
    {
      // §7.1.1.2: the server may ask the client not to take over context even when it did not offer it.
      header: PMD,
      options: { clientNoContextTakeover: true },
      response: `${PMD}; client_no_context_takeover`,
      codec: { inflateNoContextTakeover: true },
    },
    {
      header: `${PMD}; SERVER_NO_CONTEXT_TAKEOVER`,
      response: `${PMD}; server_no_context_takeover`,
      codec: { deflateNoContextTakeover: true },
    },
  ];
  it.each(rows)("$header $options → $response", (row) => check(row));
});

describe("permessage-deflate negotiation: server_max_window_bits (RFC 7692 §7.1.2.1)", () => {
  it("declines server_max_window_bits=8: zlib cannot compress with a 256-byte window", () => {
    check({ header: `${PMD}; server_max_window_bits=8`, response: null });
    check({
      header: `${PMD}; server_max_window_bits=8`,
      options: { serverMaxWindowBits: 9 },
      response: null,
    });
  });

  it.each([9, 10, 11, 12, 13, 14, 15])("accepts server_max_window_bits=%i and echoes it", (bits) => {
    check({
      header: `${PMD}; server_max_window_bits=${bits}`,
      response: `${PMD}; server_max_window_bits=${bits}`,
      codec: { deflateWindowBits: bits },
    });
  });

  const rows: Row[] = [
    {
      header: `${PMD}; server_max_window_bits=12`,
      options: { serverMaxWindowBits: 10 },
      response: `${PMD}; server_max_window_bits=10`,
      codec: { deflateWindowBits: 10 },
    },
    {
      header: `${PMD}; server_max_window_bits=10`,
      options: { serverMaxWindowBits: 12 },
      response: `${PMD}; server_max_window_bits=10`,
      codec: { deflateWindowBits: 10 },
    },
    {
      header: `${PMD}; server_max_window_bits=9`,
      options: { serverMaxWindowBits: 9 },
      response: `${PMD}; server_max_window_bits=9`,
      codec: { deflateWindowBits: 9 },
    },
    {
      // Not offered: the server may still announce the smaller window it compresses with.
      header: PMD,
      options: { serverMaxWindowBits: 11 },
      response: `${PMD}; server_max_window_bits=11`,
      codec: { deflateWindowBits: 11 },
    },
    {
      header: `${PMD}; server_max_window_bits="10"`,
      response: `${PMD}; server_max_window_bits=10`,
      codec: { deflateWindowBits: 10 },
    },
  ];
  it.each(rows)("$header $options → $response", (row) => check(row));
});

describe("permessage-deflate negotiation: client_max_window_bits (RFC 7692 §7.1.2.2)", () => {
  it.each([8, 9, 10, 11, 12, 13, 14, 15])("accepts client_max_window_bits=%i and echoes it", (bits) => {
    check({
      header: `${PMD}; client_max_window_bits=${bits}`,
      response: `${PMD}; client_max_window_bits=${bits}`,
      codec: { inflateWindowBits: bits },
    });
  });

  const rows: Row[] = [
    // Without a value and with the default 15 there is nothing to say.
    { header: `${PMD}; client_max_window_bits`, response: PMD },
    {
      header: `${PMD}; client_max_window_bits`,
      options: { clientMaxWindowBits: 10 },
      response: `${PMD}; client_max_window_bits=10`,
      codec: { inflateWindowBits: 10 },
    },
    {
      header: `${PMD}; client_max_window_bits`,
      options: { clientMaxWindowBits: 8 },
      response: `${PMD}; client_max_window_bits=8`,
      codec: { inflateWindowBits: 8 },
    },
    {
      // Not offered: the client may not support limiting its window, so it is never in the response.
      header: PMD,
      options: { clientMaxWindowBits: 10 },
      response: PMD,
    },
    {
      header: `${PMD}; server_no_context_takeover`,
      options: { clientMaxWindowBits: 9 },
      response: `${PMD}; server_no_context_takeover`,
      codec: { deflateNoContextTakeover: true },
    },
    {
      header: `${PMD}; client_max_window_bits=12`,
      options: { clientMaxWindowBits: 10 },
      response: `${PMD}; client_max_window_bits=10`,
      codec: { inflateWindowBits: 10 },
    },
    {
      header: `${PMD}; client_max_window_bits=9`,
      options: { clientMaxWindowBits: 12 },
      response: `${PMD}; client_max_window_bits=9`,
      codec: { inflateWindowBits: 9 },
    },
    {
      header: `${PMD} ;  client_max_window_bits = 11`,
      response: `${PMD}; client_max_window_bits=11`,
      codec: { inflateWindowBits: 11 },
    },
  ];
  it.each(rows)("$header $options → $response", (row) => check(row));
});

describe("permessage-deflate negotiation: all parameters together", () => {
  it("answers every parameter in a fixed order", () => {
    check({
      header: `${PMD}; client_max_window_bits; server_max_window_bits=14; client_no_context_takeover; server_no_context_takeover`,
      options: { serverMaxWindowBits: 12, clientMaxWindowBits: 11 },
      response: `${PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11`,
      codec: {
        deflateWindowBits: 12,
        inflateWindowBits: 11,
        deflateNoContextTakeover: true,
        inflateNoContextTakeover: true,
      },
    });
  });

  it("passes level, memLevel and threshold to the codec (defaults 6, 8, 1024)", () => {
    const defaults = negotiate(PMD)!;
    expect(settingsOf(defaults.createCodec())).toMatchObject({ level: 6, memLevel: 8, threshold: 1024 });
    const tuned = negotiate(PMD, { level: 1, memLevel: 3, threshold: 0 })!;
    expect(settingsOf(tuned.createCodec())).toMatchObject({ level: 1, memLevel: 3, threshold: 0 });
  });

  it("creates a new codec for every session", () => {
    const accepted = negotiate(PMD)!;
    expect(accepted.createCodec()).not.toBe(accepted.createCodec());
  });
});

describe("permessage-deflate negotiation: several offers (RFC 7692 §5)", () => {
  const rows: Row[] = [
    {
      header: `${PMD}; client_max_window_bits=10, ${PMD}`,
      response: `${PMD}; client_max_window_bits=10`,
      codec: { inflateWindowBits: 10 },
    },
    {
      header: `${PMD}, ${PMD}; client_max_window_bits=10`,
      response: PMD,
    },
    {
      header: `${PMD}; server_max_window_bits=8, ${PMD}; server_no_context_takeover`,
      response: `${PMD}; server_no_context_takeover`,
      codec: { deflateNoContextTakeover: true },
    },
    {
      header: `${PMD}; foo, ${PMD}; client_max_window_bits=9`,
      response: `${PMD}; client_max_window_bits=9`,
      codec: { inflateWindowBits: 9 },
    },
    {
      header: `${PMD}; server_max_window_bits=16, ${PMD}; server_max_window_bits=8, ${PMD}; server_max_window_bits=12`,
      response: `${PMD}; server_max_window_bits=12`,
      codec: { deflateWindowBits: 12 },
    },
    {
      header: `${PMD}; server_max_window_bits=16, ${PMD}; server_max_window_bits=7`,
      response: null,
    },
  ];
  it.each(rows)("$header → $response", (row) => check(row));
});

describe("permessage-deflate negotiation: offers that must be declined (RFC 7692 §7.1)", () => {
  const malformed = [
    "server_max_window_bits=16",
    "server_max_window_bits=7",
    "server_max_window_bits=08",
    "server_max_window_bits=abc",
    "server_max_window_bits=0",
    "server_max_window_bits=-9",
    "server_max_window_bits=+9",
    "server_max_window_bits=1e1",
    "server_max_window_bits=9.0",
    "server_max_window_bits", // a value is required
    "client_max_window_bits=16",
    "client_max_window_bits=7",
    "client_max_window_bits=08",
    "client_max_window_bits=abc",
    'client_max_window_bits="16"',
    "server_no_context_takeover=1",
    'server_no_context_takeover="true"',
    "client_no_context_takeover=0",
  ];
  it.each(malformed)("declines a malformed value: %s", (param) => {
    check({ header: `${PMD}; ${param}`, response: null });
  });

  const duplicates = [
    "server_no_context_takeover; server_no_context_takeover",
    "client_no_context_takeover; client_no_context_takeover",
    "server_max_window_bits=10; server_max_window_bits=10",
    "server_max_window_bits=10; SERVER_MAX_WINDOW_BITS=11",
    "client_max_window_bits; client_max_window_bits=10",
    "client_max_window_bits=10; client_max_window_bits=10",
  ];
  it.each(duplicates)("declines a duplicate parameter: %s", (params) => {
    check({ header: `${PMD}; ${params}`, response: null });
  });

  const unknown = [
    "foo",
    "x-custom=1",
    "client_max_window",
    "no_context_takeover",
    "server_no_context_takeover; max=1",
  ];
  it.each(unknown)("declines an unknown parameter: %s", (params) => {
    check({ header: `${PMD}; ${params}`, response: null });
  });

  it.each([
    `${PMD}; server_max_window_bits=`,
    `${PMD};`,
    `; ${PMD}`,
    `${PMD}; a="b`,
    `${PMD} server_no_context_takeover`,
    `${PMD}; client_max_window_bits=""`,
    `${PMD}; client_max_window_bits="1 0"`,
  ])("rejects a header that breaks the RFC 6455 §9.1 grammar: %s", (header) => {
    expect(parseExtensions(header)).toBeUndefined();
  });
});

describe("permessageDeflate option validation", () => {
  it.each<[PermessageDeflateOptions, string]>([
    [{ level: 10 }, "permessageDeflate option level must be an integer from 0 to 9, got 10"],
    [{ level: -1 }, "permessageDeflate option level must be an integer from 0 to 9, got -1"],
    [{ level: 1.5 }, "permessageDeflate option level must be an integer from 0 to 9, got 1.5"],
    [{ memLevel: 0 }, "permessageDeflate option memLevel must be an integer from 1 to 9, got 0"],
    [{ memLevel: 10 }, "permessageDeflate option memLevel must be an integer from 1 to 9, got 10"],
    [
      { serverMaxWindowBits: 8 },
      "permessageDeflate option serverMaxWindowBits must be an integer from 9 to 15, got 8",
    ],
    [
      { serverMaxWindowBits: 16 },
      "permessageDeflate option serverMaxWindowBits must be an integer from 9 to 15, got 16",
    ],
    [
      { clientMaxWindowBits: 7 },
      "permessageDeflate option clientMaxWindowBits must be an integer from 8 to 15, got 7",
    ],
    [
      { clientMaxWindowBits: 16 },
      "permessageDeflate option clientMaxWindowBits must be an integer from 8 to 15, got 16",
    ],
    [
      { threshold: -1 },
      "permessageDeflate option threshold must be an integer from 0 to 9007199254740991, got -1",
    ],
    [
      { threshold: Number.NaN },
      "permessageDeflate option threshold must be an integer from 0 to 9007199254740991, got NaN",
    ],
    [{ concurrency: 0 }, "permessageDeflate option concurrency must be an integer from 1 to 1000000, got 0"],
    [
      { concurrency: 2.5 },
      "permessageDeflate option concurrency must be an integer from 1 to 1000000, got 2.5",
    ],
  ])("throws AppError INVALID_OPTION for %o", (options, message) => {
    expect(() => permessageDeflate(options)).toThrow(message);
    expect(() => permessageDeflate(options)).toThrow(
      expect.objectContaining({ name: "AppError", code: "INVALID_OPTION" }),
    );
  });

  it.each<PermessageDeflateOptions>([
    { level: 0 },
    { level: 9 },
    { memLevel: 1 },
    { memLevel: 9 },
    { serverMaxWindowBits: 9 },
    { serverMaxWindowBits: 15 },
    { clientMaxWindowBits: 8 },
    { clientMaxWindowBits: 15 },
    { threshold: 0 },
    { concurrency: 1 },
  ])("accepts the edge value %o", (options) => {
    expect(permessageDeflate(options).name).toBe("permessage-deflate");
  });
});

describe("permessage-deflate negotiation invariants (property)", () => {
  const windowBits = fc.integer({ min: 8, max: 15 });
  const offerArb = fc.record(
    {
      serverNoContext: fc.boolean(),
      clientNoContext: fc.boolean(),
      serverBits: fc.option(windowBits, { nil: undefined }),
      clientBits: fc.option(fc.oneof(fc.constant<true>(true), windowBits), { nil: undefined }),
    },
    { requiredKeys: ["serverNoContext", "clientNoContext"] },
  );
  const optionsArb = fc.record({
    serverMaxWindowBits: fc.integer({ min: 9, max: 15 }),
    clientMaxWindowBits: windowBits,
    serverNoContextTakeover: fc.boolean(),
    clientNoContextTakeover: fc.boolean(),
  });

  it("answers within what was offered and configured, and builds the codec it announced", () => {
    fc.assert(
      fc.property(offerArb, optionsArb, fc.boolean(), (offer, options, reversed) => {
        const params: string[] = [];
        if (offer.serverNoContext) params.push("server_no_context_takeover");
        if (offer.clientNoContext) params.push("client_no_context_takeover");
        if (offer.serverBits !== undefined) params.push(`server_max_window_bits=${offer.serverBits}`);
        if (offer.clientBits === true) params.push("client_max_window_bits");
        else if (offer.clientBits !== undefined) params.push(`client_max_window_bits=${offer.clientBits}`);
        if (reversed) params.reverse();
        const header = [PMD, ...params].join("; ");
        const accepted = negotiate(header, options);

        const serverBits = Math.min(offer.serverBits ?? 15, options.serverMaxWindowBits);
        if (serverBits < 9) {
          expect(accepted).toBeUndefined();
          return;
        }
        expect(accepted).toBeDefined();
        const response = new Map(accepted!.response.params);
        expect(response.size).toBe(accepted!.response.params.length); // no parameter twice
        expect(response.has("server_no_context_takeover")).toBe(
          offer.serverNoContext || options.serverNoContextTakeover,
        );
        expect(response.has("client_no_context_takeover")).toBe(
          offer.clientNoContext || options.clientNoContextTakeover,
        );
        const answeredServer = response.get("server_max_window_bits");
        if (offer.serverBits !== undefined) expect(answeredServer).toBe(String(serverBits));
        if (answeredServer !== undefined) expect(Number(answeredServer)).toBe(serverBits);
        const answeredClient = response.get("client_max_window_bits");
        if (offer.clientBits === undefined) expect(answeredClient).toBeUndefined();
        if (answeredClient !== undefined) {
          expect(answeredClient).not.toBe(true);
          const offeredClient = offer.clientBits === true ? 15 : offer.clientBits!;
          expect(Number(answeredClient)).toBe(Math.min(offeredClient, options.clientMaxWindowBits));
        }
        // The response must parse back as the same list (it goes out as a header).
        expect(parseExtensions(show(accepted!.response))).toEqual([accepted!.response]);
        expect(settingsOf(accepted!.createCodec())).toMatchObject({
          deflateWindowBits: serverBits,
          inflateWindowBits: answeredClient === undefined ? 15 : Number(answeredClient),
          deflateNoContextTakeover: response.has("server_no_context_takeover"),
          inflateNoContextTakeover: response.has("client_no_context_takeover"),
        });
      }),
      { numRuns: 500 },
    );
  });
});
