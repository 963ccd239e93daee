// @ts-check
/** Bun.serve with permessage-deflate on. See bun.js. */
process.env.BENCH_DEFLATE = "1";
await import("./bun.js");
