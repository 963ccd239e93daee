// @ts-check
/**
 * Child processes of the harness: every one is tracked and killed when the harness exits, on an error,
 * SIGINT or SIGTERM. The children also exit by themselves when their stdin closes (the harness holds
 * the other end), which covers a harness killed with SIGKILL.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

/** @type {Set<import("node:child_process").ChildProcess>} */
const children = new Set();

/** Kills every child still running (SIGKILL: nothing of theirs needs a graceful end). */
export function killAll() {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {}
    }
  }
}

process.on("exit", killAll);
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) {
  process.on(signal, () => {
    killAll();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

/**
 * A process pinned to `cpus`, with the open-file limit raised to 20,000 (the 10,000 idle connections
 * need it on both sides). bash and taskset exec into the command, so the pid is the command's own.
 */
export class Child {
  /**
   * @param {string} name for error messages
   * @param {string} cpus taskset CPU list
   * @param {string[]} command
   * @param {Record<string, string>} [env]
   */
  constructor(name, cpus, command, env = {}) {
    this.name = name;
    const script = 'ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec taskset -c "$0" "$@"';
    this.process = spawn("bash", ["-c", script, cpus, ...command], {
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    children.add(this.process);
    /** @type {string[]} */
    this.lines = [];
    /** @type {((line: string) => void)[]} */
    this.listeners = [];
    this.stderr = "";
    /** @type {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} */
    this.exited = new Promise((resolve) => {
      this.process.on("exit", (code, signal) => {
        children.delete(this.process);
        resolve({ code, signal });
      });
    });
    this.process.on("error", () => {});
    this.process.stdin?.on("error", () => {});
    let pending = "";
    this.process.stdout?.setEncoding("utf8");
    this.process.stdout?.on("data", (/** @type {string} */ chunk) => {
      pending += chunk;
      let nl = pending.indexOf("\n");
      while (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        this.lines.push(line);
        for (const l of [...this.listeners]) l(line);
        nl = pending.indexOf("\n");
      }
    });
    this.process.stderr?.setEncoding("utf8");
    this.process.stderr?.on("data", (/** @type {string} */ chunk) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
  }

  get pid() {
    return /** @type {number} */ (this.process.pid);
  }

  /** Sends one line on stdin. */
  send(/** @type {string} */ line) {
    this.process.stdin?.write(`${line}\n`);
  }

  /**
   * Waits for a stdout line starting with `prefix` (or "ERROR"), returns the rest of the line. Lines
   * already received count, once each.
   */
  waitFor(/** @type {string} */ prefix, /** @type {number} */ timeoutMs) {
    return /** @type {Promise<string>} */ (
      new Promise((resolve, reject) => {
        /** @type {NodeJS.Timeout | undefined} */
        let timer;
        let settled = false;
        const finish = (/** @type {() => void} */ settle) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.listeners = this.listeners.filter((l) => l !== check);
          settle();
        };
        const check = (/** @type {string} */ line) => {
          if (line === prefix || line.startsWith(`${prefix} `)) {
            finish(() => {
              this.lines.splice(this.lines.indexOf(line), 1);
              resolve(line.slice(prefix.length).trim());
            });
          } else if (line.startsWith("ERROR")) {
            finish(() => reject(new Error(`${this.name}: ${line.slice(6)}`)));
          }
        };
        for (const line of [...this.lines]) {
          check(line);
          if (settled) return;
        }
        this.listeners.push(check);
        timer = setTimeout(
          () =>
            finish(() =>
              reject(new Error(`${this.name}: no "${prefix}" within ${timeoutMs} ms${this.tail()}`)),
            ),
          timeoutMs,
        );
        this.exited.then(({ code, signal }) =>
          finish(() =>
            reject(new Error(`${this.name} exited (${signal ?? code}) before "${prefix}"${this.tail()}`)),
          ),
        );
      })
    );
  }

  tail() {
    const err = this.stderr.trim();
    return err ? `; stderr: ${err.split("\n").slice(-5).join(" | ")}` : "";
  }

  /**
   * Closes its stdin (the process exits by itself, writing a --cpu-prof profile), then kills it if it
   * is still there after `ms`.
   */
  async end(/** @type {number} */ ms) {
    this.process.stdin?.end();
    const timer = setTimeout(() => this.kill(), ms);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills the process and waits until it is gone. */
  async kill() {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      try {
        process.kill(this.pid, "SIGKILL");
      } catch {}
    }
    await this.exited;
  }
}

/** Resident set size of a process, in KiB (VmRSS in /proc/<pid>/status). */
export function rssKiB(/** @type {number} */ pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** CPU time (user + system, every thread) of a process, in seconds, from /proc/<pid>/stat. */
export function cpuSeconds(/** @type {number} */ pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the command name: state is field 3, utime field 14 and stime field 15 (1-based, man 5 proc).
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** USER_HZ: 100 on Linux for every architecture Node runs on. */
const CLOCK_TICKS = 100;

export const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Parses a taskset CPU list ("0", "0,2", "1-3"). */
export function cpuList(/** @type {string} */ list) {
  return list.split(",").flatMap((part) => {
    const [a, b] = part.split("-").map(Number);
    if (a === undefined || Number.isNaN(a)) return [];
    return b === undefined ? [a] : Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
}

/** Busy and total jiffies of the given CPUs, from /proc/stat (steal counts as busy: we did not get it). */
export function cpuTimes(/** @type {number[]} */ cpus) {
  const stat = readFileSync("/proc/stat", "utf8");
  let busy = 0;
  let total = 0;
  for (const cpu of cpus) {
    const line = new RegExp(`^cpu${cpu} (.*)$`, "m").exec(stat)?.[1];
    if (!line) continue;
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line
      .trim()
      .split(/\s+/)
      .map(Number);
    const b = user + nice + system + irq + softirq + steal;
    busy += b;
    total += b + idle + iowait;
  }
  return { busy, total };
}

/** Fraction of the time the CPUs were busy between two cpuTimes readings (1 = one CPU fully busy). */
export function busyFraction(
  /** @type {{ busy: number, total: number }} */ a,
  /** @type {{ busy: number, total: number }} */ b,
  /** @type {number} */ cpuCount,
) {
  const total = b.total - a.total;
  return total > 0 ? ((b.busy - a.busy) / total) * cpuCount : 0;
}

/**
 * Before a load measurement (none of ours running): waits, within `budget.ms` (spent as it waits),
 * until other work leaves the pinned cores nearly idle (under 10% each). Returns how busy they were at
 * the last look.
 */
export async function waitForQuiet(
  /** @type {number[]} */ serverCores,
  /** @type {number[]} */ loadCores,
  /** @type {{ ms: number }} */ budget,
  /** @type {(line: string) => void} */ log,
) {
  const look = async () => {
    const s0 = cpuTimes(serverCores);
    const l0 = cpuTimes(loadCores);
    await sleep(500);
    return Math.max(
      busyFraction(s0, cpuTimes(serverCores), serverCores.length) / serverCores.length,
      busyFraction(l0, cpuTimes(loadCores), loadCores.length) / loadCores.length,
    );
  };
  let busy = await look();
  let warned = false;
  while (busy > 0.1 && budget.ms > 0) {
    if (!warned)
      log(`  waiting for the pinned cores to be quiet (${(busy * 100).toFixed(0)}% busy with other work)`);
    warned = true;
    const t = performance.now();
    await sleep(1500);
    busy = await look();
    budget.ms -= performance.now() - t;
  }
  return busy;
}

/**
 * In a load process: the harness's commands, one per line on stdin. `wait(word)` resolves when that
 * line comes (or came already); the process exits when stdin ends, so no load outlives its harness.
 */
export function harnessCommands() {
  /** @type {Map<string, () => void>} */
  const waiting = new Map();
  /** Lines that came before anyone waited for them. */
  const early = new Set();
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (/** @type {string} */ chunk) => {
    pending += chunk;
    let nl = pending.indexOf("\n");
    while (nl >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      const waiter = waiting.get(line);
      if (waiter) {
        waiting.delete(line);
        waiter();
      } else early.add(line);
      nl = pending.indexOf("\n");
    }
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  return {
    wait: (/** @type {string} */ word) =>
      new Promise((resolve) => {
        if (early.delete(word)) resolve(undefined);
        else waiting.set(word, () => resolve(undefined));
      }),
  };
}
