/**
 * negotiateExtensions (src/extensions/negotiate.ts): which configured extension sees which offers, the
 * response header it formats, and that unknown extension names are ignored.
 */
import { describe, expect, it } from "vitest";
import { DeflateCodec } from "../../src/extensions/deflate-codec.js";
import type { ServerExtension } from "../../src/extensions/extension.js";
import { negotiateExtensions } from "../../src/extensions/negotiate.js";
import { permessageDeflate } from "../../src/extensions/permessage-deflate.js";
import { type ExtensionOffer, parseExtensions } from "../../src/protocol/index.js";

const PMD = "permessage-deflate";

function offersOf(header: string): ExtensionOffer[] {
  const offers = parseExtensions(header);
  if (!offers) throw new Error(`test header does not parse: ${header}`);
  return offers;
}

describe("negotiateExtensions", () => {
  it("answers nothing when no extension is configured or nothing is offered", () => {
    const none = { header: undefined, accepted: [], createCodec: undefined };
    expect(negotiateExtensions([], offersOf(PMD))).toEqual(none);
    expect(negotiateExtensions([permessageDeflate()], [])).toEqual(none);
  });

  it("formats the response header with every parameter", () => {
    const result = negotiateExtensions(
      [permessageDeflate({ clientMaxWindowBits: 9 })],
      offersOf(
        `${PMD}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits`,
      ),
    );
    expect(result.header).toBe(
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
    );
    expect(result.accepted).toEqual([
      {
        name: "permessage-deflate",
        params: [
          ["server_no_context_takeover", true],
          ["client_no_context_takeover", true],
          ["server_max_window_bits", "10"],
          ["client_max_window_bits", "9"],
        ],
      },
    ]);
    expect(result.createCodec?.()).toBeInstanceOf(DeflateCodec);
  });

  it("formats a parameterless acceptance as the bare name", () => {
    const result = negotiateExtensions([permessageDeflate()], offersOf(`${PMD}; client_max_window_bits`));
    expect(result.header).toBe("permessage-deflate");
    expect(result.accepted).toEqual([{ name: "permessage-deflate", params: [] }]);
  });

  it("ignores extensions it does not know and takes the offer it knows", () => {
    const result = negotiateExtensions(
      [permessageDeflate()],
      offersOf(`x-webkit-deflate-frame; no_context_takeover, foo; bar=1, ${PMD}; server_no_context_takeover`),
    );
    expect(result.header).toBe("permessage-deflate; server_no_context_takeover");
    expect(result.accepted).toHaveLength(1);
  });

  it("accepts nothing when only unknown extensions are offered", () => {
    const result = negotiateExtensions(
      [permessageDeflate()],
      offersOf("x-webkit-deflate-frame, deflate-frame; no_context_takeover, foo"),
    );
    expect(result).toEqual({ header: undefined, accepted: [], createCodec: undefined });
  });

  it("accepts nothing when every permessage-deflate offer is declined", () => {
    const result = negotiateExtensions(
      [permessageDeflate()],
      offersOf(`${PMD}; server_max_window_bits=8, ${PMD}; foo`),
    );
    expect(result.header).toBeUndefined();
    expect(result.createCodec).toBeUndefined();
  });

  it("matches the extension name case-insensitively and answers with the canonical name", () => {
    const result = negotiateExtensions(
      [permessageDeflate()],
      offersOf("PerMessage-Deflate; Server_No_Context_Takeover"),
    );
    expect(result.header).toBe("permessage-deflate; server_no_context_takeover");
  });

  /** An extension that records the offers it was shown, and accepts when told to. */
  function fake(name: string, accept: boolean): ServerExtension & { seen: ExtensionOffer[][] } {
    const seen: ExtensionOffer[][] = [];
    return {
      name,
      seen,
      negotiate(offers) {
        seen.push([...offers]);
        if (!accept) return undefined;
        return {
          response: { name, params: [["k", "v"]] },
          createCodec: () => ({
            decode: async (data) => data,
            encode: () => undefined,
            close: () => {},
          }),
        };
      },
    };
  }

  it("shows each extension only the offers with its name, in the client's order", () => {
    const a = fake("x-a", false);
    const result = negotiateExtensions([a, permessageDeflate()], offersOf(`x-a; p=1, ${PMD}, x-b, x-a; p=2`));
    expect(a.seen).toEqual([
      [
        { name: "x-a", params: [["p", "1"]] },
        { name: "x-a", params: [["p", "2"]] },
      ],
    ]);
    expect(result.header).toBe("permessage-deflate");
  });

  it("lets the first configured extension that accepts claim RSV1; later ones are not consulted", () => {
    const a = fake("x-a", true);
    const b = fake("x-b", true);
    const result = negotiateExtensions([a, permessageDeflate(), b], offersOf(`${PMD}, x-b, x-a`));
    expect(result.header).toBe("x-a; k=v");
    expect(result.accepted).toEqual([{ name: "x-a", params: [["k", "v"]] }]);
    expect(b.seen).toEqual([]);

    const pmdFirst = negotiateExtensions([permessageDeflate(), a], offersOf(`x-a, ${PMD}`));
    expect(pmdFirst.header).toBe("permessage-deflate");
    expect(a.seen).toHaveLength(1); // only from the first negotiation
  });

  it("skips a configured extension the client did not offer without calling it", () => {
    const a = fake("x-a", true);
    const result = negotiateExtensions([a, permessageDeflate()], offersOf(PMD));
    expect(a.seen).toEqual([]);
    expect(result.header).toBe("permessage-deflate");
  });
});
