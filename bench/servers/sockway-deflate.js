// @ts-check
/** sockway with permessage-deflate on (threshold 0: every message compressed). See sockway.js. */
process.env.BENCH_DEFLATE = "1";
await import("./sockway.js");
