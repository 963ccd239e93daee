import { afterEach, describe, expect, it } from "vitest";
import { CloseCode, Frame } from "../../src/index.js";
import { startApp } from "../helpers/app.js";
import { cleanup } from "../helpers/cleanup.js";
import { within } from "../helpers/wait.js";
import { WsClient } from "../helpers/ws-client.js";

afterEach(cleanup);

describe("session.outgoing, the sending side as a stream", () => {
  it("a stream piped into outgoing arrives in order, and the end of the pipe closes with 1000", async () => {
    const { wsUrl, errors } = await startApp((r) => {
      r.webSocket("/feed", async (session) => {
        const source = ReadableStream.from(["first", Frame.binary(Buffer.from([1, 2, 3])), "last"]);
        await source.pipeTo(session.outgoing);
      });
    });
    const client = await WsClient.open(`${wsUrl}/feed`);
    expect(await client.nextText()).toBe("first");
    const binary = await client.next();
    expect([binary.isBinary, [...binary.data]]).toEqual([true, [1, 2, 3]]);
    expect(await client.nextText()).toBe("last");
    expect(await within(client.closed, 2000, "the close")).toEqual({ code: 1000, reason: "" });
    expect(errors).toEqual([]);
  });

  it("aborting the writer closes with 1001, and writes after it are refused", async () => {
    let refused: unknown;
    const { wsUrl } = await startApp((r) => {
      r.webSocket("/abort", async (session) => {
        const writer = session.outgoing.getWriter();
        await writer.write("before");
        await writer.abort(new Error("source failed"));
        refused = await session.send("after").catch((e: unknown) => e);
        await session.closeReason;
      });
    });
    const client = await WsClient.open(`${wsUrl}/abort`);
    expect(await client.nextText()).toBe("before");
    expect(await within(client.closed, 2000, "the close")).toEqual({ code: 1001, reason: "" });
    expect((refused as { code?: string }).code).toBe("SESSION_CLOSED");
    expect(CloseCode.GoingAway).toBe(1001);
  });
});
