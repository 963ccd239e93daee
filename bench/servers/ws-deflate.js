// @ts-check
/** ws with permessage-deflate on (threshold 0: every message compressed). See ws.js. */
process.env.BENCH_DEFLATE = "1";
await import("./ws.js");
