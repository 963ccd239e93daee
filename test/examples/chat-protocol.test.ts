/** The chat demo's rules for names, messages and page origins, without a server. */
import { describe, expect, it } from "vitest";
import { originsFor, parseOrigins } from "../../examples/chat/origins.js";
import { checkName, cleanText, MAX_NAME_LENGTH, MAX_TEXT_LENGTH } from "../../examples/chat/protocol.js";

const INVISIBLE = "Name has control, bidi or invisible characters";

describe("chat names", () => {
  it("accepts ordinary names in any script, trimmed and in NFC", () => {
    for (const name of ["alice", "Zoë", "李雷", "bob 2", "ناصر", "❤️ fan", "o'neil-smith"])
      expect(checkName(name, "Name")).toEqual({ ok: true, value: name });
    expect(checkName("  carol  ", "Name")).toEqual({ ok: true, value: "carol" });
    expect(checkName("Zoe\u0308", "Name")).toEqual({ ok: true, value: "Zoë" });
  });

  it("refuses controls, line breaks, bidi controls and invisible characters anywhere in the name", () => {
    const refused = {
      "bidi embedding, override (U+202A–U+202E)": ["\u202A", "\u202B", "\u202C", "\u202D", "\u202E"],
      "bidi isolates (U+2066–U+2069)": ["\u2066", "\u2067", "\u2068", "\u2069"],
      "bidi marks": ["\u200E", "\u200F", "\u061C"],
      "line breaks and controls": ["\n", "\r", "\t", "\u0000", "\u0007", "\u001B", "\u007F", "\u0085"],
      "line and paragraph separators": ["\u2028", "\u2029"],
      "zero-width and other format characters": ["\u200B", "\u200C", "\u200D", "\u2060", "\uFEFF", "\u00AD"],
      "interlinear annotation, Arabic number sign": ["\uFFF9", "\uFFFB", "\u0600"],
      "tags, private use, noncharacters": ["\u{E0041}", "\uE000", "\uFDD0", "\uFFFF"],
      "blank fillers": ["\u3164", "\u115F", "\uFFA0", "\u2800"],
    };
    for (const [kind, chars] of Object.entries(refused))
      for (const c of chars)
        for (const name of [`al${c}ice`, `${c}alice`, `alice${c}x`])
          expect(checkName(name, "Name"), `${kind}: ${JSON.stringify(name)}`).toEqual({
            ok: false,
            reason: INVISIBLE,
          });
  });

  it("refuses empty, over-long, space-alike and letterless names, with the reason for each", () => {
    expect(checkName(null, "Name")).toEqual({ ok: false, reason: "Name required" });
    expect(checkName("   ", "Room")).toEqual({ ok: false, reason: "Room required" });
    const longest = `a${"😀".repeat(MAX_NAME_LENGTH - 1)}`; // counted in characters, not UTF-16 units
    expect(checkName(longest, "Name")).toEqual({ ok: true, value: longest });
    expect(checkName(`${longest}b`, "Name")).toEqual({
      ok: false,
      reason: `Name too long (at most ${MAX_NAME_LENGTH} characters)`,
    });
    for (const space of ["\u00A0", "\u3000", "\u2003", "\u202F"])
      expect(checkName(`a${space}b`, "Name")).toEqual({
        ok: false,
        reason: "Name may only contain plain spaces",
      });
    for (const name of ["*", "* * *", "—", "..."])
      expect(checkName(name, "Name")).toEqual({ ok: false, reason: "Name needs a letter or digit" });
  });
});

describe("chat messages", () => {
  it("keep a message on one line: line breaks and controls become one space", () => {
    expect(cleanText("hi\n* mallory joined lobby")).toEqual({ ok: true, value: "hi * mallory joined lobby" });
    expect(cleanText("a\r\n\r\nb\u2028c\u2029d\u0085e\tf\u0000g")).toEqual({
      ok: true,
      value: "a b c d e f g",
    });
  });

  it("remove bidi embeddings, overrides and isolates, keep other text as typed", () => {
    expect(cleanText("a\u202Eevil\u202C b\u2066c\u2069")).toEqual({ ok: true, value: "aevil bc" });
    expect(cleanText("שלום, <b>world</b> 😀")).toEqual({ ok: true, value: "שלום, <b>world</b> 😀" });
  });

  it("refuse empty and over-long messages", () => {
    expect(cleanText(" \n\t ")).toEqual({ ok: false, reason: "Empty message" });
    const longest = "é".repeat(MAX_TEXT_LENGTH);
    expect(cleanText(longest)).toEqual({ ok: true, value: longest });
    expect(cleanText(`${longest}!`)).toEqual({
      ok: false,
      reason: `Message too long (at most ${MAX_TEXT_LENGTH} characters)`,
    });
  });
});

describe("chat origins", () => {
  it("a loopback address allows the page on every loopback name, at that port only", () => {
    for (const host of ["127.0.0.1", "localhost", "::1"])
      expect(new Set(originsFor(host, 8080))).toEqual(
        new Set(["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]),
      );
  });

  it("another host allows itself; the default port is left out as browsers do", () => {
    expect(originsFor("Chat.Example", 80)).toEqual(["http://chat.example"]);
    expect(originsFor("10.1.2.3", 9000)).toEqual(["http://10.1.2.3:9000"]);
  });

  it("a wildcard address allows this machine's addresses and localhost", () => {
    const origins = originsFor("0.0.0.0", 8080);
    expect(origins).toContain("http://127.0.0.1:8080");
    expect(origins).toContain("http://localhost:8080");
    expect(originsFor("::", 8080)).toEqual(origins);
  });

  it("CHAT_ORIGINS is a list of bare origins, compared as browsers send them", () => {
    expect(parseOrigins(" HTTPS://Chat.Example.com:443 , http://localhost:3000,")).toEqual([
      "https://chat.example.com",
      "http://localhost:3000",
    ]);
    for (const bad of ["chat.example.com", "https://chat.example.com/", "https://x.com/chat", "*", "null"])
      expect(() => parseOrigins(bad), bad).toThrow(/CHAT_ORIGINS/);
  });
});
