import * as v from "valibot";
import { describe, expectTypeOf, it } from "vitest";
import { z } from "zod";
import {
  createApp,
  deserializedMessages,
  type MessageSession,
  receiveDeserialized,
  type StandardSchemaV1,
  sendSerialized,
  WebSockets,
} from "../../src/index.js";

// Type-level tests: `npm run typecheck` checks them; at run time they only define routes.

const ZIn = z.object({
  type: z.literal("say"),
  text: z.string(),
  at: z.string().transform((s) => new Date(s)),
});
const ZOut = z.object({ type: z.literal("said"), n: z.number() });
const VIn = v.object({ kind: v.picklist(["a", "b"]), count: v.optional(v.number(), 0) });
const VOut = v.object({ ok: v.boolean() });

describe("type inference from Standard Schemas", () => {
  it("infers Zod outputs for messages and inputs for sendTyped", () => {
    createApp()
      .install(WebSockets)
      .routing((r) => {
        r.webSocket("/z/{room}", { incoming: ZIn, outgoing: ZOut }, async (session) => {
          expectTypeOf(session.call.parameters.room).toEqualTypeOf<string>();
          for await (const msg of session.messages) {
            expectTypeOf(msg).toEqualTypeOf<{ type: "say"; text: string; at: Date }>();
          }
          expectTypeOf(session.sendTyped).parameter(0).toEqualTypeOf<{ type: "said"; n: number }>();
          // @ts-expect-error: the outgoing schema's shape is enforced
          void session.sendTyped({ type: "said", n: "1" });
          // the session's own API is still there
          expectTypeOf(session.send).toBeFunction();
        });
      });
  });

  it("infers Valibot outputs (defaults applied) and inputs (optional)", () => {
    createApp()
      .install(WebSockets)
      .routing((r) => {
        r.webSocket("/v", { incoming: VIn, outgoing: VOut, onInvalidMessage: "skip" }, async (session) => {
          for await (const msg of session.messages) {
            expectTypeOf(msg).toEqualTypeOf<{ kind: "a" | "b"; count: number }>();
          }
          expectTypeOf(session.sendTyped).parameter(0).toEqualTypeOf<{ ok: boolean }>();
        });
      });
  });

  it("without an outgoing schema, sendTyped takes anything; plain routes are unchanged", () => {
    createApp()
      .install(WebSockets)
      .routing((r) => {
        r.webSocket("/in-only", { incoming: VIn }, async (session) => {
          expectTypeOf(session.sendTyped).parameter(0).toEqualTypeOf<unknown>();
        });
        r.webSocket("/plain", { protocol: "chat" }, async (session) => {
          // @ts-expect-error: no typed messages on a plain route
          void session.messages;
        });
      });
  });

  it("types the functions", () => {
    const check = async (session: MessageSession) => {
      expectTypeOf(await receiveDeserialized(session, ZIn)).toEqualTypeOf<
        StandardSchemaV1.InferOutput<typeof ZIn>
      >();
      expectTypeOf(await receiveDeserialized(session, VIn)).toEqualTypeOf<{
        kind: "a" | "b";
        count: number;
      }>();
      await sendSerialized(session, { ok: true }, { schema: VOut });
      // @ts-expect-error: checked against the schema's input
      await sendSerialized(session, { ok: 1 }, { schema: VOut });
      for await (const m of deserializedMessages(session, ZOut)) expectTypeOf(m.n).toEqualTypeOf<number>();
    };
    expectTypeOf(check).toBeFunction();
  });
});
